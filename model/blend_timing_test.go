package model

import (
	"math/rand/v2"
	"testing"
)

var sinkNeighbours []Neighbour

// BenchmarkBlendHistory blends 20 history items' 100-entry lists over a
// 50k-item catalog and takes the top 10: the personal-recommendation step
// of a request, without I/O.
func BenchmarkBlendHistory(b *testing.B) {
	const nItems = 50_000
	r := rand.New(rand.NewPCG(1, 1))
	lists := make([][]Neighbour, 20)
	for i := range lists {
		for j := 0; j < 100; j++ {
			lists[i] = append(lists[i], Neighbour{Item: uint32(r.IntN(nItems)), Score: r.Float32()})
		}
	}
	s := NewScorer(nItems)
	var out []Neighbour
	b.ReportAllocs()
	for b.Loop() {
		s.Reset(nItems)
		for i, l := range lists {
			s.Exclude(uint32(i))
			s.Add(l, 1/float64(i+1))
		}
		out = s.AppendTop(out[:0], 10)
	}
	sinkNeighbours = out
}

func BenchmarkTopK(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 2))
	in := make([]Neighbour, 5000)
	for i := range in {
		in[i] = Neighbour{Item: uint32(i), Score: r.Float32()}
	}
	var t TopK
	var out []Neighbour
	b.ReportAllocs()
	for b.Loop() {
		t.Reset(100)
		for _, n := range in {
			t.Push(n)
		}
		out = t.AppendSorted(out[:0])
	}
	sinkNeighbours = out
}

// BenchmarkBlendPersonal is a personal answer's blend as the engine runs
// it on the sample shop (1000 items, `make run`): 20 history items'
// 100-entry lists, which overlap (similar items of related items), into
// the top 40 candidates (4 k).
func BenchmarkBlendPersonal(b *testing.B) {
	const nItems = 1000
	r := rand.New(rand.NewPCG(3, 3))
	lists := make([][]Neighbour, 20)
	for i := range lists {
		base := r.IntN(nItems)
		for j := 0; j < 100; j++ {
			it := (base + int(r.NormFloat64()*80) + nItems) % nItems
			lists[i] = append(lists[i], Neighbour{Item: uint32(it), Score: r.Float32()})
		}
	}
	s := NewScorer(nItems)
	var out []Neighbour
	b.ReportAllocs()
	for b.Loop() {
		s.Reset(nItems)
		for i, l := range lists {
			s.Exclude(uint32(i * 7))
			s.Add(l, 1+float64(i%3))
		}
		out = s.AppendTop(out[:0], 40)
	}
	sinkNeighbours = out
}
