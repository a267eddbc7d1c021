package server

import (
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Connections and requests are bounded apart (issue 14).
//
// fasthttp's Server.Concurrency counts connections being served, and a
// keep-alive connection is served, holding its worker, while it waits up
// to IdleTimeout for its next request. With Concurrency at 4,096, 4,100
// idle browsers made every new client a 503. So here fasthttp's
// Concurrency is only a backstop far above the connection cap; a
// connLimiter in front of fasthttp caps the open connections, in total
// (Options.MaxConns) and per client address (Options.MaxConnsPerIP); and
// a gate bounds the requests in flight (Options.Concurrency), answering
// 503 with Retry-After on a connection that stays open, so that a client
// retrying on it costs a request, not a new connection.
//
// At the total cap, a new connection closes the connection that has been
// waiting longest for a request (a keep-alive one between requests, or a
// new one that has sent nothing yet) rather than being refused: an idle
// client reconnects when it next has something to ask (as after
// IdleTimeout), a refused one cannot be served at all. Only when every
// connection is inside a request is the new one refused (503, closed).
// The per-address cap works the same way within an address: a new
// connection over it closes that address's own longest-waiting
// connection, and is refused (429, closed) only when all the address's
// connections are inside requests. So one host cannot hold more than its
// share in slow requests (slowloris), and the many idle browsers behind
// one carrier-grade NAT do not lock each other out.
//
// An idle connection costs about 20 KB (measured with 5,000: the read
// buffer of MaxHeaderBytes, a 4 KiB write buffer, the request context
// and the goroutine's stack), so the default cap of 10,000 holds them to
// about 200 MB. fasthttp's ReduceMemoryUsage cuts that to 5.5 KB by
// returning the buffers between requests, but costs an allocation and
// two pool round trips a request: it stays off.

// connLimiter is a net.Listener that caps the connections it hands out
// and closes the longest-waiting one when a new one would pass the cap.
// fasthttp reports each connection's state to its state method
// (Server.ConnState).
//
// Every open connection is in a ring, and in its address's ring, in the
// order it last began to wait for a request (accepted, or its answer
// written); it is marked busy while inside a request. Only that move to
// the back takes the mutex, once a request: going busy is an atomic
// store, and the eviction, rare, walks the ring from the front past the
// busy ones.
type connLimiter struct {
	net.Listener
	max, perIP int
	// log, when set, logs a refusal (Server.logClient: throttled).
	log func(msg string, args ...any)

	mu   sync.Mutex
	open int
	all  limitedConn           // sentinel of the ring of every connection
	byIP map[uint64]*addrConns // when perIP > 0

	evicted, refusedFull, refusedPerIP atomic.Uint64
}

// addrConns are the connections of one client address.
type addrConns struct {
	n   int
	own limitedConn // sentinel of the ring of its connections
}

// limitedConn is a connection the limiter handed out. Its fields below
// busy are guarded by the limiter's mu.
type limitedConn struct {
	net.Conn
	l        *connLimiter
	busy     atomic.Bool // inside a request
	ip       uint64
	addr     *addrConns // nil: not limited per address
	all, own link       // in l.all, in addr.own
	released bool
}

// link places a connection in a ring.
type link struct{ prev, next *limitedConn }

func (c *limitedConn) link(own bool) *link {
	if own {
		return &c.own
	}
	return &c.all
}

// pushLocked puts c last in the ring of head.
func pushLocked(head, c *limitedConn, own bool) {
	h, n := head.link(own), c.link(own)
	n.prev, n.next = h.prev, head
	h.prev.link(own).next = c
	h.prev = c
}

// unlinkLocked takes c out of its ring.
func unlinkLocked(c *limitedConn, own bool) {
	n := c.link(own)
	n.prev.link(own).next = n.next
	n.next.link(own).prev = n.prev
	*n = link{}
}

// waitingLocked returns the connection of head's ring that has waited
// longest for a request, nil when all are busy.
func waitingLocked(head *limitedConn, own bool) *limitedConn {
	for c := head.link(own).next; c != head; c = c.link(own).next {
		if !c.busy.Load() {
			return c
		}
	}
	return nil
}

func newConnLimiter(ln net.Listener, max, perIP int) *connLimiter {
	l := &connLimiter{Listener: ln, max: max, perIP: perIP}
	l.all.all = link{&l.all, &l.all}
	if perIP > 0 {
		l.byIP = make(map[uint64]*addrConns)
	}
	return l
}

// Refusals, sent before any request is read.
var (
	refusalFull  = refusal("503 Service Unavailable", "overloaded", "every connection is inside a request; retry after a second")
	refusalPerIP = refusal("429 Too Many Requests", "too_many_connections", "too many connections from this address")
)

func refusal(status, code, message string) []byte {
	body := `{"error":{"code":"` + code + `","message":"` + message + `"}}` + "\n"
	return []byte("HTTP/1.1 " + status + "\r\nServer: edgerec\r\nContent-Type: application/json\r\nRetry-After: 1\r\n" +
		"Connection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// Accept returns the next connection within the caps. Refused ones are
// answered and closed here; their errors are not Accept's.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc, victim, refusal := l.admit(c)
		if victim != nil {
			// Its fasthttp worker sees the socket closed and ends.
			_ = victim.Conn.Close()
		}
		if lc != nil {
			return lc, nil
		}
		// Logged first: a client that reads the refusal finds it logged.
		if l.log != nil {
			why := "every connection is inside a request (-max-conns)"
			if &refusal[0] == &refusalPerIP[0] {
				why = "every connection of the address is inside a request (-max-conns-per-ip)"
			}
			l.log("connection refused", "remote", c.RemoteAddr().String(), "why", why)
		}
		// A fresh socket's send buffer takes these bytes at once; the
		// deadline only guards the accept loop against the unexpected.
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(refusal)
		_ = c.Close()
	}
}

// admit counts c in, or returns the refusal to send it. victim, when not
// nil, was waiting longest (of c's address when that is at its cap, else
// of all) and is already released: close its socket.
func (l *connLimiter) admit(c net.Conn) (lc, victim *limitedConn, refusal []byte) {
	ip := connIP(c)
	l.mu.Lock()
	defer l.mu.Unlock()
	var a *addrConns
	if l.perIP > 0 && ip != 0 {
		a = l.byIP[ip]
		switch {
		case a == nil:
			a = new(addrConns)
			a.own.own = link{&a.own, &a.own}
			l.byIP[ip] = a
		case a.n >= l.perIP:
			if victim = waitingLocked(&a.own, true); victim == nil {
				l.refusedPerIP.Add(1)
				return nil, nil, refusalPerIP
			}
			l.releaseLocked(victim)
			l.evicted.Add(1)
			l.byIP[ip] = a // the release dropped it when perIP is 1
		}
	}
	if victim == nil && l.max > 0 && l.open >= l.max {
		if victim = waitingLocked(&l.all, false); victim == nil {
			l.refusedFull.Add(1)
			return nil, nil, refusalFull
		}
		l.releaseLocked(victim)
		l.evicted.Add(1)
	}
	lc = &limitedConn{Conn: c, l: l, ip: ip, addr: a}
	l.open++
	pushLocked(&l.all, lc, false)
	if a != nil {
		a.n++
		pushLocked(&a.own, lc, true)
	}
	return lc, victim, nil
}

// state follows fasthttp's view of a connection (Server.ConnState).
func (l *connLimiter) state(c net.Conn, st fasthttp.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	switch st {
	case fasthttp.StateActive:
		lc.busy.Store(true)
	case fasthttp.StateIdle:
		l.mu.Lock()
		if !lc.released {
			unlinkLocked(lc, false)
			pushLocked(&l.all, lc, false)
			if a := lc.addr; a != nil {
				unlinkLocked(lc, true)
				pushLocked(&a.own, lc, true)
			}
		}
		lc.busy.Store(false)
		l.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		l.mu.Lock()
		l.releaseLocked(lc)
		l.mu.Unlock()
	}
}

// Close releases c's place, once, and closes it.
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// releaseLocked gives c's place back, once.
func (l *connLimiter) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	l.open--
	unlinkLocked(c, false)
	if a := c.addr; a != nil {
		unlinkLocked(c, true)
		if a.n--; a.n == 0 {
			delete(l.byIP, c.ip)
		}
	}
}

