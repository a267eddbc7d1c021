package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 10 minutes with 3
// significant digits (HDR histogram: constant memory, exact to 0.1%).
const (
	histMin = 1
	histMax = 600_000_000
	histSig = 3
)

// Report is what an attack measured. It is JSON-encodable: `bench compare`
// reads two of them back.
type Report struct {
	Start      time.Time `json:"start"`
	TargetRate float64   `json:"target_rate"` // 0: closed loop
	Duration   float64   `json:"duration_seconds"`
	// Scheduled (open loop) counts the hits the pacer scheduled before
	// the end; Requests those sent (answered or failed). They differ only
	// when the generator fell more than a Timeout behind, or the attack
	// was cut short.
	Scheduled int64            `json:"scheduled,omitempty"`
	Requests  int64            `json:"requests"`
	Rate      float64          `json:"achieved_rate"`
	OK        int64            `json:"ok"` // 2xx
	Status    map[string]int64 `json:"status"`
	Errors    map[string]int64 `json:"errors"`
	Latency   Percentiles      `json:"latency_us"`
	// WrkLatency (closed loop only) is Latency with the correction for
	// coordinated omission that wrk applies before it prints; compare
	// wrk's percentiles with these (see wrkCorrected).
	WrkLatency  *Percentiles     `json:"latency_wrk_corrected_us,omitempty"`
	Connections int              `json:"connections,omitempty"` // closed loop
	Kinds       map[string]int64 `json:"kinds"`
	// KindLatency is Latency for each kind of request of a scenario
	// (after the warm-up, like Latency), when it has more than one.
	KindLatency map[string]Percentiles `json:"kind_latency_us,omitempty"`
	Workers     int                    `json:"workers,omitempty"`
	// Series holds one point per Interval of the attack (by each
	// request's intended send time in open loop, its send in closed loop).
	Series   []Point `json:"series"`
	Interval float64 `json:"interval_seconds"`
	// Warmup: the requests due in the attack's first Warmup seconds are
	// in Series and the counts, not in Latency and Curve.
	Warmup float64 `json:"warmup_seconds,omitempty"`
	// Curve is the latency percentile distribution, for plotting.
	Curve []CurvePoint `json:"curve"`

	planned  time.Duration
	interval time.Duration // of Series; 0: a second
	warmup   time.Duration // requests due before it stay out of Latency
	hist     *hdrhistogram.Histogram
	kinds    map[string]*hdrhistogram.Histogram // KindLatency's
	secs     []*second
	status   [600]int64 // by HTTP status, folded into Status at finish
}

// Percentiles of latency in microseconds.
type Percentiles struct {
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99.9"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
	Count int64   `json:"count"`
}

// Point is one interval of an attack (a second unless
// AttackOptions.Interval says otherwise).
type Point struct {
	Second int     `json:"second"`     // the whole second At falls in
	At     float64 `json:"at_seconds"` // its start, from the attack's

	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P50      float64 `json:"p50_us"`
	P99      float64 `json:"p99_us"`
}

// CurvePoint is one point of the latency percentile curve.
type CurvePoint struct {
	Percentile float64 `json:"percentile"`
	Latency    float64 `json:"latency_us"`
}

type second struct {
	requests, errors int64
	hist             *hdrhistogram.Histogram
}

func newReport(rate float64, planned time.Duration) *Report {
	return &Report{
		TargetRate: rate, planned: planned,
		Status: map[string]int64{}, Errors: map[string]int64{}, Kinds: map[string]int64{},
		hist: hdrhistogram.New(histMin, histMax, histSig), kinds: map[string]*hdrhistogram.Histogram{},
	}
}

// kindHist returns the latency histogram of kind, made on first use.
func (r *Report) kindHist(kind string) *hdrhistogram.Histogram {
	h := r.kinds[kind]
	if h == nil {
		h = hdrhistogram.New(histMin, histMax, histSig)
		r.kinds[kind] = h
	}
	return h
}

