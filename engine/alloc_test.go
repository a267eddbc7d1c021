//go:build !race

package engine

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestAllocs pins the allocation budget of the hot paths: with the lists
// cached and the pooled Views grown, every answer (Acquire, the call,
// Release) allocates nothing.
func TestAllocs(t *testing.T) {
	h := newHotEngine(t)
	rec := func(name string, req RecRequest, call func(v *View, req *RecRequest, out *Recs) error) {
		t.Helper()
		h.allocs(t, name, func(v *View, out *hotOut) error { return call(v, &req, &out.recs) })
	}
	rec("Similar", RecRequest{Item: []byte("i44"), K: 10}, (*View).Similar)
	rec("BoughtTogether", RecRequest{Item: []byte("i90"), K: 5}, (*View).BoughtTogether)
	rec("Popular", RecRequest{K: 10}, (*View).Popular)
	rec("Personal 20 events", RecRequest{K: 10}, func(v *View, req *RecRequest, out *Recs) error {
		return v.Personal(hotUser20, req, out)
	})
	rec("Recommend product_page", RecRequest{Placement: []byte("product_page"), Item: []byte("i90"), User: hotViewer}, (*View).Recommend)
	rec("Recommend home", RecRequest{Placement: []byte("home"), User: hotViewer, K: 10}, (*View).Recommend)
	decide := func(name string, req DecideRequest) {
		t.Helper()
		out := h.allocs(t, name, func(v *View, out *hotOut) error { return v.Decide(&req, &out.d) })
		if out.d.Reason != "sticky" && out.d.Reason != "rule" {
			t.Errorf("%s: reason %s", name, out.d.Reason)
		}
	}
	// A returning visitor's landing-page decision: stored assignment,
	// rules (outcome cached, the segment rule reads the profile).
	decide("Decide sticky", DecideRequest{Page: []byte("lp_consulting"), Visitor: []byte("alloc-1"), Q: []byte("seo")})
	decide("Decide keyword rule", DecideRequest{Page: []byte("lp_consulting"), Visitor: []byte("alloc-2"), Q: []byte("営業 成約率")})
	decide("Decide segment rule", DecideRequest{Page: []byte("lp_consulting"), Visitor: hotLead})
	// A lead's segments: profile read from Pebble, decoded, five rules.
	out := h.allocs(t, "Segments", func(v *View, out *hotOut) error {
		var err error
		out.segs, err = v.Segments(hotLead)
		return err
	})
	if !out.segs.has(h.e.Config().segmentIndex["info_gathering"]) {
		t.Errorf("segments of the lead: %v", out.segs)
	}
	// A page view: decision, two placements, segments.
	preq := PageRequest{Page: []byte("lp_consulting"), Placements: [][]byte{[]byte("home"), []byte("product_page")},
		Decide: DecideRequest{Visitor: hotViewer}, Rec: RecRequest{Item: []byte("i90"), K: 6}}
	out = h.allocs(t, "Page", func(v *View, out *hotOut) error { return v.Page(&preq, &out.page) })
	if p := &out.page; len(p.Recs) != 2 || len(p.Recs[0].Picks) != 6 || len(p.Recs[1].Picks) != 6 || !p.Decided {
		t.Errorf("page: %+v", p)
	}
}

// allocs warms op up (hotEngine.warmViews), then fails the test when
// Acquire, op and Release allocate. It logs the exact count per call
// too, which AllocsPerRun rounds down: Ristretto's Get allocates a batch
// of 64 key hashes for its policy every 64 reads (ring.go), a fraction of
// an allocation per call. It returns the answer.
func (h *hotEngine) allocs(t *testing.T, name string, op func(v *View, out *hotOut) error) *hotOut {
	t.Helper()
	out := new(hotOut)
	call := func() error {
		v := h.e.Acquire()
		defer v.Release()
		return op(v, out)
	}
	h.warmViews(t, name, op)
	n := testing.AllocsPerRun(200, func() {
		if err := call(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	})
	const runs = 1000
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for range runs {
		_ = call()
	}
	runtime.ReadMemStats(&b)
	t.Logf("%s: %v allocs per call (%.3f exactly)", name, n, float64(b.Mallocs-a.Mallocs)/runs)
	if n > 0 {
		t.Errorf("%s: %v allocs per call; budget 0", name, n)
	}
	return out
}

// TestAllocsRetention: with retention on, a returning visitor's decision
// still allocates nothing, and so does one that renews their assignment
// (one write, a day apart in production; every call here).
func TestAllocsRetention(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).Unix())
	h := newHotEngineWith(t, Options{
		Now:       func() time.Time { return time.Unix(now.Load(), 0) },
		Retention: Retention{Anonymous: time.Hour, Assignments: time.Hour, Interval: -1},
	})
	req := DecideRequest{Page: []byte("lp_consulting"), Visitor: []byte("alloc-ret"), Q: []byte("seo")}
	out := h.allocs(t, "Decide sticky, retention on", func(v *View, out *hotOut) error { return v.Decide(&req, &out.d) })
	if out.d.Reason != reasonSticky {
		t.Fatalf("reason %s", out.d.Reason)
	}
	key := []byte("as/" + out.d.Experiment + "/alloc-ret")
	val, _, err := h.e.state.AppendMeta(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	before := decodeAssignment(val).at
	out = h.allocs(t, "Decide sticky, renewing", func(v *View, out *hotOut) error {
		now.Add(h.e.renewal)
		return v.Decide(&req, &out.d)
	})
	val, _, err = h.e.state.AppendMeta(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	if a := decodeAssignment(val); out.d.Reason != reasonSticky || a.at <= before || a.at != now.Load()-h.e.renewal {
		t.Fatalf("renewed: reason %s, record at %d (before %d, clock %d)", out.d.Reason, a.at, before, now.Load())
	}
}
