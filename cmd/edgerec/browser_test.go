package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The headlines of the sample's landing page (edgerec.yaml): the page's
// own, and the one written for visitors who searched 「営業 成約率改善」.
const (
	defaultHeadline = "マーケティングのプロ集団"
	salesHeadline   = "営業成約率を向上させるためのマーケティング支援"
	salesQuery      = "営業 成約率改善"
)

// desktopUA is a desktop Chrome's User-Agent: headless Chromium's own
// says HeadlessChrome, which the server takes for a bot (the control).
const desktopUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/148.0.0.0 Safari/537.36"

// chromiumPath finds Debian's chromium (make chromium installs it). Where
// it is missing the test skips, saying so; in CI (CI set) it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("EDGEREC_CHROMIUM"), "/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is missing in CI: 'make chromium' (a step of make test, as root) installs it with fonts-noto-cjk")
	}
	t.Skip("chromium not installed: skipping the browser test ('make chromium' as root, or apt-get install chromium fonts-noto-cjk)")
	return ""
}

// landingPage is the sample's landing page as a site would write it: the
// script in <head>, the headline and call to action marked for the
// payload, a recommendations widget and a contact form that converts.
// %[1]s is the script's URL, %[2]s its attributes.
const landingPage = `<!doctype html>
<html lang="ja"><head><meta charset="utf-8">
<title>マーケティング支援 | Example Consulting</title>
<script src="%[1]s" data-page="lp_consulting" %[2]s></script>
<style>
body{font-family:"Noto Sans CJK JP",sans-serif;margin:0;color:#1c2430;background:#f6f7fb}
header{background:#0b3d91;color:#fff;padding:40px}
h1{font-size:34px;margin:0 0 12px}
.note{margin:12px 0 0;font-size:14px;opacity:.85}
.cta{display:inline-block;background:#ffb400;color:#1c2430;padding:12px 24px;border-radius:6px;text-decoration:none;font-weight:bold}
main{padding:8px 40px 40px}
.edgerec-items{display:flex;gap:12px;list-style:none;padding:0}
.edgerec-item{background:#fff;border:1px solid #ccd;padding:12px;border-radius:6px;width:210px}
.edgerec-price{display:block;color:#666;margin-top:6px}
form{background:#fff;padding:16px;border-radius:6px;border:1px solid #ccd}
</style></head>
<body>
<header><h1 data-edgerec="headline">マーケティングのプロ集団</h1>
<p>BtoB企業の集客から商談化まで、戦略から実行まで伴走します。</p>
<a class="cta" href="#contact" data-edgerec="cta" data-edgerec-attr="title:headline">資料をダウンロード</a>
<p class="note" data-edgerec-show="cta_consult">初回のご相談は無料、30分から。</p>
<p class="note" data-edgerec-show="default fallback">事例集（PDF 24ページ）をお送りします。</p></header>
<main><h2>おすすめ</h2>
<div id="recs" data-edgerec-placement="home" data-edgerec-k="4" data-edgerec-link="/item?id={id}">人気のサービスを見る</div>
<form id="contact" data-edgerec-goal="contact" method="post" action="/thanks">
<label>メールアドレス <input name="email" value="lead@example.jp"></label> <button type="submit">相談を申し込む</button>
</form></main></body></html>
`

// recorder runs before any script of each page (Page.addScriptToEvaluateOnNewDocument):
// on every DOM change and before every frame it logs the headline's text
// and whether it is visible, and when it first was. A default
// headline that was ever visible shows in __edgerec_log.
const recorder = `(() => {
  const log = window.__edgerec_log = [];
  const t = window.__edgerec_times = {};
  const look = (why) => {
    const h = document.querySelector('[data-edgerec=headline]');
    if (!h) return;
    const cs = getComputedStyle(h);
    const visible = cs.visibility === 'visible' && cs.display !== 'none';
    const last = log[log.length - 1];
    if (!last || last.text !== h.textContent || last.visible !== visible) {
      log.push({text: h.textContent, visible, why, at: performance.now()});
    }
    if (visible && t.visible === undefined) t.visible = performance.now();
  };
  new MutationObserver(() => look('mutation')).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  const frame = () => { look('frame'); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  new PerformanceObserver((l) => { for (const e of l.getEntries()) t[e.name] = e.startTime; }).observe({type: 'paint', buffered: true});
})();`

