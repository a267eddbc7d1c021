package server

import (
	"context"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
)

func TestLatencyHistogram(t *testing.T) {
	f := func(ds []time.Duration, want string) {
		t.Helper()
		var h latencyHistogram
		for _, d := range ds {
			h.observe(d)
		}
		if got := string(h.appendPrometheus(nil, "x_seconds", `route="r"`)); got != want {
			t.Fatalf("observed %v:\n%s\nwant:\n%s", ds, got, want)
		}
	}
	f(nil, "")
	// A bound belongs to its bucket (le: less or equal); past 10 s is +Inf only.
	f([]time.Duration{30 * time.Microsecond, 50 * time.Microsecond, 51 * time.Microsecond, 3 * time.Millisecond, 11 * time.Second}, `x_seconds_bucket{route="r",le="5e-05"} 2
x_seconds_bucket{route="r",le="0.0001"} 3
x_seconds_bucket{route="r",le="0.00025"} 3
x_seconds_bucket{route="r",le="0.0005"} 3
x_seconds_bucket{route="r",le="0.001"} 3
x_seconds_bucket{route="r",le="0.0025"} 3
x_seconds_bucket{route="r",le="0.005"} 4
x_seconds_bucket{route="r",le="0.01"} 4
x_seconds_bucket{route="r",le="0.025"} 4
x_seconds_bucket{route="r",le="0.05"} 4
x_seconds_bucket{route="r",le="0.1"} 4
x_seconds_bucket{route="r",le="0.25"} 4
x_seconds_bucket{route="r",le="0.5"} 4
x_seconds_bucket{route="r",le="1"} 4
x_seconds_bucket{route="r",le="2.5"} 4
x_seconds_bucket{route="r",le="5"} 4
x_seconds_bucket{route="r",le="10"} 4
x_seconds_bucket{route="r",le="+Inf"} 5
x_seconds_sum{route="r"} 11.003131
x_seconds_count{route="r"} 5
`)
	// A clock step back counts in the first bucket and adds nothing to the sum.
	f([]time.Duration{-time.Second}, `x_seconds_bucket{route="r",le="5e-05"} 1
x_seconds_bucket{route="r",le="0.0001"} 1
x_seconds_bucket{route="r",le="0.00025"} 1
x_seconds_bucket{route="r",le="0.0005"} 1
x_seconds_bucket{route="r",le="0.001"} 1
x_seconds_bucket{route="r",le="0.0025"} 1
x_seconds_bucket{route="r",le="0.005"} 1
x_seconds_bucket{route="r",le="0.01"} 1
x_seconds_bucket{route="r",le="0.025"} 1
x_seconds_bucket{route="r",le="0.05"} 1
x_seconds_bucket{route="r",le="0.1"} 1
x_seconds_bucket{route="r",le="0.25"} 1
x_seconds_bucket{route="r",le="0.5"} 1
x_seconds_bucket{route="r",le="1"} 1
x_seconds_bucket{route="r",le="2.5"} 1
x_seconds_bucket{route="r",le="5"} 1
x_seconds_bucket{route="r",le="10"} 1
x_seconds_bucket{route="r",le="+Inf"} 1
x_seconds_sum{route="r"} 0
x_seconds_count{route="r"} 1
`)
}

// scrape returns /metrics as series → value, the series written as they
// are (`name{labels}`), in the order they came.
func scrape(t *testing.T, c *fasthttp.Client) (order []string, values map[string]float64) {
	t.Helper()
	code, body := do(t, c, "GET", "/metrics", "", "")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	values = map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("/metrics: bad line %q", line)
		}
		if _, dup := values[line[:i]]; dup {
			t.Fatalf("/metrics: %s twice", line[:i])
		}
		order = append(order, line[:i])
		values[line[:i]] = v
	}
	return order, values
}

