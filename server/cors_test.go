package server

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
)

// handle runs one request through s.Handle in process and returns the
// response; hdr are request header name, value pairs.
func handle(s *Server, method, uri string, hdr ...string) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.SetMethod(method)
	for i := 0; i+1 < len(hdr); i += 2 {
		ctx.Request.Header.Set(hdr[i], hdr[i+1])
	}
	s.Handle(&ctx)
	var resp fasthttp.Response
	ctx.Response.CopyTo(&resp)
	return &resp
}

// corsHeaders are the response headers CORS decides, as name=value
// lines; absent ones are left out.
func corsHeaders(r *fasthttp.Response) string {
	var b strings.Builder
	for _, h := range []string{"Vary", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods", "Allow"} {
		var vs []string
		for _, v := range r.Header.PeekAll(h) {
			vs = append(vs, string(v))
		}
		if len(vs) > 0 {
			b.WriteString(h + "=" + strings.Join(vs, ", ") + ";")
		}
	}
	return b.String()
}

// TestCORS: a listed origin is echoed with credentials, one allowed by *
// without; every answer of a server with CORS says Vary: Origin; a
// preflight answers only for a real route, with that route's methods;
// and cached answers carry the CORS headers of their own request.
func TestCORS(t *testing.T) {
	const shop, other = "https://shop.example", "https://blog.example"
	s, _ := testServer(t, engine.Options{Config: sampleConfig(t)}, Options{
		CORSOrigins: []string{"https://Shop.example/"}, // normalised to shop
		KeylessRate: 1, KeylessBurst: 1,
	})
	f := func(method, uri, origin string, wantStatus int, want string, hdr ...string) *fasthttp.Response {
		t.Helper()
		if origin != "" {
			hdr = append(hdr, "Origin", origin)
		}
		r := handle(s, method, uri, hdr...)
		if r.StatusCode() != wantStatus || corsHeaders(r) != want {
			t.Fatalf("%s %s from %q: %d %s\n%s; want %d %s", method, uri, origin, r.StatusCode(), r.Body(), corsHeaders(r), wantStatus, want)
		}
		return r
	}
	const granted = "Vary=Origin;Access-Control-Allow-Origin=https://shop.example;Access-Control-Allow-Credentials=true;"
	// The body cache answers the third request (cached from its second
	// miss): every answer has the headers of its own origin, so a
	// cached answer never carries another origin's grant.
	for range 2 {
		f("GET", "/v1/popular?k=3", "", 200, "Vary=Origin;")
		s.cache.Wait()
	}
	hits := s.m.cacheHits.Get()
	f("GET", "/v1/popular?k=3", shop, 200, granted)
	f("GET", "/v1/popular?k=3", other, 200, "Vary=Origin;")
	f("GET", "/v1/popular?k=3", "", 200, "Vary=Origin;")
	f("GET", "/v1/popular?k=3", shop, 200, granted)
	if got := s.m.cacheHits.Get() - hits; got != 4 {
		t.Fatalf("%d cache hits; want 4: the test did not exercise the body cache", got)
	}
	// Gzip from the cache: both Vary entries.
	for range 3 {
		f("GET", "/v1/popular?k=40", "", 200, "Vary=Origin, Accept-Encoding;", "Accept-Encoding", "gzip")
		s.cache.Wait()
	}
	r := f("GET", "/v1/popular?k=40", shop, 200, "Vary=Origin, Accept-Encoding;Access-Control-Allow-Origin=https://shop.example;Access-Control-Allow-Credentials=true;", "Accept-Encoding", "gzip")
	if string(r.Header.Peek("Content-Encoding")) != "gzip" {
		t.Fatalf("not gzipped: %s", r.Header.String())
	}
	// Errors carry the grant, so that a page can read them.
	f("GET", "/v1/items/nope/similar", shop, 404, granted)
	f("GET", "/v1/nothing", shop, 404, "")

	// Preflights: only for routes, with their methods; a disallowed
	// origin gets no grant.
	const reads = "GET, HEAD, OPTIONS"
	f("OPTIONS", "/v1/items/i44/similar", shop, 204, granted+"Access-Control-Allow-Methods="+reads+";Allow="+reads+";", "Access-Control-Request-Method", "GET")
	f("OPTIONS", "/v1/events", shop, 204, granted+"Access-Control-Allow-Methods=POST, OPTIONS;Allow=POST, OPTIONS;", "Access-Control-Request-Method", "POST")
	f("OPTIONS", "/v1/edgerec.js", shop, 204, granted+"Access-Control-Allow-Methods="+reads+";Allow="+reads+";")
	f("OPTIONS", "/v1/items/i44/similar", other, 204, "Vary=Origin;Allow="+reads+";", "Access-Control-Request-Method", "GET")
	f("OPTIONS", "/v1/items/i44/nothing", shop, 404, "")
	f("OPTIONS", "/v1/nothing", shop, 404, "")
	f("OPTIONS", "/v1/users/", shop, 404, "")
	// A wrong method: 405 with Allow.
	f("DELETE", "/v1/events", shop, 405, granted+"Allow=POST, OPTIONS;")
	// Preflights take no token from the keyless limit (1 a second, burst
	// 1): the decision after them is still answered.
	for range 5 {
		f("OPTIONS", "/v1/decide", shop, 204, granted+"Access-Control-Allow-Methods="+reads+";Allow="+reads+";")
	}
	f("GET", "/v1/decide?page=lp_consulting&visitor=c2", shop, 200, granted)
	f("GET", "/v1/decide?page=lp_consulting&visitor=c2", shop, 429, granted)
}

