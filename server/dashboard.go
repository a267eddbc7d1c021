package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"html/template"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
)

// The results dashboard: GET /dashboard, a server-rendered page of every
// experiment's results, every placement's measurements and every
// segment's size, behind the admin key. A browser signs in once with the
// key (POST /dashboard/login) and then carries a session cookie: an
// expiry and its HMAC under a key derived from the admin key, never the
// key itself, so changing the admin key ends every session. A reverse
// proxy may instead send the key as Authorization: Bearer on each request.
//
// The page renders the engine.ExperimentResult values that
// GET /v1/experiments/{id}/results serves as JSON, through html/template
// (dashboard/*.html, embedded): no script, no external request, inline
// CSS and SVG.

//go:embed dashboard/*.html
var dashboardFiles embed.FS

var dashboardTmpl = template.Must(template.New("dashboard").Funcs(dashFuncs).ParseFS(dashboardFiles, "dashboard/*.html"))

const (
	dashCookie     = "edgerec_dash"
	dashSessionTTL = 12 * time.Hour
	// dashSegmentsTTL is how long segment sizes are remembered: counting
	// them scans every profile.
	dashSegmentsTTL = time.Minute
	// dashSegmentsMax bounds the time one count may take.
	dashSegmentsMax = 10 * time.Second
)

// dashState is the dashboard's part of a Server.
type dashState struct {
	key    []byte      // signs session tokens; nil without an admin key
	logins *ipLimiter  // sign-in attempts per client address
	segs   segSizeMemo // the last count of segment sizes
}

func newDashState(adminKey string) *dashState {
	d := &dashState{logins: newIPLimiter(10.0/60, 10)}
	if adminKey != "" {
		m := hmac.New(sha256.New, []byte(adminKey))
		m.Write([]byte("edgerec dashboard session key v1"))
		d.key = m.Sum(nil)
	}
	return d
}

// routeDashboard routes /dashboard and what is under it.
func (s *Server) routeDashboard(ctx *fasthttp.RequestCtx, path []byte) error {
	switch string(path) {
	case "/dashboard":
		if !ctx.IsGet() && !ctx.IsHead() {
			return errMethod
		}
		return s.handleDashboard(ctx)
	case "/dashboard/login":
		if ctx.IsPost() {
			return s.handleDashboardLogin(ctx)
		}
	case "/dashboard/logout":
		if ctx.IsPost() {
			s.setDashCookie(ctx, "", -1)
			seeOther(ctx, "/dashboard")
			return nil
		}
	}
	// GET of the form targets, "/dashboard/": to the page. Logging out
	// takes a POST, so that no link or image can do it.
	if ctx.IsGet() || ctx.IsHead() {
		seeOther(ctx, "/dashboard")
		return nil
	}
	return errMethod
}

// handleDashboard answers GET /dashboard: the login form without a
// session, else the results (?exp=ID&phase=N&goal=G select what
// experiment ID shows).
func (s *Server) handleDashboard(ctx *fasthttp.RequestCtx) error {
	switch s.dashAuth(ctx) {
	case dashNone:
		return s.renderLogin(ctx, fasthttp.StatusOK, "")
	case dashRefused:
		if len(ctx.Request.Header.Cookie(dashCookie)) > 0 {
			s.setDashCookie(ctx, "", -1)
		}
		return s.renderLogin(ctx, fasthttp.StatusUnauthorized, "Your session has expired or is not valid: sign in again.")
	}
	args := ctx.QueryArgs()
	q := dashQuery{exp: string(args.Peek("exp")), goal: string(args.Peek("goal"))}
	if b := args.Peek("phase"); len(b) > 0 {
		n, err := strconv.ParseUint(string(b), 10, 32)
		if err != nil || n == 0 {
			q.phaseErr = "phase: want a phase number from 1"
		}
		q.phase = n
	}
	page, err := s.dashboardPage(q)
	if err != nil {
		return err
	}
	return renderDash(ctx, page.Status, "results.html", page)
}

