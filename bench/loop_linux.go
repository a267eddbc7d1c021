//go:build linux

package bench

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// haveLoops: the closed loop runs on epoll event loops (closedLoops).
const haveLoops = true

// closedLoops drives o.Connections keep-alive connections to host as fast
// as answers come back, with one epoll event loop per P (as wrk runs one
// per thread), each on its own locked thread with its share of raw
// non-blocking sockets. It returns one report per loop.
//
// Why not a goroutine per connection: on 2 shared cores the netpoller
// wakes the goroutines of a batch of answers one after the other, and each
// writes its next request (a loopback write runs the server's side of TCP
// too) before the next one reads its answer, so an answer waited in the
// socket for the writes of the others, and that wait counted as latency
// (p50 1.3-1.4x wrk's at the same throughput, see README Benchmarks). A
// loop reads every ready answer, polls once more for answers that came in
// meanwhile, and only then writes the next requests; wrk too writes one
// epoll round after it read.
//
// While the loops run, GOMAXPROCS is one more than the loops: with every P
// in a loop, sysmon took the P of a loop blocked in a syscall for more than
// 20 µs and woke another thread to poll the network, a churn that cost
// 10-15% of the throughput. The spare P also runs timers and GC workers.
//
// Latency counts from just before a request's first byte is written (or
// its connection dialed) to the read that completes its answer.
func closedLoops(ctx context.Context, o *AttackOptions, hostport string, head *requestHead, start time.Time, take func() bool) ([]*Report, error) {
	addr, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve %q: %w", hostport, err)
	}
	procs, release := spareP()
	defer release()
	loops := make([]*loop, min(procs, o.Connections))
	for i := range loops {
		r := newReport(0, o.Duration)
		r.interval, r.warmup = o.Interval, o.Warmup
		r.Start = start
		loops[i] = &loop{o: o, head: head, r: r, take: take}
		// Each loop its own Sockaddr: Connect encodes into it.
		if ip4 := addr.IP.To4(); ip4 != nil {
			sa := &unix.SockaddrInet4{Port: addr.Port}
			copy(sa.Addr[:], ip4)
			loops[i].domain, loops[i].sa = unix.AF_INET, sa
		} else {
			sa := &unix.SockaddrInet6{Port: addr.Port}
			copy(sa.Addr[:], addr.IP.To16())
			loops[i].domain, loops[i].sa = unix.AF_INET6, sa
		}
	}
	for i := 0; i < o.Connections; i++ {
		l := loops[i%len(loops)]
		l.conns = append(l.conns, &loopConn{fd: -1, tg: o.NewTargeter(uint64(i + 1))})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(loops))
	reps := make([]*Report, len(loops))
	for i, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.run(ctx)
			reps[i] = l.r
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return reps, nil
}

// procs counts the attacks running closed loops, so that overlapping ones
// raise GOMAXPROCS by one in all and the last restores it.
var procs struct {
	sync.Mutex
	attacks, base int
}

// spareP sets GOMAXPROCS one above its value before the first running
// attack and returns that value (the number of loops to run) and the
// release to call when the loops are done.
func spareP() (int, func()) {
	procs.Lock()
	defer procs.Unlock()
	if procs.attacks == 0 {
		procs.base = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(procs.base + 1)
	}
	procs.attacks++
	return procs.base, func() {
		procs.Lock()
		defer procs.Unlock()
		if procs.attacks--; procs.attacks == 0 {
			runtime.GOMAXPROCS(procs.base)
		}
	}
}

// loop is one event loop and the connections it owns. Only its goroutine
// touches it.
type loop struct {
	o      *AttackOptions
	head   *requestHead
	domain int
	sa     unix.Sockaddr
	ep     int
	conns  []*loopConn
	ready  []int // conns to send on next, by index
	r      *Report
	take   func() bool // false: the attack's Requests are all sent
}

// loopConn is one connection of a loop and its request in flight.
type loopConn struct {
	fd         int // -1: closed
	connecting bool
	busy       bool // a request is in flight
	tg         Targeter
	t          Target
	req        []byte
	wrote      int
	sent       time.Time
	deadline   time.Time
	rb         respBuf
}

func (l *loop) run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("cannot create epoll: %w", err)
	}
	l.ep = ep
	defer func() {
		for _, c := range l.conns {
			if c.fd >= 0 {
				_ = unix.Close(c.fd)
			}
		}
		_ = unix.Close(ep)
	}()
	end, _ := ctx.Deadline()
	events := make([]unix.EpollEvent, len(l.conns))
	next := make([]int, 0, len(l.conns))
	for i := range l.conns {
		l.ready = append(l.ready, i)
	}
	var expiry time.Time // no deadline of a request in flight is earlier
	ending := false
	for {
		if !ending {
			select {
			case <-ctx.Done():
				ending = true
			default:
			}
		}
		if ending {
			l.ready = l.ready[:0]
			if !l.anyBusy() {
				return nil
			}
		}
		if len(l.ready) > 0 {
			// Read the answers that came in while this round's were
			// read, then send after all of them; sends that fail at
			// once go to the next round.
			n, err := epollWait(ep, events, 0)
			if err != nil && err != unix.EINTR {
				return fmt.Errorf("cannot wait on epoll: %w", err)
			}
			for _, ev := range events[:max(n, 0)] {
				l.event(int(ev.Fd), ev.Events)
			}
			next, l.ready = l.ready, next[:0]
			for _, i := range next {
				if !l.take() {
					ending = true
					break
				}
				l.send(i)
			}
		}
		wait := 0
		if len(l.ready) == 0 {
			until := 50 * time.Millisecond
			if !expiry.IsZero() {
				until = min(until, time.Until(expiry))
			}
			if !ending && !end.IsZero() {
				until = min(until, time.Until(end))
			}
			wait = max(int((until+time.Millisecond-1)/time.Millisecond), 0)
		}
		n, err := epollWait(ep, events, wait)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("cannot wait on epoll: %w", err)
		}
		for _, ev := range events[:n] {
			l.event(int(ev.Fd), ev.Events)
		}
		if now := time.Now(); !expiry.IsZero() && !now.Before(expiry) {
			expiry = time.Time{}
			for i, c := range l.conns {
				switch {
				case !c.busy:
				case !now.Before(c.deadline):
					l.fail(i, errTimeout)
				case expiry.IsZero() || c.deadline.Before(expiry):
					expiry = c.deadline
				}
			}
		} else if expiry.IsZero() {
			// Deadlines grow with send times: the oldest request in
			// flight expires first.
			for _, c := range l.conns {
				if c.busy && (expiry.IsZero() || c.deadline.Before(expiry)) {
					expiry = c.deadline
				}
			}
		}
	}
}

