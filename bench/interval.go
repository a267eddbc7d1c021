package bench

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Intervals folds the attack's series points (one per AttackOptions.Interval,
// by intended send time) into intervals of d, rounded down to a whole
// number of points and at least one: the requests, errors, p50 and p99 of
// each, as Points whose Second and At are the interval's start. The
// percentiles are those of the points' histograms merged (2 significant
// digits), not a mean of per-point figures: a soak's p99 per minute. A
// report read back from JSON has no histograms to fold and gives none.
func (r *Report) Intervals(d time.Duration) []Point {
	n := max(int(d/r.step()), 1)
	var ps []Point
	for i := 0; i < len(r.secs); i += n {
		h := hdrhistogram.New(histMin, histMax, 2)
		at := time.Duration(i) * r.step()
		p := Point{Second: int(at / time.Second), At: at.Seconds()}
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
	var b strings.Builder
	fmt.Fprintf(&b, "per %v\n", d)
	fmt.Fprintf(&b, "%-8s %5s %5s %9s %7s %9s %9s\n", "interval", "from", "to", "requests", "errors", "p50_us", "p99_us")
	for i, p := range ps {
		fmt.Fprintf(&b, "%-8d %5g %5g %9d %7d %9.0f %9.0f\n", i+1, p.At, p.At+d.Seconds(), p.Requests, p.Errors, p.P50, p.P99)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
