package server

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkRequestGuards measures what issue 14 added to every request:
// fasthttp's two connection state calls (active, then idle again), the
// framing check of a GET and the in-flight gate, on both cores.
func BenchmarkRequestGuards(b *testing.B) {
	l := newConnLimiter(nil, 1<<20, 0)
	var g gate
	g.max = 1 << 30
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader("GET /v1/items/i44/similar?k=10 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\nAccept-Encoding: gzip\r\n\r\n"))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		a, z := net.Pipe()
		defer a.Close()
		defer z.Close()
		c, _, _ := l.admit(a)
		for pb.Next() {
			l.state(c, fasthttp.StateActive)
			if badFraming(&h) || !g.enter() {
				b.Fatal("refused")
			}
			g.leave()
			l.state(c, fasthttp.StateIdle)
		}
	})
}
