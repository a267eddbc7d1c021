package server

import (
	"strconv"
	"sync/atomic"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/internal/jsonw"
)

// appendTail renders an answer after its rec_id:
// "placement":…,"snapshot":…,"items":[…],"fallback":bool}
func (s *Server) appendTail(dst []byte, v *engine.View, r *engine.Recs) []byte {
	if r.Placement != "" {
		dst = append(dst, `"placement":`...)
		dst = jsonw.AppendString(dst, r.Placement)
		dst = append(dst, ',')
	}
	if r.Variant != "" {
		dst = append(dst, `"experiment":`...)
		dst = jsonw.AppendString(dst, r.Experiment)
		dst = append(dst, `,"variant":`...)
		dst = jsonw.AppendString(dst, r.Variant)
		dst = append(dst, ',')
	}
	dst = append(dst, `"snapshot":`...)
	dst = strconv.AppendUint(dst, r.Snapshot, 10)
	dst = append(dst, `,"items":[`...)
	f := s.itemFragments(v)
	for i, p := range r.Picks {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, f.get(v, p.Item)...)
		dst = append(dst, `,"score":`...)
		dst = jsonw.AppendFloat(dst, float64(p.Score), 32)
		dst = append(dst, `,"reason":"`...)
		dst = append(dst, p.Reason.String()...)
		dst = append(dst, '"')
		if p.HasBecause {
			dst = append(dst, `,"because":`...)
			dst = jsonw.AppendString(dst, v.ItemID(p.Because))
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `],"fallback":`...)
	dst = strconv.AppendBool(dst, r.Fallback())
	return append(dst, "}\n"...)
}

// fragments holds, per item of one snapshot under one generation of
// catalog corrections, the start of the item's JSON object in answers:
// {"id":…,"title":…,"category":…,"price":…. Every answer that shows an
// item repeats it, and escaping and number formatting are most of the
// rendering, so each is made once, when first shown.
type fragments struct {
	version, patches uint64
	items            []atomic.Pointer[[]byte]
}

// itemFragments returns the fragments of v's snapshot and corrections,
// starting an empty table when they changed.
func (s *Server) itemFragments(v *engine.View) *fragments {
	version, patches := v.Epoch()
	f := s.frags.Load()
	if f != nil && f.version == version && f.patches == patches {
		return f
	}
	nf := &fragments{version: version, patches: patches, items: make([]atomic.Pointer[[]byte], v.NumItems())}
	if s.frags.CompareAndSwap(f, nf) {
		return nf
	}
	return s.frags.Load()
}

// get returns item n's fragment, making it on first use.
func (f *fragments) get(v *engine.View, n uint32) []byte {
	if int(n) >= len(f.items) {
		return appendItemHead(nil, v.Item(n)) // a table of another epoch
	}
	if b := f.items[n].Load(); b != nil {
		return *b
	}
	b := appendItemHead(nil, v.Item(n))
	f.items[n].Store(&b)
	return b
}

// appendItemHead appends the start of an item's JSON object.
func appendItemHead(dst []byte, it engine.Item) []byte {
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
	return dst
}
