package engine

import (
	"cmp"
	"math"
	"slices"
	"strconv"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// RecRequest asks for recommendations. Its byte slices are borrowed for
// the call only. The zero value asks for the default length, unfiltered.
type RecRequest struct {
	// Placement names a configured placement (Recommend only).
	Placement []byte
	// Item is the context item: required by Similar and BoughtTogether,
	// optional for placements (an unknown one is ignored there).
	Item []byte
	// Cart holds further context items: bought together with all of
	// them. Unknown ones are ignored.
	Cart [][]byte
	// User is whose history personalises the answer and whose seen items
	// are left out: a user's or an anonymous visitor's id. Nil: nobody; an
	// empty, non-nil one is an error.
	User []byte
	// K is the list length; 0 means the placement's or the default. A
	// negative K is refused (a front end's way to say it could not parse
	// one).
	K int
	// Category keeps only items of this category (nil: any).
	Category []byte
	// PriceMin and PriceMax, when set, keep only priced items within
	// them; they must be finite and >= 0 (NaN: could not be parsed).
	PriceMin, PriceMax       float64
	HasPriceMin, HasPriceMax bool
	// Exclude lists items never to show; unknown ones are ignored.
	Exclude [][]byte
}

// Reset empties r, keeping the memory of its lists.
func (r *RecRequest) Reset() {
	*r = RecRequest{Cart: r.Cart[:0], Exclude: r.Exclude[:0]}
}

// Reason says why an item is in a list.
type Reason uint8

// Reasons.
const (
	ReasonSimilar Reason = iota + 1 // similar to the context item (Because)
	ReasonBought                    // bought with the context item (Because) or the cart
	ReasonHistory                   // from the visitor's history
	ReasonPopular                   // popular: the fallback
	ReasonPinned                    // pinned by the placement
)

var reasonNames = [...]string{ReasonSimilar: "similar_to", ReasonBought: "bought_with", ReasonHistory: "history", ReasonPopular: "popular", ReasonPinned: "pinned"}

// String returns the reason as answers name it.
func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "unknown"
}

// Pick is one recommended item, by its number in the View's snapshot
// (View.Item describes it).
type Pick struct {
	Item  uint32
	Score float32
	// Reason says why; Because names the context item when HasBecause.
	Reason     Reason
	Because    uint32
	HasBecause bool
}

// Recs is an answer: the picks, best first. Reuse one across requests;
// it is valid until the View that filled it is released.
type Recs struct {
	// Placement is the placement answered, empty for the direct lists.
	Placement string
	// Experiment and Variant name the version of the placement the
	// visitor sees when it has variants.
	Experiment, Variant string
	// Snapshot is the version of the snapshot the picks come from.
	Snapshot uint64
	Picks    []Pick
}

// Fallback reports whether popular items filled the answer.
func (r *Recs) Fallback() bool {
	for _, p := range r.Picks {
		if p.Reason == ReasonPopular {
			return true
		}
	}
	return false
}

// noItem is no item number: no context item.
const noItem = math.MaxUint32

// recCall is the state of one recommendation in a View.
type recCall struct {
	k                  int
	cat                uint32
	hasCat             bool
	priceMin, priceMax float64
	hasMin, hasMax     bool
	user               []byte
	pl                 *Placement // placement rules in force, nil on direct lists
	nocap              bool       // the last fill ignores pl's per-category cap
	segs               SegSet     // the visitor's segments, when pl.segmented
	out                *Recs
}

// begin validates the common parameters of req and resets the scratch of
// one answer into out. Errors come in the order the parameters are
// checked: k, category, price_min, price_max, user.
func (v *View) begin(req *RecRequest, out *Recs) error {
	if v.snap == nil {
		return ErrNoSnapshot
	}
	c := &v.call
	*c = recCall{k: v.e.o.DefaultK, out: out}
	out.Placement, out.Snapshot, out.Picks = "", v.snap.Version(), out.Picks[:0]
	out.Experiment, out.Variant = "", ""
	v.scorer.Reset(v.snap.NumItems())
	v.ids, v.ctxList = v.ids[:0], v.ctxList[:0]
	if req.K != 0 {
		if req.K < 1 || req.K > v.e.o.MaxK {
			return badParam("k", "must be an integer from 1 to "+strconv.Itoa(v.e.o.MaxK))
		}
		c.k = req.K
	}
	if len(req.Category) > 0 {
		n, ok := v.snap.Category(req.Category)
		if !ok {
			return badParam("category", "unknown category")
		}
		c.cat, c.hasCat = n, true
	}
	if req.HasPriceMin {
		if !validPrice(req.PriceMin) {
			return badParam("price_min", "not a number")
		}
		c.priceMin, c.hasMin = req.PriceMin, true
	}
	if req.HasPriceMax {
		if !validPrice(req.PriceMax) {
			return badParam("price_max", "not a number")
		}
		c.priceMax, c.hasMax = req.PriceMax, true
	}
	if req.User != nil {
		if err := v.e.CheckID("user", req.User); err != nil {
			return err
		}
		c.user = req.User
	}
	for _, id := range req.Exclude {
		if n, ok := v.snap.Lookup(id); ok {
			v.scorer.Exclude(n)
		}
	}
	return nil
}

