package server

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"image/color"
	"image/png"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

const dashAdminKey = "admin-secret-key"

// dashYAML is a shop's B2B landing page with two goals and a keyword
// rule held back 20%, a home placement tested against popular items,
// and segments.
const dashYAML = `
placements:
  home:
    strategy: personal
    k: 5
    variants:
      - {id: personal, weight: 1}
      - {id: popular, weight: 1, strategy: popular}
  product_page:
    strategy: similar
pages:
  lp_consulting:
    experiment: lp-cta
    control: default
    goals:
      - {id: contact, primary: true}
      - {id: download}
    variants:
      - id: default
        weight: 50
        payload: {headline: マーケティングのプロ集団, cta: 資料をダウンロード}
      - id: consult
        weight: 50
        payload: {headline: マーケティングのプロ集団, cta: 無料で相談する}
      - id: sales
        weight: 0
        payload: {headline: 営業成約率を向上させるためのマーケティング支援, cta: 無料で相談する}
    rules:
      - {id: sales_kw, if: 'keyword contains "営業"', variant: sales, holdback: 0.2}
segments:
  info_gathering:
    description: the pricing page twice in 30 days, never the contact page
    if: 'views("/pricing", "30d") >= 2 && views("/contact", "30d") == 0'
  contacted:
    description: saw the contact page
    if: 'views("/contact", "30d") >= 1'
  repeat_buyer:
    if: 'purchases >= 2'
`

