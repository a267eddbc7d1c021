package server

import (
	"bytes"
	"math"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

var segPool = sync.Pool{New: func() any { return new(segCtx) }}

// loadProfile reads user's profile into sc at the server's time.
func (s *Server) loadProfile(sc *segCtx, user []byte) error {
	sc.now = s.o.Now().Unix()
	sc.raw = sc.raw[:0]
	if s.state != nil && len(user) > 0 {
		var err error
		if sc.raw, _, err = s.state.AppendProfile(sc.raw, user); err != nil {
			return err
		}
	}
	if err := sc.p.Decode(sc.raw); err != nil {
		// Read as empty; the next event of the user starts it anew.
		s.logThrottled("profile of %q: %v", user, err)
		sc.p.Reset()
		sc.raw = sc.raw[:0]
	}
	return nil
}

// getSeg and putSeg pair the pooled segment contexts; a context grown
// by a huge profile is dropped rather than kept.
func getSeg() *segCtx { return segPool.Get().(*segCtx) }

func putSeg(sc *segCtx) {
	if cap(sc.raw) > 64<<10 || cap(sc.p.Dims) > 4*model.MaxDims {
		return
	}
	segPool.Put(sc)
}

// evalSegments evaluates every segment of cfg over the profile in sc. A
// segment that fails at run time does not match; the failure is logged
// and counted.
func (s *Server) evalSegments(sc *segCtx, cfg *Config) segSet { return s.evalList(sc, cfg.segments) }

func (s *Server) evalList(sc *segCtx, list []*Segment) segSet {
	var set segSet
	for i, seg := range list {
		sc.err = nil
		if seg.eval(sc) && sc.err == nil {
			set.add(i)
		}
		if sc.err != nil {
			s.m.segmentErrors.Inc()
			s.logThrottled("segment %q: %v", seg.name, sc.err)
		}
	}
	return set
}

// segmentsOf loads user's profile and evaluates cfg's segments.
func (s *Server) segmentsOf(cfg *Config, user []byte) (segSet, error) {
	return s.segmentsIn(cfg.segments, user)
}

func (s *Server) segmentsIn(list []*Segment, user []byte) (segSet, error) {
	if len(list) == 0 || len(user) == 0 {
		return segSet{}, nil
	}
	sc := getSeg()
	defer putSeg(sc)
	if err := s.loadProfile(sc, user); err != nil {
		return segSet{}, err
	}
	return s.evalList(sc, list), nil
}

// appendSegments appends the names in set as a JSON array.
func appendSegments(dst []byte, cfg *Config, set segSet) []byte {
	dst = append(dst, '[')
	n := 0
	for i, seg := range cfg.segments {
		if set.has(i) {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, seg.name)
			n++
		}
	}
	return append(dst, ']')
}

// handleUserSegments answers GET /v1/users/{id}/segments.
func (s *Server) handleUserSegments(ctx *fasthttp.RequestCtx, id []byte) error {
	if err := s.checkID("user", id); err != nil {
		return err
	}
	cfg := s.cfg.Load()
	set, err := s.segmentsOf(cfg, id)
	if err != nil {
		return err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	out := append((*bp)[:0], `{"user":`...)
	out = appendJSONString(out, id)
	out = append(out, `,"segments":`...)
	out = appendSegments(out, cfg, set)
	out = append(out, "}\n"...)
	*bp = out
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(out)
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// handleGetProfile answers GET /v1/users/{id} (API key: attributes may be
// personal data): attributes, behaviour summary, counts per configured
// window, and segments.
func (s *Server) handleGetProfile(ctx *fasthttp.RequestCtx, id []byte) error {
	if err := authorize(ctx, s.o.APIKey); err != nil {
		return err
	}
	if err := s.checkID("user", id); err != nil {
		return err
	}
	cfg := s.cfg.Load()
	sc := getSeg()
	defer putSeg(sc)
	if err := s.loadProfile(sc, id); err != nil {
		return err
	}
	if len(sc.raw) == 0 {
		return errorf(fasthttp.StatusNotFound, "unknown_user", "no profile for this user")
	}
	set := s.evalSegments(sc, cfg)
	p := &sc.p
	out := append([]byte(nil), `{"user":`...)
	out = appendJSONString(out, id)
	out = append(out, `,"attributes":`...)
	out = appendAttrs(out, p)
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
			out = appendJSONString(out, model.EventType(t).String())
			out = append(out, ':')
			out = strconv.AppendInt(out, at, 10)
			n++
		}
	}
	out = append(out, `},"purchases":`...)
	out = strconv.AppendInt(out, p.Purchases, 10)
	out = append(out, `,"purchase_value":`...)
	out = appendJSONFloat(out, p.PurchaseValue, 64)
	out = append(out, `,"counts":{`...)
	for wi, w := range cfg.Profiles.windows {
		if wi > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, cfg.Profiles.Windows[wi])
		out = append(out, ':', '{')
		for ki, kind := range [...]struct {
			k    byte
			name string
		}{{model.DimType, "events"}, {model.DimPage, "pages"}, {model.DimCategory, "categories"}} {
			if ki > 0 {
				out = append(out, ',')
			}
			out = appendJSONString(out, kind.name)
			out = append(out, ':', '{')
			m := 0
			for _, d := range p.Dims {
				if d.Kind != kind.k {
					continue
				}
				c := d.CountIn(w, sc.now)
				if c == 0 {
					continue
				}
				if m > 0 {
					out = append(out, ',')
				}
				out = appendJSONString(out, d.Name)
				out = append(out, ':')
				out = strconv.AppendInt(out, c, 10)
				m++
			}
			out = append(out, '}')
		}
		out = append(out, '}')
	}
	out = append(out, `},"segments":`...)
	out = appendSegments(out, cfg, set)
	out = append(out, "}\n"...)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(out)
	return nil
}