func validPrice(f float64) bool { return f >= 0 && !math.IsInf(f, 0) }

// excludeSeen loads the call's user's history and keeps the items policy
// names out of the answer.
func (v *View) excludeSeen(seen seenPolicy) error {
	c := &v.call
	if c.user == nil {
		return nil
	}
	if err := v.loadHistory(c.user); err != nil {
		return err
	}
	for _, h := range v.hevs {
		if seen == seenAll || seen == seenPurchased && h.Type == model.EventPurchase {
			v.scorer.Exclude(h.Item)
		}
	}
	return nil
}

// history returns the affinity of the call's user (loaded by
// excludeSeen), empty without one.
func (v *View) history() []model.ItemWeight {
	if v.call.user == nil || !v.histOK {
		return nil
	}
	return v.aff
}

// Similar answers the items similar to req.Item (or, with a cart, to
// the item and the cart together), the visitor's seen items left out,
// filled with popular items of the item's category, then overall.
func (v *View) Similar(req *RecRequest, out *Recs) error {
	return v.itemList(req, out, index.ListSimilar)
}

// BoughtTogether answers the items bought together with req.Item (and
// the cart), as Similar does.
func (v *View) BoughtTogether(req *RecRequest, out *Recs) error {
	return v.itemList(req, out, index.ListBought)
}

func (v *View) itemList(req *RecRequest, out *Recs, kind index.ListKind) (err error) {
	if err := v.e.CheckID("item id", req.Item); err != nil {
		return err
	}
	if err := v.begin(req, out); err != nil {
		return err
	}
	item, ok := v.snap.Lookup(req.Item)
	if !ok {
		return errorf(NotFound, "unknown_item", "no item with this id in the catalog")
	}
	if v.call.user != nil { // anonymous lists are cached rendered, by the server
		key := v.answerKey(kind.String(), req, SegSet{})
		if v.cachedAnswer(key, out) {
			return nil
		}
		defer v.keepAnswerUnless(key, out, &err)
	}
	if err := v.excludeSeen(seenAll); err != nil {
		return err
	}
	v.scorer.Exclude(item)
	r := ReasonSimilar
	if kind == index.ListBought {
		r = ReasonBought
	}
	if len(req.Cart) == 0 {
		l, err := v.list(kind, item)
		if err != nil {
			return err
		}
		v.take(l, r, item, true)
	} else {
		// A whole cart: blend the lists of every item in it.
		v.ids = append(v.ids, item)
		if err := v.blendCart(kind, req.Cart); err != nil {
			return err
		}
		v.take(v.cands, r, item, false)
	}
	cat := v.call.cat
	if cats := v.snap.Item(item).Cats; len(cats) > 0 && !v.call.hasCat {
		cat = cats[0]
	}
	return v.fillPopular(cat)
}

// Popular answers the popular items (of req.Category), the visitor's
// seen items left out.
func (v *View) Popular(req *RecRequest, out *Recs) (err error) {
	if err := v.begin(req, out); err != nil {
		return err
	}
	if v.call.user != nil { // anonymous lists are cached rendered, by the server
		key := v.answerKey("popular", req, SegSet{})
		if v.cachedAnswer(key, out) {
			return nil
		}
		defer v.keepAnswerUnless(key, out, &err)
	}
	if err := v.excludeSeen(seenAll); err != nil {
		return err
	}
	return v.fillPopular(v.call.cat)
}

// Personal answers the recommendations for user from their history
// (req.User, if set, is checked and then ignored): the similar lists of
// their newest history entries weighted by affinity, seen items left out,
// filled with popular items. The universal holdout gets popular items.
func (v *View) Personal(user []byte, req *RecRequest, out *Recs) (err error) {
	if err := v.e.CheckID("user id", user); err != nil {
		return err
	}
	if err := v.begin(req, out); err != nil {
		return err
	}
	v.call.user = user
	key := v.answerKey("personal", req, SegSet{})
	if v.cachedAnswer(key, out) {
		return nil
	}
	defer v.keepAnswerUnless(key, out, &err)
	if err := v.excludeSeen(seenAll); err != nil {
		return err
	}
	aff := v.history()
	if v.inHoldout(user) {
		aff = nil
	}
	if err := v.blend(aff, noItem, 1); err != nil {
		return err
	}
	v.take(v.cands, ReasonHistory, 0, false)
	return v.fillPopular(v.call.cat)
}

