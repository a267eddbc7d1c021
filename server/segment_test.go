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

	"github.com/edgerec/edgerec/model"
)

func TestSegmentConfigErrors(t *testing.T) {
	f := func(yaml, want string) {
		t.Helper()
		_, err := ParseConfig([]byte(yaml), "edgerec.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("config %q: error %v; want it to contain %q", yaml, err, want)
		}
	}
	seg := func(expr string) string { return "segments:\n  s1:\n    if: '" + expr + "'\n" }
	f(seg(`visits("/x", "30d") > 1`), `edgerec.yaml:3: segment "s1": unknown name visits`)
	f(seg(`views("/x", "30 days") > 1`), `edgerec.yaml:3: segment "s1": views: window "30 days"`)
	f(seg(`views("/x", "30d") == "a"`), `edgerec.yaml:3: segment "s1": invalid operation`)
	f(seg(`attr("a") matches "b"`), `operator "matches" is not supported`)
	f(seg(`views(attr("p"), "1d") > 0`), `views: column`)
	f(seg(`events("visit", "1d") > 0`), `unknown event type "visit"`)
	f(seg(`hours_since("lunch") < 3`), `hours_since: "lunch"`)
	f(seg(`views("/x", "1d")`), `expected bool`)
	f("segments:\n  s1:\n    description: no rule\n", `edgerec.yaml:3: segment "s1": needs an`)
	f("segments:\n  bad/name:\n    if: 'true'\n", `segment name "bad/name"`)
	f(seg(`true`)+"placements:\n  p:\n    strategy: popular\n    boost:\n      - category: x\n        factor: 2\n        segment: s2\n",
		`edgerec.yaml:10: placement "p": unknown segment "s2"`)
	f(seg(`true`)+"pages:\n  lp:\n    experiment: e\n    variants:\n      - id: a\n        weight: 1\n    rules:\n      - if: '\"s9\" in segments'\n        variant: a\n",
		`rule 1: unknown segment "s9"`)
	page := func(rule string) string {
		return seg(`true`) + "pages:\n  lp:\n    experiment: e\n    variants:\n      - id: a\n        weight: 1\n    rules:\n      - if: '" + rule + "'\n        variant: a\n"
	}
	f(page(`"s9" not in segments`), `rule 1: unknown segment "s9"`)
	f(page(`not ("s9" in segments)`), `rule 1: unknown segment "s9"`)
	f(page(`segments[0] == "s1"`), `use segments only as "name" in segments`)
	f(page(`any(segments, # == "s1")`), `use segments only as "name" in segments`)
	if _, err := ParseConfig([]byte(page(`"s1" not in segments && keyword == "segments"`)), "x.yaml"); err != nil {
		t.Fatalf("a valid segment rule: %v", err)
	}
	f("profiles:\n  windows: [1d, 1y]\n", `edgerec.yaml:2: window "1y"`)
}

// profileAt builds a profile from (event, page, seconds ago) triples.
func profileAt(now int64, evs ...any) *segCtx {
	sc := &segCtx{now: now}
	for i := 0; i+2 < len(evs); i += 3 {
		t, _ := model.ParseEventType([]byte(evs[i].(string)))
		sc.p.Add(t, now-int64(evs[i+2].(int)), 100, []byte(evs[i+1].(string)), nil)
	}
	sc.p.Compact(now, 90*86400)
	return sc
}

