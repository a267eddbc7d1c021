package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/testenv"
	"github.com/edgerec/edgerec/model"
)

// The engine's test helpers: a real state store in t.TempDir() and a real
// snapshot of the test shop (testenv.Shop), built once per test binary.
// No mocks.

func sharedData(t testing.TB, name string) string {
	t.Helper()
	return testenv.SharedData(t, name)
}

// skipLongUnderShort skips a long test under -short, as index's does:
// make test runs such tests in its second pass, without the race detector.
func skipLongUnderShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("long test: runs without -short (make test's second pass)")
	}
}

// discard is the logger of test engines: "serving snapshot …" lines would
// interleave with benchmark output.
var discard = slog.New(slog.DiscardHandler)

// built holds the snapshot roots built by this test binary; TestMain
// removes them.
var built struct {
	mu    sync.Mutex
	roots map[string]string // name → root
}

// buildOnce builds the snapshot called name with build, once per test
// binary, and returns its root.
func buildOnce(t testing.TB, name string, build func(t testing.TB, root, scratch string)) string {
	t.Helper()
	built.mu.Lock()
	defer built.mu.Unlock()
	if root, ok := built.roots[name]; ok {
		return root
	}
	dir, err := os.MkdirTemp("", "edgerec-engine-test-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "snapshots")
	build(t, root, dir)
	if built.roots == nil {
		built.roots = map[string]string{}
	}
	built.roots[name] = root
	return root
}

func TestMain(m *testing.M) {
	slog.SetDefault(discard) // index's Pebble logger writes to the default
	code := m.Run()
	for _, root := range built.roots {
		_ = os.RemoveAll(filepath.Dir(root))
	}
	os.Exit(code)
}

// shopEventsFile and shopItemsFile name the test shop's files in shopRoot's
// scratch directory (testenv.WriteShop's names).
const (
	shopEventsFile = "events.csv.gz"
	shopItemsFile  = "items.csv.gz"
)

// shopRoot returns the root of a default build of the test shop
// (testenv.Shop: 20,000 events of 473 users over 200 items "i1".."i200"
// in 5 categories, with baskets), built once per test binary. The
// generated files are beside the root.
func shopRoot(t testing.TB) string {
	t.Helper()
	return buildOnce(t, "shop", func(t testing.TB, root, dir string) {
		events, items := testenv.WriteShop(t, dir)
		buildRoot(t, root, index.BuildOptions{}, items, events)
	})
}

// shopFile returns the path of a generated file of shopRoot.
func shopFile(t testing.TB, name string) string {
	return filepath.Join(filepath.Dir(shopRoot(t)), name)
}

// buildRoot builds a snapshot of the files with o into root.
func buildRoot(t testing.TB, root string, o index.BuildOptions, items string, events ...string) *index.Manifest {
	t.Helper()
	b, err := index.NewBuilder(o)
	if err != nil {
		t.Fatal(err)
	}
	if items != "" {
		if err := b.ReadItemsFile(items); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range events {
		if err := b.ReadEventsFile(e); err != nil {
			t.Fatal(err)
		}
	}
	m, err := b.Build(root)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// openState opens a state store in dir; it is closed when the test ends.
func openState(t testing.TB, dir string, o index.StateOptions) *index.State {
	t.Helper()
	o.NoSync = true
	st, err := index.OpenState(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// newEngine makes an engine over state serving the snapshot at root
// (none when root is ""); it is closed when the test ends, before the
// state store.
func newEngine(t testing.TB, o Options, state *index.State, root string) *Engine {
	t.Helper()
	if o.Logger == nil {
		o.Logger = discard
	}
	e, err := New(o, state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if root != "" {
		if _, err := e.LoadSnapshot(context.Background(), root); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// testEngine makes an engine serving the test shop over a fresh state store,
// as the old server tests' testServer did.
func testEngine(t testing.TB, o Options) (*Engine, *index.State) {
	t.Helper()
	root := shopRoot(t)
	st := openState(t, t.TempDir(), index.StateOptions{Now: o.Now})
	return newEngine(t, o, st, root), st
}

// ev is an event as tests write them: a viewed item, or a pageview.
type ev struct {
	user, item string
	typ        model.EventType
	page       string
	ts         int64 // 0: the engine's now
	value      float64
	hasValue   bool
}

func view(user, item string) ev { return ev{user: user, item: item, typ: model.EventView} }

func pageview(user, page string) ev {
	return ev{user: user, typ: model.EventPageview, page: "https://shop.example" + page + "?utm_source=x"}
}

// post ingests the events with the API key, as POST /v1/events does.
func post(t testing.TB, e *Engine, evs ...ev) {
	t.Helper()
	if len(evs) == 0 {
		return
	}
	now := e.Now().Unix()
	batch := make([]index.StateEvent, len(evs))
	for i, x := range evs {
		ts := x.ts
		if ts == 0 {
			ts = now
		}
		batch[i] = index.StateEvent{User: []byte(x.user), Type: x.typ, TS: ts, Value: x.value, HasValue: x.hasValue}
		if x.item != "" {
			batch[i].Item = []byte(x.item)
		}
		if x.page != "" {
			batch[i].Page = []byte(x.page)
		}
	}
	if err := e.Ingest(batch, nil, false); err != nil {
		t.Fatalf("ingest: %v", err)
	}
}

// setAttrs merges a JSON object of attributes into user's profile, as
// PUT /v1/users/{id} does: strings, numbers, booleans, null deletes.
func setAttrs(t testing.TB, e *Engine, user, body string) {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader([]byte(body)))
	if err := d.Decode(&m); err != nil {
		t.Fatalf("attributes %s: %v", body, err)
	}
	var ups []AttrUpdate
	for k, v := range m {
		u := AttrUpdate{Key: []byte(k)}
		switch x := v.(type) {
		case string:
			u.Type, u.Str = model.AttrString, []byte(x)
		case float64:
			u.Type, u.Num = model.AttrNumber, x
		case bool:
			u.Type = model.AttrBool
			if x {
				u.Num = 1
			}
		case nil:
		default:
			u.Type = AttrUnsupported
		}
		ups = append(ups, u)
	}
	if err := e.SetAttributes([]byte(user), ups); err != nil {
		t.Fatalf("attributes of %s: %v", user, err)
	}
}

// pick is a Pick as an answer shows it.
type pick struct {
	ID, Reason, Because string
}

// picks returns the picks of r by item id, with their reasons, from v.
func picks(v *View, r *Recs) []pick {
	var ps []pick
	for _, p := range r.Picks {
		x := pick{ID: v.Item(p.Item).ID, Reason: p.Reason.String()}
		if p.HasBecause {
			x.Because = v.Item(p.Because).ID
		}
		ps = append(ps, x)
	}
	return ps
}

// recommend asks a placement (req.Placement) and returns its picks.
func recommend(t testing.TB, e *Engine, req RecRequest) []pick {
	t.Helper()
	v := e.Acquire()
	defer v.Release()
	var r Recs
	if err := v.Recommend(&req, &r); err != nil {
		t.Fatalf("recommend %s: %v", req.Placement, err)
	}
	return picks(v, &r)
}

// personal returns user's personal recommendations, k of them.
func personal(t testing.TB, e *Engine, user string, k int) []pick {
	t.Helper()
	v := e.Acquire()
	defer v.Release()
	var r Recs
	if err := v.PersonalTop([]byte(user), k, &r); err != nil {
		t.Fatalf("personal %s: %v", user, err)
	}
	return picks(v, &r)
}

// sampleConfig loads the bundled edgerec.yaml.
func sampleConfig(t testing.TB) *Config {
	t.Helper()
	c, err := LoadConfig("../edgerec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readEventFile calls fn for every event of an events file.
func readEventFile(t testing.TB, path string, fn func(ev *model.Event)) {
	t.Helper()
	f, err := index.OpenInput(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := index.NewEventReader(f, path)
	if err != nil {
		t.Fatal(err)
	}
	var x model.Event
	for {
		err := r.Next(&x)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(&x)
	}
}

// The visitors of the hot-path tests and benchmarks (alloc_test.go,
// engine_timing_test.go).
var (
	// hotUser20 viewed 20 items.
	hotUser20 = []byte("hot-20")
	// hotViewer viewed five items.
	hotViewer = []byte("hot-viewer")
	// hotLead viewed ten items and the pricing page ten times: in
	// segment info_gathering.
	hotLead = []byte("hot-lead")
)

// hotEngine serves the test shop with the sample config to the hot visitors.
type hotEngine struct {
	e *Engine
}

// hotOut holds the answers of one caller.
type hotOut struct {
	recs Recs
	page PageResult
	d    Decision
	segs SegSet
}

func newHotEngine(tb testing.TB) *hotEngine {
	tb.Helper()
	return newHotEngineWith(tb, Options{})
}

func newHotEngineWith(tb testing.TB, o Options) *hotEngine {
	tb.Helper()
	o.Config = sampleConfig(tb)
	e, _ := testEngine(tb, o)
	var evs []ev
	for i := 1; i <= 20; i++ {
		evs = append(evs, view(string(hotUser20), "i"+strconv.Itoa(i*7)))
	}
	for _, item := range []string{"i44", "i90", "i55", "i157", "i79"} {
		evs = append(evs, view(string(hotViewer), item))
	}
	for i := 1; i <= 10; i++ {
		evs = append(evs, view(string(hotLead), "i"+strconv.Itoa(i*7)), pageview(string(hotLead), "/pricing"))
	}
	post(tb, e, evs...)
	return &hotEngine{e: e}
}

// warm calls f until a call reads no list the cache misses: Ristretto's
// Set is asynchronous, and the engine's cache has no Wait.
func (h *hotEngine) warm(tb testing.TB, name string, f func() error) {
	tb.Helper()
	for i := 0; ; i++ {
		before := h.e.Stats().Lists.Misses
		if err := f(); err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		if i > 0 && h.e.Stats().Lists.Misses == before {
			return
		}
		if i == 200 {
			tb.Fatalf("%s: lists still missing the cache after %d calls", name, i)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// warmViews caches op's lists (warm), then grows every pooled View (and
// Pebble's pooled iterators) for op: a sync.Pool keeps its objects per P,
// and a call on a P whose View never answered op grows that View's
// scratch memory, as the first requests on each core of a server do.
// Several goroutines each hold several Views at once, so that the
// pool's every View answers op.
func (h *hotEngine) warmViews(tb testing.TB, name string, op func(v *View, out *hotOut) error) {
	tb.Helper()
	var out hotOut
	h.warm(tb, name, func() error {
		v := h.e.Acquire()
		defer v.Release()
		return op(v, &out)
	})
	procs := runtime.GOMAXPROCS(0)
	errs := make(chan error, 2*procs)
	var wg sync.WaitGroup
	for range 2 * procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out hotOut
			for range 3 {
				vs := make([]*View, 4)
				for i := range vs {
					vs[i] = h.e.Acquire()
					if err := op(vs[i], &out); err != nil {
						errs <- err
					}
				}
				for _, v := range vs {
					v.Release()
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
}
