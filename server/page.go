package server

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/index"
)

// maxPagePlacements bounds the placements of one /v1/page call.
const maxPagePlacements = 8

// handlePage answers GET /v1/page: everything one page view needs in one
// round trip. With page=LP, the landing-page decision (as /v1/decide);
// with placements=a,b, each placement's recommendations (as
// /v1/recommend, sharing item, cart, k and the filters); and the
// visitor's segments:
//
//	{"visitor":"v1","segments":[…],"decision":{…}|null,"recommendations":{"a":{…},"b":{…}}}
//
// The visitor is the visitor parameter or the edgerec_vid cookie; with
// page= and neither, the decision makes one and sets its cookie, as
// /v1/decide does. user= overrides whose history and segments the
// recommendations and the answer's segments use (a logged-in shopper).
// Parameters are checked before the decision is made, so a refused
// request counts no exposure.
func (s *Server) handlePage(ctx *fasthttp.RequestCtx) error {
	args := ctx.QueryArgs()
	cfg := s.cfg.Load()
	names := args.Peek("placements")
	if len(names) == 0 && len(args.Peek("page")) == 0 {
		return badParam("placements", "give page=, placements= or both")
	}
	var pls [maxPagePlacements]*Placement
	var plNames [maxPagePlacements][]byte
	n := 0
	var bad error
	splitComma(names, func(name []byte) {
		switch {
		case bad != nil:
		case n == maxPagePlacements:
			bad = badParam("placements", "at most 8 placements")
		default:
			pl, ok := cfg.Placements[string(name)]
			if !ok {
				bad = badParam("placements", "unknown placement "+string(name)+"; configured: "+cfg.names())
				return
			}
			pls[n], plNames[n] = pl, name
			n++
		}
	})
	if bad != nil {
		return bad
	}
	// Check the recommendation parameters before the decision, whose
	// exposure counts would otherwise stand for a request refused later.
	if n > 0 {
		err := s.serveRead(ctx, func(*index.SnapshotRef, *reqState) error {
			if v := args.Peek("item"); len(v) > 0 {
				return s.checkID("item", v)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	out := (*bp)[:0]
	visitor := args.Peek("visitor")
	if len(visitor) == 0 {
		visitor = ctx.Request.Header.Cookie(visitorCookie)
	}
	out = append(out, `{"decision":`...)
	if len(args.Peek("page")) > 0 {
		if err := s.handleDecide(ctx); err != nil {
			return err
		}
		out = append(out, bytes.TrimSpace(ctx.Response.Body())...)
		if len(visitor) == 0 {
			// A first visit: the decision made an id and set its cookie.
			var c fasthttp.Cookie
			c.SetKey(visitorCookie)
			if ctx.Response.Header.Cookie(&c) {
				visitor = append([]byte(nil), c.Value()...)
			}
		}
	} else {
		out = append(out, "null"...)
	}
	if len(visitor) > 0 {
		if err := s.checkID("visitor", visitor); err != nil {
			return err
		}
		if args.Peek("visitor") == nil {
			args.SetBytesV("visitor", visitor)
		}
	}
	out = append(out, `,"recommendations":{`...)
	for i := range n {
		ctx.Response.ResetBody()
		err := s.serveRead(ctx, func(snap *index.SnapshotRef, rs *reqState) error {
			rs.inner = true
			return s.recommend(ctx, snap, rs, pls[i], plNames[i])
		})
		if err != nil {
			return err
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, plNames[i])
		out = append(out, ':')
		out = append(out, bytes.TrimSpace(ctx.Response.Body())...)
	}
	// The segments of whoever the recommendations were for: user= when
	// given, as placement rules see them.
	who := visitor
	if u := args.Peek("user"); len(u) > 0 {
		if err := s.checkID("user", u); err != nil {
			return err
		}
		who = u
	}
	set, err := s.segmentsOf(cfg, who)
	if err != nil {
		return err
	}
	out = append(out, `},"segments":`...)
	out = appendSegments(out, cfg, set)
	out = append(out, `,"visitor":`...)
	out = appendJSONString(out, visitor)
	out = append(out, "}\n"...)
	*bp = out
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(out)
	return nil
}
