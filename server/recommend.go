package server

import (
	"encoding/binary"
	"math"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
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
// r: k, category, price_min, price_max, user (or visitor), exclude,
// cart, item and placement. A number that does not parse is passed on as one the engine
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
	r.Placement = args.Peek("placement")
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
	return s.serveRecs(ctx, true, id, func(v *engine.View, r *engine.RecRequest, out *engine.Recs) error {
		if kind == index.ListBought {
			return v.BoughtTogether(r, out)
		}
		return v.Similar(r, out)
	})
}

// handlePopular answers /v1/popular?category=….
func (s *Server) handlePopular(ctx *fasthttp.RequestCtx) error {
	return s.serveRecs(ctx, true, nil, (*engine.View).Popular)
}

// handleUser answers /v1/users/{id}/recommendations.
func (s *Server) handleUser(ctx *fasthttp.RequestCtx, id []byte) error {
	return s.serveRecs(ctx, false, nil, func(v *engine.View, r *engine.RecRequest, out *engine.Recs) error {
		return v.Personal(id, r, out)
	})
}

// handleRecommend answers /v1/recommend?placement=….
func (s *Server) handleRecommend(ctx *fasthttp.RequestCtx) error {
	return s.serveRecs(ctx, false, nil, (*engine.View).Recommend)
}

// serveRecs answers a recommendation: from the body cache when cacheable
// (a list that is not personal), else by ask over the parsed query (with
// item as its context item when given), rendered and, when cacheable,
// cached.
func (s *Server) serveRecs(ctx *fasthttp.RequestCtx, cacheable bool, item []byte, ask func(*engine.View, *engine.RecRequest, *engine.Recs) error) error {
	rs := s.getReq()
	defer s.putReq(rs)
	var key uint64
	if cacheable {
		var hit bool
		var err error
		if key, hit, err = s.tryCache(ctx, rs); err != nil || hit {
			return err
		}
	}
	v := s.e.Acquire()
	defer v.Release()
	parseRec(ctx.QueryArgs(), &rs.req)
	if item != nil {
		rs.req.Item = item
	}
	if err := ask(v, &rs.req, &rs.recs); err != nil {
		return err
	}
	s.finish(ctx, v, rs, key)
	return nil
}

// tryCache answers a non-personal request from the body cache, before
// anything is parsed or asked of the engine. It returns the key to cache
// the answer under (0 for personal requests, which the body cache does
// not keep: the engine caches their picks) and whether it answered.
func (s *Server) tryCache(ctx *fasthttp.RequestCtx, rs *reqState) (uint64, bool, error) {
	version, patches := s.e.Epoch()
	if version == 0 {
		return 0, false, engine.ErrNoSnapshot
	}
	args := ctx.QueryArgs()
	if args.Has("user") || args.Has("visitor") || s.cache == nil {
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
// its deflate stream when this client takes gzip) and the key was asked
// for before.
func (s *Server) finish(ctx *fasthttp.RequestCtx, v *engine.View, rs *reqState, key uint64) {
	rs.body = s.appendTail(rs.body[:0], v, &rs.recs)
	var def []byte
	if key != 0 {
		gz := s.wantGzip(ctx, rs, rs.body)
		if gz {
			def = deflate(rs.body)
		}
		if s.seenBefore(key) {
			s.cacheBody(key, rs.body, def, gz)
		}
	}
	s.render(ctx, rs, rs.body, def, key != 0)
}

// seenBefore reports whether key missed the body cache before, lately:
// an answer is cached from its second miss on. Most requests that miss
// once and never come again (a distinct exclude= per visitor, crawlers
// walking the catalog) then cost neither a copy of their answer nor a
// cache write, which the cache's own admission would refuse anyway. The
// memory is one key a slot, a later key on a slot replacing it.
func (s *Server) seenBefore(key uint64) bool {
	return s.seen[key&(seenSlots-1)].Swap(key) == key
}

// seenSlots is the size of the body cache's memory of missed keys.
const seenSlots = 1 << 14

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
