package server

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// reason says why an item is in a list.
type reason uint8

const (
	reasonSimilar reason = iota + 1
	reasonBought
	reasonHistory
	reasonPopular
	reasonPinned
)

var reasonNames = [...]string{reasonSimilar: "similar_to", reasonBought: "bought_with", reasonHistory: "history", reasonPopular: "popular", reasonPinned: "pinned"}

// pick is one chosen item of a response.
type pick struct {
	item    uint32
	score   float32
	reason  reason
	because uint32 // the context item for similar_to / bought_with
	hasBc   bool
}

// reqState is the per-request scratch, pooled: after warm-up a request
// allocates nothing here.
type reqState struct {
	list    []model.Neighbour
	cands   []model.Neighbour
	picks   []pick
	scorer  *model.Scorer
	hist    index.History
	hevs    []model.HistoryEvent
	aff     []model.ItemWeight
	raw     []byte
	body    []byte
	h       *xxhash.Digest
	src     cachedLists
	ids     []uint32
	params  recParams
	hasUser bool
	pl      *Placement // placement rules in force, nil on direct endpoints
	nocap   bool       // the last fill ignores pl's per-category cap
	segs    segSet     // the visitor's segments, when pl.segmented
	ctxList []model.Neighbour
	ctxItem uint32 // with ctxList: picks found in it are similar_to ctxItem
	inner   bool   // the answer becomes part of another (/v1/page): never compressed
	head    []byte // the {"rec_id":…, head of the answer
}

func newReqState() any {
	return &reqState{scorer: model.NewScorer(0), h: xxhash.New()}
}

const maxPooledBody = 256 << 10

func (s *Server) getReq(snap *index.SnapshotRef) *reqState {
	rs := s.reqs.Get().(*reqState)
	rs.scorer.Reset(snap.NumItems())
	rs.picks = rs.picks[:0]
	rs.ids = rs.ids[:0]
	rs.src = cachedLists{s: s, snap: snap, kind: index.ListSimilar}
	rs.params = recParams{}
	rs.hasUser = false
	rs.pl, rs.nocap = nil, false
	rs.ctxList = rs.ctxList[:0]
	rs.inner = false
	return rs
}

func (s *Server) putReq(rs *reqState) {
	if cap(rs.body) > maxPooledBody {
		rs.body = nil
	}
	rs.src = cachedLists{}
	s.reqs.Put(rs)
}

// recParams are the common query parameters of the read endpoints.
type recParams struct {
	k                  int
	cat                uint32
	hasCat             bool
	priceMin, priceMax float64
	hasMin, hasMax     bool
	user               []byte // user or visitor; borrowed from the request
}

func badParam(name, why string) error {
	return errorf(fasthttp.StatusBadRequest, "bad_parameter", name+": "+why)
}

// checkID validates an id from a request.
func (s *Server) checkID(name string, id []byte) error {
	if len(id) == 0 {
		return badParam(name, "empty")
	}
	if len(id) > s.o.MaxIDLen {
		return badParam(name, "longer than "+strconv.Itoa(s.o.MaxIDLen)+" bytes")
	}
	if !utf8.Valid(id) {
		return badParam(name, "not valid UTF-8")
	}
	return nil
}

