package bench

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestClosedLoop drives a real loopback server with both closed-loop
// drivers: the event loops (on Linux) and a goroutine per connection.
func TestClosedLoop(t *testing.T) {
	for _, goroutines := range []bool{false, true} {
		name := "loops"
		if goroutines {
			name = "goroutines"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			big := bytes.Repeat([]byte("x"), 100<<10) // many reads per answer
			var n, closes atomic.Int64
			release := make(chan struct{})
			u := serve(t, func(ctx *fasthttp.RequestCtx) {
				n.Add(1)
				switch string(ctx.Path()) {
				case "/big":
					ctx.SetBody(big)
				case "/chunked":
					ctx.SetBodyStreamWriter(func(w *bufio.Writer) { _, _ = w.WriteString("a chunked body") })
				case "/close":
					closes.Add(1)
					ctx.SetConnectionClose()
					ctx.SetBodyString("bye")
				case "/slow":
					<-release // answers when the test ends
				case "/events":
					if string(ctx.Request.Header.Peek("Authorization")) != "Bearer k" || !bytes.Equal(ctx.PostBody(), []byte(`{"a":1}`)) {
						ctx.SetStatusCode(400)
					}
				default:
					ctx.SetBodyString("ok")
				}
			})
			t.Cleanup(func() { close(release) }) // before serve's Shutdown, which waits for handlers
			targets := RoundRobin([]Target{
				{Method: "GET", Path: "/", Kind: "small"}, {Method: "GET", Path: "/big", Kind: "big"},
				{Method: "GET", Path: "/chunked", Kind: "chunked"}, {Method: "GET", Path: "/close", Kind: "close"},
				{Method: "POST", Path: "/events", Body: []byte(`{"a":1}`), Kind: "events"}, {Method: "HEAD", Path: "/", Kind: "head"},
			})
			// 120 requests (a minute only as a safety net): 20 of each kind.
			rep, err := Attack(context.Background(), AttackOptions{URL: u, Connections: 5, Duration: time.Minute, Requests: 120,
				APIKey: "k", NewTargeter: targets, goroutines: goroutines})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Requests != 120 || rep.OK != 120 || n.Load() != 120 || closes.Load() != 20 || len(rep.Kinds) != 6 || rep.Kinds["big"] != 20 {
				t.Fatalf("%d requests, %d ok, server saw %d (%d closes), status %v errors %v kinds %v",
					rep.Requests, rep.OK, n.Load(), closes.Load(), rep.Status, rep.Errors, rep.Kinds)
			}
			if rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P50 || rep.Latency.Max > 1e6 {
				t.Fatalf("latency %+v", rep.Latency)
			}

			// A request past its timeout counts as a timeout, when it
			// expires rather than much later, and the connection is
			// dialed again for the next.
			rep, err = Attack(context.Background(), AttackOptions{URL: u, Connections: 2, Duration: time.Minute, Requests: 6,
				Timeout: 250 * time.Millisecond, NewTargeter: RoundRobin([]Target{{Method: "GET", Path: "/slow", Kind: "slow"}, {Method: "GET", Path: "/", Kind: "fast"}}),
				goroutines: goroutines})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Requests != 6 || rep.Errors["timeout"] != 3 || rep.OK != 3 || rep.Latency.Max > 1_250_000 {
				t.Fatalf("timeouts: %d requests, status %v errors %v, max %s", rep.Requests, rep.Status, rep.Errors, us(rep.Latency.Max))
			}
		})
	}
}

// TestClosedLoopErrors: connection errors against a closed port, malformed
// answers from a server that is not HTTP, and an attack cut short by ctx.
func TestClosedLoopErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rep, err := Attack(context.Background(), AttackOptions{URL: "http://" + addr, Connections: 2, Duration: time.Minute, Requests: 4, NewTargeter: fixed("/")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 4 || rep.Errors["connection"] != 4 || rep.OK != 0 {
		t.Fatalf("closed port: status %v errors %v", rep.Status, rep.Errors)
	}

	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The attack is cut short by ctx once the server has answered 5
	// requests with garbage: by then at least 3 answers were read (2
	// connections), whatever the machine's load.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var answers atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := c.Write([]byte(strings.Repeat("SSH-2.0-OpenSSH\r\n", 3))); err != nil {
						return
					}
					if answers.Add(1) == 5 {
						cancel()
					}
				}
			}()
		}
	}()
	start := time.Now()
	rep, err = Attack(ctx, AttackOptions{URL: "http://" + ln.Addr().String(), Connections: 2, Duration: time.Minute, NewTargeter: fixed("/")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors["other"] < 3 || rep.OK != 0 || time.Since(start) > 10*time.Second {
		t.Fatalf("not HTTP: status %v errors %v after %v", rep.Status, rep.Errors, time.Since(start))
	}
}

func TestClosedLoopRestoresGOMAXPROCS(t *testing.T) {
	u := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	before := runtime.GOMAXPROCS(0)
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := Attack(context.Background(), AttackOptions{URL: u, Connections: 2, Duration: 100 * time.Millisecond, NewTargeter: fixed("/")})
			done <- err
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if after := runtime.GOMAXPROCS(0); after != before {
		t.Fatalf("GOMAXPROCS %d after two overlapping attacks, %d before", after, before)
	}
}
