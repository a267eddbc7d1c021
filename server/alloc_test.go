//go:build !race

package server

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestAllocsCacheHit pins the allocation budget of the hot path: a
// similar-items request answered from the cache allocates nothing.
func TestAllocsCacheHit(t *testing.T) {
	s, _ := testServer(t, Options{})
	f := func(uri string, budget float64) {
		t.Helper()
		warm(t, s, uri)
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		n := testing.AllocsPerRun(200, func() {
			ctx.Response.Reset()
			s.Handle(&ctx)
		})
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%s: %d", uri, ctx.Response.StatusCode())
		}
		if n > budget {
			t.Fatalf("%s: %v allocs per request; budget %v", uri, n, budget)
		}
	}
	f("/v1/items/1/similar?k=10", 0)
	f("/v1/items/50/bought-together?k=5", 0)
	f("/v1/popular?k=10", 0)
}