// beacon is a request to /v1/events as the browser sent it. (Whether it
// was stored is read from the server: a beacon sent as the page goes
// gets its answer after the tab's network events moved to the next page.)
type beacon struct {
	typ  network.ResourceType
	body string
}

// netLog keeps the requests of a tab to edgerec's /v1/events and
// /v1/decide, from the protocol's network events.
type netLog struct {
	mu      sync.Mutex
	beacons []beacon
	decides []string // URLs of /v1/decide calls
}

// watch starts logging the network events of the tab of ctx.
func watch(ctx context.Context) *netLog {
	l := &netLog{}
	sent := chromedp.Events(ctx, network.RequestWillBeSent)
	go func() {
		for ev, err := range sent {
			if err != nil {
				return
			}
			u := ev.Request.URL
			l.mu.Lock()
			switch {
			case strings.Contains(u, "/v1/events"):
				var body strings.Builder
				for _, e := range ev.Request.PostDataEntries {
					body.Write(e.Bytes)
				}
				l.beacons = append(l.beacons, beacon{typ: ev.Type, body: body.String()})
			case strings.Contains(u, "/v1/decide"):
				l.decides = append(l.decides, u)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// find returns the beacons that hold every string of want.
func (l *netLog) find(want ...string) []beacon {
	l.mu.Lock()
	defer l.mu.Unlock()
	var got []beacon
	for _, b := range l.beacons {
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(b.body, w)
		}
		if ok {
			got = append(got, b)
		}
	}
	return got
}

// waitSent waits until n beacons that hold every string of want were
// sent, and checks they went by navigator.sendBeacon (type Ping).
func (l *netLog) waitSent(t *testing.T, n int, want ...string) []beacon {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := l.find(want...)
		if len(got) >= n {
			for _, b := range got {
				if b.typ != network.ResourceTypePing {
					t.Fatalf("beacon %s sent as %s, not by sendBeacon (Ping)", b.body, b.typ)
				}
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d beacons with %q after 20 s; want %d; all: %s", len(got), want, n, l)
		}
	}
}

func (l *netLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, x := range l.beacons {
		fmt.Fprintf(&b, "\n  %s %s", x.typ, x.body)
	}
	return b.String()
}

// apiDecision is the part of a decision the test reads.
type apiDecision struct {
	Experiment, Variant, Reason, Visitor, Exposure string
	DecisionID                                     string `json:"decision_id"`
	Payload                                        map[string]string
}

// tab is a browser tab of a fresh browser context: a visitor of their own.
type tab struct {
	ctx context.Context
	net *netLog
}

func newTab(t *testing.T, browser context.Context, edgerec string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		t.Fatal(err)
	}
	l := watch(ctx)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recorder}); err != nil {
		t.Fatal(err)
	}
	return &tab{ctx: ctx, net: l}
}

