package bench

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// waker puts the open loop's scheduler to sleep until a hit is due. On
// Linux it is a timerfd(2) watched by Go's netpoller: the scheduler's
// goroutine parks while it waits, so its P runs the workers and reads
// their answers, and the kernel's high-resolution timer makes the
// netpoller's epoll_wait return when the hit is due.
//
// Two other ways fail. A runtime timer (time.Sleep) rides on that same
// epoll_wait, but with a timeout in whole milliseconds: an idle generator
// sent up to 1 ms late, and lateness counts as latency. A nanosleep(2) on
// a locked thread, which bench used before, keeps the goroutine's P for
// the whole sleep: with GOMAXPROCS=1, once a hit found no idle worker,
// the scheduler and the newest worker passed the only P to each other
// through runnext, sharing one time slice, while the other workers and
// every answer (sysmon's netpoll queues those every 10 ms) waited for the
// P to look at its run queues: 10,000 hits scheduled over 10 s got about
// 16 answers a second (TestAttackOpenLoopOneP).
//
// How late a send leaves after its slot, p50 at 1,000 and 5,000/s against
// a server on the other core, without sendLead: 30 µs with the timerfd,
// 500 µs with time.Sleep, 60 µs with nanosleep and a hand-off 250 µs
// early (the worker's own nanosleep woke within its 50 µs timer slack).
type waker struct {
	f  *os.File
	fd int
}

func newWaker() (*waker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("cannot create a timerfd: %w", err)
	}
	// A non-blocking fd: os.NewFile registers it with the netpoller.
	return &waker{f: os.NewFile(uintptr(fd), "timerfd"), fd: fd}, nil
}

// sleep parks the calling goroutine for d.
func (w *waker) sleep(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(d.Nanoseconds(), 1))} // 0 would disarm it
	if err := unix.TimerfdSettime(w.fd, 0, &spec, nil); err != nil {
		return fmt.Errorf("cannot arm the timerfd: %w", err)
	}
	var expirations [8]byte
	if _, err := w.f.Read(expirations[:]); err != nil {
		return fmt.Errorf("cannot read the timerfd: %w", err)
	}
	return nil
}

func (w *waker) close() { _ = w.f.Close() }