// TestCORSWildcard: "*" echoes any origin without credentials (a page of
// any site could otherwise read a visitor's answers with their cookie),
// while an origin also listed by name keeps them; without configured
// origins (TestNoCORS) nothing is added, not even Vary.
func TestCORSWildcard(t *testing.T) {
	s, _ := testServer(t, engine.Options{Config: sampleConfig(t)}, Options{CORSOrigins: []string{"*", "https://shop.example"}})
	f := func(origin, want string) {
		t.Helper()
		if got := corsHeaders(handle(s, "GET", "/v1/popular?k=2", "Origin", origin)); got != want {
			t.Fatalf("from %q: %s; want %s", origin, got, want)
		}
	}
	f("https://any.example", "Vary=Origin;Access-Control-Allow-Origin=https://any.example;")
	f("null", "Vary=Origin;Access-Control-Allow-Origin=null;")
	f("https://shop.example", "Vary=Origin;Access-Control-Allow-Origin=https://shop.example;Access-Control-Allow-Credentials=true;")
}

func TestNoCORS(t *testing.T) {
	none, _ := testServer(t, engine.Options{Config: sampleConfig(t)}, Options{})
	if got := corsHeaders(handle(none, "GET", "/v1/popular?k=2", "Origin", "https://shop.example")); got != "" {
		t.Fatalf("without CORS: %s", got)
	}
	if r := handle(none, "OPTIONS", "/v1/popular", "Origin", "https://shop.example"); r.StatusCode() != 204 || corsHeaders(r) != "Allow=GET, HEAD, OPTIONS;" {
		t.Fatalf("OPTIONS without CORS: %d %s", r.StatusCode(), corsHeaders(r))
	}
}

func TestNormalizeOrigins(t *testing.T) {
	f := func(in []string, want string) {
		t.Helper()
		out, err := normalizeOrigins(in)
		got := strings.Join(out, " ")
		if err != nil {
			got = "error: " + err.Error()
		}
		if got != want {
			t.Fatalf("%q: %s; want %s", in, got, want)
		}
	}
	f([]string{"https://Shop.Example/", " http://127.0.0.1:8081", "*", "null"}, "https://shop.example http://127.0.0.1:8081 * null")
	f(nil, "")
	f([]string{"shop.example"}, `error: CORS origin "shop.example": want *, null or scheme://host[:port], such as https://shop.example`)
	f([]string{"https://shop.example/lp"}, `error: CORS origin "https://shop.example/lp": want *, null or scheme://host[:port], such as https://shop.example`)
	f([]string{"ftp://shop.example"}, `error: CORS origin "ftp://shop.example": want *, null or scheme://host[:port], such as https://shop.example`)
	f([]string{"https://shop.example?x=1"}, `error: CORS origin "https://shop.example?x=1": want *, null or scheme://host[:port], such as https://shop.example`)
	if _, err := New(nil, Options{CORSOrigins: []string{"https://shop.example/lp"}}); err == nil {
		t.Fatal("New took a bad origin")
	}
}
