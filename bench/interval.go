package bench

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Intervals folds the attack's seconds (by intended send time) into
// intervals of d, rounded down to whole seconds and at least one: the
// requests, errors, p50 and p99 of each, as Points whose Second is the
// interval's first. The percentiles are those of the seconds' histograms
// merged (2 significant digits), not a mean of per-second figures: a
// soak's p99 per minute. A report read back from JSON has no seconds to
// fold and gives none.
func (r *Report) Intervals(d time.Duration) []Point {
	n := max(int(d/time.Second), 1)
	var ps []Point
	for i := 0; i < len(r.secs); i += n {
		h := hdrhistogram.New(histMin, histMax, 2)
		p := Point{Second: i}
		for _, s := range r.secs[i:min(i+n, len(r.secs))] {
			p.Requests += s.requests
			p.Errors += s.errors
			h.Merge(s.hist)
		}
		p.P50, p.P99 = float64(h.ValueAtQuantile(50)), float64(h.ValueAtQuantile(99))
		ps = append(ps, p)
	}
	return ps
}

// WriteIntervals writes ps, intervals of d, as a table under a header
// naming d, one line each: "interval from to requests errors p50 p99"
// (seconds from the start; latencies in µs, for scripts to read).
func WriteIntervals(w io.Writer, ps []Point, d time.Duration) error {
	n := max(int(d/time.Second), 1)
	var b strings.Builder
	fmt.Fprintf(&b, "per %v\n", d)
	fmt.Fprintf(&b, "%-8s %5s %5s %9s %7s %9s %9s\n", "interval", "from", "to", "requests", "errors", "p50_us", "p99_us")
	for i, p := range ps {
		fmt.Fprintf(&b, "%-8d %5d %5d %9d %7d %9.0f %9.0f\n", i+1, p.Second, p.Second+n, p.Requests, p.Errors, p.P50, p.P99)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
