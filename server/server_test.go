package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/testenv"
)

const testKey = "test-key"

// snapRoot is the snapshot of the test shop (testenv.Shop: 200 items
// "i1".."i200" in 5 categories, 20,000 events with baskets) buildShop
// builds once per test binary.
var snapRoot string

func buildShop(t testing.TB) string {
	t.Helper()
	if snapRoot != "" {
		return snapRoot
	}
	dir, err := os.MkdirTemp("", "edgerec-server-test-")
	if err != nil {
		t.Fatal(err)
	}
	events, items := testenv.WriteShop(t, dir)
	root := filepath.Join(dir, "snapshots")
	b, err := index.NewBuilder(index.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ReadItemsFile(items); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadEventsFile(events); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(root); err != nil {
		t.Fatal(err)
	}
	snapRoot = root
	return root
}

// readSnapshot opens the shop snapshot for fn and closes it. Pebble
// locks a store for one opener, so call it before testServer: an engine
// holds its snapshot until the test ends.
func readSnapshot(t testing.TB, fn func(s *index.Snapshot)) {
	t.Helper()
	snap, err := index.OpenSnapshot(buildShop(t))
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	fn(snap)
}

func TestMain(m *testing.M) {
	log.SetOutput(io.Discard) // "serving snapshot …" lines would interleave with benchmark output
	code := m.Run()
	if snapRoot != "" {
		_ = os.RemoveAll(filepath.Dir(snapRoot))
	}
	os.Exit(code)
}

// testStack is a Server with its engine and state store.
type testStack struct {
	s     *Server
	e     *engine.Engine
	state *index.State
	c     *fasthttp.Client
}

// newTestStack starts a Server over an engine with the shop snapshot
// (or the one of o.SnapshotRoot) and a real state store (whose clock is eo.Now), on real loopback TCP.
// When the test ends it closes the server, then the engine, then the
// state store.
func newTestStack(t testing.TB, eo engine.Options, o Options) *testStack {
	t.Helper()
	return newTestStackState(t, eo, o, index.StateOptions{NoSync: true, Now: eo.Now})
}

// newTestStackState is newTestStack with the state store opened with so.
func newTestStackState(t testing.TB, eo engine.Options, o Options, so index.StateOptions) *testStack {
	t.Helper()
	root := buildShop(t)
	state, err := index.OpenState(t.TempDir(), so)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last in, first out: server, engine, state.
	t.Cleanup(func() { _ = state.Close() })
	e, err := engine.New(eo, state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if o.SnapshotRoot == "" {
		o.SnapshotRoot = root
	}
	root = o.SnapshotRoot
	if o.APIKey == "" {
		o.APIKey = testKey
	}
	s, err := New(e, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	if _, err := e.LoadSnapshot(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go func() { _ = s.Serve(ln) }()
	addr := ln.Addr().String()
	c := &fasthttp.Client{Name: browserUA, Dial: func(string) (net.Conn, error) { return net.Dial("tcp", addr) }}
	s.testClient = c
	return &testStack{s: s, e: e, state: state, c: c}
}

// testServer is newTestStack for tests that need only the server.
func testServer(t testing.TB, eo engine.Options, o Options) (*Server, *fasthttp.Client) {
	t.Helper()
	ts := newTestStack(t, eo, o)
	return ts.s, ts.c
}

type apiItem struct {
	ID, Title, Category, Reason, Because string
	Score                                float64
	Price                                *float64
}

type apiList struct {
	RecID    string    `json:"rec_id"`
	Items    []apiItem `json:"items"`
	Fallback bool      `json:"fallback"`
}

// browserUA is the User-Agent the test clients send: fasthttp's own
// ("fasthttp") is a command-line client's, which decisions take for a
// bot's.
const browserUA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

func do(t testing.TB, c *fasthttp.Client, method, uri, key, body string, header ...string) (int, []byte) {
	t.Helper()
	code, b, _ := doHeader(t, c, method, uri, key, body, header...)
	return code, b
}

// doHeader is do that returns the answer's Retry-After too.
func doHeader(t testing.TB, c *fasthttp.Client, method, uri, key, body string, header ...string) (int, []byte, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://edgerec" + uri)
	req.Header.SetMethod(method)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.SetBodyString(body)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), string(resp.Header.Peek("Retry-After"))
}

func getList(t testing.TB, c *fasthttp.Client, uri string) apiList {
	t.Helper()
	code, body := do(t, c, "GET", uri, "", "")
	if code != 200 {
		t.Fatalf("GET %s: %d %s", uri, code, body)
	}
	var l apiList
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("GET %s: bad JSON %v: %s", uri, err, body)
	}
	if len(l.RecID) != 16 {
		t.Fatalf("GET %s: rec_id %q", uri, l.RecID)
	}
	return l
}

func TestReadEndpoints(t *testing.T) {
	// The shop's audio items, and an item bought with no other (in too
	// few baskets), read before the server holds the snapshot.
	audio, lone := map[string]bool{}, ""
	readSnapshot(t, func(ref *index.Snapshot) {
		a, _ := ref.Category([]byte("audio"))
		for n := range uint32(ref.NumItems()) {
			info := ref.Item(n)
			audio[info.ID] = slices.Contains(info.Cats, a)
			if l, err := ref.AppendList(nil, index.ListBought, n); err == nil && len(l) == 0 && lone == "" {
				lone = info.ID
			}
		}
	})
	if lone == "" {
		t.Fatal("every item of the shop is bought with another: the fallback goes untested")
	}
	_, c := testServer(t, engine.Options{}, Options{})
	// i44 is among the shop's ten most viewed items.
	l := getList(t, c, "/v1/items/i44/similar?k=5")
	if len(l.Items) != 5 || l.Fallback || l.Items[0].Reason != "similar_to" || l.Items[0].Because != "i44" {
		t.Fatalf("similar to i44: %+v", l)
	}
	for _, it := range l.Items {
		if it.ID == "i44" || it.Title == "" || it.Category == "" {
			t.Fatalf("similar to i44: bad item %+v", it)
		}
	}
	// A second call hits the cache and gets a fresh rec_id.
	l2 := getList(t, c, "/v1/items/i44/similar?k=5")
	if l2.RecID == l.RecID || l2.Items[0].ID != l.Items[0].ID {
		t.Fatalf("cached answer: %+v vs %+v", l2, l)
	}
	// Category filter.
	l = getList(t, c, "/v1/items/i44/similar?k=10&category=audio")
	if len(l.Items) == 0 {
		t.Fatalf("audio filter: no items: %+v", l)
	}
	for _, it := range l.Items {
		if !audio[it.ID] {
			t.Fatalf("audio filter: %+v", it)
		}
	}
	// Exclude.
	first := getList(t, c, "/v1/items/i44/similar?k=3").Items[0].ID
	for _, it := range getList(t, c, "/v1/items/i44/similar?k=3&exclude="+first).Items {
		if it.ID == first {
			t.Fatalf("excluded %s came back", first)
		}
	}
	// Popular, overall and per category; never empty.
	if l := getList(t, c, "/v1/popular?k=7"); len(l.Items) != 7 || l.Items[0].Reason != "popular" {
		t.Fatalf("popular: %+v", l)
	}
	// A new user gets popular items, marked.
	if l := getList(t, c, "/v1/users/nobody/recommendations?k=4"); len(l.Items) != 4 || !l.Fallback {
		t.Fatalf("new user: %+v", l)
	}
	// Bought together, from the shop's baskets; an item bought with no
	// other falls back to popular items.
	if l := getList(t, c, "/v1/items/i44/bought-together?k=3"); len(l.Items) != 3 || l.Fallback || l.Items[0].Reason != "bought_with" {
		t.Fatalf("bought together: %+v", l)
	}
	if l := getList(t, c, "/v1/items/"+lone+"/bought-together?k=3"); len(l.Items) != 3 || !l.Fallback {
		t.Fatalf("bought together with %s, bought alone: %+v", lone, l)
	}
	if l := getList(t, c, "/v1/recommend?placement=product_page&item=i44&visitor=v1&k=6"); len(l.Items) != 6 {
		t.Fatalf("recommend: %+v", l)
	}
	if l := getList(t, c, "/v1/recommend?placement=home&item=unknown-item&k=6"); len(l.Items) != 6 || !l.Fallback {
		t.Fatalf("unknown item on a placement falls back: %+v", l)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body := do(t, c, "GET", path, "", ""); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	_, body := do(t, c, "GET", "/metrics", "", "")
	for _, want := range []string{`edgerec_requests_total{route="similar"}`, "edgerec_cache_hit_ratio", "edgerec_snapshot_version"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// failingWAL fails the writes and syncs of the state store's WAL when on.
type failingWAL struct{ on atomic.Bool }

func (f *failingWAL) String() string { return "failing WAL" }

func (f *failingWAL) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		return errorfs.ErrInjected
	}
	return nil
}

// TestReadyzStateNotWritable: /readyz is 200 with a snapshot and a state
// store that takes writes, 503 once the store's disk fails (seen by the
// next probe, at most one a second); /healthz stays 200 and reads go on;
// writes answer 503 (an injected error, not a full disk).
func TestReadyzStateNotWritable(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	wal := &failingWAL{}
	ts := newTestStackState(t, engine.Options{Now: now}, Options{},
		index.StateOptions{NoSync: true, Now: now, FS: testenv.InjectFS(vfs.Default, wal), Logger: slog.New(slog.DiscardHandler)})
	ready := func(want int, wantBody string) {
		t.Helper()
		code, body := do(t, ts.c, "GET", "/readyz", "", "")
		if code != want || !strings.Contains(string(body), wantBody) {
			t.Fatalf("/readyz: %d %s; want %d and %s", code, body, want, wantBody)
		}
	}
	ready(200, `"status":"ready"`)
	wal.on.Store(true)
	ready(200, `"status":"ready"`) // the probe of this second stands
	clock.Add(int64(1100 * time.Millisecond))
	ready(503, `"code":"state_not_writable"`)
	if code, body := do(t, ts.c, "GET", "/healthz", "", ""); code != 200 {
		t.Fatalf("/healthz with the state store failed: %d %s; want 200", code, body)
	}
	if l := getList(t, ts.c, "/v1/popular?k=3"); len(l.Items) != 3 {
		t.Fatalf("popular with the state store failed: %+v", l)
	}
	code, body, retry := doHeader(t, ts.c, "POST", "/v1/events", testKey, `{"user_id":"u1","item_id":"i44","event":"view"}`)
	if code != 503 || !strings.Contains(string(body), "state_not_writable") || retry != stateRetryAfter {
		t.Fatalf("an event with the state store failed: %d %s, Retry-After %q; want 503 state_not_writable, Retry-After %s", code, body, retry, stateRetryAfter)
	}
	// The disk comes back: the first /readyz after it still answers 503
	// and starts a reopen in the background (TestStateDiskFull).
	wal.on.Store(false)
	clock.Add(int64(time.Hour))
	ready(503, `"code":"state_not_writable"`)
}

func TestBadInputs(t *testing.T) {
	s, c := testServer(t, engine.Options{}, Options{})
	f := func(method, uri, key, body string, want int) {
		t.Helper()
		code, resp := do(t, c, method, uri, key, body)
		if code != want {
			t.Fatalf("%s %s: %d %s; want %d", method, uri, code, resp, want)
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(resp, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s %s: error body %q", method, uri, resp)
		}
	}
	f("GET", "/v1/items/no-such-item/similar", "", "", 404)
	f("GET", "/v1/items/i44/similar?k=-1", "", "", 400)
	f("GET", "/v1/items/i44/similar?k=0", "", "", 400)
	f("GET", "/v1/items/i44/similar?k=1000000000", "", "", 400)
	f("GET", "/v1/items/i44/similar?k=abc", "", "", 400)
	f("GET", "/v1/items/i44/similar?category=NoSuchGenre", "", "", 400)
	f("GET", "/v1/items/i44/similar?price_min=cheap", "", "", 400)
	f("GET", "/v1/items/%ff%fe/similar", "", "", 400)
	f("GET", "/v1/items/"+strings.Repeat("x", 300)+"/similar", "", "", 400)
	f("GET", "/v1/users/%ff/recommendations", "", "", 400)
	f("GET", "/v1/recommend?placement=nowhere", "", "", 400)
	f("GET", "/v1/nothing", "", "", 404)
	f("POST", "/v1/items/i44/similar", "", "", 405)
	f("POST", "/v1/events", "", `{"user_id":"u","item_id":"i44","event":"view"}`, 401)
	f("POST", "/v1/events", "wrong", `{"user_id":"u","item_id":"i44","event":"view"}`, 401)
	f("POST", "/v1/events", testKey, `{"user_id":"u","item_id":"i44","event":"view"`, 400)
	f("POST", "/v1/events", testKey, `[{"user_id":"u","item_id":"i44","event":"buy"}]`, 400)
	f("POST", "/v1/events", testKey, `{"user_id":"","item_id":"i44","event":"view"}`, 400)
	f("POST", "/v1/events", testKey, `{"user_id":"u","event":"view"}`, 400)
	f("POST", "/v1/events", testKey, `{"user_id":"u","item_id":"i44","event":"view","ts":"x"}`, 400)
	f("POST", "/v1/events", testKey, "", 400)
	f("POST", "/v1/events", testKey, strings.Repeat(`{"user_id":"u","item_id":"i44","event":"view"}`+"\n", 1001), 413)
	f("PUT", "/v1/items", testKey, `{"item_id":"i44","stock":"many"}`, 400)
	f("PUT", "/v1/items", "", `{"item_id":"i44","stock":1}`, 401)
	f("POST", "/v1/admin/snapshots", "", "", 401)
	f("GET", "/v1/admin/status", "wrong", "", 401)
	f("GET", "/debug/pprof/", "", "", 401)
	// An oversize body is refused from its Content-Length, before it is
	// read; a raw connection sees the 413 deterministically.
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n{", testKey, 2<<20)
	resp := make([]byte, 512)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(resp)
	conn.Close()
	if !strings.HasPrefix(string(resp[:n]), "HTTP/1.1 413") || !strings.Contains(string(resp[:n]), `"too_large"`) {
		t.Fatalf("oversize body: %q", resp[:n])
	}
	// The server still answers.
	getList(t, c, "/v1/items/i44/similar?k=3")
}

// After a visitor views items of one category, their recommendations move
// toward it, without a rebuild.
func TestPersonalization(t *testing.T) {
	// The snapshot's phones, read before the server holds it.
	var phoneItems []string
	phoneIDs := map[string]bool{}
	readSnapshot(t, func(ref *index.Snapshot) {
		phones, _ := ref.Category([]byte("phones"))
		pop, _ := ref.AppendList(nil, index.ListPopular, phones)
		for _, n := range pop[:8] {
			phoneItems = append(phoneItems, ref.Item(n.Item).ID)
		}
		for n := range ref.NumItems() {
			if slices.Contains(ref.Item(uint32(n)).Cats, phones) {
				phoneIDs[ref.Item(uint32(n)).ID] = true
			}
		}
	})
	isPhone := func(id string) bool { return phoneIDs[id] }
	_, c := testServer(t, engine.Options{}, Options{})
	count := func(l apiList) int {
		n := 0
		for _, it := range l.Items {
			if isPhone(it.ID) {
				n++
			}
		}
		return n
	}
	before := count(getList(t, c, "/v1/users/fan/recommendations?k=20"))
	var body strings.Builder
	for _, id := range phoneItems {
		fmt.Fprintf(&body, `{"user_id":"fan","item_id":%q,"event":"view"}`+"\n", id)
	}
	if code, resp := do(t, c, "POST", "/v1/events", testKey, body.String()); code != 200 {
		t.Fatalf("events: %d %s", code, resp)
	}
	l := getList(t, c, "/v1/users/fan/recommendations?k=20")
	after := count(l)
	t.Logf("phones in 20 recommendations: %d before, %d after", before, after)
	if after < before+3 || l.Fallback {
		t.Fatalf("recommendations did not move toward phones: %d before, %d after: %+v", before, after, l)
	}
	for _, it := range l.Items {
		for _, seen := range phoneItems {
			if it.ID == seen {
				t.Fatalf("seen item %s recommended", seen)
			}
		}
	}
}

// A stock correction takes effect on the next request.
func TestPutItems(t *testing.T) {
	_, c := testServer(t, engine.Options{}, Options{})
	top := getList(t, c, "/v1/items/i44/similar?k=3").Items[0].ID
	if code, resp := do(t, c, "PUT", "/v1/items", testKey, `[{"item_id":"`+top+`","stock":0}]`); code != 200 {
		t.Fatalf("put: %d %s", code, resp)
	}
	for _, it := range getList(t, c, "/v1/items/i44/similar?k=3").Items {
		if it.ID == top {
			t.Fatalf("out-of-stock %s still recommended", top)
		}
	}
	if code, resp := do(t, c, "PUT", "/v1/items", testKey, `{"item_id":"`+top+`","stock":5,"price":12.5}`); code != 200 {
		t.Fatalf("put: %d %s", code, resp)
	}
	l := getList(t, c, "/v1/items/i44/similar?k=3")
	if l.Items[0].ID != top || l.Items[0].Price == nil || *l.Items[0].Price != 12.5 {
		t.Fatalf("restocked %s: %+v", top, l.Items[0])
	}
}

// Placement stats count impressions, clicks and attributed conversions.
func TestPlacementStats(t *testing.T) {
	_, c := testServer(t, engine.Options{}, Options{})
	l := getList(t, c, "/v1/recommend?placement=home&visitor=v9&k=3")
	evs := fmt.Sprintf(`{"user_id":"v9","item_id":%q,"event":"impression","placement":"home","rec_id":%q}
{"user_id":"v9","item_id":%q,"event":"impression","placement":"home","rec_id":%q}
{"user_id":"v9","item_id":%q,"event":"click","placement":"home","rec_id":%q}
{"user_id":"v9","item_id":%q,"event":"purchase","placement":"home","rec_id":%q,"value":30}`,
		l.Items[0].ID, l.RecID, l.Items[1].ID, l.RecID, l.Items[0].ID, l.RecID, l.Items[0].ID, l.RecID)
	if code, resp := do(t, c, "POST", "/v1/events", testKey, evs); code != 200 {
		t.Fatalf("events: %d %s", code, resp)
	}
	code, body := do(t, c, "GET", "/v1/placements/home/stats", "", "")
	var st struct {
		Served                                         uint64
		Impressions, Clicks, CTR, Conversions, Revenue float64
	}
	if err := json.Unmarshal(body, &st); code != 200 || err != nil {
		t.Fatalf("stats: %d %s", code, body)
	}
	if st.Served != 1 || st.Impressions != 2 || st.Clicks != 1 || st.CTR != 0.5 || st.Conversions != 1 || st.Revenue != 30 {
		t.Fatalf("stats: %s", body)
	}
}

// An anonymous visitor's history follows them when a login event names
// both the visitor and the user.
func TestLoginMerge(t *testing.T) {
	_, c := testServer(t, engine.Options{}, Options{})
	evs := `{"visitor":"anon-7","item_id":"i90","event":"view"}
{"visitor":"anon-7","item_id":"i157","event":"view"}`
	if code, resp := do(t, c, "POST", "/v1/events", testKey, evs); code != 200 {
		t.Fatalf("events: %d %s", code, resp)
	}
	if l := getList(t, c, "/v1/users/anon-7/recommendations?k=5"); l.Fallback || l.Items[0].Reason != "history" {
		t.Fatalf("visitor from the first event: %+v", l)
	}
	if l := getList(t, c, "/v1/users/alice/recommendations?k=5"); !l.Fallback {
		t.Fatalf("alice before login: %+v", l)
	}
	if code, resp := do(t, c, "POST", "/v1/events", testKey, `{"event":"login","visitor":"anon-7","user_id":"alice"}`); code != 200 {
		t.Fatalf("login: %d %s", code, resp)
	}
	l := getList(t, c, "/v1/users/alice/recommendations?k=5")
	if l.Fallback || l.Items[0].Reason != "history" {
		t.Fatalf("alice after login: %+v", l)
	}
	for _, it := range l.Items {
		if it.ID == "i90" || it.ID == "i157" {
			t.Fatalf("alice is shown %s, seen as a visitor", it.ID)
		}
	}
}

func postEvents(t *testing.T, s *Server, body string) {
	t.Helper()
	if body == "" {
		return
	}
	if code, resp := do(t, s.testClient, "POST", "/v1/events", testKey, body); code != 200 {
		t.Fatalf("events: %d %s", code, resp)
	}
}

// TestAnonymousPlacementNoHistory: a placement asked without a visitor
// blends no history, whichever visitor's request ran on the same pooled
// memory before (the old server leaked the last visitor's affinities into
// such answers).
func TestAnonymousPlacementNoHistory(t *testing.T) {
	s, c := testServer(t, engine.Options{}, Options{})
	if code, resp := do(t, c, "POST", "/v1/events", testKey, `{"user_id":"leaky","item_id":"i90","event":"view"}
{"user_id":"leaky","item_id":"i157","event":"view"}
{"user_id":"leaky","item_id":"i79","event":"purchase"}`); code != 200 {
		t.Fatalf("events: %d %s", code, resp)
	}
	// Through the handler on one goroutine, so that the pooled request
	// state of the visitor's request is the one the anonymous one gets.
	handle := func(uri string) map[string]any {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		s.Handle(&ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%s: %d %s", uri, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		return withoutRecID(t, ctx.Response.Body())
	}
	for _, anon := range []string{
		"/v1/recommend?placement=product_page&item=i44&k=10",
		"/v1/recommend?placement=home&k=10",
		"/v1/recommend?placement=email&item=i44&k=10",
	} {
		want := handle(anon)
		for range 5 {
			handle(anon + "&visitor=leaky")
			if got := handle(anon); !jsonEqual(got, want) {
				t.Fatalf("%s after a visitor's request:\n%v\nwant\n%v", anon, got, want)
			}
		}
	}
}