func (r *Report) add(res result) {
	r.Requests++
	r.Kinds[res.kind]++
	us := max(res.latency.Microseconds(), 1)
	since := res.intended.Sub(r.Start)
	if since >= r.warmup {
		_ = r.hist.RecordValue(min(us, histMax))
		_ = r.kindHist(res.kind).RecordValue(min(us, histMax))
	}
	sec := int(since / r.step())
	if sec < 0 {
		sec = 0
	}
	for len(r.secs) <= sec {
		r.secs = append(r.secs, &second{hist: hdrhistogram.New(histMin, histMax, 2)})
	}
	s := r.secs[sec]
	s.requests++
	_ = s.hist.RecordValue(min(us, histMax))
	if res.err != errNone {
		r.Errors[errKindNames[res.err]]++
		s.errors++
		return
	}
	if res.status >= 0 && res.status < len(r.status) {
		r.status[res.status]++
	}
	if res.status >= 200 && res.status < 300 {
		r.OK++
	} else {
		s.errors++
	}
}

// merge adds the raw counts of p, a worker's part of the same attack.
func (r *Report) merge(p *Report) {
	r.Requests += p.Requests
	r.OK += p.OK
	for k, v := range p.Kinds {
		r.Kinds[k] += v
	}
	for k, v := range p.Errors {
		r.Errors[k] += v
	}
	for i, v := range p.status {
		r.status[i] += v
	}
	r.hist.Merge(p.hist)
	for k, h := range p.kinds {
		r.kindHist(k).Merge(h)
	}
	for i, s := range p.secs {
		for len(r.secs) <= i {
			r.secs = append(r.secs, &second{hist: hdrhistogram.New(histMin, histMax, 2)})
		}
		r.secs[i].requests += s.requests
		r.secs[i].errors += s.errors
		r.secs[i].hist.Merge(s.hist)
	}
}

// step is the length of an interval of Series.
func (r *Report) step() time.Duration {
	if r.interval <= 0 {
		return time.Second
	}
	return r.interval
}

func (r *Report) finish(elapsed time.Duration) {
	for code, n := range r.status {
		if n > 0 {
			r.Status[strconv.Itoa(code)] = n
		}
	}
	r.Duration = elapsed.Seconds()
	if r.Duration > 0 {
		r.Rate = float64(r.Requests) / r.Duration
	}
	r.Latency = percentiles(r.hist)
	r.KindLatency = nil
	if len(r.kinds) > 1 {
		r.KindLatency = make(map[string]Percentiles, len(r.kinds))
		for k, h := range r.kinds {
			r.KindLatency[k] = percentiles(h)
		}
	}
	r.Warmup = r.warmup.Seconds()
	r.WrkLatency = nil
	if r.TargetRate == 0 && r.Connections > 0 && r.Requests >= int64(r.Connections) {
		interval := elapsed.Microseconds() / (r.Requests / int64(r.Connections))
		p := percentiles(wrkCorrected(r.hist, interval))
		r.WrkLatency = &p
	}
	r.Series = r.Series[:0]
	r.Interval = r.step().Seconds()
	for i, s := range r.secs {
		at := time.Duration(i) * r.step()
		r.Series = append(r.Series, Point{Second: int(at / time.Second), At: at.Seconds(), Requests: s.requests, Errors: s.errors,
			P50: float64(s.hist.ValueAtQuantile(50)), P99: float64(s.hist.ValueAtQuantile(99))})
	}
	r.Curve = r.Curve[:0]
	for _, q := range []float64{0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100} {
		r.Curve = append(r.Curve, CurvePoint{Percentile: q, Latency: float64(r.hist.ValueAtQuantile(q))})
	}
}

// wrkCorrected returns a copy of h with the correction wrk (4.x,
// stats_correct) applies to its closed loop's latencies before it prints
// them: with interval the mean time between two requests of a connection
// (elapsed / (requests / connections)), a latency n of at least twice the
// interval also counts n−interval, n−2·interval, … down to just above the
// interval, the requests the connection would have sent while it waited.
// The copy answers what wrk would print for the same answers; the raw
// histogram is what bench measured.
func wrkCorrected(h *hdrhistogram.Histogram, interval int64) *hdrhistogram.Histogram {
	c := h.Clone()
	if interval <= 0 {
		return c
	}
	for _, b := range h.Distribution() {
		n := b.From // the value recorded below 2048 µs; within 0.1% above
		if b.Count == 0 || n < 2*interval {
			continue
		}
		for m := n - interval; m > interval; m -= interval {
			_ = c.RecordValues(m, b.Count)
		}
	}
	return c
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50: float64(h.ValueAtQuantile(50)), P90: float64(h.ValueAtQuantile(90)),
		P99: float64(h.ValueAtQuantile(99)), P999: float64(h.ValueAtQuantile(99.9)),
		Max: float64(h.Max()), Mean: h.Mean(), Count: h.TotalCount(),
	}
}

