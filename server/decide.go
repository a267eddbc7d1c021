package server

import (
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/internal/jsonw"
)

const visitorCookie = "edgerec_vid"

// parseDecide reads a decision request: the visitor from visitor= or the
// edgerec_vid cookie, user=, the User-Agent, q, ref and utm_*.
func parseDecide(ctx *fasthttp.RequestCtx, d *engine.DecideRequest) {
	args := ctx.QueryArgs()
	d.Page = args.Peek("page")
	d.Visitor = args.Peek("visitor")
	if len(d.Visitor) == 0 {
		d.Visitor = ctx.Request.Header.Cookie(visitorCookie)
	}
	d.User = args.Peek("user")
	d.UserAgent = ctx.Request.Header.UserAgent()
	d.Q, d.Ref = args.Peek("q"), args.Peek("ref")
	d.UTMSource, d.UTMMedium, d.UTMCampaign = args.Peek("utm_source"), args.Peek("utm_medium"), args.Peek("utm_campaign")
	d.UTMTerm, d.UTMContent = args.Peek("utm_term"), args.Peek("utm_content")
}

// handleDecide answers /v1/decide: which variant of a landing page this
// visitor sees (engine.View.Decide).
func (s *Server) handleDecide(ctx *fasthttp.RequestCtx) error {
	rs := s.getReq()
	defer s.putReq(rs)
	v := s.e.Acquire()
	defer v.Release()
	parseDecide(ctx, &rs.dreq)
	if err := v.Decide(&rs.dreq, &rs.dec); err != nil {
		return err
	}
	setVisitorCookie(ctx, &rs.dec)
	rs.body = appendDecision(rs.body[:0], v.Config(), &rs.dec)
	rs.body = append(rs.body, '\n')
	writeNoStore(ctx, rs.body)
	return nil
}

// setVisitorCookie keeps a new visitor's id in the edgerec_vid cookie.
func setVisitorCookie(ctx *fasthttp.RequestCtx, d *engine.Decision) {
	if !d.NewVisitor {
		return
	}
	var c fasthttp.Cookie
	c.SetKey(visitorCookie)
	c.SetValueBytes(d.Visitor)
	c.SetMaxAge(365 * 24 * 3600)
	c.SetPath("/")
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ctx.Response.Header.SetCookie(&c)
}

// appendDecision renders a decision as a JSON object. On a page whose
// exposures are counted by event (exposure: event) it says
// "exposure":"event", so that the page's script reports the exposure when
// the variant shows.
func appendDecision(out []byte, cfg *engine.Config, d *engine.Decision) []byte {
	out = append(out, `{"page":`...)
	out = jsonw.AppendString(out, d.Page)
	out = append(out, `,"experiment":`...)
	out = jsonw.AppendString(out, d.Experiment)
	out = append(out, `,"variant":`...)
	out = jsonw.AppendString(out, d.Variant)
	out = append(out, `,"payload":`...)
	out = append(out, d.Payload...)
	out = append(out, `,"decision_id":"`...)
	out = append(out, d.DecisionID...)
	out = append(out, `","reason":"`...)
	out = append(out, d.Reason...)
	out = append(out, `","holdout":`...)
	out = strconv.AppendBool(out, d.Holdout)
	if p := cfg.Pages[d.Page]; p != nil && p.Exposure == "event" {
		out = append(out, `,"exposure":"event"`...)
	}
	out = append(out, `,"visitor":`...)
	out = jsonw.AppendString(out, d.Visitor)
	return append(out, '}')
}

// handlePage answers GET /v1/page: everything one page view needs in one
// round trip (engine.View.Page):
//
//	{"decision":{…}|null,"recommendations":{"a":{…},"b":{…}},"segments":[…],"visitor":"v1"}
//
// The visitor is the visitor parameter or the edgerec_vid cookie; with
// page= and neither, the decision makes one and sets its cookie, as
// /v1/decide does. user= is whose history and segments the
// recommendations and the answer's segments use (a logged-in shopper).
func (s *Server) handlePage(ctx *fasthttp.RequestCtx) error {
	rs := s.getReq()
	defer s.putReq(rs)
	v := s.e.Acquire()
	defer v.Release()
	args := ctx.QueryArgs()
	p := &rs.page
	splitComma(args.Peek("placements"), func(name []byte) { p.Placements = append(p.Placements, name) })
	parseDecide(ctx, &p.Decide)
	p.Page, p.Decide.Page = p.Decide.Page, nil
	parseRec(args, &p.Rec)
	p.Rec.User = args.Peek("user")
	if err := v.Page(p, &rs.pres); err != nil {
		return err
	}
	r := &rs.pres
	out := append(rs.body[:0], `{"decision":`...)
	if r.Decided {
		setVisitorCookie(ctx, &r.Decision)
		out = appendDecision(out, v.Config(), &r.Decision)
	} else {
		out = append(out, "null"...)
	}
	out = append(out, `,"recommendations":{`...)
	for i := range r.Recs {
		if i > 0 {
			out = append(out, ',')
		}
		out = jsonw.AppendString(out, p.Placements[i])
		out = append(out, ':')
		out = s.appendHead(out)
		out = s.appendTail(out, v, &r.Recs[i])
		out = out[:len(out)-1] // the tail's newline
	}
	out = append(out, `},"segments":`...)
	out = appendSegments(out, v.Config(), r.Segments)
	out = append(out, `,"visitor":`...)
	out = jsonw.AppendString(out, r.Visitor)
	out = append(out, "}\n"...)
	rs.body = out
	writeNoStore(ctx, out)
	return nil
}

// appendSegments appends the names of the segments in set as a JSON
// array.
func appendSegments(dst []byte, cfg *engine.Config, set engine.SegSet) []byte {
	dst = append(dst, '[')
	n := 0
	for i := range cfg.NumSegments() {
		if set.Has(i) {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = jsonw.AppendString(dst, cfg.SegmentName(i))
			n++
		}
	}
	return append(dst, ']')
}

// writeNoStore answers the JSON body, which no cache may keep: it is the
// visitor's own.
func writeNoStore(ctx *fasthttp.RequestCtx, body []byte) {
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(body)
}
