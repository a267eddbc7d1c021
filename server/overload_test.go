package server

import (
	"testing"

	"github.com/edgerec/edgerec/engine"
)

// TestKeylessLimitKeepsConnection: a request over the keyless rate is
// answered 429 with Retry-After on a connection that stays open (no
// Connection: close: a client that reconnected to retry would cost a
// connection more), and the same connection is served after.
func TestKeylessLimitKeepsConnection(t *testing.T) {
	s, _ := testServer(t, engine.Options{}, Options{KeylessRate: 0.001, KeylessBurst: 1})
	c := dialRaw(t, s.addr)
	const decide = "GET /v1/decide?page=p&visitor=v1 HTTP/1.1\r\nHost: x\r\n\r\n"
	if a := c.send(t, decide); a.status == 429 || a.close {
		t.Fatalf("the first keyless request: %d close %v %s; want it within the burst, the connection open", a.status, a.close, a.body)
	}
	a := c.send(t, decide)
	if a.status != 429 || a.header.Get("Retry-After") == "" || a.close {
		t.Fatalf("over the keyless rate: %d %v close %v %s; want 429 with Retry-After, the connection open", a.status, a.header, a.close, a.body)
	}
	if a := c.send(t, "GET /v1/popular?k=3 HTTP/1.1\r\nHost: x\r\n\r\n"); a.status != 200 || a.close {
		t.Fatalf("the same connection after a 429: %d close %v %s", a.status, a.close, a.body)
	}
}
