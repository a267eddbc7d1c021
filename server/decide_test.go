package server

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

type decision struct {
	Page, Experiment, Variant, Reason string
	DecisionID                        string `json:"decision_id"`
	Holdout                           bool
	Payload                           map[string]string
	Visitor                           string
	Exposure                          string // "event" on pages with exposure: event
}

func decide(t *testing.T, s *Server, query string, ua string) decision {
	t.Helper()
	code, body := do(t, s.testClient, "GET", "/v1/decide?"+query, "", "", "User-Agent", ua)
	if code != 200 {
		t.Fatalf("decide %s: %d %s", query, code, body)
	}
	var d decision
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("decide %s: %v: %s", query, err, body)
	}
	return d
}

func sampleConfig(t testing.TB) *engine.Config {
	t.Helper()
	c, err := engine.LoadConfig("../edgerec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The sample's B2B case: a visitor who searched 「営業 成約率改善」 gets the
// headline written for them, whether the term comes as q, utm_term, or in
// a search engine referrer, in full-width or half-width form.
func TestDecideRules(t *testing.T) {
	s, _ := testServer(t, engine.Options{Config: sampleConfig(t)}, Options{})
	const want = "営業成約率を向上させるためのマーケティング支援"
	for _, q := range []string{
		"q=" + url.QueryEscape("営業　成約率改善"),
		"utm_term=" + url.QueryEscape("営業 成約率 改善"),
		"ref=" + url.QueryEscape("https://www.google.co.jp/search?q="+url.QueryEscape("営業 成約率改善")+"&hl=ja"),
		"utm_campaign=sales-enablement",
	} {
		d := decide(t, s, "page=lp_consulting&visitor=v-rule&"+q, "Mozilla/5.0")
		if d.Variant != "sales_close_rate" || d.Reason != "rule" || d.Payload["headline"] != want || !strings.Contains(d.DecisionID, ".n") {
			t.Fatalf("%s: %+v", q, d)
		}
	}
	d := decide(t, s, "page=lp_consulting&visitor=v-plain&q=seo", "Mozilla/5.0")
	if d.Variant == "sales_close_rate" || d.Payload["headline"] != "マーケティングのプロ集団" {
		t.Fatalf("no rule match: %+v", d)
	}
	if d := decide(t, s, "page=lp_consulting&visitor=v-bot&q="+url.QueryEscape("営業 成約率"), "Googlebot/2.1"); d.Variant != "default" || d.Reason != "bot" {
		t.Fatalf("bot: %+v", d)
	}
	code, _ := do(t, s.testClient, "GET", "/v1/decide?page=nope&visitor=v", "", "")
	if code != 400 {
		t.Fatalf("unknown page: %d", code)
	}
	// No visitor id: one is made and set as a cookie.
	code, body := do(t, s.testClient, "GET", "/v1/decide?page=lp_consulting", "", "")
	if code != 200 || !strings.Contains(string(body), `"visitor":"`) {
		t.Fatalf("no visitor: %d %s", code, body)
	}
}

// inHoldout reports whether visitor is in the universal holdout of cfg,
// by the rule the engine applies (a visitor's bucket of seed "holdout").
func inHoldout(cfg *engine.Config, visitor string) bool {
	h := cfg.Holdout
	return h > 0 && len(visitor) > 0 && float64(model.Bucket("holdout", []byte(visitor))) < h*model.Buckets
}

func splitConfig(t *testing.T, weights [2]int, traffic float64, holdout float64) *engine.Config {
	t.Helper()
	y := fmt.Sprintf(`holdout: %v
pages:
  lp:
    experiment: cta
    traffic: %v
    variants:
      - id: a
        weight: %d
        payload: {cta: A}
      - id: b
        weight: %d
        payload: {cta: B}
`, holdout, traffic, weights[0], weights[1])
	c, err := engine.ParseConfig([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Assignments are sticky across a weight change and a ramp from 10% to
// 100% of traffic; the holdout takes its share; conversions with a
// decision_id reach the results.
func TestDecideSplitStickyResults(t *testing.T) {
	ts := newTestStack(t, engine.Options{Config: splitConfig(t, [2]int{50, 50}, 0.1, 0)}, Options{})
	s := ts.s
	first := map[string]string{}
	in := 0
	for v := 0; v < 2000; v++ {
		d := decide(t, s, fmt.Sprintf("page=lp&visitor=v%d", v), "Mozilla/5.0")
		if d.Reason == "split" {
			first[d.Visitor] = d.Variant
			in++
		} else if d.Reason != "not_in_experiment" || d.Variant != "a" {
			t.Fatalf("10%% traffic: %+v", d)
		}
	}
	if in < 140 || in > 260 {
		t.Fatalf("10%% traffic put %d of 2000 visitors in the experiment", in)
	}
	// Ramp to 100% and move the weights to 10/90: nobody already in moves.
	ts.e.SetConfig(splitConfig(t, [2]int{10, 90}, 1, 0))
	counts := map[string]int{}
	for v := 0; v < 2000; v++ {
		d := decide(t, s, fmt.Sprintf("page=lp&visitor=v%d", v), "Mozilla/5.0")
		if was, ok := first[d.Visitor]; ok && (d.Variant != was || d.Reason != "sticky") {
			t.Fatalf("visitor %s moved from %s to %+v", d.Visitor, was, d)
		}
		counts[d.Variant]++
	}
	// Of the 90% newly admitted, ~90% got b.
	if counts["b"] < 1500 {
		t.Fatalf("after the ramp: %v", counts)
	}
	// Conversions: every visitor of b converts, none of a.
	var body strings.Builder
	for v := 0; v < 2000; v++ {
		d := decide(t, s, fmt.Sprintf("page=lp&visitor=v%d", v), "Mozilla/5.0")
		if d.Variant == "b" {
			fmt.Fprintf(&body, `{"visitor":%q,"event":"conversion","decision_id":%q,"value":10}`+"\n", d.Visitor, d.DecisionID)
		}
		if body.Len() > 50000 {
			postEvents(t, s, body.String())
			body.Reset()
		}
	}
	postEvents(t, s, body.String())
	code, raw := do(t, s.testClient, "GET", "/v1/experiments/cta/results", "", "")
	var r engine.ExperimentResult
	if err := json.Unmarshal(raw, &r); code != 200 || err != nil {
		t.Fatalf("results: %d %s", code, raw)
	}
	// The weight change started phase 2: every visitor decided since is
	// exposed in it once, the sticky ones included.
	a, b := r.Variants[0], r.Variants[1]
	if r.Phase != 2 || r.CurrentPhase != 2 || len(r.Phases) != 2 || a.Exposures+b.Exposures != 2000 || b.Conversions != b.Exposures ||
		a.Conversions != 0 || b.Revenue != 10*b.Exposures || !a.Control || *b.Rate != 1 || *a.Rate != 0 {
		t.Fatalf("results: %s", raw)
	}
	// Phase 1 holds the 10% admitted before the change, none converted
	// (conversions count in the phase they happen in).
	_, raw = do(t, s.testClient, "GET", "/v1/experiments/cta/results?phase=1", "", "")
	if err := json.Unmarshal(raw, &r); err != nil || r.Phase != 1 || r.Variants[0].Exposures+r.Variants[1].Exposures != float64(in) ||
		r.Variants[1].Conversions != 0 {
		t.Fatalf("phase 1 (%d in): %s", in, raw)
	}
	if code, csv := do(t, s.testClient, "GET", "/v1/experiments/cta/results?format=csv", "", ""); code != 200 ||
		!strings.HasPrefix(string(csv), "phase,goal,variant,weight,exposures") || !strings.Contains(string(csv), "\n2,conversion,b,90,") {
		t.Fatalf("csv: %d %s", code, csv)
	}
	for _, q := range []string{"phase=3", "phase=x", "goal=nope"} {
		if code, body := do(t, s.testClient, "GET", "/v1/experiments/cta/results?"+q, "", ""); code != 400 || !strings.Contains(string(body), "bad_parameter") {
			t.Fatalf("%s: %d %s", q, code, body)
		}
	}
}

// A 52/48 split on 50/50 weights over 20k visitors is flagged as a sample
// ratio mismatch in the results.
func TestResultsSRM(t *testing.T) {
	ts := newTestStack(t, engine.Options{Config: splitConfig(t, [2]int{50, 50}, 1, 0)}, Options{})
	s := ts.s
	err := ts.state.SetMetaAndCount(nil, nil, []index.Counter{
		{Key: []byte("x/cta/1/v/a/exposures"), Delta: 10400}, {Key: []byte("x/cta/1/v/b/exposures"), Delta: 9600},
		{Key: []byte("x/cta/1/v/a/conv/conversion"), Delta: 312}, {Key: []byte("x/cta/1/v/b/conv/conversion"), Delta: 384},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, raw := do(t, s.testClient, "GET", "/v1/experiments/cta/results", "", "")
	var r engine.ExperimentResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	b := r.Variants[1]
	if !r.SRM.Flag || r.SRM.Chi2 != 32 || b.Lift == nil || *b.Lift <= 0 || b.PBeat == nil || *b.PBeat < 0.99 {
		t.Fatalf("results: %s", raw)
	}
}

func TestDecideHoldout(t *testing.T) {
	s, _ := testServer(t, engine.Options{Config: splitConfig(t, [2]int{50, 50}, 1, 0.1)}, Options{})
	held := 0
	for v := 0; v < 2000; v++ {
		d := decide(t, s, fmt.Sprintf("page=lp&visitor=h%d", v), "Mozilla/5.0")
		if d.Holdout {
			held++
			if d.Variant != "a" || d.Reason != "holdout" {
				t.Fatalf("holdout visitor: %+v", d)
			}
		}
	}
	if held < 140 || held > 260 {
		t.Fatalf("holdout 10%%: %d of 2000", held)
	}
}

// In bandit mode, traffic moves to the variant that converts better, as
// conversions arrive; visitors already assigned keep their variant.
func TestDecideBandit(t *testing.T) {
	c, err := engine.ParseConfig([]byte(`pages:
  lp:
    experiment: bandit1
    mode: bandit
    burn_in: 30
    min_share: 0.05
    variants:
      - id: a
        weight: 1
      - id: b
        weight: 1
`), "b.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Arms' counters re-read on every decision.
	s, _ := testServer(t, engine.Options{Config: c, BanditRefresh: time.Nanosecond}, Options{})
	rate := map[string]int{"a": 5, "b": 40} // conversions per 100
	shareB := func(from, to int) float64 {
		b := 0
		var body strings.Builder
		for v := from; v < to; v++ {
			d := decide(t, s, fmt.Sprintf("page=lp&visitor=bv%d", v), "Mozilla/5.0")
			if d.Variant == "b" {
				b++
			}
			if v%100 < rate[d.Variant] {
				fmt.Fprintf(&body, `{"visitor":%q,"event":"conversion","decision_id":%q}`+"\n", d.Visitor, d.DecisionID)
			}
		}
		postEvents(t, s, body.String())
		return float64(b) / float64(to-from)
	}
	early := shareB(0, 200)
	late := shareB(200, 600)
	t.Logf("share of the better variant: %.2f in the first 200 visitors, %.2f in the next 400", early, late)
	if late < 0.75 {
		t.Fatalf("bandit kept %.2f of traffic on the better variant", late)
	}
	if d := decide(t, s, "page=lp&visitor=bv3", "Mozilla/5.0"); d.Reason != "sticky" {
		t.Fatalf("bandit assignment not sticky: %+v", d)
	}
	_, raw := do(t, s.testClient, "GET", "/v1/experiments/bandit1/results", "", "")
	var r engine.ExperimentResult
	if err := json.Unmarshal(raw, &r); err != nil || r.Mode != "bandit" || len(r.Shares) == 0 || r.Shares[0].Shares["b"] < 0.6 {
		t.Fatalf("bandit results: %s", raw)
	}
}

// Holdout visitors get popular recommendations, never personal ones.
func TestHoldoutRecommendations(t *testing.T) {
	cfg := splitConfig(t, [2]int{50, 50}, 1, 0.5)
	s, c := testServer(t, engine.Options{Config: cfg}, Options{})
	var held, other string
	for v := 0; held == "" || other == ""; v++ {
		id := fmt.Sprintf("hv%d", v)
		if inHoldout(cfg, id) {
			held = id
		} else {
			other = id
		}
	}
	for _, id := range []string{held, other} {
		postEvents(t, s, fmt.Sprintf(`{"user_id":%q,"item_id":"i90","event":"view"}`+"\n"+`{"user_id":%q,"item_id":"i157","event":"view"}`, id, id))
	}
	for _, id := range []string{held, other} {
		for _, uri := range []string{"/v1/users/" + id + "/recommendations?k=5", "/v1/recommend?placement=home&k=5&user=" + id} {
			l := getList(t, c, uri)
			personal := l.Items[0].Reason == "history"
			if personal == (id == held) {
				t.Fatalf("%s (holdout %v): %+v", uri, id == held, l.Items)
			}
		}
	}
}

// A browser reports a conversion with navigator.sendBeacon, without the
// API key: accepted when the decision_id is the one this server signed for
// that visitor, refused otherwise.
func TestBeaconConversion(t *testing.T) {
	s, c := testServer(t, engine.Options{Config: splitConfig(t, [2]int{50, 50}, 1, 0)}, Options{})
	d := decide(t, s, "page=lp&visitor=beacon-1", "Mozilla/5.0")
	ok := fmt.Sprintf(`{"event":"conversion","visitor":"beacon-1","decision_id":%q}`, d.DecisionID)
	if code, body := do(t, c, "POST", "/v1/events", "", ok); code != 200 {
		t.Fatalf("signed beacon: %d %s", code, body)
	}
	tampered := strings.Replace(d.DecisionID, "."+d.Variant+".", ".zz.", 1)
	for _, body := range []string{
		fmt.Sprintf(`{"event":"conversion","visitor":"beacon-2","decision_id":%q}`, d.DecisionID), // someone else's id
		fmt.Sprintf(`{"event":"conversion","visitor":"beacon-1","decision_id":%q}`, tampered),
		`{"event":"view","user_id":"beacon-1","item_id":"i44"}`,
		`not json`,
	} {
		if code, resp := do(t, c, "POST", "/v1/events", "", body); code != 401 {
			t.Fatalf("unsigned %s: %d %s", body, code, resp)
		}
	}
	_, raw := do(t, c, "GET", "/v1/experiments/cta/results", "", "")
	if !strings.Contains(string(raw), `"conversions": 1`) {
		t.Fatalf("results after a beacon: %s", raw)
	}
}

// With exposure: event, a decision counts nothing until the page reports
// the exposure.
func TestExplicitExposure(t *testing.T) {
	c, err := engine.ParseConfig([]byte("pages:\n  lp:\n    experiment: ex\n    exposure: event\n    variants:\n      - id: a\n        weight: 1\n      - id: b\n        weight: 1\n"), "e.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, cl := testServer(t, engine.Options{Config: c}, Options{})
	d := decide(t, s, "page=lp&visitor=e1", "Mozilla/5.0")
	// The answer tells the page's script to report the exposure, on
	// /v1/page too.
	if d.Exposure != "event" {
		t.Fatalf("decision without exposure: event: %+v", d)
	}
	if code, body := do(t, cl, "GET", "/v1/page?page=lp&visitor=e1", "", ""); code != 200 || !strings.Contains(string(body), `"exposure":"event","visitor":"e1"}`) {
		t.Fatalf("page: %d %s", code, body)
	}
	exposures := func() float64 {
		_, raw := do(t, cl, "GET", "/v1/experiments/ex/results", "", "")
		var r engine.ExperimentResult
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		return r.Variants[0].Exposures + r.Variants[1].Exposures
	}
	if n := exposures(); n != 0 {
		t.Fatalf("exposures before the event: %v", n)
	}
	if code, body := do(t, cl, "POST", "/v1/events", "", fmt.Sprintf(`{"event":"exposure","visitor":"e1","decision_id":%q}`, d.DecisionID)); code != 200 {
		t.Fatalf("exposure beacon: %d %s", code, body)
	}
	if n := exposures(); n != 1 {
		t.Fatalf("exposures after the event: %v", n)
	}
}

// TestDecisionKeyPerEngine: each engine signs decision ids with its own
// key, so a beacon signed by one server is refused by another in the same
// process (the old server signed with the first server's key).
func TestDecisionKeyPerEngine(t *testing.T) {
	cfg := splitConfig(t, [2]int{50, 50}, 1, 0)
	a, _ := testServer(t, engine.Options{Config: cfg}, Options{})
	// The second server needs no snapshot for decisions and beacons (the
	// first holds the shop's).
	state, err := index.OpenState(t.TempDir(), index.StateOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = state.Close() })
	e, err := engine.New(engine.Options{Config: cfg}, state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	b, err := New(e, Options{APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown() })
	handle := func(s *Server, method, uri, body string) (int, []byte) {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(uri)
		ctx.Request.SetBodyString(body)
		s.Handle(&ctx)
		return ctx.Response.StatusCode(), append([]byte(nil), ctx.Response.Body()...)
	}
	da := decide(t, a, "page=lp&visitor=key-1", "Mozilla/5.0")
	code, body := handle(b, "GET", "/v1/decide?page=lp&visitor=key-1", "")
	var db decision
	if err := json.Unmarshal(body, &db); code != 200 || err != nil {
		t.Fatalf("decide on the second server: %d %s", code, body)
	}
	if da.DecisionID == db.DecisionID {
		t.Fatalf("two engines signed %s alike", da.DecisionID)
	}
	beacon := func(id string) string {
		return fmt.Sprintf(`{"event":"conversion","visitor":"key-1","decision_id":%q}`, id)
	}
	if code, body := handle(b, "POST", "/v1/events", beacon(da.DecisionID)); code != 401 {
		t.Fatalf("the first server's decision on the second: %d %s", code, body)
	}
	if code, body := handle(a, "POST", "/v1/events", beacon(db.DecisionID)); code != 401 {
		t.Fatalf("the second server's decision on the first: %d %s", code, body)
	}
	if code, body := handle(b, "POST", "/v1/events", beacon(db.DecisionID)); code != 200 {
		t.Fatalf("the second server's own decision: %d %s", code, body)
	}
}
