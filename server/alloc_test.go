//go:build !race

package server

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
)

// TestAllocsCacheHit pins the allocation budget of the hot path: a
// similar-items request answered from the cache allocates nothing.
func TestAllocsCacheHit(t *testing.T) {
	s, _ := testServer(t, engine.Options{Config: sampleConfig(t)}, Options{})
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
	settleState(t, s)
	f("/v1/items/i44/similar?k=10", 0)
	f("/v1/items/i90/bought-together?k=5", 0)
	f("/v1/popular?k=10", 0)
	// A returning visitor's landing-page decision: stored assignment,
	// rules (outcome cached), payload.
	f("/v1/decide?page=lp_consulting&visitor=alloc-1&q=seo", 0)
	f("/v1/decide?page=lp_consulting&visitor=alloc-2&q=%E5%96%B6%E6%A5%AD+%E6%88%90%E7%B4%84%E7%8E%87", 0)
	// A lead's segments: profile read from Pebble, decoded, five rules.
	for range 3 {
		if code, b := do(t, s.testClient, "POST", "/v1/events", testKey, `{"event":"pageview","visitor":"alloc-lead","page":"/pricing"}`); code != 200 {
			t.Fatalf("events: %d %s", code, b)
		}
	}
	f("/v1/users/alloc-lead/segments", 0)
	// The landing page's segment rule reads the same profile.
	f("/v1/decide?page=lp_consulting&visitor=alloc-lead", 0)
	// Personal answers: a visitor's live history blended over cached
	// lists; and /v1/page, decision, two placements and segments in one.
	for _, item := range []string{"i44", "i90", "i55", "i157", "i79"} {
		if code, b := do(t, s.testClient, "POST", "/v1/events", testKey, `{"event":"view","visitor":"alloc-viewer","item_id":"`+item+`"}`); code != 200 {
			t.Fatalf("events: %d %s", code, b)
		}
	}
	f("/v1/users/alloc-viewer/recommendations?k=10", 0)
	f("/v1/recommend?placement=product_page&item=i90&visitor=alloc-viewer", 0)
	f("/v1/page?page=lp_consulting&visitor=alloc-viewer&placements=home,product_page&item=i90&k=6", 0)

	// A client that takes gzip, on a cached answer.
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/v1/items/i44/similar?k=20")
	ctx.Request.Header.Set("Accept-Encoding", "gzip")
	for range 3 {
		ctx.Response.Reset()
		s.Handle(&ctx)
		s.cache.Wait()
	}
	n := testing.AllocsPerRun(200, func() {
		ctx.Response.Reset()
		s.Handle(&ctx)
	})
	if string(ctx.Response.Header.Peek("Content-Encoding")) != "gzip" || n > 0 {
		t.Fatalf("gzip cache hit: %q, %v allocs per request; budget 0", ctx.Response.Header.Peek("Content-Encoding"), n)
	}
}

// TestAllocsCORS: the CORS grant of a listed origin costs no allocation
// on a cached answer, nor does the browser script.
func TestAllocsCORS(t *testing.T) {
	s, _ := testServer(t, engine.Options{Config: sampleConfig(t)}, Options{CORSOrigins: []string{"https://shop.example"}})
	for _, uri := range []string{"/v1/popular?k=10", "/v1/edgerec.js"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		ctx.Request.Header.Set("Origin", "https://shop.example")
		ctx.Request.Header.Set("Accept-Encoding", "gzip")
		// Warm with the same headers: the answer cached, then its deflate
		// stream beside it (each a Ristretto Set, seen after Wait).
		for range 3 {
			ctx.Response.Reset()
			s.Handle(&ctx)
			s.cache.Wait()
			s.e.WaitCache()
		}
		n := testing.AllocsPerRun(200, func() {
			ctx.Response.Reset()
			s.Handle(&ctx)
		})
		if ctx.Response.StatusCode() != 200 || len(ctx.Response.Header.Peek("Access-Control-Allow-Origin")) == 0 {
			t.Fatalf("%s: %d %s", uri, ctx.Response.StatusCode(), ctx.Response.Header.String())
		}
		if n > 0 {
			t.Fatalf("%s: %v allocs per request; budget 0", uri, n)
		}
	}
}