// PersonalTop is Personal for k items and no filters, as audiences and
// eval ask: the picks of user's answer into out.
func (v *View) PersonalTop(user []byte, k int, out *Recs) error {
	req := RecRequest{K: k}
	return v.Personal(user, &req, out)
}

// keep reports whether item passes the call's filters.
func (v *View) keep(item uint32) bool {
	if v.scorer.Excluded(item) {
		return false
	}
	info := v.snap.Item(item)
	price, hasPrice, inStock := v.patches.priceStock(info)
	c := &v.call
	if !inStock || v.filtered(info) {
		return false
	}
	if c.hasCat && !slices.Contains(info.Cats, c.cat) {
		return false
	}
	if (c.hasMin || c.hasMax) && !hasPrice {
		return false
	}
	if c.hasMin && price < c.priceMin || c.hasMax && price > c.priceMax {
		return false
	}
	return true
}

// take adds the candidates that pass the filters until k items are
// picked, excluding each picked item from later additions.
func (v *View) take(cands []model.Neighbour, r Reason, because uint32, hasBc bool) {
	c := &v.call
	for _, n := range cands {
		if len(c.out.Picks) >= c.k {
			return
		}
		if !v.keep(n.Item) || v.capped(n.Item) {
			continue
		}
		v.scorer.Exclude(n.Item)
		p := Pick{Item: n.Item, Score: n.Score, Reason: r, Because: because, HasBecause: hasBc}
		if r == ReasonHistory && len(v.ctxList) > 0 && slices.ContainsFunc(v.ctxList, func(x model.Neighbour) bool { return x.Item == n.Item }) {
			p.Reason, p.Because, p.HasBecause = ReasonSimilar, v.ctxItem, true
		}
		c.out.Picks = append(c.out.Picks, p)
	}
}

// fillPopular tops the picks up with popular items: in category cat
// first (when non-zero), then overall.
func (v *View) fillPopular(cat uint32) error {
	for _, c := range [2]uint32{cat, 0} {
		if len(v.call.out.Picks) >= v.call.k {
			return nil
		}
		l, err := v.list(index.ListPopular, c)
		if err != nil {
			return err
		}
		v.take(l, ReasonPopular, 0, false)
		if c == 0 {
			return nil
		}
	}
	return nil
}

// blendCart blends the kind lists of v.ids plus the cart's items, each
// weighing 1, into v.cands, excluding the cart's own items.
func (v *View) blendCart(kind index.ListKind, cart [][]byte) error {
	for _, id := range cart {
		if n, ok := v.snap.Lookup(id); ok {
			v.ids = append(v.ids, n)
		}
	}
	for _, n := range v.ids {
		v.scorer.Exclude(n)
	}
	for _, n := range v.ids {
		l, err := v.list(kind, n)
		if err != nil {
			return err
		}
		v.scorer.Add(l, 1)
	}
	v.cands = v.scorer.AppendTop(v.cands[:0], 4*v.call.k)
	return nil
}

// blend ranks candidates into v.cands: the similar lists of the history
// aff weighted by affinity × histW, plus the context item's similar list
// weighing as much as the strongest history item.
func (v *View) blend(aff []model.ItemWeight, item uint32, histW float64) error {
	if histW > 0 {
		for _, h := range aff {
			l, err := v.list(index.ListSimilar, h.Item)
			if err != nil {
				return err
			}
			v.scorer.Add(l, h.Weight*histW)
		}
	}
	if item != noItem {
		l, err := v.list(index.ListSimilar, item)
		if err != nil {
			return err
		}
		w := 1.0
		for _, a := range aff {
			w = max(w, a.Weight*histW)
		}
		v.scorer.Add(l, w)
		v.ctxList = append(v.ctxList[:0], l...)
		v.ctxItem = item
	}
	v.cands = v.scorer.AppendTop(v.cands[:0], 4*v.call.k)
	return nil
}

