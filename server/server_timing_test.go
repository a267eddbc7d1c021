package server

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
)

// handlerLoop drives h with one reused RequestCtx for uri, as fasthttp's
// worker would, and fails on a non-200 answer.
func handlerLoop(b *testing.B, h fasthttp.RequestHandler, uri string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		for pb.Next() {
			ctx.Response.Reset()
			h(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("%s: %d %s", uri, ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
}

// BenchmarkSimilarCacheHit is the hot path: a non-personal similar-items
// request answered from the rendered-body cache.
func BenchmarkSimilarCacheHit(b *testing.B) {
	s, _ := testServer(b, engine.Options{}, Options{})
	warm(b, s, "/v1/items/i44/similar?k=10")
	b.ResetTimer()
	handlerLoop(b, s.Handle, "/v1/items/i44/similar?k=10")
}

// BenchmarkSimilarCacheHitGzip is the hot path for a client that accepts
// gzip: the cached deflate stream behind a stored block with the rec_id,
// and a CRC-32 of the answer.
func BenchmarkSimilarCacheHitGzip(b *testing.B) {
	s, _ := testServer(b, engine.Options{}, Options{})
	const uri = "/v1/items/i44/similar?k=10"
	warm(b, s, uri)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		ctx.Request.Header.Set("Accept-Encoding", "gzip, deflate, br")
		for pb.Next() {
			ctx.Response.Reset()
			s.Handle(&ctx)
			if string(ctx.Response.Header.Peek("Content-Encoding")) != "gzip" {
				b.Fatalf("%s: %d, not gzip", uri, ctx.Response.StatusCode())
			}
		}
	})
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.Set("Accept-Encoding", "gzip")
	s.Handle(&ctx)
	b.ReportMetric(float64(len(ctx.Response.Body())), "bytes")
}

// BenchmarkSimilarPebble answers every request from Pebble: the caches
// (the server's of bodies, the engine's of lists) are too small to keep
// anything.
func BenchmarkSimilarPebble(b *testing.B) {
	s, _ := testServer(b, engine.Options{CacheBytes: 1}, Options{CacheBytes: 1})
	b.ResetTimer()
	handlerLoop(b, s.Handle, "/v1/items/i44/similar?k=10")
}

// BenchmarkUserRecommendations blends a visitor's 20-event history.
func BenchmarkUserRecommendations(b *testing.B) {
	s, c := testServer(b, engine.Options{}, Options{})
	var body []byte
	for i := 1; i <= 20; i++ {
		body = append(body, `{"user_id":"bench","item_id":"i`...)
		body = append(body, []byte(itoa(i*7))...)
		body = append(body, `","event":"view"}`+"\n"...)
	}
	if code, resp := do(b, c, "POST", "/v1/events", testKey, string(body)); code != 200 {
		b.Fatalf("events: %d %s", code, resp)
	}
	settleState(b, s)
	warm(b, s, "/v1/users/bench/recommendations?k=10")
	b.ResetTimer()
	handlerLoop(b, s.Handle, "/v1/users/bench/recommendations?k=10")
}

// BenchmarkStaticFloor is the floor: a fasthttp handler that writes a
// fixed body of the size of a similar-items answer.
func BenchmarkStaticFloor(b *testing.B) {
	s, _ := testServer(b, engine.Options{}, Options{})
	body := warm(b, s, "/v1/items/i44/similar?k=10")
	b.ResetTimer()
	handlerLoop(b, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}, "/static")
}

// warm answers uri a few times through ctx so that its lists and body are
// cached (Wait: tests only, makes the Sets visible) and returns the body.
func warm(tb testing.TB, s *Server, uri string) []byte {
	tb.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(uri)
	for i := 0; i < 3; i++ {
		ctx.Response.Reset()
		s.Handle(&ctx)
		s.cache.Wait()
		s.e.WaitCache()
	}
	if ctx.Response.StatusCode() != 200 {
		tb.Fatalf("%s: %d %s", uri, ctx.Response.StatusCode(), ctx.Response.Body())
	}
	return append([]byte(nil), ctx.Response.Body()...)
}

// settleState waits until a request that reads the state store (a
// visitor's history) allocates nothing, for at most 5 s. Serving the snapshot imported its
// users' histories into the state store in batches that Pebble queues as
// large "flushable batches"; until its background flush has written them
// out (some 25 ms), every read of the store allocates an iterator over
// them. Steady state, which budgets and benchmarks are about, begins
// after that.
func settleState(tb testing.TB, s *Server) {
	tb.Helper()
	const uri = "/v1/users/settle-probe/recommendations?k=1"
	warm(tb, s, uri)
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(uri)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if testing.AllocsPerRun(10, func() {
			ctx.Response.Reset()
			s.Handle(&ctx)
		}) == 0 {
			return
		}
	}
}

func itoa(i int) string { return string(fasthttp.AppendUint(nil, i)) }

// httpLoop sends GET uri over loopback TCP from parallel clients.
func httpLoop(b *testing.B, addr, uri string) {
	c := &fasthttp.Client{MaxConnsPerHost: 64, Name: browserUA}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addr + uri)
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("%s: %v %d", uri, err, resp.StatusCode())
			}
		}
	})
}

