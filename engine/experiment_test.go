package engine

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// expEngine is an engine over a fresh state store with config y, whose
// clock the test moves.
type expEngine struct {
	*Engine
	now atomic.Int64
}

func newExpEngine(t *testing.T, y string) *expEngine {
	t.Helper()
	c, err := ParseConfig([]byte(y), "exp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	x := &expEngine{}
	x.now.Store(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).Unix())
	now := func() time.Time { return time.Unix(x.now.Load(), 0) }
	st := openState(t, t.TempDir(), index.StateOptions{Now: now})
	x.Engine = newEngine(t, Options{Config: c, Now: now}, st, "")
	return x
}

func (x *expEngine) decide(t *testing.T, page, visitor, q string) Decision {
	t.Helper()
	v := x.Acquire()
	defer v.Release()
	var d Decision
	if err := v.Decide(&DecideRequest{Page: []byte(page), Visitor: []byte(visitor), Q: []byte(q), UserAgent: []byte("Mozilla/5.0")}, &d); err != nil {
		t.Fatal(err)
	}
	d.DecisionID = append([]byte(nil), d.DecisionID...)
	d.Visitor = append([]byte(nil), d.Visitor...)
	return d
}

// beacon is a conversion (or exposure) event as a browser sends it.
func beacon(visitor string, d Decision, typ model.EventType, goal string, value float64) index.StateEvent {
	ev := index.StateEvent{User: []byte(visitor), Type: typ, RecID: d.DecisionID, Goal: []byte(goal)}
	if value != 0 {
		ev.Value, ev.HasValue = value, true
	}
	return ev
}

func (x *expEngine) ingest(evs []index.StateEvent, keyless bool) error {
	for i := range evs {
		if evs[i].TS == 0 {
			evs[i].TS = x.now.Load()
		}
	}
	return x.Ingest(evs, nil, keyless)
}

func (x *expEngine) results(t *testing.T, exp string, req ResultsRequest) *ExperimentResult {
	t.Helper()
	r, err := x.Results([]byte(exp), req)
	if err != nil {
		t.Fatal(err)
	}
	checkFinite(t, r)
	return r
}

// checkFinite fails on a rate outside [0, 1], more converters than
// exposed, or a statistic that is not finite.
func checkFinite(t *testing.T, r *ExperimentResult) {
	t.Helper()
	arms := func(a Arm) {
		if a.Conversions > a.Exposures || (a.Rate != nil && (*a.Rate < 0 || *a.Rate > 1)) {
			t.Fatalf("arm %+v of %+v", a, r)
		}
	}
	stats := func(ps ...*float64) {
		for _, p := range ps {
			if p != nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
				t.Fatalf("a statistic is %v in %+v", *p, r)
			}
		}
	}
	for _, v := range r.Variants {
		arms(v.Arm)
		stats(v.Rate, v.Lift, v.LiftLow, v.LiftHigh, v.SeqLow, v.SeqHigh, v.PBeat, v.PBest, v.Loss)
	}
	for _, rr := range r.Rules {
		arms(rr.Treated)
		arms(rr.Held)
		stats(rr.Lift, rr.LiftLow, rr.LiftHigh, rr.SeqLow, rr.SeqHigh, rr.PBeat)
	}
}

const twoGoals = `pages:
  lp:
    experiment: cta
    variants:
      - {id: a, weight: 1}
      - {id: b, weight: 1}
    goals:
      - {id: contact, primary: true, max_value: 1000}
      - {id: download}
`

// A visitor converts once per goal however often the beacon comes: 40
// visitors each replaying theirs 1,000 times (100 requests of 10) leave
// 40 converters at most, each once, and the value of one conversion.
func TestReplayedBeacons(t *testing.T) {
	x := newExpEngine(t, twoGoals)
	for i := range 40 {
		vis := fmt.Sprintf("v%d", i)
		d := x.decide(t, "lp", vis, "")
		batch := make([]index.StateEvent, MaxKeylessEvents)
		for r := 0; r < 1000/MaxKeylessEvents; r++ {
			for j := range batch {
				batch[j] = beacon(vis, d, model.EventConversion, "", 200)
			}
			if err := x.ingest(batch, true); err != nil {
				t.Fatalf("replay %d of %s: %v", r, vis, err)
			}
		}
	}
	r := x.results(t, "cta", ResultsRequest{})
	a, b := r.Variants[0], r.Variants[1]
	if a.Exposures+b.Exposures != 40 || a.Conversions != a.Exposures || b.Conversions != b.Exposures ||
		a.Revenue != 200*a.Exposures || b.Revenue != 200*b.Exposures || r.Goal != "contact" {
		t.Fatalf("after replays: %+v %+v", a, b)
	}
	// The other goal is counted apart, once too.
	d := x.decide(t, "lp", "v0", "")
	for range 3 {
		must(t, x.ingest([]index.StateEvent{beacon("v0", d, model.EventConversion, "download", 0)}, true))
	}
	r = x.results(t, "cta", ResultsRequest{Goal: "download"})
	if n := r.Variants[0].Conversions + r.Variants[1].Conversions; n != 1 {
		t.Fatalf("download converters %v; want 1", n)
	}
}