// Recommend answers for the placement req.Placement: its strategy, its
// seen-items policy and business rules, then popular items in the context
// category and overall so the answer is never empty.
func (v *View) Recommend(req *RecRequest, out *Recs) error {
	pl, err := v.placement(req.Placement)
	if err != nil {
		return err
	}
	if err := v.begin(req, out); err != nil {
		return err
	}
	if len(req.Item) > 0 {
		if err := v.e.CheckID("item", req.Item); err != nil {
			return err
		}
	}
	if len(pl.versions) > 0 {
		if pl, err = v.placementVersion(pl); err != nil {
			return err
		}
		out.Experiment, out.Variant = pl.exp.Experiment, pl.variant
	}
	var segs SegSet
	if pl.segmented {
		if segs, err = v.segmentsOf(v.call.user); err != nil {
			return err
		}
	}
	out.Placement = pl.name
	key := v.answerKey(pl.cacheName, req, segs)
	if !v.cachedAnswer(key, out) {
		if err := v.recommend(req, pl, segs, out); err != nil {
			return err
		}
		v.keepAnswer(key, out)
	}
	v.e.countServed(out.Placement)
	return nil
}

// placementVersion is the version of placement pl (which has variants)
// the visitor sees: their sticky assignment, made and counted as an
// exposure at their first answer in a phase. Visitors without an id get
// the control, uncounted.
func (v *View) placementVersion(pl *Placement) (*Placement, error) {
	page := pl.exp
	visitor := v.call.user
	if len(visitor) == 0 || v.inHoldout(visitor) {
		return pl.versions[page.control], nil
	}
	as, err := v.readAssignment(page, visitor)
	if err != nil {
		return nil, err
	}
	i, _, err := v.splitAssign(page, visitor, as)
	if err != nil {
		return nil, err
	}
	return pl.versions[i], nil
}

// keepAnswerUnless caches out under key when *err is nil: deferred by
// the answers that compute.
func (v *View) keepAnswerUnless(key uint64, out *Recs, err *error) {
	if *err == nil {
		v.keepAnswer(key, out)
	}
}

// placement returns the configured placement called name.
func (v *View) placement(name []byte) (*Placement, error) {
	pl, ok := v.cfg.Placements[string(name)]
	if !ok {
		return nil, badParam("placement", "unknown placement; configured: "+v.cfg.names())
	}
	return pl, nil
}

// holdoutPlacement is what the universal holdout sees on every placement:
// popular items, no personalisation.
var holdoutPlacement = &Placement{name: "holdout", Strategy: "popular", strategy: strategyPopular, histW: 0}

// inHoldout reports whether visitor is in the universal holdout.
func (v *View) inHoldout(visitor []byte) bool {
	h := v.cfg.Holdout
	return h > 0 && len(visitor) > 0 && float64(model.Bucket("holdout", visitor)) < h*model.Buckets
}

// recommend answers for placement pl, begin done; segs are the visitor's
// segments when pl's rules read them.
func (v *View) recommend(req *RecRequest, pl *Placement, segs SegSet, out *Recs) error {
	c := &v.call
	if v.inHoldout(c.user) {
		k := pl.K
		if pl = pl.holdout; pl == nil {
			pl = holdoutPlacement
		}
		if k > 0 && req.K == 0 {
			c.k = min(k, v.e.o.MaxK)
		}
	}
	if pl.K > 0 && req.K == 0 {
		c.k = min(pl.K, v.e.o.MaxK)
	}
	item := uint32(noItem)
	if len(req.Item) > 0 {
		if n, ok := v.snap.Lookup(req.Item); ok {
			item = n
			v.scorer.Exclude(n)
		}
	}
	if err := v.excludeSeen(pl.seen); err != nil {
		return err
	}
	cat := c.cat
	if item != noItem && !c.hasCat {
		if cats := v.snap.Item(item).Cats; len(cats) > 0 {
			cat = cats[0]
		}
	}
	r, because, hasBc := ReasonHistory, uint32(0), false
	switch pl.strategy {
	case strategyBought:
		if item != noItem {
			v.ids = append(v.ids, item)
		}
		if err := v.blendCart(index.ListBought, req.Cart); err != nil {
			return err
		}
		r = ReasonBought
	case strategyPopular, strategyTrending:
		kind := index.ListPopular
		if pl.strategy == strategyTrending {
			kind = index.ListTrending
		}
		l, err := v.list(kind, cat)
		if err != nil {
			return err
		}
		v.cands = append(v.cands[:0], l...)
		r = ReasonPopular
	default:
		aff := v.history()
		if err := v.blend(aff, item, pl.histW); err != nil {
			return err
		}
		if len(aff) == 0 && item != noItem {
			r, because, hasBc = ReasonSimilar, item, true
		}
	}
	c.pl = pl
	if pl.segmented {
		c.segs = segs
	}
	v.applyBoostBury(pl)
	v.take(v.cands, r, because, hasBc)
	if err := v.fillPopular(cat); err != nil {
		return err
	}
	if len(out.Picks) < c.k && pl.MaxPerCategory > 0 {
		// The diversity cap left the list short: fill without it rather
		// than answer with fewer items.
		c.nocap = true
		if err := v.fillPopular(0); err != nil {
			return err
		}
	}
	v.applyPins(pl)
	return nil
}