// counts returns the open connections and those waiting for a request
// (a walk of the ring: for metrics and tests).
func (l *connLimiter) counts() (open, idle int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := l.all.all.next; c != &l.all; c = c.all.next {
		if !c.busy.Load() {
			idle++
		}
	}
	return l.open, idle
}

// connIP is the per-address key of c's peer: its IPv4 address (above
// 1<<32), or the /64 prefix of its IPv6 one (a host gets a whole /64); 0
// when c is not TCP.
func connIP(c net.Conn) uint64 {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return 0
	}
	if v4 := a.IP.To4(); v4 != nil {
		return 1<<32 | uint64(binary.BigEndian.Uint32(v4))
	}
	if len(a.IP) == net.IPv6len {
		return binary.BigEndian.Uint64(a.IP[:8])
	}
	return 0
}

// gate bounds the requests in flight.
type gate struct {
	n   atomic.Int64
	max int64
}

func (g *gate) enter() bool {
	if g.n.Add(1) > g.max {
		g.n.Add(-1)
		return false
	}
	return true
}

func (g *gate) leave() { g.n.Add(-1) }

// overloaded answers a request over Options.Concurrency: 503 with
// Retry-After, without closing the connection (a client that reconnected
// to retry would cost a connection more).
func (s *Server) overloaded(ctx *fasthttp.RequestCtx) error {
	s.m.overloaded.Inc()
	ctx.Response.Header.Set("Retry-After", "1")
	s.logClient("overloaded: requests in flight at -concurrency", "concurrency", s.o.Concurrency)
	return errOverloaded
}