// dashStack serves cfg with a clock the test moves, starting on
// 2026-12-01 at 00:00 UTC.
func dashStack(t testing.TB, cfg string) (*testStack, *atomic.Int64) {
	t.Helper()
	c, err := engine.ParseConfig([]byte(cfg), "dash.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clock := new(atomic.Int64)
	clock.Store(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	return newTestStack(t, engine.Options{Config: c, Now: now}, Options{AdminKey: dashAdminKey}), clock
}

// seedDashboard plays n visitors of lp_consulting over 48 hours: every
// sixth searched for 営業 (the rule's), the others split; conversions
// by variant (contact 5%, 6.5% for consult, 9% for the rule's sales
// page; downloads twice as often); pageviews for the segments; and every
// fifth visitor is also a customer of the test shop, shown the home placement, who
// clicks 30% (personal) or 18% (popular) of the time and buys a third as
// often. Who converts hangs on the visitor's own bucket, so the data is
// the same in every run.
func seedDashboard(t testing.TB, ts *testStack, clock *atomic.Int64, n int) {
	t.Helper()
	e := ts.e
	start := clock.Load()
	var batch []index.StateEvent
	flush := func() {
		t.Helper()
		if len(batch) == 0 {
			return
		}
		if err := e.Ingest(batch, nil, false); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	draw := func(who, what string) float64 {
		return float64(model.Bucket(what, []byte(who))) / model.Buckets
	}
	for i := 0; i < n; i++ {
		clock.Store(start + int64(i)*48*3600/int64(n))
		now := clock.Load()
		vis := fmt.Sprintf("v%05d", i)
		q := ""
		if i%6 == 0 {
			q = "営業 成約率改善"
		}
		v := e.Acquire()
		var d engine.Decision
		err := v.Decide(&engine.DecideRequest{Page: []byte("lp_consulting"), Visitor: []byte(vis), Q: []byte(q), UserAgent: []byte("Mozilla/5.0")}, &d)
		id, variant, reason := string(d.DecisionID), d.Variant, d.Reason
		v.Release()
		if err != nil {
			t.Fatal(err)
		}
		rate := map[string]float64{"default": 0.05, "consult": 0.065, "sales": 0.09}[variant]
		if reason == "rule_holdback" {
			rate = 0.05
		}
		for _, g := range []struct {
			goal  string
			rate  float64
			value float64
		}{{"contact", rate, 0}, {"download", 2 * rate, 1}} {
			if draw(vis, g.goal) < g.rate {
				ev := index.StateEvent{User: []byte(vis), Type: model.EventConversion, RecID: []byte(id), Goal: []byte(g.goal), TS: now}
				if g.value > 0 {
					ev.Value, ev.HasValue = g.value, true
				}
				batch = append(batch, ev)
			}
		}
		if i%5 == 0 {
			for range 2 {
				batch = append(batch, index.StateEvent{User: []byte(vis), Type: model.EventPageview, Page: []byte("https://example.jp/pricing"), TS: now})
			}
			if i%15 == 0 {
				if err := e.SetAttributes([]byte(vis), []engine.AttrUpdate{{Key: []byte("consent_email"), Type: model.AttrBool, Num: 1}}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if i%11 == 0 {
			batch = append(batch, index.StateEvent{User: []byte(vis), Type: model.EventPageview, Page: []byte("https://example.jp/contact"), TS: now})
		}
		if i%5 == 0 {
			user := "u" + strconv.Itoa(i/5%450+1) // a shop customer, with history
			v := e.Acquire()
			var r engine.Recs
			err := v.Recommend(&engine.RecRequest{Placement: []byte("home"), User: []byte(user)}, &r)
			item, variant := "", r.Variant
			if err == nil && len(r.Picks) > 0 {
				item = v.ItemID(r.Picks[0].Item)
			}
			v.Release()
			if err != nil || item == "" {
				t.Fatalf("home for %s: %v %+v", user, err, r)
			}
			ev := index.StateEvent{User: []byte(user), Item: []byte(item), Type: model.EventImpression, Placement: []byte("home"), RecID: []byte("r" + user), TS: now}
			batch = append(batch, ev)
			ctr := map[string]float64{"personal": 0.3, "popular": 0.18}[variant]
			if draw(user, "click") < ctr {
				ev.Type = model.EventClick
				batch = append(batch, ev)
				if draw(user, "buy") < 1.0/3 {
					ev.Type, ev.Value, ev.HasValue = model.EventPurchase, 20+float64(i%7)*5, true
					batch = append(batch, ev)
				}
			}
		}
		if len(batch) >= 500 {
			flush()
		}
	}
	flush()
}

// dashResp is an answer of the dashboard: status, body and headers.
type dashResp struct {
	status int
	body   string
	h      fasthttp.ResponseHeader
}

// cookie returns the Set-Cookie of the session cookie, or "".
func (r *dashResp) cookie() string {
	var c fasthttp.Cookie
	c.SetKey(dashCookie)
	if !r.h.Cookie(&c) {
		return ""
	}
	return c.String()
}

func dashDo(t testing.TB, c *fasthttp.Client, method, uri, form string, header ...string) *dashResp {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://edgerec" + uri)
	req.Header.SetMethod(method)
	if form != "" {
		req.Header.SetContentType("application/x-www-form-urlencoded")
		req.SetBodyString(form)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if err := c.DoTimeout(req, resp, 30*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	r := &dashResp{status: resp.StatusCode(), body: string(resp.Body())}
	resp.Header.CopyTo(&r.h)
	return r
}

func isLoginForm(body string) bool {
	return strings.Contains(body, `action="/dashboard/login"`) && !strings.Contains(body, "Sign out")
}

// The login flow: the form, a wrong key (401), the right one (an
// HttpOnly, SameSite=Strict cookie that holds no key), the cookie lets
// in; forged, expired and foreign tokens are refused; the admin key as a
// bearer header lets in, a wrong one does not; logout clears the cookie,
// and only by POST; sign-in attempts are limited per address.
func TestDashboardLogin(t *testing.T) {
	ts, clock := dashStack(t, dashYAML)
	s, c := ts.s, ts.c
	if r := dashDo(t, c, "GET", "/dashboard", ""); r.status != 200 || !isLoginForm(r.body) || r.cookie() != "" {
		t.Fatalf("no session: %d %q\n%s", r.status, r.cookie(), r.body)
	}
	for _, key := range []string{"wrong", testKey, ""} {
		r := dashDo(t, c, "POST", "/dashboard/login", "key="+url.QueryEscape(key))
		if r.status != 401 || !isLoginForm(r.body) || !strings.Contains(r.body, "Wrong admin key") || r.cookie() != "" {
			t.Fatalf("key %q: %d %q\n%s", key, r.status, r.cookie(), r.body)
		}
	}
	r := dashDo(t, c, "POST", "/dashboard/login", "key="+dashAdminKey)
	set := r.cookie()
	if r.status != 303 || string(r.h.Peek("Location")) != "/dashboard" {
		t.Fatalf("right key: %d %q", r.status, r.h.Peek("Location"))
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "path=/dashboard", "max-age=43200"} {
		if !strings.Contains(strings.ToLower(set), strings.ToLower(want)) {
			t.Fatalf("cookie %q lacks %s", set, want)
		}
	}
	if strings.Contains(strings.ToLower(set), "secure;") || strings.HasSuffix(strings.ToLower(set), "secure") || strings.Contains(set, dashAdminKey) {
		t.Fatalf("cookie over plain HTTP: %q", set)
	}
	var ck fasthttp.Cookie
	if err := ck.Parse(set); err != nil {
		t.Fatal(err)
	}
	session := string(ck.Value())
	in := func(tok string) *dashResp {
		t.Helper()
		return dashDo(t, c, "GET", "/dashboard", "", "Cookie", dashCookie+"="+tok)
	}
	if r := in(session); r.status != 200 || isLoginForm(r.body) || !strings.Contains(r.body, `id="exp-lp-cta"`) {
		t.Fatalf("with the session: %d\n%s", r.status, r.body)
	}
	if r := dashDo(t, c, "POST", "/dashboard/login", "key="+dashAdminKey, "X-Forwarded-Proto", "https"); !strings.Contains(strings.ToLower(r.cookie()), "secure") {
		t.Fatalf("behind a TLS proxy: %q", r.cookie())
	}
	// Forged and expired tokens.
	now := ts.e.Now()
	other := &Server{dash: newDashState("another-key")}
	mac := session[strings.LastIndexByte(session, '.')+1:]
	flipped := session[:len(session)-len(mac)] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, mac[:1]) + mac[1:]
	for name, tok := range map[string]string{
		"flipped MAC":        flipped,
		"no MAC":             session[:len(session)-len(mac)],
		"other key":          other.dashToken(now.Add(time.Hour).Unix()),
		"expired":            s.dashToken(now.Add(-time.Second).Unix()),
		"expiring now":       s.dashToken(now.Unix()),
		"beyond the session": s.dashToken(now.Add(dashSessionTTL + 2*time.Minute).Unix()),
		"the key itself":     dashAdminKey,
		"garbage":            "v1.x.y",
	} {
		r := in(tok)
		if r.status != 401 || !isLoginForm(r.body) || !strings.Contains(r.body, "expired or is not valid") {
			t.Fatalf("%s token %q: %d\n%s", name, tok, r.status, r.body)
		}
		if c := r.cookie(); !strings.Contains(c, "expires=") || strings.Contains(c, tok) {
			t.Fatalf("%s token: the cookie is not cleared: %q", name, c)
		}
	}
	if r := in(s.dashToken(now.Add(time.Hour).Unix())); r.status != 200 || isLoginForm(r.body) {
		t.Fatalf("a token of an hour: %d", r.status)
	}
	// A session ends 12 hours after sign-in.
	clock.Add(int64(dashSessionTTL/time.Second) - 1)
	if r := in(session); r.status != 200 || isLoginForm(r.body) {
		t.Fatalf("a second before the session ends: %d", r.status)
	}
	clock.Add(1)
	if r := in(session); r.status != 401 || !isLoginForm(r.body) {
		t.Fatalf("12 hours after sign-in: %d", r.status)
	}
	// The bearer header, as a reverse proxy sends it.
	if r := dashDo(t, c, "GET", "/dashboard", "", "Authorization", "Bearer "+dashAdminKey); r.status != 200 || isLoginForm(r.body) {
		t.Fatalf("bearer: %d", r.status)
	}
	for _, h := range []string{"Bearer wrong", "Bearer " + testKey, "Basic " + dashAdminKey} {
		if r := dashDo(t, c, "GET", "/dashboard", "", "Authorization", h); r.status != 401 || !isLoginForm(r.body) {
			t.Fatalf("%s: %d", h, r.status)
		}
	}
	// Logout: POST only.
	if r := dashDo(t, c, "GET", "/dashboard/logout", "", "Cookie", dashCookie+"="+session); r.status != 303 || r.cookie() != "" {
		t.Fatalf("GET logout: %d %q", r.status, r.cookie())
	}
	r = dashDo(t, c, "POST", "/dashboard/logout", "", "Cookie", dashCookie+"="+session)
	if r.status != 303 || string(r.h.Peek("Location")) != "/dashboard" || !strings.Contains(r.cookie(), "expires=") || strings.Contains(r.cookie(), session) {
		t.Fatalf("logout: %d %q", r.status, r.cookie())
	}
	if r := dashDo(t, c, "PUT", "/dashboard", ""); r.status != 405 {
		t.Fatalf("PUT: %d", r.status)
	}
	// After sign-in the browser goes back to the page it asked for, on
	// this site only.
	for next, want := range map[string]string{
		"/dashboard?exp=lp-cta&phase=1":  "/dashboard?exp=lp-cta&phase=1",
		"//evil.example/dashboard":       "/dashboard",
		"/dashboardX":                    "/dashboard",
		"https://evil.example/":          "/dashboard",
		"/dashboard?\r\nSet-Cookie: x=1": "/dashboard",
	} {
		r := dashDo(t, c, "POST", "/dashboard/login", "key="+dashAdminKey+"&next="+url.QueryEscape(next))
		if r.status != 303 || string(r.h.Peek("Location")) != want {
			t.Fatalf("next %q: %d %q", next, r.status, r.h.Peek("Location"))
		}
	}
	// 9 sign-ins so far from this address; the bucket holds 10.
	limited := false
	for range 10 {
		if r := dashDo(t, c, "POST", "/dashboard/login", "key=wrong"); r.status == 429 {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("19 sign-in attempts in a row: never limited")
	}
}

var (
	sectionRe = regexp.MustCompile(`(?s)<section class="card exp" id="exp-([^"]+)">.*?</section>`)
	rowRe     = regexp.MustCompile(`(?s)<tr data-variant="([^"]*)" data-exposures="([^"]*)" data-conversions="([^"]*)" data-rate="([^"]*)" data-lift="([^"]*)">(.*?)</tr>`)
	cellRe    = regexp.MustCompile(`<td data-k="(\w+)"[^>]*>([^<]*)</td>`)
)

// dashSections cuts the page into its experiments' sections, by id.
func dashSections(t testing.TB, body string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, s := range sectionRe.FindAllStringSubmatch(body, -1) {
		m[s[1]] = s[0]
	}
	return m
}

// groupDigits writes a whole count as the page does: 1,234.
func groupDigits(x float64) string {
	s := strconv.FormatInt(int64(x), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func results(t testing.TB, c *fasthttp.Client, exp, query string) engine.ExperimentResult {
	t.Helper()
	code, body := do(t, c, "GET", "/v1/experiments/"+exp+"/results"+query, "", "")
	var r engine.ExperimentResult
	if err := json.Unmarshal(body, &r); code != 200 || err != nil {
		t.Fatalf("results of %s%s: %d %v %s", exp, query, code, err, body)
	}
	return r
}

// checkVariants checks that section shows every variant of r with the
// exposures, conversions, rate and lift of the JSON: exactly in the
// row's data attributes, and as the cells print them.
func checkVariants(t *testing.T, section string, r engine.ExperimentResult) {
	t.Helper()
	rows := rowRe.FindAllStringSubmatch(section, -1)
	if len(rows) != len(r.Variants) {
		t.Fatalf("%s: %d variant rows; the JSON has %d", r.Experiment, len(rows), len(r.Variants))
	}
	ptr := func(s string) *float64 {
		if s == "" {
			return nil
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s: bad number %q", r.Experiment, s)
		}
		return &x
	}
	same := func(a, b *float64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	for i, row := range rows {
		v := r.Variants[i]
		cells := map[string]string{}
		for _, c := range cellRe.FindAllStringSubmatch(row[6], -1) {
			cells[c[1]] = html.UnescapeString(c[2])
		}
		rate := "—"
		if v.Rate != nil {
			rate = fmt.Sprintf("%.2f%%", *v.Rate*100)
		}
		lift := "—"
		if v.Lift != nil {
			lift = fmt.Sprintf("%+.1f%%", *v.Lift*100)
			lift = strings.Replace(lift, "-", "−", 1)
		}
		if row[1] != v.Variant || *ptr(row[2]) != v.Exposures || *ptr(row[3]) != v.Conversions || !same(ptr(row[4]), v.Rate) || !same(ptr(row[5]), v.Lift) ||
			cells["exposures"] != groupDigits(v.Exposures) || cells["conversions"] != groupDigits(v.Conversions) || cells["rate"] != rate || cells["lift"] != lift {
			t.Fatalf("%s: row %d %q, cells %q; the JSON's variant: %+v", r.Experiment, i, row[1:6], cells, v)
		}
	}
}

// The page shows the figures of the results JSON, for the current phase
// and primary goal and for a goal the query selects; placements' CTR per
// variant; segment sizes as the engine counts them; both intervals in
// the chart; no SRM banner when the JSON says none.
func TestDashboardFigures(t *testing.T) {
	ts, clock := dashStack(t, dashYAML)
	seedDashboard(t, ts, clock, 3000)
	auth := []string{"Authorization", "Bearer " + dashAdminKey}
	page := dashDo(t, ts.c, "GET", "/dashboard", "", auth...)
	if page.status != 200 || !strings.HasPrefix(string(page.h.ContentType()), "text/html") || !strings.Contains(string(page.h.Peek("Content-Security-Policy")), "default-src 'none'") {
		t.Fatalf("dashboard: %d %q %q", page.status, page.h.ContentType(), page.h.Peek("Content-Security-Policy"))
	}
	sections := dashSections(t, page.body)
	if len(sections) != 2 {
		t.Fatalf("experiment sections %d; want lp-cta and home", len(sections))
	}
	lp := results(t, ts.c, "lp-cta", "")
	home := results(t, ts.c, "home", "")
	for _, r := range []engine.ExperimentResult{lp, home} {
		checkVariants(t, sections[r.Experiment], r)
		if r.SRM.Flag || strings.Contains(sections[r.Experiment], "Sample ratio mismatch") {
			t.Fatalf("%s: SRM %+v", r.Experiment, r.SRM)
		}
	}
	sec := sections["lp-cta"]
	// The rule's arms, as the JSON counts them.
	if len(lp.Rules) != 1 || !strings.Contains(sec, fmt.Sprintf(`data-rule="sales_kw" data-exposures="%v" data-held-exposures="%v"`, lp.Rules[0].Treated.Exposures, lp.Rules[0].Held.Exposures)) {
		t.Fatalf("rule: %+v", lp.Rules)
	}
	if lp.Rules[0].Held.Exposures < 50 || lp.Variants[1].SeqLow == nil || lp.Variants[1].LiftLow == nil {
		t.Fatalf("the data set is too thin to draw intervals: %+v", lp)
	}
	// consult's row of the chart: the always-valid band holds the
	// fixed-horizon bar.
	chart := regexp.MustCompile(`(?s)</span>consult</div>.*?<rect class="av" x="([\d.]+)" y="5" width="([\d.]+)".*?<rect x="([\d.]+)" y="13" width="([\d.]+)"`).FindStringSubmatch(sec)
	if chart == nil {
		t.Fatalf("no interval chart for consult:\n%s", sec)
	}
	f := func(s string) float64 { x, _ := strconv.ParseFloat(s, 64); return x }
	if av, fh := [2]float64{f(chart[1]), f(chart[1]) + f(chart[2])}, [2]float64{f(chart[3]), f(chart[3]) + f(chart[4])}; av[0] > fh[0] || av[1] < fh[1] || fh[1]-fh[0] < 1 {
		t.Fatalf("always-valid %v does not hold fixed-horizon %v", av, fh)
	}
	// The traffic share chart spans the hours of the JSON.
	hours := (lp.Shares[len(lp.Shares)-1].Hour-lp.Shares[0].Hour)/3600 + 1
	if hours < 40 || !strings.Contains(sec, fmt.Sprintf(`viewBox="0 0 %d 100"`, hours)) {
		t.Fatalf("traffic share over %d hours: not drawn", hours)
	}
	// Japanese payloads as they are.
	if !strings.Contains(sec, "cta: 無料で相談する") || !strings.Contains(sec, "headline: 営業成約率を向上させるためのマーケティング支援") {
		t.Fatal("payloads are not shown")
	}
	// Another goal, selected by the query.
	dl := results(t, ts.c, "lp-cta", "?goal=download")
	sel := dashDo(t, ts.c, "GET", "/dashboard?exp=lp-cta&phase=1&goal=download", "", auth...)
	if sel.status != 200 {
		t.Fatalf("goal download: %d", sel.status)
	}
	checkVariants(t, dashSections(t, sel.body)["lp-cta"], dl)
	checkVariants(t, dashSections(t, sel.body)["home"], home)
	if dl.Variants[1].Conversions == lp.Variants[1].Conversions {
		t.Fatal("the goals count the same: the test cannot tell them apart")
	}
	// Bad selections: the page with an error, status 400 or 404.
	for q, want := range map[string]int{"?exp=lp-cta&phase=7": 400, "?exp=lp-cta&phase=x": 400, "?exp=lp-cta&goal=nope": 400, "?exp=nope": 404} {
		r := dashDo(t, ts.c, "GET", "/dashboard"+q, "", auth...)
		if r.status != want || !strings.Contains(r.body, `class="banner err"`) {
			t.Fatalf("%s: %d", q, r.status)
		}
		if want == 400 {
			checkVariants(t, dashSections(t, r.body)["lp-cta"], lp)
		}
	}
	// Placements: the home variants' CTR as the JSON gives it.
	pv := regexp.MustCompile(`(?s)<table class="grid placement-variants" data-placement="home">.*?</table>`).FindString(page.body)
	for _, v := range home.Variants {
		m := regexp.MustCompile(`(?s)<tr data-variant="` + v.Variant + `">.*?<td data-k="ctr"[^>]*>([^<]*)</td>`).FindStringSubmatch(pv)
		if v.CTR == nil || m == nil || m[1] != fmt.Sprintf("%.2f%%", *v.CTR*100) || v.Impressions < 100 {
			t.Fatalf("home %s: CTR %v, page %q", v.Variant, v.CTR, m)
		}
	}
	if !strings.Contains(page.body, `<tr data-placement="product_page">`) {
		t.Fatal("a placement without variants is missing")
	}
	// Segment sizes as the engine counts them.
	sizes, err := ts.e.SegmentSizes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range sizes.Segments {
		if !strings.Contains(page.body, fmt.Sprintf(`data-segment="%s" data-members="%d"`, sg.Segment, sg.Members)) {
			t.Fatalf("segment %+v not on the page", sg)
		}
	}
	if sizes.Segments[1].Members < 100 || sizes.Segments[1].Email == 0 {
		t.Fatalf("segments: %+v", sizes)
	}
}

// With exposures far from the weights the JSON flags a sample ratio
// mismatch and the page shows its banner.
func TestDashboardSRM(t *testing.T) {
	ts, _ := dashStack(t, `pages:
  lp:
    experiment: ex
    exposure: event
    variants:
      - {id: a, weight: 1}
      - {id: b, weight: 1}
`)
	var batch []index.StateEvent
	for i := range 600 {
		vis := fmt.Sprint("s", i)
		v := ts.e.Acquire()
		var d engine.Decision
		err := v.Decide(&engine.DecideRequest{Page: []byte("lp"), Visitor: []byte(vis), UserAgent: []byte("Mozilla/5.0")}, &d)
		id, variant := string(d.DecisionID), d.Variant
		v.Release()
		if err != nil {
			t.Fatal(err)
		}
		// b's exposure events are lost two times in three.
		if variant == "a" || i%3 == 0 {
			batch = append(batch, index.StateEvent{User: []byte(vis), Type: model.EventExposure, RecID: []byte(id), TS: ts.e.Now().Unix()})
		}
	}
	if err := ts.e.Ingest(batch, nil, false); err != nil {
		t.Fatal(err)
	}
	r := results(t, ts.c, "ex", "")
	page := dashDo(t, ts.c, "GET", "/dashboard", "", "Authorization", "Bearer "+dashAdminKey)
	sec := dashSections(t, page.body)["ex"]
	if !r.SRM.Flag || !strings.Contains(sec, `<div class="banner warn srm" role="alert"><b>Sample ratio mismatch.</b>`) {
		t.Fatalf("SRM %+v; banner missing:\n%s", r.SRM, sec)
	}
	checkVariants(t, sec, r)
	if p := r.SRM.P; p == nil || !strings.Contains(sec, "p &lt; 0.0001") && !strings.Contains(sec, fmt.Sprintf("p %.4f", *p)) {
		t.Fatalf("SRM p %v not shown", p)
	}
}

// What the config and the data hold is text: a payload, a rule and a
// segment description with markup are escaped, never run.
func TestDashboardEscaping(t *testing.T) {
	ts, _ := dashStack(t, `pages:
  lp:
    experiment: ex
    variants:
      - id: a
        weight: 1
        payload: {cta: "<script>alert(1)</script>", "<b>key</b>": "x\" onmouseover=\"alert(2)"}
      - {id: b, weight: 1}
    rules:
      - {id: r1, if: 'utm_source == "</code><script>alert(3)</script>"', variant: b, holdback: 0.1}
segments:
  s1:
    description: <img src=x onerror=alert(4)>
    if: 'purchases >= 1'
`)
	for i := range 20 {
		v := ts.e.Acquire()
		var d engine.Decision
		if err := v.Decide(&engine.DecideRequest{Page: []byte("lp"), Visitor: []byte(fmt.Sprint("x", i)), UserAgent: []byte("Mozilla/5.0")}, &d); err != nil {
			t.Fatal(err)
		}
		v.Release()
	}
	page := dashDo(t, ts.c, "GET", "/dashboard", "", "Authorization", "Bearer "+dashAdminKey)
	if page.status != 200 {
		t.Fatalf("%d", page.status)
	}
	for _, bad := range []string{"<script", "<img", "<b>key", `" onmouseover="`, "</code><script"} {
		if strings.Contains(page.body, bad) {
			t.Fatalf("the page holds %q unescaped", bad)
		}
	}
	for _, want := range []string{"cta: &lt;script&gt;alert(1)&lt;/script&gt;", "&lt;b&gt;key&lt;/b&gt;: x&#34; onmouseover=&#34;alert(2)",
		"&lt;/code&gt;&lt;script&gt;alert(3)&lt;/script&gt;", "&lt;img src=x onerror=alert(4)&gt;"} {
		if !strings.Contains(page.body, want) {
			t.Fatalf("%q is not shown as text:\n%s", want, page.body)
		}
	}
}

// The dashboard as a browser draws it: when chromium is installed, a
// screenshot at desktop and phone widths of the page over the seeded
// shop, served through a proxy that adds the admin key (as a reverse
// proxy would). Each must be a PNG of the window's size that is not
// blank. EDGEREC_SCREENSHOTS=dir keeps them (full height) for a look.
func TestDashboardScreenshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium")
	}
	ts, clock := dashStack(t, dashYAML)
	seedDashboard(t, ts, clock, 3000)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Request.Header.Set("Authorization", "Bearer "+dashAdminKey)
		ts.s.Handle(ctx)
	}}
	go func() { _ = proxy.Serve(ln) }()
	t.Cleanup(func() { _ = proxy.Shutdown() })
	dir := os.Getenv("EDGEREC_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	for _, size := range []struct {
		name          string
		width, height int
	}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
		height := size.height
		if os.Getenv("EDGEREC_SCREENSHOTS") != "" {
			height = 5200 // the whole page, to look at
		}
		path := filepath.Join(dir, "dashboard-"+size.name+".png")
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
			"--user-data-dir="+t.TempDir(), "--screenshot="+path, fmt.Sprintf("--window-size=%d,%d", size.width, height),
			"http://"+ln.Addr().String()+"/dashboard").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("chromium: %v\n%s", err, out)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b := img.Bounds()
		colours := map[color.Color]bool{}
		for y := b.Min.Y; y < b.Max.Y; y += 7 {
			for x := b.Min.X; x < b.Max.X; x += 7 {
				colours[img.At(x, y)] = true
			}
		}
		if b.Dx() != size.width || b.Dy() != height || len(colours) < 20 {
			t.Fatalf("%s: %v, %d colours", path, b, len(colours))
		}
		t.Logf("%s: %dx%d", path, b.Dx(), b.Dy())
	}
}
