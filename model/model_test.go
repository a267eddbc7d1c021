package model

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestCoScore(t *testing.T) {
	f := func(s Similarity, cij, ci, cj, n, want float64) {
		t.Helper()
		if got := CoScore(s, cij, ci, cj, n); math.Abs(got-want) > 1e-9 {
			t.Errorf("CoScore(%v, %v, %v, %v, %v) = %v; want %v", s, cij, ci, cj, n, got, want)
		}
	}
	f(SimCount, 3, 5, 7, 100, 3)
	f(SimJaccard, 3, 5, 7, 100, 3.0/9)
	f(SimCosine, 4, 4, 16, 100, 0.5)
	f(SimLift, 2, 10, 20, 100, 1)
	f(SimJaccard, 0, 5, 7, 100, 0)
	// LLR of an independent table is 0; of a strongly associated one, large.
	f(SimLLR, 10, 100, 100, 1000, 0)
	// G² by hand: k = [[10, 0], [0, 990]].
	k11, k22 := 10.0, 990.0
	want := 2 * (k11*math.Log(k11*1000/(10*10)) + k22*math.Log(k22*1000/(990*990)))
	f(SimLLR, 10, 10, 10, 1000, want)
}

func TestAssociationStats(t *testing.T) {
	got := AssociationStats(736, 1903, 2513, 9835)
	if math.Abs(got.Support-0.074835) > 1e-6 || math.Abs(got.Confidence-0.386758) > 1e-6 || math.Abs(got.Lift-1.513634) > 1e-6 {
		t.Fatalf("other vegetables ⇒ whole milk: %+v; arules prints support 0.074835, confidence 0.386758, lift 1.513634", got)
	}
}

func TestDecay(t *testing.T) {
	f := func(age, hl, want float64) {
		t.Helper()
		if got := Decay(age, hl); math.Abs(got-want) > 1e-12 {
			t.Errorf("Decay(%v, %v) = %v; want %v", age, hl, got, want)
		}
	}
	f(0, 10, 1)
	f(10, 10, 0.5)
	f(30, 10, 0.125)
	f(-5, 10, 1)
	f(1e9, 0, 1)
}

func TestTopK(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var top TopK
	for _, k := range []int{0, 1, 5, 50, 500} {
		all := make([]Neighbour, 300)
		for i := range all {
			all[i] = Neighbour{Item: uint32(i), Score: float32(r.IntN(40))} // many ties
		}
		top.Reset(k)
		for _, n := range all {
			top.Push(n)
		}
		got := top.AppendSorted(nil)
		sort.Slice(all, func(i, j int) bool { return Better(all[i], all[j]) })
		want := all[:min(k, len(all))]
		if len(got) != len(want) {
			t.Fatalf("k=%d: %d kept", k, len(got))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("k=%d: at %d got %v want %v", k, i, got[i], want[i])
			}
		}
	}
}

func TestScorer(t *testing.T) {
	s := NewScorer(10)
	s.Exclude(3)
	s.Add([]Neighbour{{Item: 1, Score: 1}, {Item: 2, Score: 2}, {Item: 3, Score: 9}}, 2)
	s.Add([]Neighbour{{Item: 1, Score: 3}, {Item: 4, Score: 0.5}, {Item: 99, Score: 9}}, 1)
	s.AddScore(5, -1)
	got := s.AppendTop(nil, 10)
	want := []Neighbour{{Item: 1, Score: 5}, {Item: 2, Score: 4}, {Item: 4, Score: 0.5}}
	if len(got) != len(want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v; want %v", got, want)
		}
	}
	if got := s.AppendTop(nil, 1); len(got) != 1 || got[0].Item != 1 {
		t.Fatalf("top 1: %v", got)
	}
	// Reset forgets scores and exclusions.
	s.Reset(20)
	if s.Len() != 0 || s.Excluded(3) {
		t.Fatal("Reset kept state")
	}
	s.Add([]Neighbour{{Item: 3, Score: 1}, {Item: 15, Score: 2}}, 1)
	if got := s.AppendTop(nil, 5); len(got) != 2 || got[0].Item != 15 || got[1].Item != 3 {
		t.Fatalf("after reset: %v", got)
	}
}