// BenchmarkHTTPSimilarCacheHit and BenchmarkHTTPStaticFloor run the same
// load over real loopback HTTP (client in the same process): their ratio is
// the CPU cost of edgerec's cache-hit path over a static fasthttp reply of
// the same size.
func BenchmarkHTTPSimilarCacheHit(b *testing.B) {
	s, _ := testServer(b, engine.Options{}, Options{})
	warm(b, s, "/v1/items/i44/similar?k=10")
	b.ResetTimer()
	httpLoop(b, s.addr, "/v1/items/i44/similar?k=10")
}

func BenchmarkHTTPSimilarPebble(b *testing.B) {
	s, _ := testServer(b, engine.Options{CacheBytes: 1}, Options{CacheBytes: 1})
	b.ResetTimer()
	httpLoop(b, s.addr, "/v1/items/i44/similar?k=10")
}

func BenchmarkHTTPStaticFloor(b *testing.B) {
	s, _ := testServer(b, engine.Options{}, Options{})
	body := warm(b, s, "/v1/items/i44/similar?k=10")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	static := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	go func() { _ = static.Serve(ln) }()
	// A cleanup, not a defer: Shutdown waits for the clients' idle
	// connections in steps of 100 ms, which a defer would time with the
	// loop (every run then took over 100 ms, and -benchtime 100ms stopped
	// at b.N = 1).
	b.Cleanup(func() { _ = static.Shutdown() })
	b.ResetTimer()
	httpLoop(b, ln.Addr().String(), "/static")
}

// BenchmarkDecideSticky is a returning visitor's landing-page decision:
// stored assignment read, rules evaluated (the sample's keyword rules), JSON.
func BenchmarkDecideSticky(b *testing.B) {
	s, _ := testServer(b, engine.Options{Config: sampleConfig(b)}, Options{})
	settleState(b, s)
	warm(b, s, "/v1/decide?page=lp_consulting&visitor=bench-1&q=seo")
	b.ResetTimer()
	handlerLoop(b, s.Handle, "/v1/decide?page=lp_consulting&visitor=bench-1&q=seo")
}

// BenchmarkHTTPDecide is BenchmarkDecideSticky over loopback HTTP, to set
// beside BenchmarkHTTPSimilarCacheHit.
func BenchmarkHTTPDecide(b *testing.B) {
	s, _ := testServer(b, engine.Options{Config: sampleConfig(b)}, Options{})
	settleState(b, s)
	warm(b, s, "/v1/decide?page=lp_consulting&visitor=bench-1&q=seo")
	b.ResetTimer()
	httpLoop(b, s.addr, "/v1/decide?page=lp_consulting&visitor=bench-1&q=seo")
}

// BenchmarkHTTPPage is one page view of a returning lead with a
// 10-event history: the landing-page decision, two placements and the
// segments in one GET /v1/page. BenchmarkHTTPPageSeparate makes the same
// page view with the four calls a page would otherwise make (one after
// another, as a page's script would wait for each).
func BenchmarkHTTPPage(b *testing.B) {
	s := pageBenchServer(b)
	b.ResetTimer()
	httpLoop(b, s.addr, "/v1/page?page=lp_consulting&visitor=lead-b&placements=home,product_page&item=i90&k=6")
}

func BenchmarkHTTPPageSeparate(b *testing.B) {
	s := pageBenchServer(b)
	b.ResetTimer()
	uris := []string{
		"/v1/decide?page=lp_consulting&visitor=lead-b",
		"/v1/recommend?placement=home&visitor=lead-b&k=6",
		"/v1/recommend?placement=product_page&visitor=lead-b&item=i90&k=6",
		"/v1/users/lead-b/segments",
	}
	c := &fasthttp.Client{MaxConnsPerHost: 64, Name: browserUA}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		for pb.Next() {
			for _, uri := range uris {
				req.SetRequestURI("http://" + s.addr + uri)
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("%s: %v %d", uri, err, resp.StatusCode())
				}
			}
		}
	})
}

func pageBenchServer(b *testing.B) *Server {
	s, c := testServer(b, engine.Options{Config: sampleConfig(b)}, Options{})
	var body []byte
	for i := 1; i <= 10; i++ {
		body = append(body, `{"visitor":"lead-b","item_id":"`...)
		body = append(body, []byte(itoa(i*7))...)
		body = append(body, `","event":"view"}`+"\n"...)
		body = append(body, `{"visitor":"lead-b","event":"pageview","page":"/pricing"}`+"\n"...)
	}
	if code, resp := do(b, c, "POST", "/v1/events", testKey, string(body)); code != 200 {
		b.Fatalf("events: %d %s", code, resp)
	}
	settleState(b, s)
	warm(b, s, "/v1/page?page=lp_consulting&visitor=lead-b&placements=home,product_page&item=i90&k=6")
	return s
}

// BenchmarkPage is BenchmarkHTTPPage through the handler, without HTTP.
func BenchmarkPage(b *testing.B) {
	s := pageBenchServer(b)
	b.ResetTimer()
	handlerLoop(b, s.Handle, "/v1/page?page=lp_consulting&visitor=lead-b&placements=home,product_page&item=i90&k=6")
}