// Keyed events add a visitor's values up to the goal's max_value; a value
// above it, or an unknown goal, fails the batch naming the event and
// stores nothing.
func TestConversionValues(t *testing.T) {
	x := newExpEngine(t, twoGoals)
	d := x.decide(t, "lp", "v1", "")
	for range 4 {
		must(t, x.ingest([]index.StateEvent{beacon("v1", d, model.EventConversion, "contact", 300)}, false))
	}
	r := x.results(t, "cta", ResultsRequest{})
	v := r.Variants[0]
	if d.Variant == "b" {
		v = r.Variants[1]
	}
	if v.Conversions != 1 || v.Revenue != 1000 {
		t.Fatalf("4 × 300 capped at 1000: %+v", v.Arm)
	}
	for _, c := range []struct {
		ev   index.StateEvent
		want string
	}{
		{beacon("v1", d, model.EventConversion, "contact", 1e300), `event 2: value: 1e+300 is outside 0 to max_value 1000 of goal "contact"`},
		{beacon("v1", d, model.EventConversion, "", -1), "event 2: value: -1 is outside"},
		{beacon("v1", d, model.EventConversion, "signup", 0), `event 2: goal: experiment "cta" has no goal "signup"; its goals: contact, download`},
	} {
		ok := beacon("v2", x.decide(t, "lp", "v2", ""), model.EventConversion, "download", 0)
		err := x.ingest([]index.StateEvent{ok, c.ev}, true)
		if KindOf(err) != Invalid || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("got %v; want %q", err, c.want)
		}
	}
	r = x.results(t, "cta", ResultsRequest{Goal: "download"})
	if r.Variants[0].Conversions+r.Variants[1].Conversions != 0 {
		t.Fatalf("a refused batch counted: %+v", r.Variants)
	}
}