// epollWait is unix.EpollWait without entersyscall: the loop keeps its P
// while it blocks, so sysmon does not hand the P over and wake another
// thread each time the loop waits for answers (see closedLoops). The wait
// is bounded (50 ms at most), and a preemption signal ends it with EINTR,
// so the loop still stops for GC.
func epollWait(ep int, events []unix.EpollEvent, msec int) (int, error) {
	// epoll_pwait with a nil mask: epoll_wait does not exist on arm64.
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func (l *loop) anyBusy() bool {
	for _, c := range l.conns {
		if c.busy {
			return true
		}
	}
	return false
}

// send starts the next request on conn i, dialing first if it is closed.
func (l *loop) send(i int) {
	c := l.conns[i]
	c.tg(&c.t)
	c.req = l.head.append(c.req[:0], c.t.Method, c.t.Path, c.t.Body)
	c.wrote = 0
	c.rb.start(c.t.Method)
	c.busy = true
	c.sent = time.Now()
	c.deadline = c.sent.Add(l.o.Timeout)
	if c.fd < 0 {
		if err := l.dial(i); err != nil {
			l.fail(i, errConn)
		}
		return
	}
	l.write(i)
}

// dial opens a non-blocking socket for conn i and starts connecting; the
// epoll registration (edge-triggered, for reads and writes) reports when
// the connect ends.
func (l *loop) dial(i int) error {
	c := l.conns[i]
	fd, err := unix.Socket(l.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	c.fd = fd
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(i)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return err
	}
	err = unix.Connect(fd, l.sa)
	switch err {
	case nil:
		l.write(i)
		return nil
	case unix.EINPROGRESS:
		c.connecting = true
		return nil
	}
	return err
}

// event handles what epoll reported for conn i.
func (l *loop) event(i int, ev uint32) {
	c := l.conns[i]
	if c.fd < 0 || !c.busy {
		return // an answer nobody asked for, or a close: the next request sees it
	}
	if c.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		c.connecting = false
		if errno, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
			l.fail(i, errConn)
			return
		}
		l.write(i)
		return
	}
	if c.wrote < len(c.req) {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.write(i)
		}
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		l.read(i)
	}
}

// write writes what is left of conn i's request; the rest waits for the
// next EPOLLOUT edge.
func (l *loop) write(i int) {
	c := l.conns[i]
	for c.wrote < len(c.req) {
		n, err := unix.Write(c.fd, c.req[c.wrote:])
		switch err {
		case nil:
			c.wrote += n
		case unix.EINTR:
		case unix.EAGAIN:
			return
		default:
			l.fail(i, errConn)
			return
		}
	}
}

// read reads conn i's answer until it is complete or the socket is empty
// (edge-triggered: the next bytes bring the next event). A complete answer
// is recorded and the connection queued for its next request.
func (l *loop) read(i int) {
	c := l.conns[i]
	for {
		done, err := c.rb.parse()
		if err != nil {
			l.fail(i, errOther)
			return
		}
		if done {
			l.record(c, errNone, c.rb.p.status)
			if !c.rb.p.reuse {
				l.close(c)
			}
			l.ready = append(l.ready, i)
			return
		}
		n, err := unix.Read(c.fd, c.rb.free())
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return
		case err != nil || n == 0: // reset, or closed mid-answer
			l.fail(i, errConn)
			return
		default:
			c.rb.filled(n)
		}
	}
}

// fail records conn i's request as failed, closes the connection (the
// next request dials again) and queues it.
func (l *loop) fail(i int, kind errKind) {
	c := l.conns[i]
	l.record(c, kind, 0)
	l.close(c)
	l.ready = append(l.ready, i)
}

func (l *loop) record(c *loopConn, kind errKind, status int) {
	c.busy = false
	l.r.add(result{intended: c.sent, latency: time.Since(c.sent), status: status, err: kind, kind: c.t.Kind})
}

// close closes c's socket, which also removes it from the epoll set.
func (l *loop) close(c *loopConn) {
	if c.fd >= 0 {
		_ = unix.Close(c.fd)
	}
	c.fd, c.connecting = -1, false
	c.rb = respBuf{b: c.rb.b}
}
