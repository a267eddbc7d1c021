package server

import (
	"cmp"
	"math"
	"slices"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

const noItem = math.MaxUint32

// handleRecommend answers /v1/recommend?placement=…: the placement's
// strategy, its seen-items policy and business rules, then popular items
// in the context category and overall so the answer is never empty.
func (s *Server) handleRecommend(ctx *fasthttp.RequestCtx) error {
	args := ctx.QueryArgs()
	name := args.Peek("placement")
	cfg := s.cfg.Load()
	pl, ok := cfg.Placements[string(name)]
	if !ok {
		return badParam("placement", "unknown placement; configured: "+cfg.names())
	}
	return s.serveRead(ctx, func(snap *index.SnapshotRef, rs *reqState) error {
		return s.recommend(ctx, snap, rs, pl, name)
	})
}

// holdoutPlacement is what the universal holdout sees on every placement:
// popular items, no personalisation.
var holdoutPlacement = &Placement{name: "holdout", Strategy: "popular", strategy: strategyPopular, histW: 0}

// inHoldout reports whether visitor is in the universal holdout.
func (s *Server) inHoldout(visitor []byte) bool {
	h := s.cfg.Load().Holdout
	return h > 0 && len(visitor) > 0 && float64(model.Bucket("holdout", visitor)) < h*model.Buckets
}

// recommend answers for placement pl.
func (s *Server) recommend(ctx *fasthttp.RequestCtx, snap *index.SnapshotRef, rs *reqState, pl *Placement, name []byte) error {
	args := ctx.QueryArgs()
	if s.inHoldout(rs.params.user) {
		k := pl.K
		if pl = pl.holdout; pl == nil {
			pl = holdoutPlacement
		}
		if k > 0 && args.Peek("k") == nil {
			rs.params.k = min(k, s.o.MaxK)
		}
	}
	if pl.K > 0 && args.Peek("k") == nil {
		rs.params.k = min(pl.K, s.o.MaxK)
	}
	item := uint32(noItem)
	if v := args.Peek("item"); len(v) > 0 {
		if err := s.checkID("item", v); err != nil {
			return err
		}
		if n, ok := snap.Lookup(v); ok {
			item = n
			rs.scorer.Exclude(n)
		}
	}
	if err := s.loadHistory(snap, rs, pl.seen); err != nil {
		return err
	}
	cat := rs.params.cat
	if item != noItem && !rs.params.hasCat {
		if cats := snap.Item(item).Cats; len(cats) > 0 {
			cat = cats[0]
		}
	}
	r, because, hasBc := reasonHistory, uint32(0), false
	switch pl.strategy {
	case strategyBought:
		if item != noItem {
			rs.ids = append(rs.ids, item)
		}
		if err := s.blendCart(snap, rs, index.ListBought, args.Peek("cart")); err != nil {
			return err
		}
		r = reasonBought
	case strategyPopular, strategyTrending:
		kind := index.ListPopular
		if pl.strategy == strategyTrending {
			kind = index.ListTrending
		}
		var err error
		if rs.cands, err = s.appendList(snap, kind, cat, rs.cands[:0], &rs.raw); err != nil {
			return err
		}
		r = reasonPopular
	default:
		if err := s.blendPersonal(snap, rs, item, pl.histW); err != nil {
			return err
		}
		if !rs.hasUser && item != noItem {
			r, because, hasBc = reasonSimilar, item, true
		}
	}
	rs.pl = pl
	rs.segs = segSet{}
	if pl.segmented {
		var err error
		if rs.segs, err = s.segmentsIn(pl.segList, rs.params.user); err != nil {
			return err
		}
	}
	s.applyBoostBury(snap, rs, pl)
	s.take(snap, rs, rs.cands, r, because, hasBc)
	if err := s.fillPopular(snap, rs, cat); err != nil {
		return err
	}
	if len(rs.picks) < rs.params.k && pl.MaxPerCategory > 0 {
		// The diversity cap left the list short: fill without it rather
		// than answer with fewer items.
		rs.nocap = true
		if err := s.fillPopular(snap, rs, 0); err != nil {
			return err
		}
	}
	s.applyPins(snap, rs, pl)
	s.m.countServed(name)
	s.finish(ctx, snap, rs, name, 0)
	return nil
}

// blendPersonal ranks candidates into rs.cands: the similar lists of the
// visitor's history (loaded by loadHistory) weighted by affinity × histW,
// plus the context item's similar list weighing as much as the strongest
// history item.
func (s *Server) blendPersonal(snap *index.SnapshotRef, rs *reqState, item uint32, histW float64) error {
	var err error
	if histW > 0 {
		if rs.list, err = model.BlendHistory(rs.scorer, rs.aff, &rs.src, histW, rs.list); err != nil {
			return err
		}
	}
	if item != noItem {
		if rs.list, err = rs.src.AppendNeighbours(rs.list[:0], item); err != nil {
			return err
		}
		w := 1.0
		for _, a := range rs.aff {
			w = max(w, a.Weight*histW)
		}
		rs.scorer.Add(rs.list, w)
		rs.ctxList = append(rs.ctxList[:0], rs.list...)
		rs.ctxItem = item
	}
	rs.cands = rs.scorer.AppendTop(rs.cands[:0], 4*rs.params.k)
	return nil
}

// ruleMatches reports whether item matches a boost or bury rule; cat is
// the rule's category number (0: unknown in this snapshot).
func ruleMatches(info *index.ItemInfo, r *Rule, cat uint32) bool {
	if r.Item != "" {
		return info.ID == r.Item
	}
	if cat == 0 {
		return false
	}
	for _, c := range info.Cats {
		if c == cat {
			return true
		}
	}
	return false
}

// applyBoostBury multiplies the scores of boosted candidates, re-ranks, and
// moves buried candidates behind all others.
func (s *Server) applyBoostBury(snap *index.SnapshotRef, rs *reqState, pl *Placement) {
	if len(pl.Boost) == 0 && len(pl.Bury) == 0 {
		return
	}
	if len(pl.Boost) > 0 {
		for bi := range pl.Boost {
			r := &pl.Boost[bi]
			if !rs.segs.applies(r.seg) {
				continue
			}
			c := ruleCategory(snap, r)
			for i := range rs.cands {
				if ruleMatches(snap.Item(rs.cands[i].Item), r, c) {
					rs.cands[i].Score *= float32(r.Factor)
				}
			}
		}
		slices.SortStableFunc(rs.cands, func(a, b model.Neighbour) int { return cmp.Compare(b.Score, a.Score) })
	}
	if len(pl.Bury) > 0 {
		buried := func(n model.Neighbour) int {
			for bi := range pl.Bury {
				r := &pl.Bury[bi]
				if !rs.segs.applies(r.seg) {
					continue
				}
				if ruleMatches(snap.Item(n.Item), r, ruleCategory(snap, r)) {
					return 1
				}
			}
			return 0
		}
		slices.SortStableFunc(rs.cands, func(a, b model.Neighbour) int { return buried(a) - buried(b) })
	}
}

// filtered reports whether the placement's exclude and only rules that
// apply to this visitor keep info out.
func (rs *reqState) filtered(snap *index.SnapshotRef, info *index.ItemInfo) bool {
	pl := rs.pl
	if pl == nil || len(pl.Exclude) == 0 && len(pl.Only) == 0 {
		return false
	}
	for i := range pl.Exclude {
		if r := &pl.Exclude[i]; rs.segs.applies(r.seg) && ruleMatches(info, r, ruleCategory(snap, r)) {
			return true
		}
	}
	only, matched := false, false
	for i := range pl.Only {
		r := &pl.Only[i]
		if !rs.segs.applies(r.seg) {
			continue
		}
		c := ruleCategory(snap, r)
		if r.Category != "" && c == 0 {
			// A category this snapshot lacks (a typo, or gone in a
			// rebuild) would empty the answer: the rule does not apply.
			continue
		}
		only = true
		matched = matched || ruleMatches(info, r, c)
	}
	return only && !matched
}

// ruleCategory is r's category number in snap; 0 when r names an item or a
// category the snapshot does not have.
func ruleCategory(snap *index.SnapshotRef, r *Rule) uint32 {
	if r.Category == "" {
		return 0
	}
	c, _ := snap.Category([]byte(r.Category))
	return c
}

// capped reports whether item would exceed the placement's per-category cap.
func (rs *reqState) capped(snap *index.SnapshotRef, item uint32) bool {
	if rs.pl == nil || rs.nocap || rs.pl.MaxPerCategory <= 0 {
		return false
	}
	cats := snap.Item(item).Cats
	if len(cats) == 0 {
		return false
	}
	n := 0
	for _, p := range rs.picks {
		if pc := snap.Item(p.item).Cats; len(pc) > 0 && pc[0] == cats[0] {
			n++
		}
	}
	return n >= rs.pl.MaxPerCategory
}

// applyPins puts pinned items at their positions, if they pass the filters
// (an item already picked has).
func (s *Server) applyPins(snap *index.SnapshotRef, rs *reqState, pl *Placement) {
	for _, pin := range pl.Pin {
		if !rs.segs.applies(pin.seg) {
			continue
		}
		n, ok := snap.Lookup([]byte(pin.Item))
		if !ok {
			continue
		}
		if i := slices.IndexFunc(rs.picks, func(p pick) bool { return p.item == n }); i >= 0 {
			rs.picks = slices.Delete(rs.picks, i, i+1)
		} else if !s.keep(snap, rs, n) {
			continue
		}
		at := min(pin.Position-1, len(rs.picks))
		rs.picks = slices.Insert(rs.picks, at, pick{item: n, reason: reasonPinned})
		if len(rs.picks) > rs.params.k {
			rs.picks = rs.picks[:rs.params.k]
		}
	}
}