// handleDashboardLogin answers POST /dashboard/login: the admin key in
// the form field "key" sets the session cookie and goes to the page (or
// to next, a /dashboard URL); a wrong key shows the form again, 401.
func (s *Server) handleDashboardLogin(ctx *fasthttp.RequestCtx) error {
	if !s.dash.logins.allow(clientKey(ctx), ctx.Time().UnixNano()) {
		ctx.Response.Header.Set("Retry-After", "6")
		return s.renderLogin(ctx, fasthttp.StatusTooManyRequests, "Too many sign-in attempts from this address: wait a minute.")
	}
	if s.dash.key == nil {
		return s.renderLogin(ctx, fasthttp.StatusUnauthorized, "This server has no admin key: the dashboard is closed.")
	}
	if subtle.ConstantTimeCompare(ctx.PostArgs().Peek("key"), []byte(s.o.AdminKey)) != 1 {
		return s.renderLogin(ctx, fasthttp.StatusUnauthorized, "Wrong admin key.")
	}
	exp := s.e.Now().Add(dashSessionTTL).Unix()
	s.setDashCookie(ctx, s.dashToken(exp), int(dashSessionTTL/time.Second))
	seeOther(ctx, dashNext(ctx.PostArgs().Peek("next")))
	return nil
}

// seeOther redirects to path on this server. The Location stays
// relative: behind a TLS proxy, an absolute one made from this request
// would say http.
func seeOther(ctx *fasthttp.RequestCtx, path string) {
	ctx.Response.Header.Set("Location", path)
	ctx.SetStatusCode(fasthttp.StatusSeeOther)
}

// dashNext is where a login goes on: next when it is the dashboard's own
// URL (never another site: "//host" and "/dashboardX" are refused, and
// so are control characters, which could end the Location header), else
// /dashboard.
func dashNext(next []byte) string {
	for _, c := range next {
		if c < 0x20 || c == 0x7f {
			return "/dashboard"
		}
	}
	if string(next) == "/dashboard" || bytes.HasPrefix(next, []byte("/dashboard?")) {
		return string(next)
	}
	return "/dashboard"
}

type dashAuthResult uint8

const (
	dashNone    dashAuthResult = iota // no credentials: the form
	dashOK                            // a valid session or bearer key
	dashRefused                       // a wrong key, a forged or expired session
)

// dashAuth checks the bearer key when one is sent, else the session
// cookie.
func (s *Server) dashAuth(ctx *fasthttp.RequestCtx) dashAuthResult {
	if len(ctx.Request.Header.Peek("Authorization")) > 0 {
		if authorize(ctx, s.o.AdminKey) == nil {
			return dashOK
		}
		return dashRefused
	}
	c := ctx.Request.Header.Cookie(dashCookie)
	if len(c) == 0 {
		return dashNone
	}
	if s.dashSessionValid(c, s.e.Now()) {
		return dashOK
	}
	return dashRefused
}

// dashToken is a session token valid until Unix time exp:
// "v1.<exp>.<base64url HMAC-SHA256 of v1.<exp>>".
func (s *Server) dashToken(exp int64) string {
	head := "v1." + strconv.FormatInt(exp, 10)
	m := hmac.New(sha256.New, s.dash.key)
	m.Write([]byte(head))
	return head + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// dashSessionValid reports whether tok is a token this server signed that
// has not expired at now.
func (s *Server) dashSessionValid(tok []byte, now time.Time) bool {
	if s.dash.key == nil {
		return false
	}
	rest, ok := bytes.CutPrefix(tok, []byte("v1."))
	if !ok {
		return false
	}
	i := bytes.IndexByte(rest, '.')
	if i <= 0 {
		return false
	}
	exp, err := strconv.ParseInt(string(rest[:i]), 10, 64)
	if err != nil || exp <= now.Unix() || exp > now.Add(dashSessionTTL+time.Minute).Unix() {
		return false
	}
	want := s.dashToken(exp)
	return subtle.ConstantTimeCompare(tok, []byte(want)) == 1
}

// setDashCookie sets the session cookie (maxAge seconds), or clears it
// (maxAge < 0). Secure when the request came over TLS, directly or
// through a proxy that says so.
func (s *Server) setDashCookie(ctx *fasthttp.RequestCtx, value string, maxAge int) {
	var c fasthttp.Cookie
	c.SetKey(dashCookie)
	c.SetValue(value)
	c.SetPath("/dashboard")
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteStrictMode)
	if ctx.IsTLS() || bytes.EqualFold(ctx.Request.Header.Peek("X-Forwarded-Proto"), []byte("https")) {
		c.SetSecure(true)
	}
	if maxAge < 0 {
		c.SetExpire(fasthttp.CookieExpireDelete)
	} else {
		c.SetMaxAge(maxAge)
	}
	ctx.Response.Header.SetCookie(&c)
}

