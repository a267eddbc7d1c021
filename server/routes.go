package server

import (
	"math/bits"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// endpoint is one route of the router: its methods, its path as the
// OpenAPI document (api/openapi.yaml) writes it, the metric it counts
// under and the query parameters it reads. The router (server.go) names an
// endpoint of this table for every path it answers, and serve takes the
// methods and parameters from it, so the table is the router's own list:
// TestOpenAPIContract checks it against the document both ways.
type endpoint struct {
	methods methods
	path    string
	metric  route
	// query lists the query parameters the endpoint reads; any other is
	// refused with 400 naming it. Unchecked endpoints (not under /v1/)
	// ignore what they do not read.
	query []string
	// queryPrefix: parameters starting with it are accepted and ignored
	// (utm_* beyond the five read, on landing-page endpoints).
	queryPrefix string
	unchecked   bool
	// byFirst[c] has bit i set when query[i] starts with byte c: a name
	// is compared only with the known names of its first byte
	// (BenchmarkCheckQuery: /v1/page's eight parameters against its 18
	// names took 0.25-0.4 µs compared with each in turn).
	byFirst [128]uint64
}

func init() {
	for i := range endpoints {
		e := &endpoints[i]
		if len(e.query) > 64 {
			panic("BUG: more than 64 query parameters on " + e.path)
		}
		for j, q := range e.query {
			if q == "" || q[0] >= 128 {
				panic("BUG: bad query parameter name " + strconv.Quote(q))
			}
			e.byFirst[q[0]] |= 1 << j
		}
	}
}

// Endpoints of the table, in the order of the document.
const (
	epSimilar = iota
	epBought
	epPopular
	epUserRecs
	epRecommend
	epDecide
	epPage
	epSegments
	epProfile
	epEvents
	epItems
	epResults
	epStats
	epMembers
	epScript
	epAdminSnapshots
	epAdminConfig
	epAdminStatus
	epHealthz
	epReadyz
	epMetrics
	epOpenAPI
	epDashboard
	epDashboardLogin
	epDashboardLogout
	epPprofIndex
	epPprof
	epCount
)

// Query parameters shared by the recommendation endpoints.
var (
	qFilters  = []string{"k", "category", "price_min", "price_max", "exclude"}
	qDecide   = []string{"page", "visitor", "user", "q", "ref", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"}
	qItemList = append(qFilters[:len(qFilters):len(qFilters)], "user", "visitor", "cart")
)

var endpoints = [epCount]endpoint{
	epSimilar:   {methods: mGet, path: "/v1/items/{id}/similar", metric: routeSimilar, query: qItemList},
	epBought:    {methods: mGet, path: "/v1/items/{id}/bought-together", metric: routeBought, query: qItemList},
	epPopular:   {methods: mGet, path: "/v1/popular", metric: routePopular, query: append(qFilters[:len(qFilters):len(qFilters)], "user", "visitor")},
	epUserRecs:  {methods: mGet, path: "/v1/users/{id}/recommendations", metric: routeUser, query: qFilters},
	epRecommend: {methods: mGet, path: "/v1/recommend", metric: routeRecommend, query: append(qItemList[:len(qItemList):len(qItemList)], "placement", "item")},
	epDecide:    {methods: mGet | mKeyless, path: "/v1/decide", metric: routeDecide, query: qDecide, queryPrefix: "utm_"},
	epPage: {methods: mGet | mKeyless, path: "/v1/page", metric: routePage, queryPrefix: "utm_",
		query: append(append(qDecide[:len(qDecide):len(qDecide)], qFilters...), "placements", "cart", "item")},
	epSegments:       {methods: mGet, path: "/v1/users/{id}/segments", metric: routeProfile},
	epProfile:        {methods: mGet | mPut | mPost, path: "/v1/users/{id}", metric: routeProfile},
	epEvents:         {methods: mPost, path: "/v1/events", metric: routeEvents},
	epItems:          {methods: mPut | mPost, path: "/v1/items", metric: routeItems},
	epResults:        {methods: mGet, path: "/v1/experiments/{id}/results", metric: routeResults, query: []string{"phase", "goal", "format"}},
	epStats:          {methods: mGet, path: "/v1/placements/{id}/stats", metric: routeStats},
	epMembers:        {methods: mGet | mPost, path: "/v1/segments/{id}/members", metric: routeMembers, query: []string{"format", "channel", "after", "limit", "since", "with_recs", "attrs", "raw_csv"}},
	epScript:         {methods: mGet, path: "/v1/edgerec.js", metric: routeScript, query: []string{"v"}},
	epAdminSnapshots: {methods: mPost, path: "/v1/admin/snapshots", metric: routeAdmin},
	epAdminConfig:    {methods: mPost, path: "/v1/admin/config", metric: routeAdmin},
	epAdminStatus:    {methods: mGet, path: "/v1/admin/status", metric: routeAdmin},
	epHealthz:        {methods: mGet, path: "/healthz", metric: routeHealth, unchecked: true},
	epReadyz:         {methods: mGet, path: "/readyz", metric: routeHealth, unchecked: true},
	epMetrics:        {methods: mGet, path: "/metrics", metric: routeMetrics, unchecked: true},
	epOpenAPI:        {methods: mGet, path: "/openapi.json", metric: routeOpenAPI, unchecked: true},
	epDashboard:      {methods: mGet, path: "/dashboard", metric: routeDashboard, unchecked: true},
	epDashboardLogin: {methods: mGet | mPost, path: "/dashboard/login", metric: routeDashboard, unchecked: true},
	// GET of /dashboard/logout redirects to the page; only a POST signs out.
	epDashboardLogout: {methods: mGet | mPost, path: "/dashboard/logout", metric: routeDashboard, unchecked: true},
	// pprof: the index (/debug/pprof redirects to it) and every profile
	// under it, one documented prefix; POST for pprof's symbol lookup.
	epPprofIndex: {methods: mGet, path: "/debug/pprof/", metric: routeAdmin, unchecked: true},
	epPprof:      {methods: mGet | mPost, path: "/debug/pprof/{profile}", metric: routeAdmin, unchecked: true},
}

// Route is one endpoint as Routes lists it.
type Route struct {
	// Methods are the methods answered, upper case; GET implies HEAD.
	Methods []string
	// Path is the path template, as in the OpenAPI document.
	Path string
	// Query lists the query parameters read; other ones are refused with
	// 400 unless QueryPrefix starts them. Nil when unchecked.
	Query       []string
	QueryPrefix string
	// Unchecked: unknown query parameters are ignored (outside /v1/).
	Unchecked bool
}

// Routes lists every endpoint the server answers, in the order of
// api/openapi.yaml. The caller may modify the result.
func Routes() []Route {
	out := make([]Route, len(endpoints))
	for i, e := range endpoints {
		r := Route{Path: e.path, Query: append([]string(nil), e.query...), QueryPrefix: e.queryPrefix, Unchecked: e.unchecked}
		for _, x := range [...]struct {
			m    methods
			name string
		}{{mGet, "GET"}, {mPost, "POST"}, {mPut, "PUT"}} {
			if e.methods&x.m != 0 {
				r.Methods = append(r.Methods, x.name)
			}
		}
		out[i] = r
	}
	return out
}

// serveEP runs h for endpoint ep (serve) and returns the metric the
// request counts under.
func (s *Server) serveEP(ctx *fasthttp.RequestCtx, ep int, h func(*fasthttp.RequestCtx) error) (route, error) {
	e := &endpoints[ep]
	return e.metric, s.serve(ctx, e, h)
}

// serveOps runs h for an operations endpoint (health, metrics, the
// document, pprof): its methods only, 405 with Allow for others; no CORS,
// no query check.
func serveOps(ctx *fasthttp.RequestCtx, ep int, h func(*fasthttp.RequestCtx) error) (route, error) {
	e := &endpoints[ep]
	if !e.methods.allows(ctx) {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, allowHeader[e.methods&mAll])
		return e.metric, errMethod
	}
	return e.metric, h(ctx)
}

// checkQuery refuses the query parameters e does not read: 400 naming
// them, so that a misspelt parameter (limt=5, categroy=…) is not silently
// ignored. It allocates only to name them.
func checkQuery(args *fasthttp.Args, e *endpoint) error {
	if args.Len() == 0 || e.unchecked {
		return nil
	}
	var bad []string
	for k := range args.All() {
		if !knownParam(k, e) {
			bad = appendUnique(bad, string(k))
		}
	}
	if bad == nil {
		return nil
	}
	return unknownParams(bad, e)
}

func knownParam(k []byte, e *endpoint) bool {
	if len(k) == 0 || k[0] >= 128 {
		return false
	}
	for m := e.byFirst[k[0]]; m != 0; m &= m - 1 {
		if string(k) == e.query[bits.TrailingZeros64(m)] {
			return true
		}
	}
	return e.queryPrefix != "" && len(k) > len(e.queryPrefix) && string(k[:len(e.queryPrefix)]) == e.queryPrefix
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// unknownParams is the 400 of checkQuery: the unknown names (quoted, at
// most 8, each cut at 64 bytes: they come from the client) and the known
// ones.
func unknownParams(bad []string, e *endpoint) error {
	var b strings.Builder
	b.WriteString("unknown query parameter")
	if len(bad) > 1 {
		b.WriteByte('s')
	}
	b.WriteByte(' ')
	for i, k := range bad {
		if i == 8 {
			b.WriteString(", …")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(k) > 64 {
			k = k[:64]
		}
		b.WriteString(strconv.Quote(k))
	}
	b.WriteString("; ")
	b.WriteString(e.path)
	if len(e.query) == 0 {
		b.WriteString(" takes none")
	} else {
		b.WriteString(" takes ")
		b.WriteString(strings.Join(e.query, ", "))
		if e.queryPrefix != "" {
			b.WriteString(" and " + e.queryPrefix + "*")
		}
	}
	return errorf(fasthttp.StatusBadRequest, "unknown_parameter", b.String())
}
