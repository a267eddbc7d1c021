package server

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/jsonw"
)

// reqState is the per-request memory of the read handlers, pooled: after
// warm-up a request allocates nothing here.
type reqState struct {
	req   engine.RecRequest
	recs  engine.Recs
	page  engine.PageRequest
	pres  engine.PageResult
	dreq  engine.DecideRequest
	dec   engine.Decision
	body  []byte
	head  []byte // the {"rec_id":…, head of an answer
	inner bool   // the answer becomes part of another (/v1/page): never compressed
	h     xxhash.Digest
}

const maxPooledBody = 256 << 10

func (s *Server) getReq() *reqState {
	rs := s.reqs.Get().(*reqState)
	rs.req.Reset()
	rs.inner = false
	return rs
}

func (s *Server) putReq(rs *reqState) {
	if cap(rs.body) > maxPooledBody {
		rs.body = nil
	}
	rs.dreq = engine.DecideRequest{}
	rs.page.Reset()
	s.reqs.Put(rs)
}

// parseRec reads the common query parameters of the read endpoints into
// r: k, category, price_min, price_max, user (or visitor), exclude and
// cart. A number that does not parse is passed on as one the engine
// refuses, so that errors come in the engine's order.
func parseRec(args *fasthttp.Args, r *engine.RecRequest) {
	if v := args.Peek("k"); v != nil {
		k, err := fasthttp.ParseUint(v)
		if err != nil || k == 0 {
			k = -1
		}
		r.K = k
	}
	r.Category = args.Peek("category")
	r.PriceMin, r.HasPriceMin = parsePrice(args.Peek("price_min"))
	r.PriceMax, r.HasPriceMax = parsePrice(args.Peek("price_max"))
	r.User = args.Peek("user")
	if r.User == nil {
		r.User = args.Peek("visitor")
	}
	splitComma(args.Peek("exclude"), func(id []byte) { r.Exclude = append(r.Exclude, id) })
	splitComma(args.Peek("cart"), func(id []byte) { r.Cart = append(r.Cart, id) })
	r.Item = args.Peek("item")
}

// parsePrice reads a price parameter; one that is not a non-negative
// number is NaN.
func parsePrice(v []byte) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	f, err := fasthttp.ParseUfloat(v)
	if err != nil {
		return math.NaN(), true
	}
	return f, true
}

// handleItemList answers /v1/items/{id}/similar and /bought-together.
func (s *Server) handleItemList(ctx *fasthttp.RequestCtx, id []byte, kind index.ListKind) error {
	if err := s.e.CheckID("item id", id); err != nil {
		return err
	}
	rs := s.getReq()
	defer s.putReq(rs)
	v := s.e.Acquire()
	defer v.Release()
	parseRec(ctx.QueryArgs(), &rs.req)
	rs.req.Item = id
	key, hit, err := s.tryCache(ctx, v, rs)
	if err != nil || hit {
		return err
	}
	if kind == index.ListBought {
		err = v.BoughtTogether(&rs.req, &rs.recs)
	} else {
		err = v.Similar(&rs.req, &rs.recs)
	}
	if err != nil {
		return err
	}
	s.finish(ctx, v, rs, key)
	return nil
}

// handlePopular answers /v1/popular?category=….
func (s *Server) handlePopular(ctx *fasthttp.RequestCtx) error {
	rs := s.getReq()
	defer s.putReq(rs)
	v := s.e.Acquire()
	defer v.Release()
	parseRec(ctx.QueryArgs(), &rs.req)
	key, hit, err := s.tryCache(ctx, v, rs)
	if err != nil || hit {
		return err
	}
	if err := v.Popular(&rs.req, &rs.recs); err != nil {
		return err
	}
	s.finish(ctx, v, rs, key)
	return nil
}

// handleUser answers /v1/users/{id}/recommendations.
func (s *Server) handleUser(ctx *fasthttp.RequestCtx, id []byte) error {
	rs := s.getReq()
	defer s.putReq(rs)
	v := s.e.Acquire()
	defer v.Release()
	parseRec(ctx.QueryArgs(), &rs.req)
	if err := v.Personal(id, &rs.req, &rs.recs); err != nil {
		return err
	}
	s.finish(ctx, v, rs, 0)
	return nil
}

// handleRecommend answers /v1/recommend?placement=….
func (s *Server) handleRecommend(ctx *fasthttp.RequestCtx) error {
	rs := s.getReq()
	defer s.putReq(rs)
	v := s.e.Acquire()
	defer v.Release()
	args := ctx.QueryArgs()
	parseRec(args, &rs.req)
	rs.req.Placement = args.Peek("placement")
	if err := v.Recommend(&rs.req, &rs.recs); err != nil {
		return err
	}
	s.finish(ctx, v, rs, 0)
	return nil
}

// tryCache answers a non-personal request from the body cache. It returns
// the key to cache the answer under (0 for personal requests, which are
// not cached) and whether it answered.
func (s *Server) tryCache(ctx *fasthttp.RequestCtx, v *engine.View, rs *reqState) (uint64, bool, error) {
	version, patches := v.Epoch()
	if version == 0 {
		return 0, false, engine.ErrNoSnapshot
	}
	if rs.req.User != nil || s.cache == nil {
		return 0, false, nil
	}
	key := s.bodyKey(ctx, rs, version, patches)
	return key, s.serveCached(ctx, rs, key), nil
}

