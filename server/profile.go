package server

import (
	"bytes"
	"strconv"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/internal/jsonw"
	"github.com/edgerec/edgerec/model"
)

// handleUserSegments answers GET /v1/users/{id}/segments.
func (s *Server) handleUserSegments(ctx *fasthttp.RequestCtx, id []byte) error {
	rs := s.getReq()
	defer s.putReq(rs)
	v := s.e.Acquire()
	defer v.Release()
	set, err := v.Segments(id)
	if err != nil {
		return err
	}
	out := append(rs.body[:0], `{"user":`...)
	out = jsonw.AppendString(out, id)
	out = append(out, `,"segments":`...)
	out = appendSegments(out, v.Config(), set)
	out = append(out, "}\n"...)
	rs.body = out
	writeNoStore(ctx, out)
	return nil
}

// handleGetProfile answers GET /v1/users/{id} (API key: attributes may be
// personal data): attributes, behaviour summary, counts per configured
// window, and segments.
func (s *Server) handleGetProfile(ctx *fasthttp.RequestCtx, id []byte) error {
	if err := authorize(ctx, s.o.APIKey); err != nil {
		return err
	}
	v := s.e.Acquire()
	defer v.Release()
	p, err := v.Profile(id)
	if err != nil {
		return err
	}
	cfg := v.Config()
	out := append([]byte(nil), `{"user":`...)
	out = jsonw.AppendString(out, id)
	out = append(out, `,"attributes":`...)
	out = jsonw.AppendAttrs(out, p.Profile)
	out = append(out, `,"first_seen":`...)
	out = strconv.AppendInt(out, p.FirstSeen, 10)
	out = append(out, `,"last_seen":`...)
	out = strconv.AppendInt(out, p.LastSeen, 10)
	out = append(out, `,"last":{`...)
	n := 0
	for t, at := range p.Last {
		if at != 0 {
			if n > 0 {
				out = append(out, ',')
			}
			out = jsonw.AppendString(out, model.EventType(t).String())
			out = append(out, ':')
			out = strconv.AppendInt(out, at, 10)
			n++
		}
	}
	out = append(out, `},"purchases":`...)
	out = strconv.AppendInt(out, p.Purchases, 10)
	out = append(out, `,"purchase_value":`...)
	out = jsonw.AppendFloat(out, p.PurchaseValue, 64)
	out = append(out, `,"counts":{`...)
	names, windows := cfg.ProfileWindows()
	for wi, w := range windows {
		if wi > 0 {
			out = append(out, ',')
		}
		out = jsonw.AppendString(out, names[wi])
		out = append(out, ':', '{')
		for ki, kind := range [...]struct {
			k    byte
			name string
		}{{model.DimType, "events"}, {model.DimPage, "pages"}, {model.DimCategory, "categories"}} {
			if ki > 0 {
				out = append(out, ',')
			}
			out = jsonw.AppendString(out, kind.name)
			out = append(out, ':', '{')
			m := 0
			for _, d := range p.Dims {
				if d.Kind != kind.k {
					continue
				}
				c := d.CountIn(w, p.Now)
				if c == 0 {
					continue
				}
				if m > 0 {
					out = append(out, ',')
				}
				out = jsonw.AppendString(out, d.Name)
				out = append(out, ':')
				out = strconv.AppendInt(out, c, 10)
				m++
			}
			out = append(out, '}')
		}
		out = append(out, '}')
	}
	out = append(out, `},"segments":`...)
	out = appendSegments(out, cfg, p.Segments)
	out = append(out, "}\n"...)
	writeNoStore(ctx, out)
	return nil
}

// handlePutProfile answers PUT /v1/users/{id}: a JSON object of
// attributes merged into the profile (null deletes a key), as
// engine.SetAttributes takes them; {"attributes":{…}} works too.
func (s *Server) handlePutProfile(ctx *fasthttp.RequestCtx, id []byte) error {
	if err := authorize(ctx, s.o.APIKey); err != nil {
		return err
	}
	if !s.e.HasState() {
		return engine.ErrNoState
	}
	if err := s.e.CheckID("user", id); err != nil {
		return err
	}
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(bytes.TrimSpace(ctx.PostBody()))
	if err != nil {
		return errorf(fasthttp.StatusBadRequest, "bad_json", "cannot parse body: "+err.Error())
	}
	obj, err := v.Object()
	if err != nil {
		return errorf(fasthttp.StatusBadRequest, "bad_json", "want a JSON object of attributes")
	}
	if attrs := v.Get("attributes"); attrs != nil && obj.Len() == 1 {
		if obj, err = attrs.Object(); err != nil {
			return errorf(fasthttp.StatusBadRequest, "bad_json", "attributes: want a JSON object")
		}
	}
	ups := make([]engine.AttrUpdate, 0, obj.Len())
	obj.Visit(func(k []byte, v *fastjson.Value) {
		u := engine.AttrUpdate{Key: k, Type: engine.AttrUnsupported}
		switch v.Type() {
		case fastjson.TypeString:
			u.Type, u.Str = model.AttrString, v.GetStringBytes()
		case fastjson.TypeNumber:
			u.Type, u.Num = model.AttrNumber, v.GetFloat64()
		case fastjson.TypeTrue:
			u.Type, u.Num = model.AttrBool, 1
		case fastjson.TypeFalse:
			u.Type = model.AttrBool
		case fastjson.TypeNull:
			u.Type = 0
		}
		ups = append(ups, u)
	})
	if err := s.e.SetAttributes(id, ups); err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"updated":true}` + "\n")
	return nil
}
