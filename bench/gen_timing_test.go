package bench

import (
	"io"
	"strconv"
	"testing"
)

// genStatsSink keeps the benchmark result alive.
var genStatsSink GenStats

// countWriter counts the bytes written to it.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// BenchmarkGen measures Gen writing to io.Discard; bytes/s is the events CSV.
func BenchmarkGen(b *testing.B) {
	for _, events := range []int64{10_000, 100_000, 1_000_000} {
		b.Run(strconv.FormatInt(events, 10), func(b *testing.B) {
			o := GenOptions{Events: events}
			var cw countWriter
			if _, err := Gen(&cw, io.Discard, o); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(cw.n)
			b.ReportAllocs()
			for b.Loop() {
				st, err := Gen(io.Discard, io.Discard, o)
				if err != nil {
					b.Fatal(err)
				}
				genStatsSink = st
			}
		})
	}
}
