package bench

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestScenarioSite: the site mix has every kind of request, the one-call
// page view among them, in its weights; page views name the page, the
// visitor, both placements and an item of the catalog.
func TestScenarioSite(t *testing.T) {
	items := []string{"i1", "i2", "a b", "i4"}
	s, err := NewScenario("site", items, 50)
	if err != nil {
		t.Fatal(err)
	}
	s.Page = "lp x"
	tg := s.Targeter(7)
	kinds := map[string]int{}
	var tt Target
	const n = 20000
	for range n {
		tg(&tt)
		kinds[tt.Kind]++
		if tt.Kind != "page" {
			continue
		}
		u, err := url.Parse(tt.Path)
		if err != nil || u.Path != "/v1/page" || tt.Method != "GET" {
			t.Fatalf("page target %+v: %v", tt, err)
		}
		q := u.Query()
		if q.Get("page") != "lp x" || !strings.HasPrefix(q.Get("visitor"), "u") || q.Get("placements") != "home,product_page" || q.Get("k") != "4" {
			t.Fatalf("page target %s", tt.Path)
		}
		if it := q.Get("item"); it != "i1" && it != "i2" && it != "a b" && it != "i4" {
			t.Fatalf("page target %s: item %q not of the catalog", tt.Path, it)
		}
	}
	total := 0
	for _, st := range Scenarios["site"] {
		total += st.Weight
	}
	for _, st := range Scenarios["site"] {
		want := n * st.Weight / total
		if got := kinds[st.Kind]; got < want*8/10 || got > want*12/10 {
			t.Fatalf("%s: %d of %d; want about %d (%v)", st.Kind, got, n, want, kinds)
		}
	}
	if len(kinds) != 7 {
		t.Fatalf("kinds %v; want 7", kinds)
	}
}

// TestIntervals: seconds fold into intervals with their counts summed and
// the percentiles of the merged histograms, not the per-second ones
// averaged.
func TestIntervals(t *testing.T) {
	r := newReport(100, 5*time.Second)
	r.Start = time.Unix(1000, 0)
	add := func(sec int, lat time.Duration, status int) {
		r.add(result{intended: r.Start.Add(time.Duration(sec)*time.Second + time.Millisecond), latency: lat, status: status, kind: "x"})
	}
	// Second 0: 100 fast answers; second 1: 97 fast ones, two slow ones
	// (its p99) and a fast 500; second 2: 10 fast ones.
	for i := range 100 {
		add(0, 100*time.Microsecond, 200)
		if i < 97 {
			add(1, 100*time.Microsecond, 200)
		}
	}
	add(1, 50*time.Millisecond, 200)
	add(1, 50*time.Millisecond, 200)
	add(1, 100*time.Microsecond, 500)
	for range 10 {
		add(2, 200*time.Microsecond, 200)
	}
	ps := r.Intervals(2 * time.Second)
	if len(ps) != 2 {
		t.Fatalf("%d intervals: %+v", len(ps), ps)
	}
	if p := ps[0]; p.Second != 0 || p.Requests != 200 || p.Errors != 1 || p.P50 != 100 || p.P99 != 100 {
		t.Fatalf("first interval %+v", p)
	}
	if p := ps[1]; p.Second != 2 || p.Requests != 10 || p.Errors != 0 || p.P99 != 200 {
		t.Fatalf("second interval %+v", p)
	}
	// One second an interval: second 1's slow answers are its p99, which
	// the two seconds together do not have.
	if ps := r.Intervals(time.Second); len(ps) != 3 || ps[1].P99 < 49000 {
		t.Fatalf("by second %+v", ps)
	}
	var b strings.Builder
	if err := WriteIntervals(&b, ps, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 4 || lines[0] != "per 2s" || strings.Join(strings.Fields(lines[2]), " ") != "1 0 2 200 1 100 100" {
		t.Fatalf("table:\n%s", b.String())
	}

	// Points of 100 ms (-interval 100ms) fold ten to a second.
	f := newReport(100, 2*time.Second)
	f.Start, f.interval = time.Unix(1000, 0), 100*time.Millisecond
	for i := range 15 {
		f.add(result{intended: f.Start.Add(time.Duration(i)*100*time.Millisecond + time.Millisecond), latency: 100 * time.Microsecond, status: 200, kind: "x"})
	}
	if ps := f.Intervals(time.Second); len(ps) != 2 || ps[0].Requests != 10 || ps[1].Requests != 5 || ps[1].Second != 1 || ps[1].At != 1 {
		t.Fatalf("100 ms points by second %+v", ps)
	}
}
