package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/bench"
	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// TestGolden pins the HTTP answers of every endpoint, byte for byte after
// normalising what is random, in testdata/golden.txt: one scripted
// sequence of requests (state carries over) against a server over a
// generated shop, at a fixed clock. It guards refactorings that must keep
// behaviour; when an answer changes on purpose, regenerate the file with
//
//	go test ./server -run TestGolden -update
//
// and review its diff. Only goldenServer knows how a server is built.
//
// Normalised: rec_id values (random per answer) to REC; the snapshot
// version (build time) to SNAPSHOT, the manifest's build time and
// duration, and the temporary directory to TMP; a visitor id the server
// makes (cookie edgerec_vid) to VID, and the signature of decision ids
// over it to SIG; in /v1/admin/status the uptime, goroutine and cache
// counters. /metrics is pinned by status and content type only.
//
// Left out: bandit pages (Thompson sampling draws from a random source;
// edgerec.yaml has none); pprof with the key (runtime data); a decision
// for a new visitor without id that is not a bot (its variant follows the
// random id's bucket, and 1% of ids land in the holdout).
//
// On a mismatch the test prints a diff of the first requests that differ.
//
// The generator's output, hence the golden file, is pinned for one
// architecture (amd64): float maths may round differently elsewhere.
func TestGolden(t *testing.T) {
	g := goldenServer(t)
	g.out.WriteString(goldenHeader)
	goldenScript(t, g)
	got := g.out.String()
	if *update {
		if err := os.WriteFile(goldenFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d requests", goldenFile, g.n)
		return
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Fatalf("answers differ from %s (go test ./server -run TestGolden -update rewrites it):\n%s", goldenFile, goldenDiff(string(want), got))
	}
}

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

const goldenHeader = `# The answers of TestGolden's requests, in order (server/golden_test.go).
# Regenerate: go test ./server -run TestGolden -update
# A block: the request (> lines: its headers and body), then the status,
# the content type, the headers that matter, and the body, gunzipped.

`

const (
	goldenFile = "testdata/golden.txt"
	goldenKey  = "golden-key"
)

// goldenNow is the server's clock: the generated sessions start from
// 2026-01-01 over 60 days (the newest event is 2026-03-01T23:16:58Z), so
// the shop's data is three and a half days old.
var goldenNow = time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)

// goldenRun records the requests of the script.
type goldenRun struct {
	c    *fasthttp.Client
	norm *strings.Replacer // fixed strings that vary between runs
	out  bytes.Buffer
	n    int
}

// goldenServer starts a server over a generated shop (goldenListen) and
// returns a run of the script against it.
func goldenServer(t *testing.T) *goldenRun {
	t.Helper()
	addr, dir, m := goldenListen(t)
	created, _ := json.Marshal(m.Created)
	return &goldenRun{
		// Paths go out as written, %2F included, as from browsers and curl.
		c: &fasthttp.Client{Name: browserUA, DisablePathNormalizing: true, Dial: func(string) (net.Conn, error) { return net.Dial("tcp", addr) }},
		norm: strings.NewReplacer(
			strconv.FormatUint(m.Version, 10), "SNAPSHOT",
			string(created), `"CREATED"`,
			dir, "TMP",
		),
	}
}