func (s *Server) renderLogin(ctx *fasthttp.RequestCtx, status int, msg string) error {
	next := "/dashboard"
	if ctx.IsGet() || ctx.IsHead() {
		next = dashNext(ctx.RequestURI())
	} else if n := ctx.PostArgs().Peek("next"); len(n) > 0 {
		next = dashNext(n)
	}
	return renderDash(ctx, status, "login.html", struct{ Error, Next string }{msg, next})
}

// renderDash executes template name with data: the whole page, or a 500
// (the templates are checked by the tests, so that is a bug).
func renderDash(ctx *fasthttp.RequestCtx, status int, name string, data any) error {
	var b bytes.Buffer
	if err := dashboardTmpl.ExecuteTemplate(&b, name, data); err != nil {
		return err
	}
	h := &ctx.Response.Header
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetStatusCode(status)
	ctx.SetBody(b.Bytes())
	return nil
}

// dashQuery is what the page's query selects.
type dashQuery struct {
	exp, goal string
	phase     uint64
	phaseErr  string
}

// dashboardPage asks the engine for everything the page shows.
func (s *Server) dashboardPage(q dashQuery) (*dashPage, error) {
	cfg := s.e.Config()
	p := &dashPage{Status: fasthttp.StatusOK, Snapshot: s.e.SnapshotVersion(), Now: fmtTime(s.e.Now().Unix())}
	byID := map[string]*dashExp{}
	add := func(id, kind, where, primary string, variants []dashVariantInfo, rules []*engine.PageRule) error {
		req := engine.ResultsRequest{}
		selected := id == q.exp
		var selErr string
		if selected {
			req.Phase, req.Goal, selErr = q.phase, q.goal, q.phaseErr
		}
		var r *engine.ExperimentResult
		var err error
		if selErr == "" {
			r, err = s.e.Results([]byte(id), req)
		}
		if k := engine.KindOf(err); selected && (selErr != "" || k == engine.Invalid || k == engine.NotFound) {
			if selErr == "" {
				selErr = err.Error()
			}
			p.Status = fasthttp.StatusBadRequest
			r, err = s.e.Results([]byte(id), engine.ResultsRequest{})
		}
		if err != nil {
			return err
		}
		x := newDashExp(r, kind, where, primary, variants, rules)
		x.Err = selErr
		p.Experiments = append(p.Experiments, x)
		byID[id] = x
		return nil
	}
	for _, name := range cfg.PageNames() {
		pg := cfg.Pages[name]
		vs := make([]dashVariantInfo, len(pg.Variants))
		for i, v := range pg.Variants {
			vs[i] = dashVariantInfo{v.ID, payloadLines(v.Payload)}
		}
		primary := ""
		for _, g := range pg.Goals {
			if g.Primary {
				primary = g.ID
			}
		}
		if err := add(pg.Experiment, "landing page", name, primary, vs, pg.Rules); err != nil {
			return nil, err
		}
	}
	for _, name := range cfg.Names() {
		pl := cfg.Placements[name]
		if len(pl.Variants) == 0 {
			continue
		}
		vs := make([]dashVariantInfo, len(pl.Variants))
		for i, v := range pl.Variants {
			vs[i] = dashVariantInfo{v.ID, placementVariantLines(v)}
		}
		// A placement's experiment counts clicks (primary) and purchases.
		if err := add(pl.Experiment, "placement", name, "click", vs, nil); err != nil {
			return nil, err
		}
	}
	if q.exp != "" && byID[q.exp] == nil {
		p.Status = fasthttp.StatusNotFound
		p.Err = "No experiment " + strconv.Quote(q.exp) + " in the config."
	}
	for _, name := range cfg.Names() {
		pl := cfg.Placements[name]
		st, err := s.e.PlacementStats([]byte(name))
		if err != nil {
			return nil, err
		}
		dp := dashPlacement{Name: name, Strategy: pl.Strategy, Stats: st}
		if x := byID[pl.Experiment]; len(pl.Variants) > 0 && x != nil {
			// The experiment's current phase: clicks (its primary goal)
			// and purchases.
			clicks, err := s.e.Results([]byte(pl.Experiment), engine.ResultsRequest{})
			if err != nil {
				return nil, err
			}
			buys, err := s.e.Results([]byte(pl.Experiment), engine.ResultsRequest{Goal: "purchase"})
			if err != nil {
				return nil, err
			}
			dp.Experiment, dp.Anchor, dp.Phase = pl.Experiment, x.Anchor, clicks.Phase
			for i, v := range clicks.Variants {
				if i >= len(buys.Variants) || buys.Variants[i].Variant != v.Variant {
					break // the config changed between the two calls
				}
				dp.Variants = append(dp.Variants, dashPlacementVariant{Color: variantColor(i), Clicks: v, Purchases: buys.Variants[i]})
			}
		}
		p.Placements = append(p.Placements, dp)
	}
	p.Segments = s.segmentSizes()
	return p, nil
}