// TestMetricsHistograms parses /metrics after traffic: each route's
// latency histogram has le buckets in increasing order, cumulative
// counts, a last bucket +Inf equal to _count, and a _sum.
func TestMetricsHistograms(t *testing.T) {
	ts := newTestStack(t, engine.Options{}, Options{})
	for range 5 {
		getList(t, ts.c, "/v1/items/i44/similar?k=5")
		getList(t, ts.c, "/v1/popular?k=5")
	}
	do(t, ts.c, "GET", "/nosuch", "", "")
	order, values := scrape(t, ts.c)
	type hist struct {
		les    []float64
		counts []float64
	}
	hists := map[string]*hist{} // by name and labels without le
	var series []string
	for _, s := range order {
		name, labels, ok := strings.Cut(s, "{")
		if !ok || !strings.HasSuffix(name, "_bucket") {
			continue
		}
		var le string
		var rest []string
		for _, l := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			if v, ok := strings.CutPrefix(l, "le="); ok {
				le = strings.Trim(v, `"`)
			} else {
				rest = append(rest, l)
			}
		}
		if le == "" {
			t.Fatalf("%s: a bucket without le", s)
		}
		key := strings.TrimSuffix(name, "_bucket") + "{" + strings.Join(rest, ",") + "}"
		h := hists[key]
		if h == nil {
			h = new(hist)
			hists[key] = h
			series = append(series, key)
		}
		x, err := strconv.ParseFloat(le, 64)
		if err != nil {
			t.Fatalf("%s: le %q", s, le)
		}
		h.les, h.counts = append(h.les, x), append(h.counts, values[s])
	}
	for _, want := range []string{`edgerec_request_duration_seconds{route="similar"}`, `edgerec_request_duration_seconds{route="popular"}`,
		`edgerec_request_duration_seconds{route="not_found"}`} {
		if hists[want] == nil {
			t.Fatalf("/metrics: no le buckets of %s; histograms %v", want, series)
		}
	}
	for _, key := range series {
		h := hists[key]
		for i := 1; i < len(h.les); i++ {
			if h.les[i] <= h.les[i-1] || h.counts[i] < h.counts[i-1] {
				t.Fatalf("%s: bucket le=%v (%v) after le=%v (%v): not increasing, or not cumulative", key, h.les[i], h.counts[i], h.les[i-1], h.counts[i-1])
			}
		}
		last := len(h.les) - 1
		if !math.IsInf(h.les[last], 1) {
			t.Fatalf("%s: last bucket le=%v; want +Inf", key, h.les[last])
		}
		name, labels, _ := strings.Cut(key, "{")
		if !strings.HasPrefix(name, "edgerec_") {
			continue // the Go runtime's histograms have no _sum (VictoriaMetrics/metrics go_metrics.go)
		}
		count, okc := values[name+"_count{"+labels]
		_, oks := values[name+"_sum{"+labels]
		if !okc || !oks || h.counts[last] != count {
			t.Fatalf("%s: last bucket %v, _count %v (there: %v), _sum there: %v", key, h.counts[last], count, okc, oks)
		}
	}
	if c := values[`edgerec_request_duration_seconds_count{route="similar"}`]; c != 5 {
		t.Fatalf("similar: _count %v; want 5", c)
	}
}

// TestSnapshotInfo: the served version is exact in a label; the float
// gauge rounds it.
func TestSnapshotInfo(t *testing.T) {
	ts := newTestStack(t, engine.Options{}, Options{})
	v := ts.e.SnapshotVersion()
	_, values := scrape(t, ts.c)
	info := `edgerec_snapshot_info{version="` + strconv.FormatUint(v, 10) + `"}`
	if values[info] != 1 {
		t.Fatalf("/metrics: no %s 1", info)
	}
	if g := values["edgerec_snapshot_version"]; g != float64(v) {
		t.Fatalf("edgerec_snapshot_version %v; want %v, as near as a float64 gets", g, float64(v))
	}
}

