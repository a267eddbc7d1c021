package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
)

// gunzip decompresses b with the standard library's reader, which checks
// the CRC and size.
func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip body: %v", err)
	}
	return out
}

// TestWriteGzip: a stored head block spliced before a separately deflated
// tail is one valid gzip member, for any head and tail.
func TestWriteGzip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	f := func(head, tail []byte) {
		t.Helper()
		def := deflate(tail)
		if def == nil {
			t.Fatalf("tail of %d bytes did not compress", len(tail))
		}
		var ctx fasthttp.RequestCtx
		writeGzip(&ctx, head, tail, def)
		if string(ctx.Response.Header.Peek("Content-Encoding")) != "gzip" {
			t.Fatal("no Content-Encoding")
		}
		if got := gunzip(t, ctx.Response.Body()); !bytes.Equal(got, append(append([]byte(nil), head...), tail...)) {
			t.Fatalf("head %q tail %d bytes: got %q", head, len(tail), got)
		}
	}
	json := []byte(strings.Repeat(`{"id":"i1","title":"Fjordon Deluxe Watch","score":0.0529,"reason":"similar_to"},`, 15))
	f([]byte(`{"rec_id":"c3c727b3d1908c70",`), json)
	f(nil, json)
	f([]byte("x"), json)
	for range 50 {
		head := make([]byte, rng.IntN(300))
		for i := range head {
			head[i] = byte(rng.IntN(256))
		}
		tail := make([]byte, 200+rng.IntN(5000))
		for i := range tail {
			tail[i] = "abcdefgh{}\":,"[rng.IntN(13)]
		}
		f(head, tail)
	}
	// Random bytes do not compress: deflate says so.
	noise := make([]byte, 2000)
	for i := range noise {
		noise[i] = byte(rng.IntN(256))
	}
	if deflate(noise) != nil {
		t.Fatal("incompressible bytes were kept compressed")
	}
	// Entries round-trip.
	for _, tried := range []bool{false, true} {
		tail, def, tr, ok := splitEntry(makeEntry([]byte("tail"), []byte("def"), tried))
		if !ok || string(tail) != "tail" || string(def) != "def" || tr != tried {
			t.Fatalf("entry: %q %q %v", tail, def, tr)
		}
	}
	// Values of other cache families are not entries.
	for _, v := range [][]byte{nil, {1}, {1, 2, 3, 4}, {9, 9, 9, 9, 9, 0xff, 0xff, 0, 0}} {
		if _, _, _, ok := splitEntry(v); ok {
			t.Fatalf("%v read as an entry", v)
		}
	}
}

// getGzip GETs uri accepting gzip and returns the response headers of
// interest and the decoded body.
func getGzip(t *testing.T, c *fasthttp.Client, uri string, acceptGzip bool) (enc, vary string, body []byte) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://edgerec" + uri)
	if acceptGzip {
		req.Header.Set("Accept-Encoding", "br, gzip, deflate")
	}
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 {
		t.Fatalf("GET %s: %d %s", uri, resp.StatusCode(), resp.Body())
	}
	enc, vary = string(resp.Header.Peek("Content-Encoding")), string(resp.Header.Peek("Vary"))
	body = append([]byte(nil), resp.Body()...)
	if enc == "gzip" {
		body = gunzip(t, body)
	}
	return enc, vary, body
}

// withoutRecID drops the per-request rec_id so that answers compare.
func withoutRecID(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("bad JSON %v: %s", err, b)
	}
	if id, _ := m["rec_id"].(string); len(id) != 16 {
		t.Fatalf("rec_id %q", m["rec_id"])
	}
	delete(m, "rec_id")
	return m
}

// TestGzipAnswers: cached answers of 1 KiB and more go gzip-compressed to
// clients that accept it, whichever client filled the cache; small ones,
// clients without gzip and the parts of /v1/page do not.
func TestGzipAnswers(t *testing.T) {
	s, c := testServer(t, engine.Options{}, Options{})
	const big, big2, small = "/v1/items/i44/similar?k=20", "/v1/items/i29/similar?k=20", "/v1/items/i44/similar?k=1"
	f := func(uri string, accept bool, wantEnc string) map[string]any {
		t.Helper()
		enc, vary, body := getGzip(t, c, uri, accept)
		if enc != wantEnc {
			t.Fatalf("GET %s (gzip %v): Content-Encoding %q, want %q", uri, accept, enc, wantEnc)
		}
		if wantVary := uri != small; (vary == "Accept-Encoding") != wantVary {
			t.Fatalf("GET %s: Vary %q", uri, vary)
		}
		return withoutRecID(t, body)
	}
	// A gzip client fills the cache, then both kinds of client hit it.
	a := f(big, true, "gzip")
	b := f(big, true, "gzip")
	p := f(big, false, "")
	if !jsonEqual(a, b) || !jsonEqual(a, p) {
		t.Fatalf("answers differ:\n%v\n%v\n%v", a, b, p)
	}
	// A plain client fills it; the first gzip hit compresses.
	p = f(big2, false, "")
	if a = f(big2, true, "gzip"); !jsonEqual(a, p) {
		t.Fatalf("answers differ:\n%v\n%v", a, p)
	}
	f(big2, true, "gzip")
	f(small, true, "")
	if n := s.m.gzipped.Get(); n != 4 {
		t.Fatalf("%d gzip answers counted, want 4", n)
	}
	// /v1/page is not compressed, and its parts are plain JSON.
	if enc, _, body := getGzip(t, c, "/v1/page?placements=product_page,home&item=i44&k=20", true); enc != "" || !json.Valid(body) {
		t.Fatalf("/v1/page with gzip: %q %s", enc, body)
	}
	// Turned off (Options are read per request; nothing else runs here).
	s.o.GzipMinBytes = -1
	if enc, _, _ := getGzip(t, c, big, true); enc != "" {
		t.Fatalf("GzipMinBytes -1: %q", enc)
	}
}

func jsonEqual(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestBodyKeyRawPath: ids that differ only in what path normalisation
// folds (a/b, a//b, a/./b, sent as %2F) have their own cache entries.
func TestBodyKeyRawPath(t *testing.T) {
	s := &Server{}
	rs := &reqState{}
	keys := map[uint64]string{}
	for _, p := range []string{"/v1/items/a%2Fb/similar", "/v1/items/a%2F%2Fb/similar", "/v1/items/a%2F.%2Fb/similar", "/v1/items/c%2F..%2Fa%2Fb/similar"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(p + "?k=3")
		k := s.bodyKey(&ctx, rs, 1, 0)
		if other, dup := keys[k]; dup {
			t.Fatalf("%s and %s share a cache key", p, other)
		}
		keys[k] = p
	}
}