// segSizeMemo remembers the last count of segment sizes for
// dashSegmentsTTL, per config; one count runs at a time.
type segSizeMemo struct {
	mu  sync.Mutex
	cfg *engine.Config
	at  time.Time
	val engine.SegmentSizes
	err error
}

// segmentSizes returns the segment sizes counted within the last minute,
// or counts them now.
func (s *Server) segmentSizes() dashSegments {
	m := &s.dash.segs
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := s.e.Config()
	if m.cfg != cfg || time.Since(m.at) > dashSegmentsTTL {
		ctx, cancel := context.WithTimeout(context.Background(), dashSegmentsMax)
		m.val, m.err = s.e.SegmentSizes(ctx)
		cancel()
		m.cfg, m.at = cfg, time.Now()
	}
	d := dashSegments{Sizes: m.val, At: fmtTime(m.val.At)}
	if m.err != nil {
		d.Err = "Segment sizes could not be counted: " + m.err.Error()
	}
	return d
}

// fmtTime formats Unix seconds as UTC to the minute.
func fmtTime(sec int64) string {
	return time.Unix(sec, 0).UTC().Format("2006-01-02 15:04 UTC")
}

// payloadLines renders a landing-page variant's payload as "key: value"
// lines, keys sorted, long values cut.
func payloadLines(m map[string]any) []string {
	var lines []string
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lines = append(lines, k+": "+cut(jsonText(m[k]), 120))
	}
	return lines
}

// placementVariantLines says what a placement's variant changes.
func placementVariantLines(v *engine.PlacementVariant) []string {
	var lines []string
	if v.Strategy != "" {
		lines = append(lines, "strategy: "+v.Strategy)
	}
	if v.HistoryWeight != nil {
		lines = append(lines, "history_weight: "+strconv.FormatFloat(*v.HistoryWeight, 'g', -1, 64))
	}
	if v.ExcludeSeen != "" {
		lines = append(lines, "exclude_seen: "+v.ExcludeSeen)
	}
	if v.K > 0 {
		lines = append(lines, "k: "+strconv.Itoa(v.K))
	}
	if v.MaxPerCategory > 0 {
		lines = append(lines, "max_per_category: "+strconv.Itoa(v.MaxPerCategory))
	}
	if len(lines) == 0 {
		lines = append(lines, "the placement as configured")
	}
	return lines
}

func cut(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// isDashboardPath tells whether the dashboard answers path.
func isDashboardPath(path []byte) bool {
	return string(path) == "/dashboard" || bytes.HasPrefix(path, []byte("/dashboard/"))
}
