package server

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
)

// Profiles and segments over HTTP: attributes, behaviour from events,
// segments on read, in a landing-page rule, in a placement pin, and the
// one-call page endpoint.
func TestSegmentsHTTP(t *testing.T) {
	cfg, err := engine.ParseConfig([]byte(`
placements:
  home:
    strategy: popular
    pin:
      - item: "i1"
        position: 1
        segment: info_gathering
segments:
  info_gathering:
    if: 'views("/pricing", "30d") >= 2 && views("/contact", "30d") == 0'
  big_company:
    if: 'num("employees") >= 1000'
pages:
  lp:
    experiment: lp-seg
    variants:
      - id: a
        weight: 1
      - id: guide
        weight: 0
    rules:
      - if: '"info_gathering" in segments'
        variant: guide
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_750_000_000, 0)
	s, c := testServer(t, engine.Options{Config: cfg, Now: func() time.Time { return now }}, Options{})
	post := func(body string) {
		t.Helper()
		if code, b := do(t, c, "POST", "/v1/events", testKey, body); code != 200 {
			t.Fatalf("events: %d %s", code, b)
		}
	}
	segments := func(user string) string {
		t.Helper()
		code, b := do(t, c, "GET", "/v1/users/"+user+"/segments", "", "")
		if code != 200 {
			t.Fatalf("segments: %d %s", code, b)
		}
		var r struct{ Segments []string }
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return strings.Join(r.Segments, " ")
	}
	if got := segments("lead-1"); got != "" {
		t.Fatalf("an unknown visitor is in %q", got)
	}
	post(fmt.Sprintf(`{"event":"pageview","visitor":"lead-1","page":"https://example.jp/pricing?utm_source=x","ts":%d}`, now.Unix()-5*86400))
	if got := segments("lead-1"); got != "" {
		t.Fatalf("after one pricing view: %q", got)
	}
	// The page needs no decision yet: the lead is not in the segment.
	d := decide(t, s, "page=lp&visitor=lead-1", "Mozilla/5.0")
	if d.Variant != "a" {
		t.Fatalf("before the segment: variant %s (%s)", d.Variant, d.Reason)
	}
	post(fmt.Sprintf(`{"event":"pageview","visitor":"lead-1","page":"/pricing/","ts":%d}`, now.Unix()-60))
	if got := segments("lead-1"); got != "info_gathering" {
		t.Fatalf("after two pricing views: %q", got)
	}
	if d := decide(t, s, "page=lp&visitor=lead-1", "Mozilla/5.0"); d.Variant != "guide" || d.Reason != "rule" {
		t.Fatalf("in the segment: variant %s (%s)", d.Variant, d.Reason)
	}
	code, b := do(t, c, "PUT", "/v1/users/lead-1", testKey, `{"company":"ACME","employees":5000,"consent_email":true,"role":null}`)
	if code != 200 {
		t.Fatalf("put: %d %s", code, b)
	}
	if got := segments("lead-1"); got != "big_company info_gathering" {
		t.Fatalf("with attributes: %q", got)
	}
	// The profile, with the key only.
	if code, _ := do(t, c, "GET", "/v1/users/lead-1", "", ""); code != 401 {
		t.Fatalf("profile without a key: %d", code)
	}
	code, b = do(t, c, "GET", "/v1/users/lead-1", testKey, "")
	var prof struct {
		Attributes map[string]any
		Counts     map[string]map[string]map[string]int
		Segments   []string
	}
	if code != 200 || json.Unmarshal(b, &prof) != nil {
		t.Fatalf("profile: %d %s", code, b)
	}
	if prof.Attributes["company"] != "ACME" || prof.Attributes["employees"] != 5000.0 || prof.Attributes["consent_email"] != true ||
		prof.Counts["30d"]["pages"]["/pricing"] != 2 || prof.Counts["1d"]["pages"]["/pricing"] != 1 || len(prof.Segments) != 2 {
		t.Fatalf("profile: %s", b)
	}
	// The pin for the segment, and everything in one call.
	code, b = do(t, c, "GET", "/v1/page?page=lp&visitor=lead-1&placements=home,product_page&item=i90&k=3", "", "")
	var page struct {
		Decision        decision
		Recommendations map[string]apiList
		Segments        []string
		Visitor         string
	}
	if code != 200 || json.Unmarshal(b, &page) != nil {
		t.Fatalf("page: %d %s", code, b)
	}
	if page.Decision.Variant != "guide" || page.Visitor != "lead-1" || len(page.Segments) != 2 ||
		len(page.Recommendations["home"].Items) != 3 || page.Recommendations["home"].Items[0].ID != "i1" ||
		len(page.Recommendations["product_page"].Items) != 3 {
		t.Fatalf("page: %s", b)
	}
	code, b = do(t, c, "GET", "/v1/page?visitor=someone-else&placements=home&k=3", "", "")
	if code != 200 || json.Unmarshal(b, &page) != nil || page.Recommendations["home"].Items[0].ID == "i1" || len(page.Segments) != 0 {
		t.Fatalf("page for a visitor outside the segment: %d %s", code, b)
	}
	// Logged in as lead-1 on another device: the rules, the pin and the
	// segments are lead-1's; the assignment stays the device's.
	page.Decision, page.Segments = decision{}, nil
	code, b = do(t, c, "GET", "/v1/page?page=lp&visitor=new-device&user=lead-1&placements=home&k=3", "", "")
	if code != 200 || json.Unmarshal(b, &page) != nil || page.Decision.Variant != "guide" || page.Decision.Visitor != "new-device" ||
		page.Recommendations["home"].Items[0].ID != "i1" || len(page.Segments) != 2 {
		t.Fatalf("page with user=: %d %s", code, b)
	}
	if d := decide(t, s, "page=lp&visitor=new-device", "Mozilla/5.0"); d.Variant != "a" {
		t.Fatalf("the device alone: variant %s (%s)", d.Variant, d.Reason)
	}
	// A first visit without an id gets one, in the cookie and the answer.
	code, b = do(t, c, "GET", "/v1/page?page=lp&placements=home", "", "")
	if code != 200 || json.Unmarshal(b, &page) != nil || page.Visitor == "" || page.Visitor != page.Decision.Visitor {
		t.Fatalf("first visit: %d %s", code, b)
	}
	// Bad input.
	for _, bad := range []struct{ method, uri, body string }{
		{"GET", "/v1/page", ""},
		{"GET", "/v1/page?placements=nope", ""},
		{"GET", "/v1/page?placements=a,b,c,d,e,f,g,h,i", ""},
		{"PUT", "/v1/users/x", `[1,2]`},
		{"PUT", "/v1/users/x", `{"a":{"nested":1}}`},
		{"PUT", "/v1/users/x", `{"a":`},
		{"PUT", "/v1/users/x", `{"` + strings.Repeat("k", 65) + `":1}`},
		{"PUT", "/v1/users/x", `{"a\u0007b":1}`},
		{"PUT", "/v1/users/x", "{\"k\xff\":1}"},
		{"PUT", "/v1/users/x", "{\"k\":\"v\xfe\"}"},
		{"GET", "/v1/page?page=lp&user=" + strings.Repeat("u", 300), ""},
		{"GET", "/v1/page?page=lp&user=%ff", ""},
		{"POST", "/v1/events", `{"event":"login","user_id":"alice","visitor":"` + strings.Repeat("v", 300) + `"}`},
	} {
		if code, b := do(t, c, bad.method, bad.uri, testKey, bad.body); code != 400 || !strings.Contains(string(b), `"error"`) {
			t.Errorf("%s %s %s: %d %s", bad.method, bad.uri, bad.body, code, b)
		}
	}
	if code, _ := do(t, c, "GET", "/v1/users/nobody", testKey, ""); code != 404 {
		t.Errorf("profile of nobody: %d", code)
	}
	// Thirty days later the pricing views have left the window.
	now = now.Add(31 * 24 * time.Hour)
	if got := segments("lead-1"); got != "big_company" {
		t.Fatalf("a month later: %q", got)
	}
}

// A /v1/page refused for its parameters counts no exposure.
func TestPageBadParamsNoExposure(t *testing.T) {
	ts := newTestStack(t, engine.Options{Config: sampleConfig(t)}, Options{})
	c := ts.c
	for _, q := range []string{"k=0", "k=abc", "price_min=x", "item=" + strings.Repeat("x", 300)} {
		if code, b := do(t, c, "GET", "/v1/page?page=lp_consulting&visitor=v-bad&placements=home&"+q, "", ""); code != 400 {
			t.Fatalf("%s: %d %s", q, code, b)
		}
	}
	var total float64
	for _, v := range []string{"default", "cta_consult", "sales_close_rate"} {
		n, _ := ts.state.Counter([]byte("x/lp-consulting-cta/" + v + "/exposures")) // the engine's counter key
		total += n
	}
	if total != 0 {
		t.Fatalf("%v exposures counted for refused requests", total)
	}
}

// TestPlacementFilters: exclude and only rules keep items out of a
// placement's answers, popular fill included, for everyone or for a
// segment's members (bad rules: TestParseConfigErrors).
func TestPlacementFilters(t *testing.T) {
	cfg, err := engine.ParseConfig([]byte(`
holdout: 0.5
placements:
  home:
    strategy: popular
    exclude:
      - category: electronics
    only:
      - category: audio
        segment: pricing
  typo:
    strategy: popular
    only:
      - category: audioo
segments:
  pricing:
    if: 'views("/pricing", "30d") >= 1'
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The items' categories, read before the server holds the snapshot.
	electronics, audio := map[string]bool{}, map[string]bool{}
	readSnapshot(t, func(snap *index.Snapshot) {
		e, _ := snap.Category([]byte("electronics"))
		a, _ := snap.Category([]byte("audio"))
		for n := range snap.NumItems() {
			info := snap.Item(uint32(n))
			electronics[info.ID] = slices.Contains(info.Cats, e)
			audio[info.ID] = slices.Contains(info.Cats, a)
		}
	})
	s, c := testServer(t, engine.Options{Config: cfg}, Options{})
	// cats returns whether any answer item is in electronics, and
	// whether all are in audio.
	cats := func(visitor string) (anyElectronics, allAudio bool) {
		t.Helper()
		l := getList(t, c, "/v1/recommend?placement=home&k=40&visitor="+visitor)
		if len(l.Items) != 40 {
			t.Fatalf("%s: %d items", visitor, len(l.Items))
		}
		allAudio = true
		for _, it := range l.Items {
			anyElectronics = anyElectronics || electronics[it.ID]
			allAudio = allAudio && audio[it.ID]
		}
		return anyElectronics, allAudio
	}
	// Visitors in and out of the universal holdout: filters are not
	// personalisation, both keep them.
	var held, other string
	for v := 0; held == "" || other == ""; v++ {
		if id := fmt.Sprintf("fv%d", v); inHoldout(cfg, id) {
			held = id
		} else {
			other = id
		}
	}
	for _, v := range []string{held, other} {
		if d, _ := cats(v); d {
			t.Fatalf("%s (holdout %v): an electronics item in an answer that excludes them", v, v == held)
		}
	}
	if code, b := do(t, c, "POST", "/v1/events", testKey, `{"event":"pageview","visitor":"lead","page":"/pricing"}`); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	if d, all := cats("lead"); d || !all {
		t.Fatalf("segment member: electronics %v, all audio %v", d, all)
	}
	// An only rule naming a category the snapshot lacks does not empty
	// the answer.
	if l := getList(t, c, "/v1/recommend?placement=typo&k=5"); len(l.Items) != 5 {
		t.Fatalf("only an unknown category: %d items", len(l.Items))
	}
	// Without the filters, the same placement has electronics (the test is not
	// vacuous). A config in force is not changed in place: the changed
	// one is set anew, as a reload does (answers are cached by it).
	cfg.Placements["home"].Exclude = nil
	s.e.SetConfig(cfg)
	if d, _ := cats(other); !d {
		t.Fatal("no electronics among the 40 most popular items: the test shows nothing")
	}
}

// TestSlashInIDs: a user id holding '/' (accepted in events) is addressed
// as %2F in the path, for attributes, profiles and segments.
func TestSlashInIDs(t *testing.T) {
	cfg, err := engine.ParseConfig([]byte("segments:\n  pricing:\n    if: 'views(\"/pricing\", \"30d\") >= 1'\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := testServer(t, engine.Options{Config: cfg}, Options{})
	// fasthttp's client decodes %2F before it sends a path unless told
	// not to; browsers and curl send it as is.
	c := &fasthttp.Client{Name: browserUA, DisablePathNormalizing: true, Dial: func(string) (net.Conn, error) { return net.Dial("tcp", s.addr) }}
	f := func(method, uri, key, body string, want int, contains string) {
		t.Helper()
		code, b := do(t, c, method, uri, key, body)
		if code != want || !strings.Contains(string(b), contains) {
			t.Fatalf("%s %s: %d %s; want %d with %q", method, uri, code, b, want, contains)
		}
	}
	f("POST", "/v1/events", testKey, `{"event":"pageview","user_id":"acme/42","page":"/pricing"}`, 200, "")
	f("PUT", "/v1/users/acme%2F42", testKey, `{"company":"ACME"}`, 200, "")
	f("GET", "/v1/users/acme%2F42/segments", "", "", 200, `{"user":"acme/42","segments":["pricing"]}`)
	f("GET", "/v1/users/acme%2f42", testKey, "", 200, `"company":"ACME"`)
	f("GET", "/v1/users/acme%2F42/recommendations?k=2", "", "", 200, `"items"`)
	f("GET", "/v1/items/a%2Fb/similar", "", "", 404, "unknown_item")
	// Without the escape the path has a segment too many.
	f("GET", "/v1/users/acme/42/segments", "", "", 404, "endpoint")
}
