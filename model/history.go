package model

import (
	"cmp"
	"math"
	"slices"
)

// HistoryEvent is one event of a user's history with the item as a dense
// number of the current snapshot. Value is NaN when the event had none.
type HistoryEvent struct {
	Item  uint32
	Type  EventType
	TS    int64
	Value float32
}

// ItemWeight is an item and a user's affinity to it.
type ItemWeight struct {
	Item   uint32
	Weight float64
}

// AppendAffinity sums the affinity of events per item as seen at time now
// (Unix seconds) and appends one entry per item with a positive sum to dst,
// sorted by item. events is reordered.
func (w *Weights) AppendAffinity(dst []ItemWeight, events []HistoryEvent, now int64) []ItemWeight {
	// slices.SortFunc allocates nothing, where sort.Slice allocated three
	// times per personal answer.
	slices.SortFunc(events, func(a, b HistoryEvent) int { return cmp.Compare(a.Item, b.Item) })
	start := len(dst)
	for _, e := range events {
		hasValue := !math.IsNaN(float64(e.Value))
		a := w.Affinity(e.Type, float64(e.Value), hasValue, float64(now-e.TS))
		if len(dst) > start && dst[len(dst)-1].Item == e.Item {
			dst[len(dst)-1].Weight += a
			continue
		}
		dst = append(dst, ItemWeight{Item: e.Item, Weight: a})
	}
	// Drop items whose affinity came to nothing.
	out := dst[:start]
	for _, iw := range dst[start:] {
		if iw.Weight > 0 {
			out = append(out, iw)
		}
	}
	return out
}

// ListSource gives the precomputed neighbour list of an item.
type ListSource interface {
	// AppendNeighbours appends the list of item to dst.
	AppendNeighbours(dst []Neighbour, item uint32) ([]Neighbour, error)
}

// ExcludeHistory keeps every history item out of s's result (seen items).
func ExcludeHistory(s *Scorer, hist []ItemWeight) {
	for _, h := range hist {
		s.Exclude(h.Item)
	}
}

// BlendHistory scores candidates for a user: it adds each history item's
// neighbour list from src, weighted by the user's affinity to it times
// scale. buf is scratch space, returned for reuse. It excludes nothing:
// callers decide which seen items to drop (ExcludeHistory drops all).
func BlendHistory(s *Scorer, hist []ItemWeight, src ListSource, scale float64, buf []Neighbour) ([]Neighbour, error) {
	for _, h := range hist {
		var err error
		buf, err = src.AppendNeighbours(buf[:0], h.Item)
		if err != nil {
			return buf, err
		}
		s.Add(buf, h.Weight*scale)
	}
	return buf, nil
}
