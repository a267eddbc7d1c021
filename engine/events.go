package engine

import (
	"bytes"
	"encoding/binary"
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

// MaxKeylessEvents is the most events a keyless request may carry.
const MaxKeylessEvents = 10

// Ingest stores a batch of events, validated already (a front end parses
// them and checks ids with CheckID), all or nothing, and returns once they
// are durable. Each event also counts in its user's profile, in the
// placement and experiment counters it names, and in nothing else.
//
// keyless says the batch came without the API key: then it carries at
// most MaxKeylessEvents events, each a conversion or exposure whose
// decision_id (RecID) this engine signed for the event's user within
// Options.DecisionTTL, or an impression, view or click of a
// recommendation (with its placement and rec_id); else the batch is refused with ErrUnauthorized. A keyless
// conversion counts once per visitor, phase and goal, its value too.
//
// The events' Category and Path are filled here; the caller owns evs
// and logins, which are not retained.
func (e *Engine) Ingest(evs []index.StateEvent, logins []Login, keyless bool) error {
	_, err := e.IngestEvents(evs, logins, keyless)
	return err
}

// IngestEvents is Ingest that also says how many events were repeats:
// an event with an ID (the client's event_id) seen before, or earlier in
// the batch, is acknowledged and not stored or counted again.
func (e *Engine) IngestEvents(evs []index.StateEvent, logins []Login, keyless bool) (repeats int, err error) {
	if e.state == nil {
		return 0, ErrNoState
	}
	if keyless && len(evs) > MaxKeylessEvents {
		return 0, errorf(TooLarge, "too_many_events", "a request without the API key carries at most "+strconv.Itoa(MaxKeylessEvents)+" events")
	}
	if keyless && len(logins) > 0 {
		return 0, ErrUnauthorized
	}
	v := e.Acquire()
	defer v.Release()
	var xs []expEvent
	for i := range evs {
		ev := &evs[i]
		var exp, variant []byte
		if keyless {
			switch ev.Type {
			case model.EventConversion, model.EventExposure:
				var ok bool
				if exp, variant, ok = v.verifyDecision(ev.RecID, ev.User); !ok {
					return 0, ErrUnauthorized
				}
			case model.EventView, model.EventClick, model.EventImpression:
				// A recommendation's: it names its placement and rec_id.
				if len(ev.RecID) == 0 || len(ev.Placement) == 0 {
					return 0, ErrUnauthorized
				}
			default:
				return 0, ErrUnauthorized
			}
		}
		v.profileEvent(ev)
		x, err := v.experimentEvent(i, ev, exp, variant)
		if err != nil {
			return 0, err
		}
		if x.page != nil {
			xs = append(xs, x)
		}
	}
	w := expWrite{e: e, now: v.now}
	var ids []int // events with an ID
	for i := range evs {
		if len(evs[i].ID) > 0 {
			ids = append(ids, i)
		}
	}
	var repeat []bool
	if len(xs) > 0 || len(ids) > 0 {
		keys := make([][]byte, 0, len(xs)+len(ids))
		for _, x := range xs {
			keys = append(keys, evs[x.i].User)
		}
		for _, i := range ids {
			keys = append(keys, evs[i].ID)
		}
		w.lock(keys)
		defer w.unlock()
		if repeat, repeats, err = w.repeats(evs, ids); err != nil {
			return 0, err
		}
		if repeats > 0 {
			// The rest, in order; xs index the events kept.
			kept := make([]index.StateEvent, 0, len(evs)-repeats)
			at := make([]int, len(evs))
			for i := range evs {
				at[i] = len(kept)
				if !repeat[i] {
					kept = append(kept, evs[i])
				}
			}
			n := 0
			for _, x := range xs {
				if !repeat[x.i] {
					x.i = at[x.i]
					xs[n] = x
					n++
				}
			}
			evs, xs = kept, xs[:n]
		}
	}
	counters := v.attribution(evs, nil)
	if len(xs) > 0 {
		for _, x := range xs {
			ev := &evs[x.i]
			var err error
			switch {
			case ev.Type == model.EventExposure:
				err = w.exposure(x.page, ev.User, x.variant, ev.TS)
			case x.page.placement && (ev.Type == model.EventImpression || ev.Type == model.EventClick):
				err = w.placementCount(x.page, ev.User, ev.Type)
				if err == nil && x.goal >= 0 {
					err = w.conversion(x.page, x.goal, ev.User, 0, keyless)
				}
			default:
				err = w.conversion(x.page, x.goal, ev.User, ev.Value, keyless)
			}
			if err != nil {
				return 0, err
			}
		}
		counters = append(counters, w.counters...)
	}
	if err := e.state.Write(evs, counters, w.metas); err != nil {
		return 0, err
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
			return repeats, err
		}
	}
	return repeats, nil
}