// parseParams reads k, category, price_min, price_max, user/visitor and
// exclude (marked excluded in rs.scorer).
func (s *Server) parseParams(ctx *fasthttp.RequestCtx, snap *index.SnapshotRef, rs *reqState) error {
	args := ctx.QueryArgs()
	p := &rs.params
	p.k = s.o.DefaultK
	if v := args.Peek("k"); v != nil {
		k, err := fasthttp.ParseUint(v)
		if err != nil || k < 1 || k > s.o.MaxK {
			return badParam("k", "must be an integer from 1 to "+strconv.Itoa(s.o.MaxK))
		}
		p.k = k
	}
	if v := args.Peek("category"); len(v) > 0 {
		c, ok := snap.Category(v)
		if !ok {
			return badParam("category", "unknown category")
		}
		p.cat, p.hasCat = c, true
	}
	var err error
	if p.priceMin, p.hasMin, err = parsePrice(args.Peek("price_min")); err != nil {
		return badParam("price_min", "not a number")
	}
	if p.priceMax, p.hasMax, err = parsePrice(args.Peek("price_max")); err != nil {
		return badParam("price_max", "not a number")
	}
	user := args.Peek("user")
	if user == nil {
		user = args.Peek("visitor")
	}
	if user != nil {
		if err := s.checkID("user", user); err != nil {
			return err
		}
		p.user = user
	}
	splitComma(args.Peek("exclude"), func(id []byte) {
		if n, ok := snap.Lookup(id); ok {
			rs.scorer.Exclude(n)
		}
	})
	return nil
}

func parsePrice(v []byte) (float64, bool, error) {
	if len(v) == 0 {
		return 0, false, nil
	}
	f, err := fasthttp.ParseUfloat(v)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, errText("not a number")
	}
	return f, true, nil
}

// cachedLists reads lists through the Ristretto cache: the encoded bytes
// are cached by (snapshot version, kind, id) and decoded per use.
type cachedLists struct {
	s    *Server
	snap *index.SnapshotRef
	kind index.ListKind
	raw  []byte
}

func listCacheKey(version uint64, kind index.ListKind, id uint32) uint64 {
	var k [13]byte
	k[0] = byte(kind)
	binary.LittleEndian.PutUint64(k[1:], version)
	binary.LittleEndian.PutUint32(k[9:], id)
	return xxhash.Sum64(k[:])
}

func (c *cachedLists) AppendNeighbours(dst []model.Neighbour, item uint32) ([]model.Neighbour, error) {
	return c.s.appendList(c.snap, c.kind, item, dst, &c.raw)
}

// appendList appends list kind of id, through the cache.
func (s *Server) appendList(snap *index.SnapshotRef, kind index.ListKind, id uint32, dst []model.Neighbour, scratch *[]byte) ([]model.Neighbour, error) {
	key := listCacheKey(snap.Version(), kind, id)
	if v, ok := s.cache.Get(key); ok {
		s.m.cacheHits.Inc()
		return index.DecodeList(dst, v)
	}
	s.m.cacheMisses.Inc()
	raw, err := snap.AppendListBytes((*scratch)[:0], kind, id)
	*scratch = raw
	if err != nil {
		return dst, err
	}
	if len(raw) == 0 {
		return dst, nil
	}
	cp := append([]byte(nil), raw...) // cached values are immutable: own copy
	s.cache.Set(key, cp, int64(len(cp)+64))
	return index.DecodeList(dst, raw)
}

