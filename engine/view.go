package engine

import (
	"bytes"

	"github.com/edgerec/edgerec/engine/rule"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// View is one request's view of the engine: the snapshot, configuration
// and catalog corrections in force when it began, and the scratch memory
// its answers are computed in. A request that asks several questions (a
// whole page) asks them of one View, so they share one snapshot, one read
// of the visitor's history and profile, and every list read once.
//
// Get one with Engine.Acquire and give it back with Release; it is not
// safe for concurrent use. After warm-up a View allocates nothing.
type View struct {
	e       *Engine
	snap    *index.SnapshotRef // nil when no snapshot is loaded
	cfg     *Config
	patches *patchSet
	now     int64
	weights model.Weights
	seenN   int // history entries read for the seen-items filter

	scorer  *model.Scorer
	cands   []model.Neighbour
	ids     []uint32
	ctxList []model.Neighbour
	ctxItem uint32
	memo    listMemo
	call    recCall
	key     keyHash

	// The loaded history: whose, all entries read (the seen set), and the
	// affinity of the newest HistoryWindow of them.
	histUser []byte
	histOK   bool
	hist     index.History
	hevs     []model.HistoryEvent
	window   []model.HistoryEvent
	aff      []model.ItemWeight

	// The loaded profile, and the segments of cfg of segsUser.
	profUser []byte
	profOK   bool
	rc       rule.Ctx
	segsUser []byte
	segs     SegSet
	segsOK   bool

	ds decideState
}

func newView(e *Engine) any {
	return &View{e: e, scorer: model.NewScorer(0), ds: newDecideState()}
}

// Acquire returns a View of the engine as it is now. The caller must
// Release it and must not use it, or anything it returned, after.
func (e *Engine) Acquire() *View {
	v := e.views.Get().(*View)
	v.snap = e.live.Acquire()
	v.cfg = e.cfg.Load()
	v.patches = e.patches.Load()
	v.now = e.o.Now().Unix()
	v.histOK, v.profOK, v.segsOK = false, false, false
	v.memo.reset()
	if v.snap != nil {
		m := v.snap.Manifest()
		v.weights = m.Parameters.Weights
		if v.weights == (model.Weights{}) {
			v.weights = model.DefaultWeights()
		}
		v.seenN = m.Parameters.MaxUserItems
	}
	if e.o.Weights != nil {
		v.weights = *e.o.Weights
	}
	if e.o.SeenItems > 0 || v.seenN <= 0 {
		v.seenN = e.o.SeenItems
		if v.seenN == 0 {
			v.seenN = DefaultSeenItems
		}
	}
	v.seenN = max(v.seenN, e.o.HistoryWindow)
	return v
}

// maxPooledHistory bounds the history memory a pooled View keeps.
const maxPooledHistory = 1 << 20

// Release gives v back.
func (v *View) Release() {
	if v.snap != nil {
		v.snap.Release()
		v.snap = nil
	}
	v.cfg, v.patches = nil, nil
	v.call = recCall{}
	v.ds.release()
	if cap(v.rc.Raw) > 64<<10 || cap(v.rc.P.Dims) > 4*model.MaxDims || cap(v.hevs) > maxPooledHistory/16 {
		return // grown by a huge profile or history: let it go
	}
	v.e.views.Put(v)
}

// Epoch identifies what answers of v depend on besides the request: the
// snapshot version and the generation of the catalog corrections. A cache
// of answers keys them by it.
func (v *View) Epoch() (snapshot, patches uint64) {
	if v.snap != nil {
		snapshot = v.snap.Version()
	}
	return snapshot, v.patches.gen
}

// Config returns the configuration v answers with.
func (v *View) Config() *Config { return v.cfg }

// Now returns the time v answers at, Unix seconds.
func (v *View) Now() int64 { return v.now }

// Item returns what answers show of item n (a Pick's Item or Because)
// of v's snapshot, live corrections applied.
func (v *View) Item(n uint32) Item { return v.patches.item(v.snap.Snapshot, n) }

// list returns list kind of id, through the request's memo and the
// engine's list cache. The list is shared and must not be modified.
func (v *View) list(kind index.ListKind, id uint32) ([]model.Neighbour, error) {
	if l, ok := v.memo.get(kind, id); ok {
		return l, nil
	}
	var l []model.Neighbour
	var err error
	if v.e.lists != nil {
		l, err = v.e.lists.List(v.snap.Snapshot, kind, id)
	} else {
		l, err = v.snap.AppendList(nil, kind, id)
	}
	if err != nil {
		return nil, err
	}
	v.memo.put(kind, id, l)
	return l, nil
}

// similarSource adapts a View to model.ListSource over similar lists.
type similarSource struct{ v *View }

func (s similarSource) AppendNeighbours(dst []model.Neighbour, item uint32) ([]model.Neighbour, error) {
	l, err := s.v.list(index.ListSimilar, item)
	return append(dst, l...), err
}

// listMemo keeps the lists one View read, so a page that blends one
// history into two placements reads each list once even when the cache
// has not taken it yet (Ristretto's Set is asynchronous). It is an
// open-addressing table whose entries of earlier requests are told apart
// by a generation, so a reset costs nothing.
type listMemo struct {
	gen   uint32
	n     int
	slots [memoSlots]memoSlot
}

type memoSlot struct {
	gen  uint32
	key  uint64
	list []model.Neighbour
}

// memoSlots is the table's size; it remembers up to 3/4 of it.
const memoSlots = 512

func memoKey(kind index.ListKind, id uint32) uint64 { return uint64(kind)<<32 | uint64(id) }

func (m *listMemo) reset() {
	m.gen++
	m.n = 0
	if m.gen == 0 { // wrapped: forget everything once
		clear(m.slots[:])
		m.gen = 1
	}
}

func (m *listMemo) get(kind index.ListKind, id uint32) ([]model.Neighbour, bool) {
	k := memoKey(kind, id)
	for i := memoHash(k); ; i = (i + 1) % memoSlots {
		s := &m.slots[i]
		if s.gen != m.gen {
			return nil, false
		}
		if s.key == k {
			return s.list, true
		}
	}
}

func (m *listMemo) put(kind index.ListKind, id uint32, l []model.Neighbour) {
	if m.n >= memoSlots*3/4 {
		return
	}
	k := memoKey(kind, id)
	for i := memoHash(k); ; i = (i + 1) % memoSlots {
		s := &m.slots[i]
		if s.gen != m.gen {
			*s = memoSlot{gen: m.gen, key: k, list: l}
			m.n++
			return
		}
		if s.key == k {
			return
		}
	}
}

func memoHash(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> 55 % memoSlots }

// loadHistory reads user's newest history entries (the seen set) once
// per View, and the affinity of the newest HistoryWindow of them.
func (v *View) loadHistory(user []byte) error {
	if v.histOK && bytes.Equal(v.histUser, user) {
		return nil
	}
	v.histOK = false
	v.hevs, v.aff = v.hevs[:0], v.aff[:0]
	if v.e.state == nil || len(user) == 0 {
		return nil
	}
	if err := v.e.state.LoadHistory(&v.hist, user, v.seenN); err != nil {
		return err
	}
	// The window is counted in entries read, known to the snapshot or
	// not, so that eval (which asks the same store) blends the same ones.
	w := 0
	for i, h := range v.hist.Entries() {
		n, ok := v.snap.Lookup(h.Item)
		if !ok {
			continue
		}
		v.hevs = append(v.hevs, model.HistoryEvent{Item: n, Type: h.Type, TS: h.TS, Value: h.Value})
		if i < v.e.o.HistoryWindow {
			w = len(v.hevs)
		}
	}
	v.window = append(v.window[:0], v.hevs[:w]...)
	v.aff = v.weights.AppendAffinity(v.aff, v.window, v.now)
	v.histUser = append(v.histUser[:0], user...)
	v.histOK = true
	return nil
}

// loadProfile reads user's profile into v.rc once per View.
func (v *View) loadProfile(user []byte) error {
	if v.profOK && bytes.Equal(v.profUser, user) {
		return nil
	}
	v.profOK = false
	c := &v.rc
	c.Now = v.now
	c.Raw = c.Raw[:0]
	if v.e.state != nil && len(user) > 0 {
		var err error
		if c.Raw, _, err = v.e.state.AppendProfile(c.Raw, user); err != nil {
			return err
		}
	}
	if err := c.P.Decode(c.Raw); err != nil {
		// Read as empty; the next event of the user starts it anew.
		v.e.LogThrottled("cannot decode a profile", "user", string(user), "err", err)
		c.P.Reset()
		c.Raw = c.Raw[:0]
	}
	v.profUser = append(v.profUser[:0], user...)
	v.profOK = true
	return nil
}

// NumItems returns the number of items of v's snapshot (Pick.Item is
// below it), 0 when none is loaded.
func (v *View) NumItems() int {
	if v.snap == nil {
		return 0
	}
	return v.snap.NumItems()
}

// ItemID returns the id of item n of v's snapshot.
func (v *View) ItemID(n uint32) string { return v.snap.Item(n).ID }
