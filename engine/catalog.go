package engine

import (
	"encoding/json"

	"github.com/edgerec/edgerec/index"
)

// ItemPatch is a live catalog correction of one item (PUT /v1/items):
// it takes effect on the next answer, is stored durably, and outlives
// snapshot swaps. Its JSON form is how the state store keeps it.
type ItemPatch struct {
	Price    float64
	HasPrice bool
	Stock    int64
	HasStock bool
}

// ItemUpdate is a patch for the item ID.
type ItemUpdate struct {
	ID string
	ItemPatch
}

// patchSet is an immutable set of patches; gen changes with every set,
// so answers cached under an older one are not served.
type patchSet struct {
	m   map[string]ItemPatch
	gen uint64
}

const patchPrefix = "item/"

// PatchItems stores live catalog corrections, all in one durable write,
// and applies them. A field not set in an update keeps its earlier patch,
// in the store too.
func (e *Engine) PatchItems(ups []ItemUpdate) error {
	e.patchMu.Lock()
	defer e.patchMu.Unlock()
	old := e.patches.Load()
	next := &patchSet{m: make(map[string]ItemPatch, len(old.m)+len(ups)), gen: old.gen + 1}
	for k, v := range old.m {
		next.m[k] = v
	}
	for _, u := range ups {
		cur := next.m[u.ID]
		if u.HasPrice {
			cur.Price, cur.HasPrice = u.Price, true
		}
		if u.HasStock {
			cur.Stock, cur.HasStock = u.Stock, true
		}
		next.m[u.ID] = cur
	}
	if e.state != nil {
		metas := make([]index.KV, 0, len(ups))
		for _, u := range ups {
			b, _ := json.Marshal(next.m[u.ID])
			metas = append(metas, index.KV{Key: append([]byte(patchPrefix), u.ID...), Value: b})
		}
		if err := e.state.Write(nil, nil, metas); err != nil {
			return err
		}
	}
	e.patches.Store(next)
	return nil
}

// LoadPatches restores the live catalog corrections from the state store.
func (e *Engine) LoadPatches() error {
	if e.state == nil {
		return nil
	}
	m := map[string]ItemPatch{}
	err := e.state.ScanMeta([]byte(patchPrefix), func(key, value []byte) error {
		var p ItemPatch
		if err := json.Unmarshal(value, &p); err != nil {
			return nil // written by us; skip what cannot be read rather than refuse to start
		}
		m[string(key[len(patchPrefix):])] = p
		return nil
	})
	if err != nil {
		return err
	}
	e.patchMu.Lock()
	e.patches.Store(&patchSet{m: m, gen: e.patches.Load().gen + 1})
	e.patchMu.Unlock()
	return nil
}

// Item is what an answer shows of an item: its catalog record with the
// live corrections applied. The strings are shared with the snapshot.
type Item struct {
	ID, Title string
	// Category is the first category, "" when none.
	Category string
	Price    float64
	HasPrice bool
	InStock  bool
}

// item returns what answers show of item n of snap under ps.
func (ps *patchSet) item(snap *index.Snapshot, n uint32) Item {
	info := snap.Item(n)
	it := Item{ID: info.ID, Title: info.Title}
	if len(info.Categories) > 0 {
		it.Category = info.Categories[0]
	}
	it.Price, it.HasPrice, it.InStock = ps.priceStock(info)
	return it
}

// priceStock returns info's price and whether it is in stock, live
// corrections applied.
func (ps *patchSet) priceStock(info *index.ItemInfo) (price float64, hasPrice, inStock bool) {
	price, hasPrice, inStock = info.Price, info.HasPrice, info.InStock()
	if len(ps.m) > 0 {
		if p, ok := ps.m[info.ID]; ok {
			if p.HasPrice {
				price, hasPrice = p.Price, true
			}
			if p.HasStock {
				inStock = p.Stock > 0
			}
		}
	}
	return price, hasPrice, inStock
}