// bodyKey is the cache key of a rendered non-personal answer.
func (s *Server) bodyKey(ctx *fasthttp.RequestCtx, rs *reqState, version, patches uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], version)
	binary.LittleEndian.PutUint64(b[8:], patches)
	rs.h.Reset()
	_, _ = rs.h.Write(b[:])
	// The path as sent, not ctx.Path(): fasthttp normalises that (//, /./,
	// /../ collapse), and ids holding '/' (sent as %2F) must not share
	// an entry.
	_, _ = rs.h.Write(ctx.Request.URI().PathOriginal())
	_, _ = rs.h.Write([]byte{'?'})
	_, _ = rs.h.Write(ctx.URI().QueryString())
	return rs.h.Sum64()
}

// serveCached answers from the body cache. A client that accepts gzip
// gets the cached deflate stream of the answer; the first one makes it.
func (s *Server) serveCached(ctx *fasthttp.RequestCtx, rs *reqState, key uint64) bool {
	val, ok := s.cache.Get(key)
	var tail, def []byte
	var tried bool
	if ok {
		tail, def, tried, ok = splitEntry(val)
	}
	if !ok {
		s.m.cacheMisses.Inc()
		return false
	}
	s.m.cacheHits.Inc()
	switch {
	case !s.wantGzip(ctx, rs, tail):
		def = nil
	case !tried:
		def = deflate(tail)
		s.cacheBody(key, tail, def, true)
	}
	s.render(ctx, rs, tail, def, true)
	return true
}

// finish renders rs.recs, caching the tail under key when key != 0 (with
// its deflate stream when this client takes gzip).
func (s *Server) finish(ctx *fasthttp.RequestCtx, v *engine.View, rs *reqState, key uint64) {
	rs.body = appendTail(rs.body[:0], v, &rs.recs)
	var def []byte
	if key != 0 {
		gz := s.wantGzip(ctx, rs, rs.body)
		if gz {
			def = deflate(rs.body)
		}
		s.cacheBody(key, rs.body, def, gz)
	}
	s.render(ctx, rs, rs.body, def, key != 0)
}

// appendHead appends the head of an answer: {"rec_id":"…",
func (s *Server) appendHead(dst []byte) []byte {
	dst = append(dst, `{"rec_id":"`...)
	dst = s.e.AppendRecID(dst)
	return append(dst, `",`...)
}

// render writes the response: {"rec_id":…, then the cacheable tail;
// gzip-compressed when def, the tail's deflate stream, is not empty.
func (s *Server) render(ctx *fasthttp.RequestCtx, rs *reqState, tail, def []byte, cached bool) {
	ctx.SetContentType("application/json")
	// In rs, not on the stack: crc32 (writeGzip) lets its input escape.
	rs.head = s.appendHead(rs.head[:0])
	if cached && s.compressible(rs, tail) {
		// Add: CORS may have said Vary: Origin already.
		ctx.Response.Header.Add(fasthttp.HeaderVary, fasthttp.HeaderAcceptEncoding)
	}
	if len(def) > 0 {
		s.m.gzipped.Inc()
		writeGzip(ctx, rs.head, tail, def)
		return
	}
	_, _ = ctx.Write(rs.head)
	_, _ = ctx.Write(tail)
}

// appendTail renders an answer after its rec_id:
// "placement":…,"snapshot":…,"items":[…],"fallback":bool}
func appendTail(dst []byte, v *engine.View, r *engine.Recs) []byte {
	if r.Placement != "" {
		dst = append(dst, `"placement":`...)
		dst = jsonw.AppendString(dst, r.Placement)
		dst = append(dst, ',')
	}
	dst = append(dst, `"snapshot":`...)
	dst = strconv.AppendUint(dst, r.Snapshot, 10)
	dst = append(dst, `,"items":[`...)
	for i, p := range r.Picks {
		if i > 0 {
			dst = append(dst, ',')
		}
		it := v.Item(p.Item)
		dst = append(dst, `{"id":`...)
		dst = jsonw.AppendString(dst, it.ID)
		if it.Title != "" {
			dst = append(dst, `,"title":`...)
			dst = jsonw.AppendString(dst, it.Title)
		}
		if it.Category != "" {
			dst = append(dst, `,"category":`...)
			dst = jsonw.AppendString(dst, it.Category)
		}
		if it.HasPrice {
			dst = append(dst, `,"price":`...)
			dst = jsonw.AppendFloat(dst, it.Price, 64)
		}
		dst = append(dst, `,"score":`...)
		dst = jsonw.AppendFloat(dst, float64(p.Score), 32)
		dst = append(dst, `,"reason":"`...)
		dst = append(dst, p.Reason.String()...)
		dst = append(dst, '"')
		if p.HasBecause {
			dst = append(dst, `,"because":`...)
			dst = jsonw.AppendString(dst, v.Item(p.Because).ID)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `],"fallback":`...)
	dst = strconv.AppendBool(dst, r.Fallback())
	return append(dst, "}\n"...)
}
