package engine

import (
	"bytes"
	"strconv"
	"sync/atomic"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// Login merges an anonymous visitor into a user at login: the visitor's
// history follows the user, and their profile is added to the user's.
type Login struct {
	Visitor, User []byte
}

// HasState reports whether the engine has a state store: without one it
// takes no writes.
func (e *Engine) HasState() bool { return e.state != nil }

// Ingest stores a batch of events, validated already (a front end parses
// them and checks ids with CheckID), all or nothing, and returns once they
// are durable. Each event also counts in its user's profile, in the
// placement and experiment counters it names, and in nothing else.
//
// keyless says the batch came without the API key: then every event must
// be a beacon, a conversion or exposure whose decision_id (RecID) this
// engine signed for the event's user, or the batch is refused with
// ErrUnauthorized.
//
// The events' Category and Path are filled here; the caller owns evs
// and logins, which are not retained.
func (e *Engine) Ingest(evs []index.StateEvent, logins []Login, keyless bool) error {
	if e.state == nil {
		return ErrNoState
	}
	v := e.Acquire()
	defer v.Release()
	for i := range evs {
		ev := &evs[i]
		if keyless && ((ev.Type != model.EventConversion && ev.Type != model.EventExposure) || !v.verifyDecision(ev.RecID, ev.User)) {
			return ErrUnauthorized
		}
		v.profileEvent(ev)
	}
	counters := v.attribution(evs, nil)
	if err := e.state.AppendEventsAndCount(evs, counters); err != nil {
		return err
	}
	// Visible now: the users' cached answers and segments are stale.
	for i := range evs {
		if i == 0 || !bytes.Equal(evs[i].User, evs[i-1].User) {
			e.touchUser(evs[i].User)
		}
	}
	for _, l := range logins {
		err := e.state.MergeHistory(l.Visitor, l.User, v.seenN)
		if err == nil {
			err = e.state.MergeProfile(l.Visitor, l.User)
		}
		e.touchUser(l.User)
		if err != nil {
			return err
		}
	}
	return nil
}

// profileEvent fills what a profile counts from an event: the item's
// category from the snapshot, and a pageview's page as a path.
func (v *View) profileEvent(ev *index.StateEvent) {
	if v.snap != nil && len(ev.Item) > 0 {
		if n, ok := v.snap.Lookup(ev.Item); ok {
			if cats := v.snap.Item(n).Cats; len(cats) > 0 {
				ev.Category = []byte(v.snap.CategoryName(cats[0]))
			}
		}
	}
	if ev.Type == model.EventPageview {
		ev.Path = model.PagePath(ev.Page)
	}
}

// Placement counters, under "p/<placement>/<name>" in the state store.
const (
	statImpressions = "impressions"
	statClicks      = "clicks"
	statConversions = "conversions"
	statRevenue     = "revenue"
)

// attribution turns events into counters. Conversions and purchases that
// carry a counted decision_id ("exp.variant.s…") count for that variant
// of the experiment. Events that carry a placement count for it:
// impressions, clicks, and conversions and revenue of purchases or
// conversions that carry the rec_id of a recommendation.
func (v *View) attribution(evs []index.StateEvent, dst []index.Counter) []index.Counter {
	for i := range evs {
		ev := &evs[i]
		if ev.Type == model.EventConversion || ev.Type == model.EventPurchase || ev.Type == model.EventExposure {
			dst = v.experimentEvent(ev, dst)
		}
		if len(ev.Placement) == 0 {
			continue
		}
		switch ev.Type {
		case model.EventImpression:
			dst = append(dst, index.Counter{Key: statKey(ev.Placement, statImpressions), Delta: 1})
		case model.EventClick:
			dst = append(dst, index.Counter{Key: statKey(ev.Placement, statClicks), Delta: 1})
		case model.EventPurchase, model.EventConversion:
			if len(ev.RecID) == 0 {
				continue
			}
			dst = append(dst, index.Counter{Key: statKey(ev.Placement, statConversions), Delta: 1})
			if ev.HasValue {
				dst = append(dst, index.Counter{Key: statKey(ev.Placement, statRevenue), Delta: ev.Value})
			}
		}
	}
	return dst
}

func statKey(placement []byte, name string) []byte {
	k := make([]byte, 0, 3+len(placement)+len(name))
	k = append(k, "p/"...)
	k = append(k, placement...)
	k = append(k, '/')
	return append(k, name...)
}

// experimentEvent counts a conversion (or, on pages with exposure: event,
// an exposure) for the experiment variant its decision_id names, when the
// decision was randomised.
func (v *View) experimentEvent(ev *index.StateEvent, dst []index.Counter) []index.Counter {
	exp, rest, ok := bytes.Cut(ev.RecID, []byte("."))
	if !ok {
		return dst
	}
	variant, tail, ok := bytes.Cut(rest, []byte("."))
	if !ok || len(tail) == 0 || tail[0] != 's' {
		return dst
	}
	page := v.cfg.pageOf(exp)
	if page == nil || page.variant(variant) < 0 {
		return dst
	}
	if ev.Type == model.EventExposure {
		if page.Exposure == "event" {
			dst = append(dst, index.Counter{Key: expKey(exp, variant, "exposures"), Delta: 1})
			hour := strconv.AppendInt(append(expKey(exp, variant, "exposures"), '@'), ev.TS/3600*3600, 10)
			dst = append(dst, index.Counter{Key: hour, Delta: 1})
		}
		return dst
	}
	dst = append(dst, index.Counter{Key: expKey(exp, variant, "conversions"), Delta: 1})
	if ev.HasValue {
		dst = append(dst, index.Counter{Key: expKey(exp, variant, "revenue"), Delta: ev.Value})
	}
	return dst
}

// countServed counts an answer of placement.
func (e *Engine) countServed(placement string) {
	if x, ok := e.served.Load(placement); ok {
		x.(*atomic.Uint64).Add(1)
		return
	}
	x, _ := e.served.LoadOrStore(placement, new(atomic.Uint64))
	x.(*atomic.Uint64).Add(1)
}

// PlacementStats are a placement's measurements.
type PlacementStats struct {
	// Served counts its answers since the engine started; the others are
	// durable counters of the events that named it.
	Served                                    uint64
	Impressions, Clicks, Conversions, Revenue float64
}

// CTR is clicks per impression, 0 before the first impression.
func (s *PlacementStats) CTR() float64 {
	if s.Impressions > 0 {
		return s.Clicks / s.Impressions
	}
	return 0
}

// PlacementStats reads the measurements of placement id.
func (e *Engine) PlacementStats(id []byte) (PlacementStats, error) {
	var st PlacementStats
	if err := e.CheckID("placement", id); err != nil {
		return st, err
	}
	if e.state == nil {
		return st, ErrNoState
	}
	for _, c := range [...]struct {
		name string
		dst  *float64
	}{{statImpressions, &st.Impressions}, {statClicks, &st.Clicks}, {statConversions, &st.Conversions}, {statRevenue, &st.Revenue}} {
		x, err := e.state.Counter(statKey(id, c.name))
		if err != nil {
			return st, err
		}
		*c.dst = x
	}
	if x, ok := e.served.Load(string(id)); ok {
		st.Served = x.(*atomic.Uint64).Load()
	}
	return st, nil
}