// goldenListen starts a server over a generated shop with a real state
// store, on loopback TCP, at the clock goldenNow, with the bundled
// edgerec.yaml, and returns its address, its temporary directory and the
// snapshot's manifest. It is the only code that knows how a server is
// built (TestGolden, TestOpenAPIContract).
func goldenListen(t *testing.T) (addr, dir string, m *index.Manifest) {
	t.Helper()
	dir = t.TempDir()
	root, m := goldenSnapshot(t, dir)
	cfg, err := engine.LoadConfig("../edgerec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return goldenNow }
	state, err := index.OpenState(filepath.Join(dir, "state"), index.StateOptions{
		NoSync: true, Now: now, ProfileRetention: 90 * 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every option that shapes an answer is set to today's default, so
	// that a change of a default does not show here.
	w := model.DefaultWeights()
	e, err := engine.New(engine.Options{
		DefaultK: 10, MaxK: 100, MaxIDLen: 256, Weights: &w, HistoryWindow: 200, SeenItems: 1000,
		Now: now, Config: cfg, ConfigPath: "../edgerec.yaml", SignKey: goldenSignKey(goldenKey),
	}, state)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(e, Options{
		SnapshotRoot: root, APIKey: goldenKey, CORSOrigins: []string{"https://shop.example"},
		GzipMinBytes: 1024, MaxBodySize: 1 << 20, MaxBatch: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.LoadSnapshot(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Shutdown()
		e.Close()
		_ = state.Close()
	})
	return ln.Addr().String(), dir, m
}

// goldenSnapshot generates a small shop (200 items in 5 categories, 473
// users, 20000 events) into dir and builds a snapshot of it with every
// build option set to today's default. It returns the snapshot root and
// the manifest.
func goldenSnapshot(t *testing.T, dir string) (string, *index.Manifest) {
	t.Helper()
	events, items := filepath.Join(dir, "events.csv"), filepath.Join(dir, "items.csv")
	if _, err := bench.GenFiles(events, items, bench.GenOptions{
		Events: 20000, Items: 200, Users: 500, Categories: 5, Seed: 1, Start: 1767225600, Days: 60,
	}); err != nil {
		t.Fatal(err)
	}
	b, err := index.NewBuilder(index.BuildOptions{
		K: 100, PopularK: 1000, Similarity: model.SimEASE, EASELambda: 500, EASEMaxItems: 4000, EASEMinUsers: 5,
		BoughtTogether: model.SimLLR, MinSupport: 2, MaxUserItems: 1000, Weights: model.DefaultWeights(),
		PopularHalfLife: 30 * 86400, TrendingHalfLife: 3 * 86400, MaxBad: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ReadItemsFile(items); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadEventsFile(events); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "snapshots")
	m, err := b.Build(root)
	if err != nil {
		t.Fatal(err)
	}
	return root, m
}

// greq is one request of the script.
type greq struct {
	method, uri string
	key         string   // sent as Authorization: Bearer key
	body        string   // sent as is
	hdr         []string // request header name, value pairs
	headOnly    bool     // record status and content type only
}

// Response headers recorded when present, in this order.
var goldenHeaders = []string{
	"Content-Encoding", "Vary", "Cache-Control", "Allow", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age", "X-Next-After",
}

var (
	recIDPattern = regexp.MustCompile(`"rec_id":"[0-9a-f]{16}"`)
	// The signature part of a decision id ("exp.variant.s<16 hex>").
	decisionSigPattern = regexp.MustCompile(`("decision_id":"[^"]*\.[snrh][0-9a-f]{4})[0-9a-f]{16}"`)
	// Figures of /v1/admin/status that depend on the machine, the Go
	// runtime or Ristretto's asynchronous admission.
	statusPattern = regexp.MustCompile(`("(?:uptime_seconds|goroutines|hits|misses|cost_added|cost_evicted|build_seconds)": )[0-9.e+-]+`)
)

// do sends r and records it; it returns the (gunzipped) body, not
// normalised, for later steps of the script.
func (g *goldenRun) do(t *testing.T, r greq) []byte {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://edgerec" + r.uri)
	req.Header.SetMethod(r.method)
	if r.key != "" {
		req.Header.Set("Authorization", "Bearer "+r.key)
	}
	for i := 0; i+1 < len(r.hdr); i += 2 {
		req.Header.Set(r.hdr[i], r.hdr[i+1])
	}
	if r.body != "" {
		req.SetBodyString(r.body)
	}
	if err := g.c.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("%s %s: %v", r.method, r.uri, err)
	}
	g.n++
	// The Content-Type as sent, not fasthttp's default for none (Reset,
	// on release, restores the default).
	resp.Header.SetNoDefaultContentType(true)

	w := &g.out
	fmt.Fprintf(w, "### %s %s\n", r.method, r.uri)
	if r.key != "" {
		fmt.Fprintf(w, "> Authorization: Bearer %s\n", r.key)
	}
	for i := 0; i+1 < len(r.hdr); i += 2 {
		fmt.Fprintf(w, "> %s: %s\n", r.hdr[i], r.hdr[i+1])
	}
	if r.body != "" {
		w.WriteString(">\n")
		if len(r.body) > 2048 {
			fmt.Fprintf(w, "> (%d bytes, %d lines)\n", len(r.body), strings.Count(r.body, "\n"))
		} else {
			for _, line := range strings.Split(strings.TrimSuffix(r.body, "\n"), "\n") {
				fmt.Fprintf(w, "> %s\n", line)
			}
		}
	}
	fmt.Fprintf(w, "status: %d\n", resp.StatusCode())
	if ct := resp.Header.ContentType(); len(ct) > 0 {
		fmt.Fprintf(w, "content-type: %s\n", ct)
	} else {
		w.WriteString("content-type: (none)\n")
	}
	if r.headOnly {
		w.WriteByte('\n')
		return nil
	}

	body := resp.Body()
	if string(resp.Header.ContentEncoding()) == "gzip" {
		var err error
		if body, err = resp.BodyGunzip(); err != nil {
			t.Fatalf("%s %s: bad gzip body: %v", r.method, r.uri, err)
		}
	}
	body = append([]byte(nil), body...)

	// A visitor id the server made is random: VID wherever it shows, and
	// the decision ids signed over it lose their signature.
	var vid string
	var c fasthttp.Cookie
	c.SetKey(visitorCookie)
	if resp.Header.Cookie(&c) {
		vid = string(c.Value())
	}
	norm := func(s string) string {
		if vid != "" {
			s = strings.ReplaceAll(s, vid, "VID")
			s = decisionSigPattern.ReplaceAllString(s, `${1}SIG"`)
		}
		s = recIDPattern.ReplaceAllString(s, `"rec_id":"REC"`)
		if strings.HasPrefix(r.uri, "/v1/admin/status") {
			s = statusPattern.ReplaceAllString(s, "${1}X")
		}
		return g.norm.Replace(s)
	}
	for _, h := range goldenHeaders {
		vs := resp.Header.PeekAll(h)
		if len(vs) == 0 {
			continue
		}
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = string(v)
		}
		fmt.Fprintf(w, "%s: %s\n", strings.ToLower(h), norm(strings.Join(parts, ", ")))
	}
	resp.Header.VisitAllCookie(func(_, v []byte) {
		fmt.Fprintf(w, "set-cookie: %s\n", norm(string(v)))
	})
	if len(body) > 0 {
		s := norm(string(body))
		w.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			w.WriteString("\n\\ no newline at end of body\n")
		}
	}
	w.WriteByte('\n')
	return body
}

func (g *goldenRun) get(t *testing.T, uri string, hdr ...string) []byte {
	t.Helper()
	return g.do(t, greq{method: "GET", uri: uri, hdr: hdr})
}

// decisionID returns the decision_id of a /v1/decide answer.
func decisionID(t *testing.T, body []byte) string {
	t.Helper()
	var d struct {
		DecisionID string `json:"decision_id"`
	}
	if err := json.Unmarshal(body, &d); err != nil || d.DecisionID == "" {
		t.Fatalf("no decision_id in %s", body)
	}
	return d.DecisionID
}

// goldenScript runs the requests. The gold- visitors are not in the
// generated data; gold-h26 is in the universal holdout (1% of ids).
func goldenScript(t *testing.T, g *goldenRun) {
	const (
		gHour   = 3600
		gDay    = 86400
		gzipHdr = "Accept-Encoding"
		origin  = "https://shop.example"
	)
	// ts is goldenNow plus offset seconds, as Unix seconds.
	ts := func(offset int64) string { return strconv.FormatInt(goldenNow.Unix()+offset, 10) }
	ndjson := func(lines ...string) string { return strings.Join(lines, "\n") + "\n" }
	post := func(uri, key, body string, hdr ...string) []byte {
		t.Helper()
		return g.do(t, greq{method: "POST", uri: uri, key: key, body: body, hdr: hdr})
	}
	put := func(uri, key, body string) []byte {
		t.Helper()
		return g.do(t, greq{method: "PUT", uri: uri, key: key, body: body})
	}

	// Health and routing.
	g.get(t, "/healthz")
	g.get(t, "/readyz")
	g.do(t, greq{method: "GET", uri: "/metrics", headOnly: true})
	g.get(t, "/debug/pprof/")
	g.get(t, "/nothing")
	g.get(t, "/v1/nothing")
	g.get(t, "/v1/items/i90")
	g.get(t, "/v1/users/gold-v1/")
	g.do(t, greq{method: "OPTIONS", uri: "/v1/popular", hdr: []string{"Origin", origin, "Access-Control-Request-Method", "GET"}})
	g.do(t, greq{method: "OPTIONS", uri: "/v1/popular", hdr: []string{"Origin", "https://evil.example"}})
	// Preflights answer only for routes, with the route's methods.
	g.do(t, greq{method: "OPTIONS", uri: "/v1/nothing", hdr: []string{"Origin", origin, "Access-Control-Request-Method", "GET"}})
	g.do(t, greq{method: "OPTIONS", uri: "/v1/events", hdr: []string{"Origin", origin, "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "content-type"}})
	g.do(t, greq{method: "OPTIONS", uri: "/v1/users/gold-v1", hdr: []string{"Origin", origin, "Access-Control-Request-Method", "PUT"}})
	g.do(t, greq{method: "POST", uri: "/v1/popular", hdr: []string{"Origin", origin}})

	// Item lists before any event or patch: a miss, then (usually) a hit.
	g.get(t, "/v1/items/i90/similar?k=5")
	g.get(t, "/v1/items/i90/similar?k=5")
	g.get(t, "/v1/items/i90/similar?k=5", "Origin", origin)
	g.get(t, "/v1/items/i90/similar?k=5", "Origin", "https://evil.example")
	// Large enough to be gzip-compressed: plain first, then gzip twice
	// (the cached deflate stream), then a fresh one asked with gzip.
	g.get(t, "/v1/items/i90/similar?k=20")
	g.get(t, "/v1/items/i90/similar?k=20", gzipHdr, "gzip")
	g.get(t, "/v1/items/i90/similar?k=20", gzipHdr, "gzip")
	g.get(t, "/v1/items/i90/similar?k=20", gzipHdr, "gzip", "Origin", origin)
	g.get(t, "/v1/items/i15/similar?k=25", gzipHdr, "gzip, deflate, br")
	g.get(t, "/v1/items/i15/similar?k=25", gzipHdr, "gzip, deflate, br")
	g.get(t, "/v1/items/i15/similar?k=25", gzipHdr, "identity")
	g.get(t, "/v1/items/i90/similar?k=10&category=cameras")
	g.get(t, "/v1/items/i90/similar?k=10&category=audio")
	g.get(t, "/v1/items/i90/similar?k=6&exclude=i157,i15,nope")
	g.get(t, "/v1/items/i90/similar?k=6&price_min=20&price_max=100")
	g.get(t, "/v1/items/i90/similar?k=6&price_min=20.5")
	g.get(t, "/v1/items/i90/similar?k=6&cart=i157,i15")
	g.get(t, "/v1/items/i3/similar?k=4") // out of stock itself
	g.get(t, "/v1/items/i68/similar?k=4")
	g.get(t, "/v1/items/i90/bought-together?k=5")
	g.get(t, "/v1/items/i90/bought-together?k=5")
	g.get(t, "/v1/items/i90/bought-together?k=30", gzipHdr, "gzip")
	g.get(t, "/v1/items/i90/bought-together?k=30", gzipHdr, "gzip")
	g.get(t, "/v1/items/i90/bought-together?k=5&category=electronics")
	g.get(t, "/v1/items/i90/bought-together?k=5&cart=i15,i79&exclude=i157")
	g.get(t, "/v1/items/i90/bought-together?k=5&price_max=50")
	g.get(t, "/v1/items/i12/bought-together?k=5")
	g.get(t, "/v1/popular?k=5")
	g.get(t, "/v1/popular?k=5")
	g.get(t, "/v1/popular?k=3&category=audio")
	g.get(t, "/v1/popular?k=40", gzipHdr, "gzip")
	g.get(t, "/v1/popular", "Origin", origin)
	g.do(t, greq{method: "HEAD", uri: "/v1/popular?k=5"})
	// Errors of the read endpoints.
	g.get(t, "/v1/items/nope/similar")
	g.get(t, "/v1/items/i90/similar?k=0")
	g.get(t, "/v1/items/i90/similar?k=abc")
	g.get(t, "/v1/items/i90/similar?k=101")
	g.get(t, "/v1/items/i90/similar?k=-1")
	g.get(t, "/v1/items/i90/similar?category=nope")
	g.get(t, "/v1/items/i90/similar?price_min=cheap")
	g.get(t, "/v1/items/i90/similar?price_max=1e999")
	g.get(t, "/v1/items/%ff/similar")
	g.get(t, "/v1/items/"+strings.Repeat("x", 257)+"/similar")
	g.get(t, "/v1/items/i90/bought-together?user=")
	g.get(t, "/v1/items/i90/nothing")
	g.get(t, "/v1/popular?category=nope")
	g.do(t, greq{method: "POST", uri: "/v1/items/i90/similar"})
	g.do(t, greq{method: "DELETE", uri: "/v1/popular"})

	// Events: NDJSON and a JSON array, with the key.
	post("/v1/events", goldenKey, ndjson(
		`{"user_id":"gold-v1","event":"pageview","page":"https://shop.example/pricing?utm_source=news"}`,
		`{"user_id":"gold-v1","event":"page_view","page":"/pricing/","ts":`+ts(-2*gDay)+`}`,
		`{"user_id":"gold-v1","event":"pageview","page":"/blog/ease#top"}`,
		`{"user_id":"gold-v1","item_id":"i90","event":"view","ts":`+ts(-3*gHour)+`}`,
		`{"user_id":"gold-v1","item_id":"i15","event":"view","ts":`+ts(-gHour)+`}`,
		`{"user_id":"gold-v1","item_id":"i189","event":"click","placement":"home","rec_id":"00000000000000a1"}`,
		`{"visitor":"gold-v2","item_id":"i157","event":"view","ts":`+ts(-3*gHour)+`}`,
		`{"visitor":"gold-v2","item_id":"i157","event":"add_to_cart","ts":`+ts(-2*gHour)+`}`,
		`{"visitor_id":"gold-v2","item_id":"i79","type":"cart","ts":`+ts(-gHour)+`}`,
		`{"user":"gold-v4","event":"pageview","page":"/pricing","ts":`+ts(-3*gDay)+`}`,
		`{"user":"gold-v4","event":"pageview","page":"/case-studies/acme"}`,
		`{"user":"gold-v4","event":"pageview","page":"https://shop.example/demo/"}`,
		`{"user_id":"gold-v5","item_id":"i108","event":"purchase","basket":"gold-o0","value":42.2,"ts":`+ts(-100*gDay)+`}`,
		`{"user_id":"gold-v5","event":"pageview","page":"/"}`,
		`{"user_id":"gold-h26","item_id":"i23","event":"view"}`,
		`{"user_id":"gold-v8","event":"pageview","page":"https://shop.example/pricing/?plan=team"}`,
		`{"user_id":"gold-v8","event":"pageview","page":"/pricing","ts":`+ts(-20*gDay)+`}`,
		`{"user_id":"gold-v8","item_id":"i22","event":"view","ts":`+ts(-20*gDay)+`}`,
	), "Content-Type", "application/x-ndjson")
	post("/v1/events", goldenKey, `[
{"user_id":"gold-v3","item_id":"i90","event":"impression","placement":"home","rec_id":"00000000000000b1"},
{"user_id":"gold-v3","item_id":"i157","event":"impression","placement":"home","rec_id":"00000000000000b1"},
{"user_id":"gold-v3","item_id":"i90","event":"click","placement":"home","rec_id":"00000000000000b1","ts":`+ts(-2*gDay)+`},
{"user_id":"gold-v3","item_id":"i90","event":"purchase","basket":"gold-o1","value":100.28,"placement":"home","rec_id":"00000000000000b1","ts":`+ts(-2*gDay)+`},
{"user_id":"gold-v3","item_id":"i15","event":"order","order_id":"gold-o1","value":124.19,"ts":`+ts(-2*gDay)+`},
{"user_id":"gold-v3","item_id":"i31","event":"transaction","basket":"gold-o2","value":30.04,"placement":"cart","rec_id":"00000000000000b2"},
{"user_id":"gold-v3","item_id":"i79","event":"rating","value":4},
{"user_id":"gold-v3","item_id":"i157","event":"impression","placement":"cart","rec_id":"00000000000000b2","value":null},
{"visitor":"gold-anon","item_id":"i23","event":"view","ts":`+ts(-gDay)+`},
{"visitor":"gold-anon","item_id":"i16","event":"view"},
{"user_id":"gold-org/7","item_id":"i108","event":"view"},
{"user_id":"gold-org/7","item_id":42,"event":"view"}
]`, "Content-Type", "application/json")
	post("/v1/events", goldenKey, `{"event":"login","visitor":"gold-anon","user_id":"gold-u1"}`)
	// Bad batches store nothing.
	view := `{"user_id":"gold-x","item_id":"i90","event":"view"}`
	post("/v1/events", "", view)
	post("/v1/events", "wrong-key", view)
	post("/v1/events", goldenKey, "")
	post("/v1/events", goldenKey, ndjson(view, `{"user_id":"gold-x","item_id":"i90","event":"view"`))
	post("/v1/events", goldenKey, `[`+view+`,{"user_id":"gold-x","item_id":"i90","event":"buy"}]`)
	post("/v1/events", goldenKey, `[`+view+`,1]`)
	post("/v1/events", goldenKey, `[`+view)
	post("/v1/events", goldenKey, `{"user_id":"gold-x","event":"view"}`)
	post("/v1/events", goldenKey, `{"user_id":"","item_id":"i90","event":"view"}`)
	post("/v1/events", goldenKey, `{"user_id":"gold-x","item_id":"i90","event":"view","ts":"yesterday"}`)
	post("/v1/events", goldenKey, `{"user_id":"gold-x","item_id":"i90","event":"purchase","value":"12"}`)
	post("/v1/events", goldenKey, `{"user_id":"`+strings.Repeat("x", 257)+`","item_id":"i90","event":"view"}`)
	post("/v1/events", goldenKey, `{"event":"login","visitor":"","user_id":"gold-x"}`)
	post("/v1/events", goldenKey, strings.Repeat(view+"\n", 1001))
	g.do(t, greq{method: "GET", uri: "/v1/events", key: goldenKey})
	// The login without a visitor was stored: gold-x has a profile.
	g.do(t, greq{method: "GET", uri: "/v1/users/gold-x", key: goldenKey})

	// Profiles and segments.
	put("/v1/users/gold-v1", goldenKey, `{"consent_email":true,"name":"Gold One","plan":"pro","score":3.5}`)
	put("/v1/users/gold-v3", goldenKey, `{"attributes":{"consent_email":true,"name":"=HYPERLINK(\"x\")","plan":"free"}}`)
	put("/v1/users/gold-v4", goldenKey, `{"consent_email":true,"phone":"+81 90 0000 0000"}`)
	put("/v1/users/gold-v2", goldenKey, `{"consent_email":false,"plan":"pro"}`)
	put("/v1/users/gold-v5", goldenKey, `{"consent_email":true}`)
	put("/v1/users/gold-v8", goldenKey, `{"consent_email":true,"name":"Yamada, \"Taro\"\n山田","plan":"team","seats":12}`)
	g.do(t, greq{method: "POST", uri: "/v1/users/gold-v1", key: goldenKey, body: `{"score":null,"visits":2}`})
	put("/v1/users/gold-v1", "", `{"plan":"free"}`)
	put("/v1/users/gold-v1", goldenKey, `{"plan":{"tier":1}}`)
	put("/v1/users/gold-v1", goldenKey, `["plan"]`)
	put("/v1/users/gold-v1", goldenKey, `{"plan":`)
	put("/v1/users/gold-v1", goldenKey, `{"":"x"}`)
	for _, u := range []string{"gold-v1", "gold-v2", "gold-v3", "gold-v4", "gold-v5", "gold-v8", "gold-u1", "gold-anon", "gold-org%2F7"} {
		g.do(t, greq{method: "GET", uri: "/v1/users/" + u, key: goldenKey})
		g.get(t, "/v1/users/"+u+"/segments")
	}
	g.get(t, "/v1/users/gold-v1")
	g.do(t, greq{method: "GET", uri: "/v1/users/gold-nobody", key: goldenKey})
	g.get(t, "/v1/users/gold-nobody/segments")
	g.get(t, "/v1/users/%ff/segments")

	// Personal answers.
	for _, u := range []string{"gold-v1", "gold-v2", "gold-v3", "gold-u1", "gold-anon", "gold-h26", "gold-org%2F7", "gold-nobody"} {
		g.get(t, "/v1/users/"+u+"/recommendations?k=5")
	}
	g.get(t, "/v1/users/gold-v1/recommendations?k=4&category=electronics&exclude=i157")
	g.get(t, "/v1/users/gold-v1/recommendations?k=30", gzipHdr, "gzip") // personal: never compressed
	g.get(t, "/v1/users/%ff/recommendations")
	g.get(t, "/v1/items/i90/similar?k=5&user=gold-v1")
	g.get(t, "/v1/items/i90/bought-together?k=5&visitor=gold-v2&cart=i157")
	g.get(t, "/v1/popular?k=5&user=gold-v1")

	// Placements: edgerec.yaml's and the built-in popular. An anonymous
	// answer of the similar and personal strategies follows a visitor's:
	// it blends no history (before the engine it blended the pooled
	// affinities of the request before).
	g.get(t, "/v1/recommend?placement=product_page&item=i90&visitor=gold-v1")
	g.get(t, "/v1/recommend?placement=product_page&item=i90")
	g.get(t, "/v1/recommend?placement=home")
	g.get(t, "/v1/recommend?placement=email&k=3")
	g.get(t, "/v1/recommend?placement=product_page&item=i90&visitor=gold-v3&k=4")
	g.get(t, "/v1/recommend?placement=product_page&item=nope&visitor=gold-v2&k=3")
	g.get(t, "/v1/recommend?placement=cart&cart=i157,i79&visitor=gold-v2")
	g.get(t, "/v1/recommend?placement=cart&item=i90&cart=i15&visitor=gold-v3")
	g.get(t, "/v1/recommend?placement=cart")
	g.get(t, "/v1/recommend?placement=home&visitor=gold-v1")
	g.get(t, "/v1/recommend?placement=home&visitor=gold-v1&k=12&category=cameras")
	g.get(t, "/v1/recommend?placement=home&visitor=gold-h26")
	g.get(t, "/v1/recommend?placement=home&visitor=gold-nobody")
	g.get(t, "/v1/recommend?placement=email&visitor=gold-v3")
	g.get(t, "/v1/recommend?placement=email&user=gold-u1&k=3")
	g.get(t, "/v1/recommend?placement=trending")
	g.get(t, "/v1/recommend?placement=trending&item=i90&visitor=gold-v1")
	g.get(t, "/v1/recommend?placement=trending&category=phones&k=3")
	g.get(t, "/v1/recommend?placement=popular&k=4&visitor=gold-v1")
	g.get(t, "/v1/recommend?placement=popular&price_max=20", "Origin", origin)
	g.get(t, "/v1/recommend?placement=nowhere")
	g.get(t, "/v1/recommend")
	g.get(t, "/v1/recommend?placement=home&k=0")
	g.get(t, "/v1/recommend?placement=product_page&item=%ff")

	// Landing-page decisions.
	q := url.QueryEscape("営業　成約率改善")
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d1&q="+q)
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d1&q="+url.QueryEscape("ＳＥＯ対策"))
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d2&utm_source=news&utm_medium=email&utm_campaign=sales-enablement")
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d3&ref="+url.QueryEscape("https://www.google.co.jp/search?q="+url.QueryEscape("営業 成約率")+"&hl=ja"))
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d4&q="+q, "User-Agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d5", "User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148")
	g.get(t, "/v1/decide?page=lp_consulting", "User-Agent", "Mozilla/5.0 (compatible; bingbot/2.0)")
	g.get(t, "/v1/decide?page=lp_consulting", "Cookie", "edgerec_vid=gold-d7")
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-h26")
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-v1") // info_gathering
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d6&user=gold-v1")
	for _, v := range []string{"gold-d8", "gold-d9", "gold-d10", "gold-d11"} {
		g.get(t, "/v1/decide?page=lp_consulting&visitor="+v)
	}
	d6 := decisionID(t, g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-v6"))
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-v6") // sticky
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-v6&utm_campaign=sales-enablement")
	d1 := decisionID(t, g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d1&q="+q))
	g.get(t, "/v1/decide?page=nope&visitor=gold-d1")
	g.get(t, "/v1/decide?visitor=gold-d1")
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d1&user=%ff")
	g.do(t, greq{method: "POST", uri: "/v1/decide?page=lp_consulting&visitor=gold-d1"})
	// Beacons: conversions and exposures without the key, signed for
	// their visitor.
	post("/v1/events", "", `{"event":"conversion","visitor":"gold-v6","decision_id":"`+d6+`","value":50}`)
	post("/v1/events", "", `{"event":"exposure","visitor":"gold-v6","decision_id":"`+d6+`"}`)
	post("/v1/events", "", `{"event":"conversion","visitor":"gold-d1","decision_id":"`+d1+`"}`)
	post("/v1/events", "", `{"event":"conversion","visitor":"gold-v7","decision_id":"`+d6+`"}`)
	forged := d6[:len(d6)-1] + "0" // another last hex digit
	if strings.HasSuffix(d6, "0") {
		forged = d6[:len(d6)-1] + "1"
	}
	post("/v1/events", "", `{"event":"conversion","visitor":"gold-v6","decision_id":"`+forged+`"}`)
	post("/v1/events", "", `{"event":"view","visitor":"gold-v6","item_id":"i90","decision_id":"`+d6+`"}`)
	post("/v1/events", goldenKey, `{"user_id":"gold-v6","item_id":"i90","event":"purchase","decision_id":"`+d6+`","value":100.28,"basket":"gold-o3"}`)

	// Pages: the decision, placements and segments in one answer.
	g.get(t, "/v1/page?page=lp_consulting&placements=home,product_page&item=i90&k=4&visitor=gold-v1")
	g.get(t, "/v1/page?page=lp_consulting&placements=home,product_page&item=i90&k=4&visitor=gold-d12&user=gold-u1")
	g.get(t, "/v1/page?placements=cart,trending&cart=i157&visitor=gold-v2&k=3")
	g.get(t, "/v1/page?placements=popular", "Cookie", "edgerec_vid=gold-v3", gzipHdr, "gzip")
	g.get(t, "/v1/page?page=lp_consulting&q="+q, "User-Agent", "Googlebot/2.1")
	g.get(t, "/v1/page")
	g.get(t, "/v1/page?placements=home,nowhere")
	g.get(t, "/v1/page?placements=home,home,home,home,home,home,home,home,home")
	g.get(t, "/v1/page?placements=home&k=0&page=lp_consulting&visitor=gold-d13")
	g.get(t, "/v1/page?placements=home&item="+strings.Repeat("x", 257))
	g.get(t, "/v1/page?page=nope&placements=home")
	g.get(t, "/v1/page?placements=home&visitor=gold-v1&user=%ff")

	// Catalog patches: a price, a stock-out, a restock.
	put("/v1/items", goldenKey, ndjson(`{"item_id":"i157","price":15}`, `{"id":"i15","stock":0}`))
	put("/v1/items", goldenKey, `[{"item_id":"i3","stock":5,"price":19.5},{"item_id":"gold-new","price":1}]`)
	g.do(t, greq{method: "POST", uri: "/v1/items", key: goldenKey, body: `{"item_id":"i79","price":14.99}`})
	put("/v1/items", goldenKey, `{"item_id":"i90","stock":"many"}`)
	put("/v1/items", goldenKey, `{"item_id":"i90"}`)
	put("/v1/items", goldenKey, `{"item_id":"i90","price":-1}`)
	put("/v1/items", goldenKey, `{"price":1}`)
	put("/v1/items", goldenKey, `[{"item_id":"i90","price":1},"x"]`)
	put("/v1/items", "", `{"item_id":"i90","price":1}`)
	g.do(t, greq{method: "GET", uri: "/v1/items", key: goldenKey})
	g.get(t, "/v1/items/i90/similar?k=5")
	g.get(t, "/v1/items/i90/similar?k=20", gzipHdr, "gzip")
	g.get(t, "/v1/items/i3/similar?k=4")
	g.get(t, "/v1/popular?k=5")
	g.get(t, "/v1/recommend?placement=product_page&item=i90&visitor=gold-v1")

	// Statistics.
	for _, p := range []string{"home", "cart", "product_page", "trending", "nowhere"} {
		g.get(t, "/v1/placements/"+p+"/stats")
	}
	g.get(t, "/v1/placements/home/nothing")
	g.get(t, "/v1/experiments/lp-consulting-cta/results")
	g.get(t, "/v1/experiments/lp-consulting-cta/results?format=csv")
	g.get(t, "/v1/experiments/nope/results")

	// Audiences.
	members := func(uri string, hdr ...string) {
		t.Helper()
		g.do(t, greq{method: "GET", uri: uri, key: goldenKey, hdr: hdr})
	}
	members("/v1/segments/info_gathering/members")
	members("/v1/segments/info_gathering/members?format=ndjson&with_recs=3")
	// An export job (POST) records who is in; a read (GET) only reads.
	g.do(t, greq{method: "POST", uri: "/v1/segments/repeat_buyer/members?with_recs=3", key: goldenKey})
	members("/v1/segments/repeat_buyer/members?raw_csv=1&attrs=name,plan,missing")
	members("/v1/segments/high_intent/members?format=ndjson")
	members("/v1/segments/high_intent/members")
	members("/v1/segments/cart_abandoner/members")
	members("/v1/segments/cart_abandoner/members?channel=sms")
	members("/v1/segments/lapsed_customer/members?format=ndjson")
	members("/v1/segments/info_gathering/members?since=" + ts(0))
	members("/v1/segments/info_gathering/members?since=" + ts(gHour))
	// gold-v3 withdraws consent: it leaves.
	put("/v1/users/gold-v3", goldenKey, `{"consent_email":false}`)
	members("/v1/segments/repeat_buyer/members?format=ndjson&since=" + ts(0))
	members("/v1/segments/repeat_buyer/members")
	// Pages of one: gold-v1, then gold-v8, then none.
	members("/v1/segments/info_gathering/members?format=ndjson&limit=1")
	members("/v1/segments/info_gathering/members?format=ndjson&limit=1&after=gold-v1")
	members("/v1/segments/info_gathering/members?format=ndjson&limit=1&after=gold-v8")
	members("/v1/segments/info_gathering/members?limit=1&after=gold-v1&attrs=name,seats")
	members("/v1/segments/info_gathering/members?format=ndjson&with_recs=50", gzipHdr, "gzip")
	members("/v1/segments/nope/members")
	members("/v1/segments/info_gathering/members?format=xml")
	members("/v1/segments/info_gathering/members?with_recs=51")
	members("/v1/segments/info_gathering/members?limit=0")
	members("/v1/segments/info_gathering/members?since=yesterday")
	members("/v1/segments/info_gathering/members?channel=a.b")
	g.get(t, "/v1/segments/info_gathering/members")
	g.get(t, "/v1/segments/info_gathering")

	// Administration.
	g.do(t, greq{method: "POST", uri: "/v1/admin/config", key: goldenKey})
	g.do(t, greq{method: "POST", uri: "/v1/admin/config"})
	g.do(t, greq{method: "GET", uri: "/v1/admin/config", key: goldenKey})
	g.do(t, greq{method: "POST", uri: "/v1/admin/snapshots", key: goldenKey})
	g.do(t, greq{method: "POST", uri: "/v1/admin/snapshots", key: "wrong-key"})
	g.do(t, greq{method: "GET", uri: "/v1/admin/snapshots", key: goldenKey})
	g.do(t, greq{method: "GET", uri: "/v1/admin/status", key: goldenKey})
	g.get(t, "/v1/admin/status")
	// The same answers after the reloads.
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-v6")
	g.get(t, "/v1/decide?page=lp_consulting&visitor=gold-d1&q="+q)
	g.get(t, "/v1/items/i90/similar?k=5")
	g.get(t, "/readyz")
	g.do(t, greq{method: "GET", uri: "/metrics", headOnly: true})
}

// goldenDiff describes how got differs from want: the first few blocks
// that differ, each as a line diff.
func goldenDiff(want, got string) string {
	wb, gb := goldenBlocks(want), goldenBlocks(got)
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in the golden file, %d now\n", len(wb), len(gb))
	shown := 0
	for i := 0; i < max(len(wb), len(gb)) && shown < 3; i++ {
		var w, g string
		if i < len(wb) {
			w = wb[i]
		}
		if i < len(gb) {
			g = gb[i]
		}
		if w == g {
			continue
		}
		shown++
		fmt.Fprintf(&b, "request %d:\n--- %s\n+++ now\n%s", i+1, goldenFile, lineDiff(w, g))
	}
	return b.String()
}

// goldenBlocks splits a golden text into its requests; the header of
// the file goes with the first.
func goldenBlocks(s string) []string {
	var cuts []int // where a request's "### " line starts
	for i := 0; ; {
		j := strings.Index(s[i:], "\n### ")
		if j < 0 {
			break
		}
		cuts = append(cuts, i+j+1)
		i += j + 1
	}
	if !strings.HasPrefix(s, "### ") && len(cuts) > 0 {
		cuts = cuts[1:]
	}
	var blocks []string
	from := 0
	for _, c := range cuts {
		blocks = append(blocks, s[from:c])
		from = c
	}
	return append(blocks, s[from:])
}

// lineDiff is a unified-style diff of two short texts (a longest common
// subsequence of lines). A changed line is shown around its first
// difference: answers are long one-line JSON documents.
func lineDiff(a, b string) string {
	x := strings.Split(strings.TrimSuffix(a, "\n\n"), "\n")
	y := strings.Split(strings.TrimSuffix(b, "\n\n"), "\n")
	// lcs[i][j]: the length of the LCS of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out.WriteString("  " + clip(x[i], 0) + "\n")
			i++
			j++
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			if i < len(x) && lcs[i+1][j+1] == lcs[i][j] {
				// x[i] became y[j]: show where.
				k := 0
				for k < len(x[i]) && k < len(y[j]) && x[i][k] == y[j][k] {
					k++
				}
				fmt.Fprintf(&out, "- %s\n+ %s\n  (the line differs from byte %d)\n", clip(x[i], k), clip(y[j], k), k)
				i++
				j++
				continue
			}
			out.WriteString("+ " + y[j] + "\n")
			j++
		default:
			out.WriteString("- " + x[i] + "\n")
			i++
		}
	}
	return out.String()
}

// clip returns the part of line around byte k, cut between runes.
func clip(line string, k int) string {
	from, to := max(k-80, 0), min(k+120, len(line))
	for from > 0 && !utf8.RuneStart(line[from]) {
		from--
	}
	for to < len(line) && !utf8.RuneStart(line[to]) {
		to++
	}
	s := line[from:to]
	if from > 0 {
		s = "…" + s
	}
	if to < len(line) {
		s += "…"
	}
	return s
}

// goldenSignKey derives the decision-id key from the API key as edgerec
// serve does, so that the pinned decision ids are the ones serve signs.
func goldenSignKey(apiKey string) []byte {
	k := sha256.Sum256([]byte("edgerec decision ids\x00" + apiKey))
	return k[:]
}