// keep reports whether item passes the request's filters.
func (s *Server) keep(snap *index.SnapshotRef, rs *reqState, item uint32) bool {
	if rs.scorer.Excluded(item) {
		return false
	}
	info := snap.Item(item)
	price, hasPrice, inStock := info.Price, info.HasPrice, info.InStock()
	if ps := *s.patches.Load(); len(ps) > 0 {
		if p, ok := ps[info.ID]; ok {
			if p.HasPrice {
				price, hasPrice = p.Price, true
			}
			if p.HasStock {
				inStock = p.Stock > 0
			}
		}
	}
	if !inStock || rs.filtered(snap, info) {
		return false
	}
	p := &rs.params
	if p.hasCat {
		found := false
		for _, c := range info.Cats {
			if c == p.cat {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if (p.hasMin || p.hasMax) && !hasPrice {
		return false
	}
	if p.hasMin && price < p.priceMin || p.hasMax && price > p.priceMax {
		return false
	}
	return true
}

// take adds the candidates that pass the filters until k items are picked,
// excluding each picked item from later additions.
func (s *Server) take(snap *index.SnapshotRef, rs *reqState, cands []model.Neighbour, r reason, because uint32, hasBc bool) {
	for _, n := range cands {
		if len(rs.picks) >= rs.params.k {
			return
		}
		if !s.keep(snap, rs, n.Item) || rs.capped(snap, n.Item) {
			continue
		}
		rs.scorer.Exclude(n.Item)
		p := pick{item: n.Item, score: n.Score, reason: r, because: because, hasBc: hasBc}
		if r == reasonHistory && len(rs.ctxList) > 0 && slices.ContainsFunc(rs.ctxList, func(c model.Neighbour) bool { return c.Item == n.Item }) {
			p.reason, p.because, p.hasBc = reasonSimilar, rs.ctxItem, true
		}
		rs.picks = append(rs.picks, p)
	}
}

// fillPopular tops the picks up with popular items: in category cat first
// (when non-zero), then overall.
func (s *Server) fillPopular(snap *index.SnapshotRef, rs *reqState, cat uint32) error {
	for _, c := range [2]uint32{cat, 0} {
		if len(rs.picks) >= rs.params.k {
			return nil
		}
		var err error
		rs.list, err = s.appendList(snap, index.ListPopular, c, rs.list[:0], &rs.raw)
		if err != nil {
			return err
		}
		s.take(snap, rs, rs.list, reasonPopular, 0, false)
		if c == 0 {
			return nil
		}
	}
	return nil
}

// loadHistory reads the request user's history into rs.aff and excludes
// the seen items the policy names.
func (s *Server) loadHistory(snap *index.SnapshotRef, rs *reqState, seen seenPolicy) error {
	if rs.params.user == nil || s.state == nil {
		return nil
	}
	if err := s.state.LoadHistory(&rs.hist, rs.params.user); err != nil {
		return err
	}
	rs.hevs = rs.hevs[:0]
	for _, e := range rs.hist.Entries() {
		n, ok := snap.Lookup(e.Item)
		if !ok {
			continue
		}
		rs.hevs = append(rs.hevs, model.HistoryEvent{Item: n, Type: e.Type, TS: e.TS, Value: e.Value})
		if seen == seenAll || seen == seenPurchased && e.Type == model.EventPurchase {
			rs.scorer.Exclude(n)
		}
	}
	rs.hasUser = len(rs.hevs) > 0
	rs.aff = s.o.Weights.AppendAffinity(rs.aff[:0], rs.hevs, s.o.Now().Unix())
	return nil
}

// render writes the response: {"rec_id":…, then the cacheable tail;
// gzip-compressed when def, the tail's deflate stream, is not empty.
func (s *Server) render(ctx *fasthttp.RequestCtx, rs *reqState, tail, def []byte, cached bool) {
	ctx.SetContentType("application/json")
	// In rs, not on the stack: crc32 (writeGzip) lets its input escape.
	h := append(rs.head[:0], `{"rec_id":"`...)
	h = s.appendRecID(h)
	h = append(h, `",`...)
	rs.head = h
	if cached && s.compressible(rs, tail) {
		// Add: CORS may have said Vary: Origin already.
		ctx.Response.Header.Add(fasthttp.HeaderVary, fasthttp.HeaderAcceptEncoding)
	}
	if len(def) > 0 {
		s.m.gzipped.Inc()
		writeGzip(ctx, h, tail, def)
		return
	}
	_, _ = ctx.Write(h)
	_, _ = ctx.Write(tail)
}

// appendTail renders the picks: "items":[…],"fallback":bool}.
func (s *Server) appendTail(dst []byte, snap *index.SnapshotRef, rs *reqState, placement []byte) []byte {
	if len(placement) > 0 {
		dst = append(dst, `"placement":`...)
		dst = appendJSONString(dst, placement)
		dst = append(dst, ',')
	}
	dst = append(dst, `"snapshot":`...)
	dst = strconv.AppendUint(dst, snap.Version(), 10)
	dst = append(dst, `,"items":[`...)
	fallback := false
	ps := *s.patches.Load()
	for i, p := range rs.picks {
		if i > 0 {
			dst = append(dst, ',')
		}
		info := snap.Item(p.item)
		dst = append(dst, `{"id":`...)
		dst = appendJSONString(dst, info.ID)
		if info.Title != "" {
			dst = append(dst, `,"title":`...)
			dst = appendJSONString(dst, info.Title)
		}
		if len(info.Categories) > 0 {
			dst = append(dst, `,"category":`...)
			dst = appendJSONString(dst, info.Categories[0])
		}
		price, hasPrice := info.Price, info.HasPrice
		if len(ps) > 0 {
			if pt, ok := ps[info.ID]; ok && pt.HasPrice {
				price, hasPrice = pt.Price, true
			}
		}
		if hasPrice {
			dst = append(dst, `,"price":`...)
			dst = appendJSONFloat(dst, price, 64)
		}
		dst = append(dst, `,"score":`...)
		dst = appendJSONFloat(dst, float64(p.score), 32)
		dst = append(dst, `,"reason":"`...)
		dst = append(dst, reasonNames[p.reason]...)
		dst = append(dst, '"')
		if p.hasBc {
			dst = append(dst, `,"because":`...)
			dst = appendJSONString(dst, snap.Item(p.because).ID)
		}
		dst = append(dst, '}')
		if p.reason == reasonPopular {
			fallback = true
		}
	}
	dst = append(dst, `],"fallback":`...)
	dst = strconv.AppendBool(dst, fallback)
	return append(dst, "}\n"...)
}

// bodyKey is the cache key of a rendered non-personal answer.
func (s *Server) bodyKey(ctx *fasthttp.RequestCtx, rs *reqState, version uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], version)
	binary.LittleEndian.PutUint64(b[8:], s.gen.Load())
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

// serveCached answers from the body cache when the request is not
// personal. A client that accepts gzip gets the cached deflate stream of
// the answer; the first one makes it.
func (s *Server) serveCached(ctx *fasthttp.RequestCtx, rs *reqState, key uint64) bool {
	v, ok := s.cache.Get(key)
	var tail, def []byte
	var tried bool
	if ok {
		tail, def, tried, ok = splitEntry(v)
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

// finish renders the picks, caching the tail under key when key != 0
// (with its deflate stream when this client takes gzip).
func (s *Server) finish(ctx *fasthttp.RequestCtx, snap *index.SnapshotRef, rs *reqState, placement []byte, key uint64) {
	rs.body = s.appendTail(rs.body[:0], snap, rs, placement)
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

// serveRead runs h with a reference to the served snapshot, a pooled
// reqState and the parsed common parameters, releasing them after.
func (s *Server) serveRead(ctx *fasthttp.RequestCtx, h func(snap *index.SnapshotRef, rs *reqState) error) error {
	snap := s.live.Acquire()
	if snap == nil {
		return errNoSnapshot
	}
	defer snap.Release()
	rs := s.getReq(snap)
	defer s.putReq(rs)
	if err := s.parseParams(ctx, snap, rs); err != nil {
		return err
	}
	return h(snap, rs)
}

// tryCache answers a non-personal request from the body cache. It returns
// the key to cache the answer under (0 for personal requests, which are
// not cached) and whether it answered.
func (s *Server) tryCache(ctx *fasthttp.RequestCtx, snap *index.SnapshotRef, rs *reqState) (uint64, bool) {
	if rs.params.user != nil {
		return 0, false
	}
	key := s.bodyKey(ctx, rs, snap.Version())
	return key, s.serveCached(ctx, rs, key)
}

// handleItemList answers /v1/items/{id}/similar and /bought-together.
func (s *Server) handleItemList(ctx *fasthttp.RequestCtx, id []byte, kind index.ListKind) error {
	if err := s.checkID("item id", id); err != nil {
		return err
	}
	return s.serveRead(ctx, func(snap *index.SnapshotRef, rs *reqState) error {
		item, ok := snap.Lookup(id)
		if !ok {
			return errorf(fasthttp.StatusNotFound, "unknown_item", "no item with this id in the catalog")
		}
		key, hit := s.tryCache(ctx, snap, rs)
		if hit {
			return nil
		}
		if err := s.loadHistory(snap, rs, seenAll); err != nil {
			return err
		}
		rs.scorer.Exclude(item)
		r := reasonSimilar
		if kind == index.ListBought {
			r = reasonBought
		}
		if cart := ctx.QueryArgs().Peek("cart"); len(cart) == 0 {
			var err error
			if rs.list, err = s.appendList(snap, kind, item, rs.list[:0], &rs.raw); err != nil {
				return err
			}
			s.take(snap, rs, rs.list, r, item, true)
		} else {
			// A whole cart: blend the lists of every item in it.
			rs.ids = append(rs.ids, item)
			if err := s.blendCart(snap, rs, kind, cart); err != nil {
				return err
			}
			s.take(snap, rs, rs.cands, r, item, false)
		}
		cat := rs.params.cat
		if cats := snap.Item(item).Cats; len(cats) > 0 && !rs.params.hasCat {
			cat = cats[0]
		}
		if err := s.fillPopular(snap, rs, cat); err != nil {
			return err
		}
		s.finish(ctx, snap, rs, nil, key)
		return nil
	})
}

// handlePopular answers /v1/popular?category=….
func (s *Server) handlePopular(ctx *fasthttp.RequestCtx) error {
	return s.serveRead(ctx, func(snap *index.SnapshotRef, rs *reqState) error {
		key, hit := s.tryCache(ctx, snap, rs)
		if hit {
			return nil
		}
		if err := s.loadHistory(snap, rs, seenAll); err != nil {
			return err
		}
		if err := s.fillPopular(snap, rs, rs.params.cat); err != nil {
			return err
		}
		s.finish(ctx, snap, rs, nil, key)
		return nil
	})
}

// handleUser answers /v1/users/{id}/recommendations.
func (s *Server) handleUser(ctx *fasthttp.RequestCtx, id []byte) error {
	if err := s.checkID("user id", id); err != nil {
		return err
	}
	return s.serveRead(ctx, func(snap *index.SnapshotRef, rs *reqState) error {
		rs.params.user = id
		if err := s.loadHistory(snap, rs, seenAll); err != nil {
			return err
		}
		if s.inHoldout(id) {
			// The universal holdout sees popular items only.
			rs.aff = rs.aff[:0]
		}
		if err := s.blendPersonal(snap, rs, noItem, 1); err != nil {
			return err
		}
		s.take(snap, rs, rs.cands, reasonHistory, 0, false)
		if err := s.fillPopular(snap, rs, rs.params.cat); err != nil {
			return err
		}
		s.finish(ctx, snap, rs, nil, 0)
		return nil
	})
}

// blendCart blends the kind lists of rs.ids plus the items of the
// comma-separated cart, each weighing 1, into rs.cands, excluding the
// cart's own items.
func (s *Server) blendCart(snap *index.SnapshotRef, rs *reqState, kind index.ListKind, cart []byte) error {
	splitComma(cart, func(cid []byte) {
		if n, ok := snap.Lookup(cid); ok {
			rs.ids = append(rs.ids, n)
		}
	})
	rs.src.kind = kind
	for _, n := range rs.ids {
		rs.scorer.Exclude(n)
	}
	for _, n := range rs.ids {
		var err error
		if rs.list, err = rs.src.AppendNeighbours(rs.list[:0], n); err != nil {
			return err
		}
		rs.scorer.Add(rs.list, 1)
	}
	rs.cands = rs.scorer.AppendTop(rs.cands[:0], 4*rs.params.k)
	return nil
}