// appendAttrs appends p's attributes as a JSON object.
func appendAttrs(dst []byte, p *model.Profile) []byte {
	dst = append(dst, '{')
	for i, a := range p.Attrs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, a.Key)
		dst = append(dst, ':')
		dst = appendAttrValue(dst, &a)
	}
	return append(dst, '}')
}

func appendAttrValue(dst []byte, a *model.ProfileAttr) []byte {
	switch a.Type {
	case model.AttrString:
		return appendJSONString(dst, a.Str)
	case model.AttrBool:
		return strconv.AppendBool(dst, a.Num == 1)
	}
	return strconv.AppendFloat(dst, a.Num, 'f', -1, 64)
}

// Attribute limits.
const (
	maxAttrs      = 100
	maxAttrKeyLen = 64
	maxAttrValLen = 1024
)

// handlePutProfile answers PUT /v1/users/{id}: a JSON object of
// attributes merged into the profile (null deletes a key). Values are
// strings, numbers or booleans.
func (s *Server) handlePutProfile(ctx *fasthttp.RequestCtx, id []byte) error {
	if err := authorize(ctx, s.o.APIKey); err != nil {
		return err
	}
	if s.state == nil {
		return errorf(fasthttp.StatusServiceUnavailable, "no_state", "this server has no state store")
	}
	if err := s.checkID("user", id); err != nil {
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
	if obj.Len() > maxAttrs {
		return errorf(fasthttp.StatusBadRequest, "bad_attributes", "more than "+strconv.Itoa(maxAttrs)+" attributes")
	}
	var bad error
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if bad != nil {
			return
		}
		if len(k) == 0 || len(k) > maxAttrKeyLen || !printable(k) {
			bad = errorf(fasthttp.StatusBadRequest, "bad_attributes", "attribute names are 1 to "+strconv.Itoa(maxAttrKeyLen)+" bytes of UTF-8 text without control characters")
			return
		}
		switch v.Type() {
		case fastjson.TypeString:
			if sv := v.GetStringBytes(); len(sv) > maxAttrValLen {
				bad = errorf(fasthttp.StatusBadRequest, "bad_attributes", "attribute "+strconv.Quote(string(k))+": longer than "+strconv.Itoa(maxAttrValLen)+" bytes")
			} else if !utf8.Valid(sv) {
				// Exports would write it one way to CSV and another to
				// NDJSON.
				bad = errorf(fasthttp.StatusBadRequest, "bad_attributes", "attribute "+strconv.Quote(string(k))+": not valid UTF-8")
			}
		case fastjson.TypeNumber:
			if f := v.GetFloat64(); math.IsNaN(f) || math.IsInf(f, 0) {
				bad = errorf(fasthttp.StatusBadRequest, "bad_attributes", "attribute "+strconv.Quote(string(k))+": not a finite number")
			}
		case fastjson.TypeTrue, fastjson.TypeFalse, fastjson.TypeNull:
		default:
			bad = errorf(fasthttp.StatusBadRequest, "bad_attributes", "attribute "+strconv.Quote(string(k))+": want a string, number, boolean or null")
		}
	})
	if bad != nil {
		return bad
	}
	err = s.state.UpdateProfile(id, func(pr *model.Profile) error {
		obj.Visit(func(k []byte, v *fastjson.Value) {
			switch v.Type() {
			case fastjson.TypeString:
				pr.SetAttr(k, model.AttrString, v.GetStringBytes(), 0)
			case fastjson.TypeNumber:
				pr.SetAttr(k, model.AttrNumber, nil, v.GetFloat64())
			case fastjson.TypeTrue:
				pr.SetAttr(k, model.AttrBool, nil, 1)
			case fastjson.TypeFalse:
				pr.SetAttr(k, model.AttrBool, nil, 0)
			case fastjson.TypeNull:
				pr.SetAttr(k, 0, nil, 0)
			}
		})
		if len(pr.Attrs) > maxAttrs {
			return errorf(fasthttp.StatusBadRequest, "bad_attributes", "a profile keeps at most "+strconv.Itoa(maxAttrs)+" attributes")
		}
		return nil
	})
	if err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"updated":true}` + "\n")
	return nil
}

// profileEvent fills what a profile counts from an event: the item's
// category from the snapshot, and a pageview's page as a path.
func profileEvent(snap *index.SnapshotRef, ev *index.StateEvent) {
	if snap != nil && len(ev.Item) > 0 {
		if n, ok := snap.Lookup(ev.Item); ok {
			if cats := snap.Item(n).Cats; len(cats) > 0 {
				ev.Category = []byte(snap.CategoryName(cats[0]))
			}
		}
	}
	if ev.Type == model.EventPageview {
		ev.Path = pagePath(ev.Page)
	}
}

// pagePath reduces a page URL to its path: no scheme, host, query or
// fragment, no trailing slash but for the root.
func pagePath(u []byte) []byte {
	if i := bytes.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	// A scheme only counts before the path starts: "/go?to=https://x/y"
	// is the path /go.
	if i := bytes.Index(u, []byte("://")); i >= 0 && bytes.IndexByte(u[:i], '/') < 0 {
		u = u[i+3:]
		if j := bytes.IndexByte(u, '/'); j >= 0 {
			u = u[j:]
		} else {
			u = []byte("/")
		}
	}
	for len(u) > 1 && u[len(u)-1] == '/' {
		u = u[:len(u)-1]
	}
	return u
}

// printable reports whether b is valid UTF-8 without control characters.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