// TestScorerMatchesNaive compares the heap selection with a full sort.
func TestScorerMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 500
	s := NewScorer(n)
	for round := 0; round < 20; round++ {
		s.Reset(n)
		sums := make([]float64, n)
		ex := map[uint32]bool{}
		for i := 0; i < 10; i++ {
			x := uint32(r.IntN(n))
			s.Exclude(x)
			ex[x] = true
		}
		for l := 0; l < 8; l++ {
			w := r.Float64() * 3
			var list []Neighbour
			for i := 0; i < 50; i++ {
				list = append(list, Neighbour{Item: uint32(r.IntN(n)), Score: float32(r.IntN(5))})
			}
			s.Add(list, w)
			for _, nb := range list {
				sums[nb.Item] += w * float64(nb.Score)
			}
		}
		var want []uint32
		for i, v := range sums {
			if v > 0 && !ex[uint32(i)] {
				want = append(want, uint32(i))
			}
		}
		sort.Slice(want, func(i, j int) bool {
			if sums[want[i]] != sums[want[j]] {
				return sums[want[i]] > sums[want[j]]
			}
			return want[i] < want[j]
		})
		got := s.AppendTop(nil, 20)
		if len(got) != min(20, len(want)) {
			t.Fatalf("round %d: %d results; want %d", round, len(got), min(20, len(want)))
		}
		for i := range got {
			if got[i].Item != want[i] {
				t.Fatalf("round %d: at %d got %d want %d", round, i, got[i].Item, want[i])
			}
		}
	}
}

func TestAppendAffinity(t *testing.T) {
	w := Weights{View: 1, Cart: 3, Rating: 1, RatingValue: true, HalfLife: 10}
	nan := float32(math.NaN())
	evs := []HistoryEvent{
		{Item: 7, Type: EventView, TS: 100, Value: nan},
		{Item: 2, Type: EventRating, TS: 90, Value: 4},
		{Item: 7, Type: EventCart, TS: 90, Value: nan},
		{Item: 5, Type: EventImpression, TS: 100, Value: nan},
	}
	got := w.AppendAffinity(nil, evs, 100)
	want := []ItemWeight{{Item: 2, Weight: 2}, {Item: 7, Weight: 2.5}}
	if len(got) != len(want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	for i := range want {
		if got[i].Item != want[i].Item || math.Abs(got[i].Weight-want[i].Weight) > 1e-12 {
			t.Fatalf("got %v; want %v", got, want)
		}
	}
}

func TestMetrics(t *testing.T) {
	m := NewMetricsAcc(3, 10)
	rel := map[uint32]bool{1: true, 3: true, 8: true, 9: true}
	is := func(i uint32) bool { return rel[i] }
	// hits at ranks 1 and 3 out of 4 relevant
	m.AddUser([]Neighbour{{Item: 1}, {Item: 2}, {Item: 3}, {Item: 8}}, is, 4)
	// no hit
	m.AddUser([]Neighbour{{Item: 4}}, is, 4)
	r := m.Result()
	dcg := 1 + 1/math.Log2(4)
	idcg := 1 + 1/math.Log2(3) + 1/math.Log2(4)
	f := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-12 {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
	f("precision", r.Precision, (2.0/3)/2)
	f("recall", r.Recall, (2.0/4)/2)
	f("map", r.MAP, ((1+2.0/3)/4)/2)
	f("ndcg", r.NDCG, dcg/idcg/2)
	f("coverage", r.Coverage, 4.0/10)
	if r.Users != 2 {
		t.Errorf("users = %d", r.Users)
	}
}

func TestEASE(t *testing.T) {
	// Two items always together, a third alone: B links the pair only.
	// X rows: {0,1}, {0,1}, {2}
	g := []float64{2, 2, 0, 2, 2, 0, 0, 0, 1}
	b, err := EASE(g, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	// P = (G+I)^-1 for the 2×2 block [[3,2],[2,3]]: [[3,-2],[-2,3]]/5, so
	// B01 = -P01/P11 = 2/3.
	if math.Abs(b[1]-2.0/3) > 1e-12 || math.Abs(b[3]-2.0/3) > 1e-12 || b[0] != 0 || b[2] != 0 || b[8] != 0 {
		t.Fatalf("B = %v", b)
	}
	if _, err := EASE(g[:4], 3, 1); err == nil {
		t.Fatal("short gram accepted")
	}
}

func TestParse(t *testing.T) {
	for name, want := range similarityNames {
		got, err := ParseSimilarity(name)
		if err != nil || got != want || got.String() != name {
			t.Errorf("ParseSimilarity(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseSimilarity("pearson"); err == nil {
		t.Error("unknown similarity accepted")
	}
	for et := EventUnknown + 1; et < eventTypeCount; et++ {
		got, ok := ParseEventType([]byte(et.String()))
		if !ok || got != et {
			t.Errorf("ParseEventType(%q) = %v, %v", et.String(), got, ok)
		}
	}
}