// The sample config's templates on the visitors they are written for.
func TestSegmentTemplates(t *testing.T) {
	cfg := sampleConfig(t)
	s := &Server{m: newServerMetrics(nil)}
	now := int64(1_750_000_000)
	const h, d = 3600, 86400
	for _, c := range []struct {
		name string
		sc   *segCtx
		want string
	}{
		{"gathering", profileAt(now, "pageview", "/pricing", 3*d, "pageview", "/pricing", 2*h, "pageview", "/", 2*h), "info_gathering"},
		{"once", profileAt(now, "pageview", "/pricing", 3*d), ""},
		{"contacted", profileAt(now, "pageview", "/pricing", 3*d, "pageview", "/pricing", 2*h, "pageview", "/contact", h), "high_intent"},
		{"old interest", profileAt(now, "pageview", "/pricing", 40*d, "pageview", "/pricing", 35*d), ""},
		{"case studies", profileAt(now, "pageview", "/case-studies/acme", d, "pageview", "/pricing", h, "pageview", "/demo", 10*d), "high_intent"},
		{"abandoner", profileAt(now, "cart", "", 5*h), "cart_abandoner"},
		{"bought after cart", profileAt(now, "cart", "", 5*h, "purchase", "", 4*h), ""},
		{"cart too old", profileAt(now, "cart", "", 30*h), ""},
		{"bought again later", profileAt(now, "purchase", "", 200*d, "cart", "", h), "cart_abandoner lapsed_customer"},
		{"lapsed", profileAt(now, "purchase", "", 120*d), "lapsed_customer"},
		{"repeat", profileAt(now, "purchase", "", 20*d, "purchase", "", 2*d), "repeat_buyer"},
		{"lapsed repeat", profileAt(now, "purchase", "", 200*d, "purchase", "", 100*d), "lapsed_customer repeat_buyer"},
		{"nobody", profileAt(now), ""},
	} {
		set := s.evalSegments(c.sc, cfg)
		var got []string
		for i, seg := range cfg.segments {
			if set.has(i) {
				got = append(got, seg.name)
			}
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: segments %v, want %q", c.name, got, c.want)
		}
	}
}