// TestCountersAcrossSnapshotSwap: no counter of /metrics goes down when a
// new snapshot is swapped in by POST /v1/admin/snapshots, and the
// version label follows the new snapshot.
func TestCountersAcrossSnapshotSwap(t *testing.T) {
	dir := t.TempDir()
	root, m1 := goldenSnapshot(t, dir)
	ts := newTestStack(t, engine.Options{}, Options{SnapshotRoot: root})
	traffic := func() {
		for _, uri := range []string{"/v1/popular?k=5", "/v1/items/i1/similar?k=5", "/v1/users/u1/recommendations?k=5", "/v1/nosuch"} {
			do(t, ts.c, "GET", uri, "", "")
		}
		do(t, ts.c, "POST", "/v1/events", testKey, `{"user_id":"u1","item_id":"i2","event":"view"}`)
		do(t, ts.c, "GET", "/v1/admin/status", "wrong", "")
	}
	traffic()
	traffic()
	_, before := scrape(t, ts.c)
	m2, err := index.NewBuilder(index.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.ReadEventsFile(filepath.Join(dir, "events.csv")); err != nil {
		t.Fatal(err)
	}
	built, err := m2.Build(root)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, ts.c, "POST", "/v1/admin/snapshots", testKey, ""); code != 200 ||
		!strings.Contains(string(body), `"loaded":`+strconv.FormatUint(built.Version, 10)) {
		t.Fatalf("swap to %d: %d %s", built.Version, code, body)
	}
	_, after := scrape(t, ts.c)
	counters := 0
	for s, v := range before {
		name, _, _ := strings.Cut(s, "{")
		if !strings.HasPrefix(name, "edgerec_") || !(strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_bucket") ||
			strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_sum")) {
			continue
		}
		counters++
		if w, ok := after[s]; !ok || w < v {
			t.Errorf("%s: %v before the swap, %v (there: %v) after", s, v, w, ok)
		}
	}
	if counters < 20 {
		t.Fatalf("only %d counters compared", counters)
	}
	for _, s := range []string{`edgerec_requests_total{route="popular"}`, "edgerec_events_ingested_total", "edgerec_auth_failures_total"} {
		if before[s] == 0 {
			t.Errorf("%s: 0 before the swap: the traffic did not count", s)
		}
	}
	if after[`edgerec_snapshot_info{version="`+strconv.FormatUint(built.Version, 10)+`"}`] != 1 ||
		after[`edgerec_snapshot_info{version="`+strconv.FormatUint(m1.Version, 10)+`"}`] != 0 {
		t.Fatalf("snapshot_info after the swap from %d to %d: %v", m1.Version, built.Version, after)
	}
}

// TestRetentionMetrics: /metrics counts what the retention sweeper
// deleted, per kind, and times its last pass; the state store's Pebble
// figures count the compaction that followed.
func TestRetentionMetrics(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).Unix())
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	ts := newTestStack(t, engine.Options{Now: clock, Retention: engine.Retention{
		Events: time.Hour, Interval: -1, Pause: -1, CompactBytes: -1,
	}}, Options{})
	post := func() {
		t.Helper()
		if code, body := do(t, ts.c, "POST", "/v1/events", testKey, `{"user_id":"u1","event":"pageview","page":"/a"}`); code != 200 {
			t.Fatalf("events: %d %s", code, body)
		}
	}
	_, values := scrape(t, ts.c)
	if v, ok := values[`edgerec_retention_deleted_rows_total{kind="anonymous"}`]; !ok || v != 0 {
		t.Fatalf("no zero count of anonymous deletions before a pass: %v %v", v, ok)
	}
	for range 3 {
		post()
	}
	if err := ts.e.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	now.Add(7200)
	post()
	if err := ts.e.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, values = scrape(t, ts.c)
	if v := values[`edgerec_retention_deleted_rows_total{kind="events"}`]; v != 3 {
		t.Fatalf("deleted events %v, want 3 (the log keeps its last)", v)
	}
	if values[`edgerec_retention_deleted_bytes_total{kind="events"}`] <= 0 || values["edgerec_retention_sweeps_total"] != 2 ||
		values["edgerec_retention_last_sweep_timestamp_seconds"] <= 0 || values["edgerec_retention_last_sweep_duration_seconds"] <= 0 {
		t.Fatalf("retention metrics %v", values)
	}
	// The sweeps compacted what they deleted (CompactBytes -1): Pebble's
	// figures of the state store show the flush and the compaction.
	for name, least := range map[string]float64{
		"edgerec_state_flushes_total": 1, "edgerec_state_compactions_total": 1, "edgerec_state_disk_bytes": 1,
		`edgerec_state_block_cache_requests_total{result="hit"}`: 0, `edgerec_state_block_cache_requests_total{result="miss"}`: 0,
		"edgerec_state_compaction_seconds_total": 0, "edgerec_state_l0_tables": 0, "edgerec_state_compaction_debt_bytes": 0,
	} {
		if v, ok := values[name]; !ok || v < least {
			t.Errorf("%s = %v (present %v), want at least %v", name, v, ok, least)
		}
	}
}
