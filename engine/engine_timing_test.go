package engine

import (
	"testing"
)

// The hot paths through a View, as a front end calls them: Acquire, one
// answer, Release. Lists are cached (warmed up) unless the name says Miss.
//
//	go test -run NONE -bench . -benchmem ./engine/

// benchRecs is the package-level sink of the benchmarks.
var benchRecs Recs

// runParallel runs f per iteration on parallel goroutines, each with its
// own answer memory, after warming it up.
func runParallel[T any](b *testing.B, h *hotEngine, f func(out *T) error) {
	b.Helper()
	var warm T
	h.warm(b, b.Name(), func() error { return f(&warm) }) // lists cached
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var out T
		for pb.Next() {
			if err := f(&out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPersonal20 blends a visitor's 20-event history over cached
// similar lists.
func BenchmarkPersonal20(b *testing.B) {
	h := newHotEngine(b)
	req := RecRequest{K: 10} // read only: shared by the goroutines
	runParallel(b, h, func(out *Recs) error {
		v := h.e.Acquire()
		defer v.Release()
		return v.Personal(hotUser20, &req, out)
	})
}

// BenchmarkPersonal20Computed is BenchmarkPersonal20 with the answer
// computed every time: the visitor's write generation moves before each
// call, as a new event of theirs would move it. It is the cost of a
// personal answer right after the visitor did something.
func BenchmarkPersonal20Computed(b *testing.B) {
	h := newHotEngine(b)
	req := RecRequest{K: 10}
	runParallel(b, h, func(out *Recs) error {
		h.e.touchUser(hotUser20)
		v := h.e.Acquire()
		defer v.Release()
		return v.Personal(hotUser20, &req, out)
	})
}

// BenchmarkPageComputed is BenchmarkPage with the lead's answers and
// segments computed every time (their write generation moves before each
// call; the assignment and the signature stay remembered).
func BenchmarkPageComputed(b *testing.B) {
	h := newHotEngine(b)
	req := PageRequest{Page: []byte("lp_consulting"), Placements: [][]byte{[]byte("home"), []byte("product_page")},
		Decide: DecideRequest{Visitor: hotLead}, Rec: RecRequest{Item: []byte("i90"), K: 6}}
	runParallel(b, h, func(out *PageResult) error {
		h.e.touchUser(hotLead)
		v := h.e.Acquire()
		defer v.Release()
		return v.Page(&req, out)
	})
}

// BenchmarkRecommendProductPage is the sample's product page for a
// visitor with a history: the item's similar list blended with the
// history's, at most 3 per category.
func BenchmarkRecommendProductPage(b *testing.B) {
	h := newHotEngine(b)
	req := RecRequest{Placement: []byte("product_page"), Item: []byte("i90"), User: hotViewer}
	runParallel(b, h, func(out *Recs) error {
		v := h.e.Acquire()
		defer v.Release()
		return v.Recommend(&req, out)
	})
}

// BenchmarkDecideSticky is a returning visitor's landing-page decision:
// stored assignment read, rules (the sample's keyword rules, outcome
// cached; its segment rule reads the profile).
func BenchmarkDecideSticky(b *testing.B) {
	h := newHotEngine(b)
	req := DecideRequest{Page: []byte("lp_consulting"), Visitor: []byte("bench-1"), Q: []byte("seo")}
	runParallel(b, h, func(out *Decision) error {
		v := h.e.Acquire()
		defer v.Release()
		return v.Decide(&req, out)
	})
}

// BenchmarkPage is one page view of a returning lead with a 10-event
// history: the landing-page decision, two placements and the segments.
func BenchmarkPage(b *testing.B) {
	h := newHotEngine(b)
	req := PageRequest{Page: []byte("lp_consulting"), Placements: [][]byte{[]byte("home"), []byte("product_page")},
		Decide: DecideRequest{Visitor: hotLead}, Rec: RecRequest{Item: []byte("i90"), K: 6}}
	runParallel(b, h, func(out *PageResult) error {
		v := h.e.Acquire()
		defer v.Release()
		return v.Page(&req, out)
	})
}

// BenchmarkSimilarMiss reads the similar list from Pebble on every call:
// the cache (1 byte) keeps nothing. Its allocations are the decoded list
// the cache would have kept.
func BenchmarkSimilarMiss(b *testing.B) {
	h := newHotEngineWith(b, Options{CacheBytes: 1})
	req := RecRequest{Item: []byte("i44"), K: 10}
	b.ReportAllocs()
	for i := 0; i < 3; i++ { // scratch memory grown
		v := h.e.Acquire()
		if err := v.Similar(&req, &benchRecs); err != nil {
			b.Fatal(err)
		}
		v.Release()
	}
	before := h.e.Stats().Lists
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var out Recs
		for pb.Next() {
			v := h.e.Acquire()
			err := v.Similar(&req, &out)
			v.Release()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	if st := h.e.Stats().Lists; st.Hits != before.Hits {
		b.Fatalf("the cache answered %d reads", st.Hits-before.Hits)
	}
}
