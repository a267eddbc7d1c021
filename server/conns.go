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
type connLimiter struct {
	net.Listener
	max, perIP int
	// log, when set, logs a refusal (Server.logClient: throttled).
	log func(msg string, args ...any)

	mu    sync.Mutex
	open  int
	byIP  map[uint64]*addrConns // when perIP > 0
	idle  limitedConn           // sentinel of the ring (all) of waiting connections, longest waiting first
	nidle int

	evicted, refusedFull, refusedPerIP atomic.Uint64
}

// addrConns are the connections of one client address.
type addrConns struct {
	n    int
	idle limitedConn // sentinel of the ring (own) of its waiting connections
}

// limitedConn is a connection the limiter handed out. Its fields below
// Conn are guarded by the limiter's mu.
type limitedConn struct {
	net.Conn
	l        *connLimiter
	ip       uint64
	addr     *addrConns // nil: not limited per address
	all, own links      // in l.idle, in addr.idle, while waiting for a request
	released bool
}

// links place a connection in a ring; nil when it is in none.
type links struct{ prev, next *limitedConn }

func allLinks(c *limitedConn) *links { return &c.all }
func ownLinks(c *limitedConn) *links { return &c.own }

// push puts c last in the ring of head.
func push(head, c *limitedConn, at func(*limitedConn) *links) {
	h, n := at(head), at(c)
	n.prev, n.next = h.prev, head
	at(h.prev).next = c
	h.prev = c
}

// unlink takes c out of its ring, if it is in one.
func unlink(c *limitedConn, at func(*limitedConn) *links) bool {
	n := at(c)
	if n.next == nil {
		return false
	}
	at(n.prev).next = n.next
	at(n.next).prev = n.prev
	n.prev, n.next = nil, nil
	return true
}

func newConnLimiter(ln net.Listener, max, perIP int) *connLimiter {
	l := &connLimiter{Listener: ln, max: max, perIP: perIP}
	l.idle.all = links{&l.idle, &l.idle}
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
		// A fresh socket's send buffer takes these bytes at once; the
		// deadline only guards the accept loop against the unexpected.
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(refusal)
		_ = c.Close()
		if l.log != nil {
			why := "every connection is inside a request (-max-conns)"
			if &refusal[0] == &refusalPerIP[0] {
				why = "every connection of the address is inside a request (-max-conns-per-ip)"
			}
			l.log("connection refused", "remote", c.RemoteAddr().String(), "why", why)
		}
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
			a.idle.own = links{&a.idle, &a.idle}
			l.byIP[ip] = a
		case a.n >= l.perIP:
			if victim = a.idle.own.next; victim == &a.idle {
				l.refusedPerIP.Add(1)
				return nil, nil, refusalPerIP
			}
			l.releaseLocked(victim)
			l.evicted.Add(1)
			l.byIP[ip] = a // the release dropped it when perIP is 1
		}
	}
	if victim == nil && l.max > 0 && l.open >= l.max {
		if victim = l.idle.all.next; victim == &l.idle {
			l.refusedFull.Add(1)
			return nil, nil, refusalFull
		}
		l.releaseLocked(victim)
		l.evicted.Add(1)
	}
	lc = &limitedConn{Conn: c, l: l, ip: ip, addr: a}
	l.open++
	if a != nil {
		a.n++
	}
	l.pushLocked(lc) // waiting for its first request
	return lc, victim, nil
}

// state follows fasthttp's view of a connection (Server.ConnState).
func (l *connLimiter) state(c net.Conn, st fasthttp.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	switch st {
	case fasthttp.StateActive:
		l.unlinkLocked(lc)
	case fasthttp.StateIdle:
		if !lc.released {
			l.unlinkLocked(lc)
			l.pushLocked(lc)
		}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		l.releaseLocked(lc)
	}
	l.mu.Unlock()
}

// Close releases c's place, once, and closes it.
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// pushLocked puts c last in the rings of waiting connections.
func (l *connLimiter) pushLocked(c *limitedConn) {
	push(&l.idle, c, allLinks)
	if c.addr != nil {
		push(&c.addr.idle, c, ownLinks)
	}
	l.nidle++
}

// unlinkLocked takes c out of the rings of waiting connections.
func (l *connLimiter) unlinkLocked(c *limitedConn) {
	if unlink(c, allLinks) {
		l.nidle--
	}
	if c.addr != nil {
		unlink(c, ownLinks)
	}
}

// releaseLocked gives c's place back, once.
func (l *connLimiter) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	l.unlinkLocked(c)
	l.open--
	if a := c.addr; a != nil {
		if a.n--; a.n == 0 {
			delete(l.byIP, c.ip)
		}
	}
}

// counts returns the open connections and those waiting for a request.
func (l *connLimiter) counts() (open, idle int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.nidle
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