// Operators, attributes and run-time type mismatches.
func TestSegmentExpressions(t *testing.T) {
	s := &Server{m: newServerMetrics(nil)}
	now := int64(1_750_000_000)
	sc := profileAt(now, "pageview", "/blog/a", 3600, "pageview", "/blog/b", 7200, "view", "", 60)
	sc.p.SetAttr([]byte("industry"), model.AttrString, []byte("manufacturing"), 0)
	sc.p.SetAttr([]byte("employees"), model.AttrNumber, nil, 250)
	sc.p.SetAttr([]byte("consent_email"), model.AttrBool, nil, 1)
	sc.p.SetAttr([]byte("consent_ads"), model.AttrString, []byte("no"), 0)
	for src, want := range map[string]bool{
		`views("/blog/*", "1d") == 2`:                                 true,
		`views("/blog/a", "1d") == 1 and not has("role")`:             true,
		`events("view", "1h") == 1 && events("cart", "7d") == 0`:      true,
		`attr("industry") in ["manufacturing", "logistics"]`:          true,
		`attr("industry") startsWith "manu" || false`:                 true,
		`num("employees") / 5 >= 50 && -num("employees") < 0`:         true,
		`num("revenue") > 0 || num("revenue") <= 0`:                   false, // NaN: absent
		`consent("email") && !consent("ads")`:                         true,
		`hours_since("view") < 0.02 && days_since("purchase") > 1000`: true,
		`days_since("first_seen") * 24 >= 1.99`:                       true,
		`purchases == 0 && purchase_value == 0`:                       true,
		`attr("employees") == "250"`:                                  false, // type mismatch
		`num("industry") > 0 || true`:                                 false, // mismatch poisons the rule
		`attr("missing") == ""`:                                       true,
		`attr("industry") not in ["retail"]`:                          true,
		`num("employees") in [100, 250]`:                              true,
	} {
		eval, err := compileSegment(src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		list := []*Segment{{name: "t", eval: eval}}
		set := s.evalList(sc, list)
		got := set.has(0)
		if got != want {
			t.Errorf("%s = %v, want %v", src, got, want)
		}
	}
	if s.m.segmentErrors.Get() != 2 {
		t.Errorf("%d run-time errors counted, want 2", s.m.segmentErrors.Get())
	}
}

// Profiles and segments over HTTP: attributes, behaviour from events,
// segments on read, in a landing-page rule, in a placement pin, and the
// one-call page endpoint.
func TestSegmentsHTTP(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
placements:
  home:
    strategy: popular
    pin:
      - item: "1682"
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
	s, c := testServer(t, Options{Config: cfg, Now: func() time.Time { return now }})
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
	code, b = do(t, c, "GET", "/v1/page?page=lp&visitor=lead-1&placements=home,product_page&item=50&k=3", "", "")
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
		len(page.Recommendations["home"].Items) != 3 || page.Recommendations["home"].Items[0].ID != "1682" ||
		len(page.Recommendations["product_page"].Items) != 3 {
		t.Fatalf("page: %s", b)
	}
	code, b = do(t, c, "GET", "/v1/page?visitor=someone-else&placements=home&k=3", "", "")
	if code != 200 || json.Unmarshal(b, &page) != nil || page.Recommendations["home"].Items[0].ID == "1682" || len(page.Segments) != 0 {
		t.Fatalf("page for a visitor outside the segment: %d %s", code, b)
	}
	// Logged in as lead-1 on another device: the rules, the pin and the
	// segments are lead-1's; the assignment stays the device's.
	page.Decision, page.Segments = decision{}, nil
	code, b = do(t, c, "GET", "/v1/page?page=lp&visitor=new-device&user=lead-1&placements=home&k=3", "", "")
	if code != 200 || json.Unmarshal(b, &page) != nil || page.Decision.Variant != "guide" || page.Decision.Visitor != "new-device" ||
		page.Recommendations["home"].Items[0].ID != "1682" || len(page.Segments) != 2 {
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

func TestRulePath(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := rulePath(in); got != want {
			t.Errorf("rulePath(%q) = %q, want %q", in, got, want)
		}
	}
	f("/pricing", "/pricing")
	f("/pricing/", "/pricing")
	f("/pricing?x=1", "/pricing")
	f("/case-studies/*", "/case-studies/*")
	f("/料金", "/%E6%96%99%E9%87%91")
	f("/%E6%96%99%E9%87%91/", "/%E6%96%99%E9%87%91")
	f("/ブログ/*", "/%E3%83%96%E3%83%AD%E3%82%B0/*")
	f("/a b", "/a%20b")
	f("/sale(2024)", "/sale(2024)")
	f("/men's/*", "/men's/*")
	f("/a[1]!", "/a[1]!")
	f("/{x}", "/%7Bx%7D")
	// The rule counts what a browser's URL stores.
	ev := string(pagePath([]byte("https://example.jp/%E6%96%99%E9%87%91/?utm_source=x")))
	if rulePath("/料金/") != ev {
		t.Errorf("rule %q, event path %q", rulePath("/料金/"), ev)
	}
}

func TestPagePath(t *testing.T) {
	for in, want := range map[string]string{
		"/pricing":                             "/pricing",
		"/pricing/":                            "/pricing",
		"https://example.jp/pricing?utm=x#top": "/pricing",
		"https://example.jp":                   "/",
		"/":                                    "/",
		"/go?to=https://evil.example/x":        "/go",
		"/search#q=http://a/b":                 "/search",
		"//cdn.example/x":                      "//cdn.example/x",
		"http://a.example/b/c//":               "/b/c",
	} {
		if got := string(pagePath([]byte(in))); got != want {
			t.Errorf("pagePath(%q) = %q, want %q", in, got, want)
		}
	}
	if host, _ := splitURL([]byte("/x?r=https://www.google.com/")); len(host) != 0 && string(host) != "" && string(host) == "www.google.com" {
		t.Errorf("a relative referrer passed for %q", host)
	}
}

// A /v1/page refused for its parameters counts no exposure.
func TestPageBadParamsNoExposure(t *testing.T) {
	s, c := testServer(t, Options{Config: sampleConfig(t)})
	for _, q := range []string{"k=0", "k=abc", "price_min=x", "item=" + strings.Repeat("x", 300)} {
		if code, b := do(t, c, "GET", "/v1/page?page=lp_consulting&visitor=v-bad&placements=home&"+q, "", ""); code != 400 {
			t.Fatalf("%s: %d %s", q, code, b)
		}
	}
	var total float64
	for _, v := range []string{"default", "cta_consult", "sales_close_rate"} {
		n, _ := s.state.Counter(expKey([]byte("lp-consulting-cta"), []byte(v), "exposures"))
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
	cfg, err := ParseConfig([]byte(`
holdout: 0.5
placements:
  home:
    strategy: popular
    exclude:
      - category: Drama
    only:
      - category: Comedy
        segment: pricing
  typo:
    strategy: popular
    only:
      - category: Dramaa
segments:
  pricing:
    if: 'views("/pricing", "30d") >= 1'
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, c := testServer(t, Options{Config: cfg})
	snap := s.live.Acquire()
	defer snap.Release()
	drama, _ := snap.Category([]byte("Drama"))
	comedy, _ := snap.Category([]byte("Comedy"))
	// cats returns whether any answer item is a Drama, and whether all
	// are Comedies.
	cats := func(visitor string) (anyDrama, allComedy bool) {
		t.Helper()
		l := getList(t, c, "/v1/recommend?placement=home&k=40&visitor="+visitor)
		if len(l.Items) != 40 {
			t.Fatalf("%s: %d items", visitor, len(l.Items))
		}
		allComedy = true
		for _, it := range l.Items {
			n, _ := snap.Lookup([]byte(it.ID))
			info := snap.Item(n)
			anyDrama = anyDrama || slices.Contains(info.Cats, drama)
			allComedy = allComedy && slices.Contains(info.Cats, comedy)
		}
		return anyDrama, allComedy
	}
	// Visitors in and out of the universal holdout: filters are not
	// personalisation, both keep them.
	var held, other string
	for v := 0; held == "" || other == ""; v++ {
		if id := fmt.Sprintf("fv%d", v); s.inHoldout([]byte(id)) {
			held = id
		} else {
			other = id
		}
	}
	for _, v := range []string{held, other} {
		if d, _ := cats(v); d {
			t.Fatalf("%s (holdout %v): a Drama in an answer that excludes them", v, v == held)
		}
	}
	if code, b := do(t, c, "POST", "/v1/events", testKey, `{"event":"pageview","visitor":"lead","page":"/pricing"}`); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	if d, all := cats("lead"); d || !all {
		t.Fatalf("segment member: drama %v, all comedies %v", d, all)
	}
	// An only rule naming a category the snapshot lacks does not empty
	// the answer.
	if l := getList(t, c, "/v1/recommend?placement=typo&k=5"); len(l.Items) != 5 {
		t.Fatalf("only an unknown category: %d items", len(l.Items))
	}
	// Without the filters, the same placement has Dramas (the test is not
	// vacuous).
	cfg.Placements["home"].Exclude = nil
	if d, _ := cats(other); !d {
		t.Fatal("no Drama among the 40 most popular films: the test shows nothing")
	}
}

// TestSlashInIDs: a user id holding '/' (accepted in events) is addressed
// as %2F in the path, for attributes, profiles and segments.
func TestSlashInIDs(t *testing.T) {
	cfg, err := ParseConfig([]byte("segments:\n  pricing:\n    if: 'views(\"/pricing\", \"30d\") >= 1'\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := testServer(t, Options{Config: cfg})
	// fasthttp's client decodes %2F before it sends a path unless told
	// not to; browsers and curl send it as is.
	c := &fasthttp.Client{DisablePathNormalizing: true, Dial: func(string) (net.Conn, error) { return net.Dial("tcp", s.addr) }}
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