// repeats marks the events of ids (indexes into evs) whose ID was stored
// before or comes earlier in the batch, and records the others' IDs in
// w: "ei/<id>" → varint(the event's time) varint(its arrival); records
// written before retention hold the event's time only. The caller holds
// the IDs' stripe locks.
func (w *expWrite) repeats(evs []index.StateEvent, ids []int) (repeat []bool, n int, err error) {
	if len(ids) == 0 {
		return nil, 0, nil
	}
	repeat = make([]bool, len(evs))
	for _, i := range ids {
		key := append([]byte("ei/"), evs[i].ID...)
		_, seen, err := w.get(key)
		if err != nil {
			return nil, 0, err
		}
		if seen {
			repeat[i] = true
			n++
			continue
		}
		w.set(key, binary.AppendVarint(binary.AppendVarint(nil, evs[i].TS), w.now))
	}
	return repeat, n, nil
}

// placementEvent finds the placement experiment an event counts for: an
// impression or click on a placement with variants, or a purchase or
// conversion that carries its placement and rec_id.
func (v *View) placementEvent(x expEvent, ev *index.StateEvent) (expEvent, error) {
	pl := v.cfg.Placements[string(ev.Placement)]
	if pl == nil || pl.exp == nil {
		return x, nil
	}
	switch ev.Type {
	case model.EventImpression:
	case model.EventClick:
		x.goal = pl.exp.goal([]byte(goalClick))
	case model.EventPurchase, model.EventConversion:
		if len(ev.RecID) == 0 {
			return x, nil
		}
		g, err := checkConversion(pl.exp, []byte(goalPurchase), ev.Value, ev.HasValue)
		if err != nil {
			return x, badParam("event "+strconv.Itoa(x.i+1), err.Error())
		}
		x.goal = g
	default:
		return x, nil
	}
	x.page = pl.exp
	return x, nil
}

// decisionFlag is the flag of a decision id, "exp.variant.<flag>…": how
// the decision was made; 0 when there is none.
func decisionFlag(id []byte) byte {
	if _, _, tail, ok := splitDecisionID(id); ok && len(tail) > 0 {
		return tail[0]
	}
	return 0
}

// expEvent is an event an experiment counts.
type expEvent struct {
	i       int
	page    *Page
	variant []byte
	goal    int // -1: none (an impression)
}

// experimentEvent finds the experiment a conversion, purchase or exposure
// counts for, from the decision_id it carries (exp and variant, when a
// keyless beacon's signature was checked already), and checks its goal
// and value: a bad one fails the batch, naming the event. An event of no
// configured experiment counts for none (x.page nil).
func (v *View) experimentEvent(i int, ev *index.StateEvent, exp, variant []byte) (expEvent, error) {
	x := expEvent{i: i, goal: -1}
	switch ev.Type {
	case model.EventConversion, model.EventPurchase, model.EventExposure:
	case model.EventClick, model.EventImpression:
		return v.placementEvent(x, ev)
	default:
		return x, nil
	}
	if exp == nil {
		var ok bool
		if exp, variant, _, ok = splitDecisionID(ev.RecID); !ok {
			return v.placementEvent(x, ev)
		}
	}
	page := v.cfg.pageOf(exp)
	if page == nil || page.placement {
		return v.placementEvent(x, ev)
	}
	if ev.Type == model.EventExposure {
		// Only a split's decision exposes a visitor to the split: one
		// made by a rule, the holdout or for a bot ('n', 'r', 'h') does
		// not.
		if page.Exposure != "event" || page.variant(variant) < 0 || decisionFlag(ev.RecID) != 's' {
			return x, nil
		}
		x.page, x.variant = page, variant
		return x, nil
	}
	goal := ev.Goal
	if len(goal) == 0 && ev.Type == model.EventPurchase && page.goal([]byte(model.EventPurchase.String())) >= 0 {
		goal = []byte(model.EventPurchase.String())
	}
	g, err := checkConversion(page, goal, ev.Value, ev.HasValue)
	if err != nil {
		return x, badParam("event "+strconv.Itoa(i+1), err.Error())
	}
	x.page, x.goal = page, g
	return x, nil
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

// attribution turns events into placement counters: events that carry a
// placement count for it: impressions, clicks, and conversions and
// revenue of purchases or conversions that carry the rec_id of a
// recommendation. (Experiments count in experimentEvent.)
func (v *View) attribution(evs []index.StateEvent, dst []index.Counter) []index.Counter {
	for i := range evs {
		ev := &evs[i]
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