// ErrorCount is the number of failed requests: transport errors and
// non-2xx answers.
func (r *Report) ErrorCount() int64 { return r.Requests - r.OK }

// WriteText writes the report for a terminal.
func (r *Report) WriteText(w io.Writer) error { return r.writeText(w, false) }

// WriteTextSeries is WriteText followed by a line for each interval of
// Series: its requests, errors, p50 and p99.
func (r *Report) WriteTextSeries(w io.Writer) error { return r.writeText(w, true) }

func (r *Report) writeText(w io.Writer, series bool) error {
	var b strings.Builder
	mode := fmt.Sprintf("open loop at %.1f/s", r.TargetRate)
	if r.TargetRate == 0 {
		mode = "closed loop"
	}
	fmt.Fprintf(&b, "mode        %s\n", mode)
	fmt.Fprintf(&b, "duration    %.2fs\n", r.Duration)
	fmt.Fprintf(&b, "requests    %d", r.Requests)
	if r.TargetRate > 0 {
		fmt.Fprintf(&b, " of %d scheduled", r.Scheduled)
	}
	fmt.Fprintf(&b, " (%.1f/s achieved", r.Rate)
	if r.TargetRate > 0 {
		fmt.Fprintf(&b, ", %.1f%% of target", 100*r.Rate/r.TargetRate)
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "success     %d (%.2f%%)\n", r.OK, 100*float64(r.OK)/float64(max(r.Requests, 1)))
	fmt.Fprintf(&b, "status      %s\n", counts(r.Status))
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "errors      %s\n", counts(r.Errors))
	}
	l := r.Latency
	fmt.Fprintf(&b, "latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s\n",
		us(l.P50), us(l.P90), us(l.P99), us(l.P999), us(l.Max), us(l.Mean))
	if w := r.WrkLatency; w != nil {
		fmt.Fprintf(&b, "as wrk     p50 %s  p90 %s  p99 %s  p99.9 %s  (wrk's coordinated-omission correction, to compare with wrk)\n",
			us(w.P50), us(w.P90), us(w.P99), us(w.P999))
	}
	if len(r.Kinds) > 1 {
		fmt.Fprintf(&b, "mix         %s\n", counts(r.Kinds))
	}
	if len(r.KindLatency) > 1 {
		for _, k := range slices.Sorted(maps.Keys(r.KindLatency)) {
			l := r.KindLatency[k]
			fmt.Fprintf(&b, "  %-13s p50 %s  p99 %s  p99.9 %s  max %s\n", k, us(l.P50), us(l.P99), us(l.P999), us(l.Max))
		}
	}
	if series && len(r.Series) > 0 {
		fmt.Fprintf(&b, "%-11s %8s %8s %10s %10s\n", "from", "requests", "errors", "p50", "p99")
		for _, p := range r.Series {
			fmt.Fprintf(&b, "%-11s %8d %8d %10s %10s\n", fmt.Sprintf("%.3gs", p.At), p.Requests, p.Errors, us(p.P50), us(p.P99))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func counts(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// us formats microseconds for people.
func us(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// ReadReport reads a JSON report.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("cannot parse report: %w", err)
	}
	return &r, nil
}

// Compare writes two reports side by side with the ratio B/A.
func Compare(w io.Writer, nameA, nameB string, a, b *Report) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-14s %14s %14s %8s\n", "", trunc(nameA, 14), trunc(nameB, 14), "B/A")
	row := func(name string, x, y float64, f func(float64) string) {
		ratio := "-"
		if x != 0 {
			ratio = fmt.Sprintf("%.2fx", y/x)
		}
		fmt.Fprintf(&sb, "%-14s %14s %14s %8s\n", name, f(x), f(y), ratio)
	}
	num := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	row("rate/s", a.Rate, b.Rate, num)
	row("requests", float64(a.Requests), float64(b.Requests), num)
	row("errors", float64(a.ErrorCount()), float64(b.ErrorCount()), num)
	row("p50", a.Latency.P50, b.Latency.P50, us)
	row("p90", a.Latency.P90, b.Latency.P90, us)
	row("p99", a.Latency.P99, b.Latency.P99, us)
	row("p99.9", a.Latency.P999, b.Latency.P999, us)
	row("max", a.Latency.Max, b.Latency.Max, us)
	_, err := io.WriteString(w, sb.String())
	return err
}

func trunc(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n+1:]
	}
	return s
}
