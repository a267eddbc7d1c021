package bench

import (
	"errors"
	"testing"
)

func TestRespParser(t *testing.T) {
	// f feeds resp whole and split at every byte, and wants the same
	// outcome: status, reuse and the count of bytes left after it (the next
	// response's), or an error.
	f := func(method, resp string, status int, reuse bool, rest int, bad bool) {
		t.Helper()
		for split := 0; split <= len(resp); split++ {
			var rb respBuf
			rb.start(method)
			done, unfed := false, 0
			var err error
			for _, part := range []string{resp[:split], resp[split:]} {
				if done || err != nil {
					unfed += len(part)
					continue
				}
				rb.filled(copy(rb.free(), part))
				done, err = rb.parse()
			}
			if bad {
				if !errors.Is(err, errBadResponse) {
					t.Fatalf("split %d of %q: err %v, want a malformed response", split, resp, err)
				}
				return // an error may come at any split; one is enough
			}
			if err != nil || !done || rb.p.status != status || rb.p.reuse != reuse || rb.w-rb.r+unfed != rest {
				t.Fatalf("split %d of %q: done %v err %v status %d reuse %v rest %d; want %d %v %d",
					split, resp, done, err, rb.p.status, rb.p.reuse, rb.w-rb.r+unfed, status, reuse, rest)
			}
		}
	}
	f("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, true, 0, false)
	f("GET", "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 200, true, 0, false)
	f("GET", "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nnoHTTP/1.1", 404, true, 8, false)
	f("GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 200, false, 0, false)
	f("GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, false, 0, false)
	f("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n", 200, true, 0, false)
	f("HEAD", "HTTP/1.1 200 OK\r\nX: y\r\n\r\n", 200, true, 0, false)
	f("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 200, true, 0, false)
	f("GET", "HTTP/1.1 204 No Content\r\n\r\n", 204, true, 0, false)
	f("GET", "HTTP/1.1 200 OK\r\n\r\nbody until close", 200, false, 16, false)
	f("GET", "SSH-2.0-OpenSSH\r\n", 0, false, 0, true)
	f("GET", "HTTP/1.1 2x0 OK\r\n\r\n", 0, false, 0, true)
	f("GET", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 0, false, 0, true)
	f("GET", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false, 0, true)
	f("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, false, 0, true)
}

func TestRespBufLongLine(t *testing.T) {
	var rb respBuf
	rb.start("GET")
	rb.filled(copy(rb.free(), "HTTP/1.1 200 OK\r\nX: "))
	for {
		free := rb.free()
		for i := range free {
			free[i] = 'a'
		}
		rb.filled(len(free))
		if _, err := rb.parse(); err != nil {
			if !errors.Is(err, errBadResponse) {
				t.Fatal(err)
			}
			return
		}
		if rb.w != len(rb.b) && len(rb.free()) == 0 {
			t.Fatal("no room made")
		}
	}
}