// do runs actions with a deadline.
func (tb *tab) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// inPage runs a in the page. Right after a navigation the tab may still
// name the old page's JavaScript context, which Chromium has dropped:
// then a runs again, in the new one.
func inPage[T any](tb *tab, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	for {
		v, err := chromedp.Run(ctx, a)
		if err == nil || ctx.Err() != nil || !(strings.Contains(err.Error(), "Cannot find context with specified id") ||
			strings.Contains(err.Error(), "Execution context was destroyed")) {
			return v, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eval evaluates a JavaScript expression in the page into T.
func eval[T any](t *testing.T, tb *tab, expr string) T {
	t.Helper()
	v, err := inPage(tb, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// until waits until a JavaScript predicate holds in the page.
func (tb *tab) until(t *testing.T, predicate string) {
	t.Helper()
	if _, err := inPage(tb, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("waiting for %s: %v; beacons: %s", predicate, err, tb.net)
	}
}

// decided waits until the decision is applied and the headline is
// visible, and returns the decision.
func (tb *tab) decided(t *testing.T) apiDecision {
	t.Helper()
	tb.until(t, `window.edgerec && edgerec.decision !== null && document.readyState !== 'loading' &&
		getComputedStyle(document.querySelector('[data-edgerec=headline]')).visibility === 'visible'`)
	raw := eval[[]byte](t, tb, `edgerec.decision`)
	var d apiDecision
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("decision %s: %v", raw, err)
	}
	return d
}

// shown returns the variants of the data-edgerec-show sections that are
// displayed, joined by "|".
func (tb *tab) shown(t *testing.T) string {
	t.Helper()
	return eval[string](t, tb, `[...document.querySelectorAll('[data-edgerec-show]')].filter(e => getComputedStyle(e).display !== 'none').map(e => e.dataset.edgerecShow).join('|')`)
}

// paint is one entry of the recorder's log.
type paint struct {
	Text    string
	Visible bool
	Why     string
	At      float64
}

func (tb *tab) paints(t *testing.T) []paint {
	t.Helper()
	var ps []paint
	if err := json.Unmarshal(eval[[]byte](t, tb, `window.__edgerec_log`), &ps); err != nil {
		t.Fatal(err)
	}
	return ps
}

func (tb *tab) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// variantResult is a variant's row of the experiment's results.
type variantResult struct {
	Variant                string
	Exposures, Conversions float64
	Rate                   *float64
}

func results(t *testing.T, s *proc) map[string]variantResult {
	t.Helper()
	code, body := s.get(t, "/v1/experiments/lp-consulting-cta/results?goal=contact")
	if code != 200 {
		t.Fatalf("results: %d %s", code, body)
	}
	var r struct{ Variants []variantResult }
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("results: %v: %s", err, body)
	}
	m := map[string]variantResult{}
	for _, v := range r.Variants {
		m[v.Variant] = v
	}
	return m
}

// waitProfile waits until the visitor's profile counts want events of each
// type today: beacons are stored as they arrive, after the page moved on.
func waitProfile(t *testing.T, s *proc, visitor string, want map[string]int) {
	t.Helper()
	var got map[string]int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		code, body := s.do(t, "GET", "/v1/users/"+url.PathEscape(visitor), s.key, "")
		if code != 200 {
			t.Fatalf("profile of %s: %d %s", visitor, code, body)
		}
		var p struct {
			Counts map[string]map[string]map[string]int
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("profile of %s: %v: %s", visitor, err, body)
		}
		got = p.Counts["1d"]["events"]
		ok := true
		for typ, n := range want {
			ok = ok && got[typ] == n
		}
		if ok {
			return
		}
	}
	t.Fatalf("profile of %s counts %v; want %v (every beacon sent, stored)", visitor, got, want)
}

// TestBrowser serves a landing page from one loopback server and edgerec
// from another, and drives the page in headless Chromium, as a visitor
// would, with the served /v1/edgerec.js: first on the same site
// (127.0.0.1, two ports), then across sites (the page on localhost), where
// the browser keeps no cookie of edgerec's and the visitor's id lives in
// the page's own storage. One browser, a fresh browser context (a new
// visitor) per tab.
func TestBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	dir := t.TempDir()
	events, items := genSample(t, dir, 5000, 3)
	data := filepath.Join(dir, "data")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots")); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	// The sample's config, with no universal holdout (a random visitor
	// id would land in it one time in a hundred), exposures counted when
	// the page shows the variant, and the contact form's goal.
	cfg := string(mustRead(t, repoFile("edgerec.yaml")))
	for old, repl := range map[string]string{
		"holdout: 0.01\n":                     "holdout: 0\n",
		"    experiment: lp-consulting-cta\n": "    experiment: lp-consulting-cta\n    exposure: event\n    goals: [{id: contact, primary: true}]\n",
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("edgerec.yaml has no %q any more: update the test", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	cfgPath := filepath.Join(dir, "edgerec.yaml")
	writeFile(t, cfgPath, cfg)

	// The site's server: its port must be known for --cors first.
	site, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sitePort := site.Addr().(*net.TCPAddr).Port
	addr := freeAddr(t)
	edgerec := "http://" + addr
	s := startServer(t, data, addr, "--config", cfgPath,
		"--cors", fmt.Sprintf("http://127.0.0.1:%d,http://localhost:%d", sitePort, sitePort))
	t.Cleanup(func() { s.stop(t) })

	var submitted atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /lp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, landingPage, edgerec+"/v1/edgerec.js", `data-timeout="5000"`)
	})
	// The same page with edgerec behind a proxy on the site (a path
	// prefix, as behind a CDN) that holds each decision until the test
	// saw the page give up waiting for it: a decision after the timeout.
	release := make(chan struct{})
	mux.HandleFunc("GET /slow-lp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, landingPage, "/slow/v1/edgerec.js", `data-timeout="300"`)
	})
	target, _ := url.Parse(edgerec)
	proxy := httputil.NewSingleHostReverseProxy(target)
	mux.Handle("/slow/", http.StripPrefix("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/decide" {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	})))
	mux.HandleFunc("POST /thanks", func(w http.ResponseWriter, r *http.Request) {
		submitted.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>送信完了</title></head><body><p>ありがとうございました。</p></body></html>`)
	})
	mux.HandleFunc("GET /item", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>%s</title></head><body></body></html>`, r.URL.Query().Get("id"))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(site)
	t.Cleanup(func() { srv.Close() })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Headless,
		chromedp.UserAgent(desktopUA), chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "ja-JP"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	start := time.Now()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("cannot start chromium %s: %v", chrome, err)
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))

	for _, setup := range []struct{ name, host string }{
		{"same-site", "127.0.0.1"},
		{"cross-site", "localhost"},
	} {
		t.Run(setup.name, func(t *testing.T) {
			site := fmt.Sprintf("http://%s:%d", setup.host, sitePort)
			browserLandingPage(t, browser, s, edgerec, site, &submitted)
		})
	}
	t.Run("late-decision", func(t *testing.T) {
		lateDecision(t, browser, edgerec, fmt.Sprintf("http://127.0.0.1:%d", sitePort), release)
	})
}

