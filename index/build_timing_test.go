package index

import (
	"testing"

	"github.com/edgerec/edgerec/model"
)

var sinkList []model.Neighbour

// BenchmarkBuildML100k reads ML-100k events and catalog and publishes a
// default (EASE) snapshot: the "ML-100k build under 1 s".
func BenchmarkBuildML100k(b *testing.B) {
	events := sharedData(b, "ml100k_events.csv.gz")
	items := sharedData(b, "ml100k_items.csv.gz")
	b.ReportAllocs()
	for b.Loop() {
		bl, err := NewBuilder(BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := bl.ReadItemsFile(items); err != nil {
			b.Fatal(err)
		}
		if err := bl.ReadEventsFile(events); err != nil {
			b.Fatal(err)
		}
		if _, err := bl.Build(b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendList is one Pebble point read and decode of a 100-entry
// similar list: the cache-miss cost of the serving path.
func BenchmarkAppendList(b *testing.B) {
	s := buildSnapshot(b, BuildOptions{}, sharedData(b, "ml100k_items.csv.gz"), sharedData(b, "ml100k_events.csv.gz"))
	n := uint32(s.NumItems())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var dst []model.Neighbour
		i := uint32(0)
		for pb.Next() {
			var err error
			dst, err = s.AppendList(dst[:0], ListSimilar, i%n)
			if err != nil {
				b.Fatal(err)
			}
			i += 7
		}
		sinkList = dst
	})
}

func BenchmarkDecodeList(b *testing.B) {
	list := make([]model.Neighbour, 100)
	for i := range list {
		list[i] = model.Neighbour{Item: uint32(i * 3), Score: float32(100 - i), Count: uint32(i)}
	}
	enc := AppendList(nil, list)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	dst := make([]model.Neighbour, 0, 100)
	for b.Loop() {
		dst, _ = DecodeList(dst[:0], enc)
	}
	sinkList = dst
}
