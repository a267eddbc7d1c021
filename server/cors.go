package server

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// methods is the set of methods a route answers.
type methods uint8

const (
	mGet  methods = 1 << iota // GET and HEAD
	mPost                     // POST
	mPut                      // PUT
	// mKeyless: requests without the API key are rate limited per client
	// address (limitKeyless), after the method check: a preflight or a
	// wrong method takes no token.
	mKeyless
	mAll = mGet | mPost | mPut
)

// allowHeader is the Allow (and Access-Control-Allow-Methods) value of
// each set of methods, made once.
var allowHeader = func() (a [mAll + 1]string) {
	for m := range a {
		var b []string
		for _, x := range [...]struct {
			m    methods
			name string
		}{{mGet, "GET, HEAD"}, {mPost, "POST"}, {mPut, "PUT"}} {
			if methods(m)&x.m != 0 {
				b = append(b, x.name)
			}
		}
		a[m] = strings.Join(append(b, "OPTIONS"), ", ")
	}
	return a
}()

// allows reports whether the request's method is in m.
func (m methods) allows(ctx *fasthttp.RequestCtx) bool {
	switch {
	case ctx.IsGet() || ctx.IsHead():
		return m&mGet != 0
	case ctx.IsPost():
		return m&mPost != 0
	case ctx.IsPut():
		return m&mPut != 0
	}
	return false
}

// serve runs h for endpoint e (routes.go): an OPTIONS request is
// answered as a CORS preflight for its methods; another method is
// refused with 405 and Allow, a query parameter e does not read with 400
// (checkQuery). Every answer of the route carries the CORS headers
// (errors too, so that a page can read them).
func (s *Server) serve(ctx *fasthttp.RequestCtx, e *endpoint, h func(*fasthttp.RequestCtx) error) error {
	m := e.methods
	if ctx.IsOptions() {
		s.preflight(ctx, m)
		return nil
	}
	s.cors(ctx)
	if !m.allows(ctx) {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, allowHeader[m&mAll])
		return errMethod
	}
	if err := checkQuery(ctx.QueryArgs(), e); err != nil {
		return err
	}
	if m&mKeyless != 0 {
		if err := s.limitKeyless(ctx); err != nil {
			return err
		}
	}
	return h(ctx)
}

// preflight answers OPTIONS on a route that answers the methods m: 204
// with Allow, and for an allowed origin the CORS grant: the methods, the
// headers a page may send (the API key, a JSON body) and how long the
// browser may remember it.
func (s *Server) preflight(ctx *fasthttp.RequestCtx, m methods) {
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allowHeader[m&mAll])
	if !s.cors(ctx) {
		return
	}
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowMethods, allowHeader[m&mAll])
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowHeaders, "Authorization, Content-Type")
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlMaxAge, "600")
}

// cors lets a page of an allowed origin read the answer, and reports
// whether it did. Without configured origins it does nothing. With them,
// every answer says Vary: Origin, also to requests without Origin or from
// other origins, so that a shared cache never hands one origin's answer
// to another. A listed origin is echoed with
// Access-Control-Allow-Credentials: true, so that fetch(…, {credentials:
// "include"}) sends the server's visitor cookie; an origin allowed only
// by "*" is echoed without credentials: answers such as /v1/page hold a
// visitor's segments and recommendations, which any site could otherwise
// read with the visitor's cookie.
func (s *Server) cors(ctx *fasthttp.RequestCtx) bool {
	if len(s.o.CORSOrigins) == 0 {
		return false
	}
	ctx.Response.Header.Set(fasthttp.HeaderVary, "Origin")
	origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin)
	if len(origin) == 0 {
		return false
	}
	allowed, creds := false, false
	for _, o := range s.o.CORSOrigins {
		if o == string(origin) {
			allowed, creds = true, true
			break
		}
		allowed = allowed || o == "*"
	}
	if !allowed {
		return false
	}
	ctx.Response.Header.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
	if creds {
		ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowCredentials, "true")
	}
	return true
}

// normalizeOrigins writes each configured origin as browsers send it in
// Origin: scheme://host[:port] in lower case, without a trailing slash.
// An entry that is not "*", "null" or such an origin is an error.
func normalizeOrigins(origins []string) ([]string, error) {
	out := make([]string, 0, len(origins))
	for _, o := range origins {
		o = strings.TrimSpace(o)
		if o == "*" || o == "null" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(strings.TrimSuffix(o, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("CORS origin %q: want *, null or scheme://host[:port], such as https://shop.example", o)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}