// browserLandingPage checks one setup: the searcher's headline without
// flicker, a sticky split across reloads, the widget's impression and
// click, and conversions by sendBeacon counted once per visitor.
func browserLandingPage(t *testing.T, browser context.Context, s *proc, edgerec, site string, submitted *atomic.Int64) {
	// A visitor who searched 「営業 成約率改善」: the sales headline, and
	// the page's default headline never painted.
	searcher := newTab(t, browser, edgerec)
	searcher.do(t, chromedp.Navigate(site+"/lp?q="+url.QueryEscape(salesQuery)))
	d := searcher.decided(t)
	if d.Variant != "sales_close_rate" || d.Reason != "rule" {
		t.Fatalf("searcher's decision: %+v", d)
	}
	if h := eval[string](t, searcher, `document.querySelector('h1').textContent`); h != salesHeadline {
		t.Fatalf("searcher's headline %q", h)
	}
	if title := eval[string](t, searcher, `document.querySelector('.cta').title`); title != salesHeadline {
		t.Fatalf("call to action's title %q; want the payload's headline", title)
	}
	if got := searcher.shown(t); got != "" {
		t.Fatalf("sections shown to the searcher: %q; want none", got)
	}
	ps := searcher.paints(t)
	sawHidden := false
	for _, p := range ps {
		if p.Text == defaultHeadline && p.Visible {
			t.Fatalf("the default headline was visible to a searcher (%s at %.1f ms); log: %+v", p.Why, p.At, ps)
		}
		sawHidden = sawHidden || (p.Text == defaultHeadline && !p.Visible)
	}
	if !sawHidden {
		t.Fatalf("the recorder never saw the hidden default headline, so it proves nothing; log: %+v", ps)
	}
	searcher.until(t, `performance.getEntriesByName('first-contentful-paint').length > 0`)
	times := eval[map[string]float64](t, searcher, `Object.assign({visible: __edgerec_times.visible, decided: edgerec.timing.decided, start: edgerec.timing.start},
		...performance.getEntriesByType('paint').map(e => ({[e.name]: e.startTime})))`)
	t.Logf("searcher: script ran at %.0f ms, decision applied at %.0f ms, headline visible at %.0f ms; first paint %.0f ms, first contentful paint %.0f ms",
		times["start"], times["decided"], times["visible"], times["first-paint"], times["first-contentful-paint"])
	if times["visible"] == 0 || times["first-contentful-paint"] == 0 {
		t.Fatalf("timings not recorded: %v", times)
	}
	searcher.until(t, `document.querySelectorAll('#recs .edgerec-item').length === 4`)
	searcher.screenshot(t, "searcher.png")
	// A rule's visitor is not in the split: no exposure beacon.
	if n := len(searcher.net.find(`"event":"exposure"`)); n != 0 {
		t.Fatalf("the searcher sent %d exposure beacons: %s", n, searcher.net)
	}
	vid := eval[string](t, searcher, `localStorage.getItem('edgerec_vid')`)
	if vid == "" || vid != d.Visitor || !strings.Contains(eval[string](t, searcher, `document.cookie`), "edgerec_vid="+vid) {
		t.Fatalf("visitor id %q not kept on the site (decision's %q, cookies %q)", vid, d.Visitor, eval[string](t, searcher, `document.cookie`))
	}

	// A visitor without a keyword: split, sticky across three reloads.
	before := results(t, s)
	v := newTab(t, browser, edgerec)
	v.do(t, chromedp.Navigate(site+"/lp"))
	first := v.decided(t)
	if first.Reason != "split" || (first.Variant != "default" && first.Variant != "cta_consult") || first.Exposure != "event" {
		t.Fatalf("first decision: %+v", first)
	}
	for i := range 3 {
		// The widget first: its impression beacon goes before the reload.
		v.until(t, `document.querySelectorAll('#recs .edgerec-item').length === 4`)
		v.do(t, chromedp.Reload())
		d := v.decided(t)
		if d.Variant != first.Variant || d.Visitor != first.Visitor || d.Reason != "sticky" {
			t.Fatalf("reload %d: %+v; first %+v", i+1, d, first)
		}
		if cta := eval[string](t, v, `document.querySelector('.cta').textContent`); cta != first.Payload["cta"] {
			t.Fatalf("reload %d: call to action %q; want %q", i+1, cta, first.Payload["cta"])
		}
		want := map[string]string{"default": "default fallback", "cta_consult": "cta_consult"}[first.Variant]
		if got := v.shown(t); got != want {
			t.Fatalf("reload %d: sections shown %q; want %q", i+1, got, want)
		}
	}
	v.net.mu.Lock()
	decides := append([]string(nil), v.net.decides...)
	v.net.mu.Unlock()
	if len(decides) != 4 || strings.Contains(decides[0], "visitor=") {
		t.Fatalf("decide calls: %q; want 4, the first without a visitor", decides)
	}
	for _, u := range decides[1:] {
		if !strings.Contains(u, "visitor="+first.Visitor) {
			t.Fatalf("a reload's decision did not name the visitor %s: %s", first.Visitor, u)
		}
	}
	// One exposure beacon for the four views of the same decision.
	v.net.waitSent(t, 1, `"event":"exposure"`, first.DecisionID)
	if n := len(v.net.find(`"event":"exposure"`)); n != 1 {
		t.Fatalf("%d exposure beacons; want 1: %s", n, v.net)
	}

	// The widget: four items, an impression beacon per view, a click
	// beacon with the item.
	v.until(t, `document.querySelectorAll('#recs .edgerec-item').length === 4`)
	v.net.waitSent(t, 4, `"event":"impression"`, `"placement":"home"`, `"rec_id":"`, `"visitor":"`+first.Visitor+`"`)
	item := eval[string](t, v, `document.querySelector('#recs .edgerec-item').dataset.edgerecId`)
	loaded := chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS("#recs .edgerec-item a")))
	if _, err := chromedp.Run(v.ctx, loaded); err != nil {
		t.Fatal(err)
	}
	if got := eval[string](t, v, `document.title`); got != item {
		t.Fatalf("clicked item %q, landed on %q", item, got)
	}
	v.net.waitSent(t, 1, `"event":"click"`, `"item_id":"`+item+`"`, `"placement":"home"`, `"rec_id":"`)

	// The contact form, submitted three times: each submit sends a
	// conversion by sendBeacon as the page goes; the visitor converts once.
	sub := submitted.Load()
	for i := range 3 {
		v.do(t, chromedp.Navigate(site+"/lp"))
		v.decided(t)
		v.until(t, `document.querySelectorAll('#recs .edgerec-item').length === 4`)
		loaded := chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS("#contact button")))
		if _, err := chromedp.Run(v.ctx, loaded); err != nil {
			t.Fatal(err)
		}
		if got := eval[string](t, v, `location.pathname`); got != "/thanks" {
			t.Fatalf("submit %d landed on %s", i+1, got)
		}
		v.net.waitSent(t, i+1, `"event":"conversion"`, `"goal":"contact"`, first.DecisionID, `"visitor":"`+first.Visitor+`"`)
	}
	if n := submitted.Load() - sub; n != 3 {
		t.Fatalf("the site got %d submits; want 3", n)
	}
	// Every beacon the browser sent was taken without the API key and
	// stored: the visitor's profile counts each of them.
	want := map[string]int{}
	for _, typ := range []string{"exposure", "impression", "click", "conversion"} {
		want[typ] = len(v.net.find(`"event":"` + typ + `"`))
	}
	waitProfile(t, s, first.Visitor, want)
	after := results(t, s)
	r, r0 := after[first.Variant], before[first.Variant]
	if r.Exposures-r0.Exposures != 1 || r.Conversions-r0.Conversions != 1 {
		t.Errorf("variant %s: exposures %v → %v, conversions %v → %v; want one more of each for one visitor",
			first.Variant, r0.Exposures, r.Exposures, r0.Conversions, r.Conversions)
	}
	for name, x := range after {
		if x.Conversions > x.Exposures || x.Rate != nil && (*x.Rate < 0 || *x.Rate > 1 || math.IsNaN(*x.Rate)) {
			t.Errorf("variant %s: %v conversions of %v exposures, rate %v", name, x.Conversions, x.Exposures, x.Rate)
		}
	}
	if sales := after["sales_close_rate"]; sales.Exposures != 0 {
		t.Errorf("the rule's visitors were counted in the split: %+v", sales)
	}
	v.do(t, chromedp.Navigate(site+"/lp"))
	v.decided(t)
	v.until(t, `document.querySelectorAll('#recs .edgerec-item').length === 4`)
	v.screenshot(t, "split-"+first.Variant+".png")

	// Which cookies the browser kept for edgerec's own origin: on the
	// same site its edgerec_vid; across sites none (third-party).
	cookies, err := chromedp.Call(v.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{edgerec + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cookies.Cookies {
		names = append(names, c.Name+"="+c.Value)
	}
	t.Logf("cookies the browser sends to %s: %q (visitor %s kept by the page)", edgerec, names, first.Visitor)
}

// lateDecision: a decision that comes after the page's timeout is not
// applied: the page shows its defaults at the timeout and keeps them (no
// flicker to the variant), and no exposure is sent for it.
func lateDecision(t *testing.T, browser context.Context, edgerec, site string, release chan struct{}) {
	v := newTab(t, browser, edgerec)
	v.do(t, chromedp.Navigate(site+"/slow-lp?q="+url.QueryEscape(salesQuery)))
	// The timeout shows the default headline; then the late decision
	// comes, bringing the visitor's id (set first thing on its arrival).
	v.until(t, `getComputedStyle(document.querySelector('h1')).visibility === 'visible' && edgerec.visitor === null`)
	close(release)
	v.until(t, `edgerec.visitor !== null && localStorage.getItem('edgerec_decisions') === null && document.querySelectorAll('#recs .edgerec-item').length === 4`)
	if d := eval[[]byte](t, v, `edgerec.decision`); string(d) != "null" {
		t.Fatalf("a late decision was applied: %s", d)
	}
	for _, p := range v.paints(t) {
		if p.Text != defaultHeadline {
			t.Fatalf("the headline changed after the timeout: %+v", v.paints(t))
		}
	}
	if got := v.shown(t); got != "default fallback" {
		t.Fatalf("sections shown without a decision: %q; want the fallback", got)
	}
	v.net.waitSent(t, 1, `"event":"impression"`)
	if n := len(v.net.find(`"event":"exposure"`)); n != 0 {
		t.Fatalf("exposure beacons for a late decision: %s", v.net)
	}
	// Not converted for either: the visitor saw no variant.
	if n := eval[int](t, v, `edgerec.convert('contact')`); n != 0 {
		t.Fatalf("edgerec.convert sent %d conversions after a late decision", n)
	}
	v.screenshot(t, "late-decision.png")
}