// ruleMatches reports whether item matches a boost or bury rule; cat is
// the rule's category number (0: unknown in this snapshot).
func ruleMatches(info *index.ItemInfo, r *Rule, cat uint32) bool {
	if r.Item != "" {
		return info.ID == r.Item
	}
	return cat != 0 && slices.Contains(info.Cats, cat)
}

// applyBoostBury multiplies the scores of boosted candidates, re-ranks,
// and moves buried candidates behind all others.
func (v *View) applyBoostBury(pl *Placement) {
	segs := v.call.segs
	if len(pl.Boost) > 0 {
		for bi := range pl.Boost {
			r := &pl.Boost[bi]
			if !segs.applies(r.seg) {
				continue
			}
			c := v.ruleCategory(r)
			for i := range v.cands {
				if ruleMatches(v.snap.Item(v.cands[i].Item), r, c) {
					v.cands[i].Score *= float32(r.Factor)
				}
			}
		}
		slices.SortStableFunc(v.cands, func(a, b model.Neighbour) int { return cmp.Compare(b.Score, a.Score) })
	}
	if len(pl.Bury) > 0 {
		buried := func(n model.Neighbour) int {
			for bi := range pl.Bury {
				r := &pl.Bury[bi]
				if segs.applies(r.seg) && ruleMatches(v.snap.Item(n.Item), r, v.ruleCategory(r)) {
					return 1
				}
			}
			return 0
		}
		slices.SortStableFunc(v.cands, func(a, b model.Neighbour) int { return buried(a) - buried(b) })
	}
}

// filtered reports whether the placement's exclude and only rules that
// apply to this visitor keep info out.
func (v *View) filtered(info *index.ItemInfo) bool {
	pl := v.call.pl
	if pl == nil || len(pl.Exclude) == 0 && len(pl.Only) == 0 {
		return false
	}
	segs := v.call.segs
	for i := range pl.Exclude {
		if r := &pl.Exclude[i]; segs.applies(r.seg) && ruleMatches(info, r, v.ruleCategory(r)) {
			return true
		}
	}
	only, matched := false, false
	for i := range pl.Only {
		r := &pl.Only[i]
		if !segs.applies(r.seg) {
			continue
		}
		c := v.ruleCategory(r)
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

// ruleCategory is r's category number in the snapshot; 0 when r names an
// item or a category the snapshot does not have.
func (v *View) ruleCategory(r *Rule) uint32 {
	if r.Category == "" {
		return 0
	}
	c, _ := v.snap.Category([]byte(r.Category))
	return c
}

// capped reports whether item would exceed the placement's per-category
// cap.
func (v *View) capped(item uint32) bool {
	c := &v.call
	if c.pl == nil || c.nocap || c.pl.MaxPerCategory <= 0 {
		return false
	}
	cats := v.snap.Item(item).Cats
	if len(cats) == 0 {
		return false
	}
	n := 0
	for _, p := range c.out.Picks {
		if pc := v.snap.Item(p.Item).Cats; len(pc) > 0 && pc[0] == cats[0] {
			n++
		}
	}
	return n >= c.pl.MaxPerCategory
}

// applyPins puts pinned items at their positions, if they pass the
// filters (an item already picked has).
func (v *View) applyPins(pl *Placement) {
	c := &v.call
	for _, pin := range pl.Pin {
		if !c.segs.applies(pin.seg) {
			continue
		}
		n, ok := v.snap.Lookup([]byte(pin.Item))
		if !ok {
			continue
		}
		if i := slices.IndexFunc(c.out.Picks, func(p Pick) bool { return p.Item == n }); i >= 0 {
			c.out.Picks = slices.Delete(c.out.Picks, i, i+1)
		} else if !v.keep(n) {
			continue
		}
		at := min(pin.Position-1, len(c.out.Picks))
		c.out.Picks = slices.Insert(c.out.Picks, at, Pick{Item: n, Reason: ReasonPinned})
		if len(c.out.Picks) > c.k {
			c.out.Picks = c.out.Picks[:c.k]
		}
	}
}