// Keyless requests: at most MaxKeylessEvents events, of the beacon
// types, with a decision id signed for the visitor and not expired.
func TestKeylessBeacons(t *testing.T) {
	x := newExpEngine(t, twoGoals)
	d := x.decide(t, "lp", "v1", "")
	conv := beacon("v1", d, model.EventConversion, "", 0)
	if err := x.ingest(make([]index.StateEvent, MaxKeylessEvents+1), true); KindOf(err) != TooLarge {
		t.Fatalf("11 keyless events: %v", err)
	}
	for name, ev := range map[string]index.StateEvent{
		"pageview":              {User: []byte("v1"), Type: model.EventPageview, Page: []byte("/x")},
		"another visitor":       beacon("v2", d, model.EventConversion, "", 0),
		"forged":                {User: []byte("v1"), Type: model.EventConversion, RecID: append(append([]byte(nil), d.DecisionID[:len(d.DecisionID)-1]...), '0')},
		"view without rec_id":   {User: []byte("v1"), Type: model.EventView, Item: []byte("i1")},
		"purchase with a sig'd": beacon("v1", d, model.EventPurchase, "", 10),
	} {
		if name == "forged" && d.DecisionID[len(d.DecisionID)-1] == '0' {
			ev.RecID[len(ev.RecID)-1] = '1'
		}
		if err := x.ingest([]index.StateEvent{ev}, true); err != ErrUnauthorized {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := x.ingest([]index.StateEvent{{User: []byte("v1"), Type: model.EventClick, Item: []byte("i1"), Placement: []byte("home"), RecID: []byte("r1")}}, true); err != nil {
		t.Fatalf("a recommendation's click: %v", err)
	}
	// 29 days on the id is taken; 31 days on it has expired.
	x.now.Add(29 * 86400)
	if err := x.ingest([]index.StateEvent{conv}, true); err != nil {
		t.Fatalf("29 days on: %v", err)
	}
	x.now.Add(2 * 86400)
	if err := x.ingest([]index.StateEvent{conv}, true); err != ErrUnauthorized {
		t.Fatalf("31 days on: %v", err)
	}
	// With the key it is an event like any other.
	if err := x.ingest([]index.StateEvent{conv}, false); err != nil {
		t.Fatal(err)
	}
}

// Concurrent conversions of one visitor count once.
func TestConcurrentConversions(t *testing.T) {
	x := newExpEngine(t, twoGoals)
	d := x.decide(t, "lp", "v1", "")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				if err := x.ingest([]index.StateEvent{beacon("v1", d, model.EventConversion, "", 0), beacon("v1", d, model.EventConversion, "download", 0)}, false); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, goal := range []string{"contact", "download"} {
		r := x.results(t, "cta", ResultsRequest{Goal: goal})
		if n := r.Variants[0].Conversions + r.Variants[1].Conversions; n != 1 {
			t.Fatalf("%s: %v converters", goal, n)
		}
	}
}

// With exposure: event, a visitor is exposed at their first exposure
// event, once; a conversion before it counts for nothing.
func TestExposureEvents(t *testing.T) {
	x := newExpEngine(t, `pages:
  lp:
    experiment: cta
    exposure: event
    variants:
      - {id: a, weight: 1}
      - {id: b, weight: 1}
      - {id: sales, weight: 0}
    rules:
      - {if: 'keyword contains "営業"', variant: sales}
`)
	// A rule's decision is no exposure to the split.
	rd := x.decide(t, "lp", "v9", "営業")
	must(t, x.ingest([]index.StateEvent{beacon("v9", rd, model.EventExposure, "", 0)}, true))
	d := x.decide(t, "lp", "v1", "")
	must(t, x.ingest([]index.StateEvent{beacon("v1", d, model.EventConversion, "", 0)}, true))
	r := x.results(t, "cta", ResultsRequest{})
	if rd.Reason != reasonRule {
		t.Fatalf("the rule did not decide: %+v", rd)
	}
	sum := func(r *ExperimentResult) (e, c float64) {
		for _, v := range r.Variants {
			e, c = e+v.Exposures, c+v.Conversions
		}
		return e, c
	}
	if e, c := sum(r); e+c != 0 {
		t.Fatalf("before the exposure event: %+v", r.Variants)
	}
	for range 5 {
		must(t, x.ingest([]index.StateEvent{beacon("v1", d, model.EventExposure, "", 0)}, true))
	}
	must(t, x.ingest([]index.StateEvent{beacon("v1", d, model.EventConversion, "", 0)}, true))
	r = x.results(t, "cta", ResultsRequest{})
	if e, c := sum(r); e != 1 || c != 1 {
		t.Fatalf("exposed %v, converted %v; want 1 and 1", e, c)
	}
}

// A rule with a holdback: of 20k matching visitors, 10% are held back on
// the control, sticky; the rule's variant converts 6%, the control 4%;
// the results show the rule's lift with intervals that exclude 0, apart
// from the split (which none of them entered).
func TestRuleHoldback(t *testing.T) {
	x := newExpEngine(t, `pages:
  lp:
    experiment: cta
    variants:
      - {id: a, weight: 1}
      - {id: b, weight: 1}
      - {id: sales, weight: 0}
    rules:
      - {id: sales_kw, if: 'keyword contains "営業"', variant: sales, holdback: 0.1}
`)
	const n = 20000
	held := 0
	var batch []index.StateEvent
	for i := 0; i < n; i++ {
		vis := fmt.Sprintf("k%d", i)
		d := x.decide(t, "lp", vis, "営業 成約率改善")
		rate := 0.06
		switch {
		case d.Reason == reasonHoldback && d.Variant == "a":
			held++
			rate = 0.04
		case d.Reason != reasonRule || d.Variant != "sales":
			t.Fatalf("%s: %+v", vis, d)
		}
		if i < 50 {
			if again := x.decide(t, "lp", vis, "営業 成約率改善"); again.Reason != d.Reason {
				t.Fatalf("holdback not sticky: %+v then %+v", d, again)
			}
		}
		// Whether a visitor converts: their own bucket, not the arm's.
		if float64(model.Bucket("converts", []byte(vis))) < rate*model.Buckets {
			batch = append(batch, beacon(vis, d, model.EventConversion, "", 0))
		}
		if len(batch) == 500 {
			must(t, x.ingest(batch, false))
			batch = batch[:0]
		}
	}
	must(t, x.ingest(batch, false))
	r := x.results(t, "cta", ResultsRequest{})
	if len(r.Rules) != 1 {
		t.Fatalf("rules: %+v", r.Rules)
	}
	rr := r.Rules[0]
	t.Logf("rule %s: %v of %v converted; holdback %v of %v; lift %.3f [%.3f, %.3f], always valid [%.3f, %.3f], %s",
		rr.Rule, rr.Treated.Conversions, rr.Treated.Exposures, rr.Held.Conversions, rr.Held.Exposures,
		*rr.Lift, *rr.LiftLow, *rr.LiftHigh, *rr.SeqLow, *rr.SeqHigh, rr.Decision)
	if float64(held) < 0.08*n || float64(held) > 0.12*n || rr.Held.Exposures != float64(held) || rr.Treated.Exposures != float64(n-held) {
		t.Fatalf("held back %d of %d: %+v", held, n, rr)
	}
	if *rr.LiftLow <= 0 || *rr.SeqLow <= 0 || rr.Decision != "better" {
		t.Fatalf("the rule's lift is not found: %+v", rr)
	}
	if r.Variants[0].Exposures+r.Variants[1].Exposures != 0 {
		t.Fatalf("rule visitors counted in the split: %+v", r.Variants)
	}
}

// Before the first exposure, and with exposures but no conversions, every
// statistic is absent with a note, never NaN.
func TestResultsEmpty(t *testing.T) {
	x := newExpEngine(t, twoGoals)
	r := x.results(t, "cta", ResultsRequest{})
	b := r.Variants[1]
	if b.Rate != nil || b.Lift != nil || b.PBest != nil || len(b.Notes) == 0 || r.SRM.P != nil {
		t.Fatalf("no exposures: %+v", r)
	}
	for i := range 10 {
		x.decide(t, "lp", fmt.Sprint("e", i), "")
	}
	r = x.results(t, "cta", ResultsRequest{})
	if b := r.Variants[1]; b.Exposures > 0 && (b.Rate == nil || *b.Rate != 0 || b.Lift != nil || b.PBest == nil || len(b.Notes) == 0) {
		t.Fatalf("no conversions: %+v", b)
	}
}

// A phase starts when the config changes what a visitor could see, and
// only then; a reload of the same config keeps it.
func TestPhases(t *testing.T) {
	x := newExpEngine(t, twoGoals)
	x.decide(t, "lp", "v1", "")
	x.SetConfig(x.Config())
	if r := x.results(t, "cta", ResultsRequest{}); r.Phase != 1 || len(r.Phases) != 1 {
		t.Fatalf("same config: phase %d of %d", r.Phase, len(r.Phases))
	}
	c, err := ParseConfig([]byte(strings.Replace(twoGoals, "{id: b, weight: 1}", "{id: b, weight: 3}", 1)), "b.yaml")
	must(t, err)
	x.now.Add(3600)
	x.SetConfig(c)
	r := x.results(t, "cta", ResultsRequest{})
	if r.Phase != 2 || len(r.Phases) != 2 || r.PhaseStart != x.now.Load() || r.Variants[0].Exposures+r.Variants[1].Exposures != 0 {
		t.Fatalf("after a weight change: %+v", r)
	}
	// v1 is sticky and counted once in phase 2 too.
	d := x.decide(t, "lp", "v1", "")
	x.decide(t, "lp", "v1", "")
	r = x.results(t, "cta", ResultsRequest{})
	if d.Reason != reasonSticky || r.Variants[0].Exposures+r.Variants[1].Exposures != 1 {
		t.Fatalf("v1 in phase 2: %+v, %+v", d, r.Variants)
	}
	if r1 := x.results(t, "cta", ResultsRequest{Phase: 1}); r1.Variants[0].Exposures+r1.Variants[1].Exposures != 1 {
		t.Fatalf("phase 1: %+v", r1.Variants)
	}
}

// A placement with variants is an experiment: each visitor sees one
// version, sticky; clicks and purchases carrying the placement count per
// visitor for the version they saw, with the click-through rate of the
// events beside it.
func TestPlacementVariants(t *testing.T) {
	c, err := ParseConfig([]byte(`placements:
  home:
    strategy: personal
    k: 5
    variants:
      - {id: personal, weight: 1}
      - {id: popular, weight: 1, strategy: popular}
`), "p.yaml")
	must(t, err)
	e, _ := testEngine(t, Options{Config: c})
	// 400 customers of the shop: their personal recommendations are not
	// popular fills.
	var users []string
	seen := map[string]bool{}
	readEventFile(t, shopFile(t, shopEventsFile), func(x *model.Event) {
		if u := string(x.User); !seen[u] && len(users) < 400 {
			seen[u] = true
			users = append(users, u)
		}
	})
	if len(users) != 400 {
		t.Fatalf("%d customers in the shop; want 400", len(users))
	}
	variants := map[string]int{}
	var batch []index.StateEvent
	for _, user := range users {
		v := e.Acquire()
		var r Recs
		must(t, v.Recommend(&RecRequest{Placement: []byte("home"), User: []byte(user)}, &r))
		variant, fallback := r.Variant, r.Fallback()
		item := []byte(v.ItemID(r.Picks[0].Item))
		var again Recs
		must(t, v.Recommend(&RecRequest{Placement: []byte("home"), User: []byte(user)}, &again))
		v.Release()
		if r.Experiment != "home" || again.Variant != variant || (variant == "popular") != fallback {
			t.Fatalf("%s: %+v then %+v", user, r, again)
		}
		variants[variant]++
		rate := map[string]float64{"personal": 0.3, "popular": 0.1}[variant]
		click := index.StateEvent{User: []byte(user), Item: item, Type: model.EventImpression, Placement: []byte("home"), RecID: []byte("r")}
		batch = append(batch, click)
		if float64(model.Bucket("clicks", []byte(user))) < rate*model.Buckets {
			click.Type = model.EventClick
			batch = append(batch, click, click) // a double click is one clicker, two clicks
			click.Type, click.Value, click.HasValue = model.EventPurchase, 25, true
			batch = append(batch, click)
		}
	}
	for i := range batch {
		batch[i].TS = e.Now().Unix()
	}
	must(t, e.Ingest(batch, nil, false))
	r, err := e.Results([]byte("home"), ResultsRequest{})
	must(t, err)
	checkFinite(t, r)
	p, q := r.Variants[0], r.Variants[1]
	t.Logf("personal: %v of %v clicked (%v clicks of %v impressions); popular: %v of %v (%v of %v)",
		p.Conversions, p.Exposures, p.Clicks, p.Impressions, q.Conversions, q.Exposures, q.Clicks, q.Impressions)
	if r.Goal != "click" || p.Exposures != float64(variants["personal"]) || q.Exposures != float64(variants["popular"]) ||
		p.Impressions != p.Exposures || p.Clicks != 2*p.Conversions || *p.CTR != p.Clicks/p.Impressions || *p.Rate < 0.2 || *q.Rate > 0.2 {
		t.Fatalf("results: %+v", r.Variants)
	}
	if q.Decision != "worse" && q.Decision != "inconclusive" {
		t.Fatalf("popular's decision: %+v", q.Comparison)
	}
	r, err = e.Results([]byte("home"), ResultsRequest{Goal: "purchase"})
	must(t, err)
	if r.Variants[0].Revenue != 25*p.Conversions {
		t.Fatalf("purchases: %+v", r.Variants[0])
	}
}

// An event sent again with its event_id (a client's retry after a
// timeout) is acknowledged and neither stored nor counted twice, within a
// batch or across batches; events without an id are not deduplicated.
func TestEventIDs(t *testing.T) {
	x := newExpEngine(t, twoGoals)
	d := x.decide(t, "lp", "v1", "")
	conv := beacon("v1", d, model.EventConversion, "download", 0)
	conv.ID = []byte("ev-1")
	view := index.StateEvent{User: []byte("v1"), Type: model.EventPageview, Page: []byte("/pricing"), ID: []byte("ev-2")}
	plain := index.StateEvent{User: []byte("v1"), Type: model.EventPageview, Page: []byte("/pricing")}
	for i, c := range []struct {
		batch   []index.StateEvent
		repeats int
	}{
		{[]index.StateEvent{conv, view, view}, 1},
		{[]index.StateEvent{view, conv, plain}, 2},
		{[]index.StateEvent{plain}, 0},
	} {
		for j := range c.batch {
			c.batch[j].TS = x.now.Load()
		}
		n, err := x.IngestEvents(c.batch, nil, false)
		if err != nil || n != c.repeats {
			t.Fatalf("batch %d: %d repeats, %v; want %d", i+1, n, err, c.repeats)
		}
	}
	logged := 0
	_, err := x.state.ScanEvents(0, func(_ uint64, ev *index.StateEvent) error { logged++; return nil })
	must(t, err)
	v := x.Acquire()
	defer v.Release()
	p, err := v.Profile([]byte("v1"))
	must(t, err)
	if logged != 4 {
		t.Fatalf("logged %d events; want 4 (two with ids, two without)", logged)
	}
	if got := p.Count(model.DimPage, "/pricing", 86400, p.Now); got != 3 {
		t.Fatalf("pricing pageviews in the profile %v; want 3", got)
	}
	r := x.results(t, "cta", ResultsRequest{Goal: "download"})
	if n := r.Variants[0].Conversions + r.Variants[1].Conversions; n != 1 {
		t.Fatalf("converters %v", n)
	}
}
