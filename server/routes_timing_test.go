package server

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkCheckQuery is the unknown-parameter check: the hot path's
// one parameter (similar?k=10), and /v1/page's longest list with eight
// parameters, the last known ones at its end.
func BenchmarkCheckQuery(b *testing.B) {
	for _, c := range []struct {
		name, query string
		ep          int
	}{
		{"similar", "k=10", epSimilar},
		{"page", "page=lp_consulting&visitor=v1&placements=home,product_page&item=50&k=6&cart=1,2&exclude=3&utm_id=7", epPage},
	} {
		b.Run(c.name, func(b *testing.B) {
			var args fasthttp.Args
			args.Parse(c.query)
			e := &endpoints[c.ep]
			b.ReportAllocs()
			for b.Loop() {
				if err := checkQuery(&args, e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
