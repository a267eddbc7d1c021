package server

import (
	"bytes"
	"math"
	"strconv"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

var parsers fastjson.ParserPool

// eventBatch is the scratch of one POST /v1/events.
type eventBatch struct {
	evs      []index.StateEvent
	counters []index.Counter
	logins   [][2][]byte
	arena    []byte
}

// keep copies f into the batch's arena: fastjson reuses its memory on the
// next parse, and NDJSON parses once a line. The arena never moves what it
// handed out: when full, a new chunk is started.
func (b *eventBatch) keep(f []byte) []byte {
	if len(f) == 0 {
		return nil
	}
	if len(b.arena)+len(f) > cap(b.arena) {
		b.arena = make([]byte, 0, max(4096, len(f)))
	}
	start := len(b.arena)
	b.arena = append(b.arena, f...)
	return b.arena[start:len(b.arena):len(b.arena)]
}

// handleEvents stores a batch of events: a JSON array or NDJSON. The batch
// is validated whole first, so a bad event stores nothing; the answer comes
// only once the events are durable.
func (s *Server) handleEvents(ctx *fasthttp.RequestCtx) error {
	// Without the key, only beacons are taken: conversion or exposure
	// events whose decision_id this server signed for their visitor.
	beacon := authorize(ctx, s.o.APIKey) != nil
	if s.state == nil {
		return errorf(fasthttp.StatusServiceUnavailable, "no_state", "this server has no state store")
	}
	body := bytes.TrimSpace(ctx.PostBody())
	p := parsers.Get()
	defer parsers.Put(p)
	b := eventBatch{arena: make([]byte, 0, len(body)+64)}
	now := s.o.Now().Unix()
	snap := s.live.Acquire()
	if snap != nil {
		defer snap.Release()
	}
	add := func(n int, v *fastjson.Value) error {
		if len(b.evs) >= s.o.MaxBatch {
			return errorf(fasthttp.StatusRequestEntityTooLarge, "batch_too_large", "more than "+strconv.Itoa(s.o.MaxBatch)+" events in one request")
		}
		ev, err := s.parseEvent(v, now)
		if err != nil {
			if beacon {
				return errUnauthorized
			}
			return errorf(fasthttp.StatusBadRequest, "bad_event", "event "+strconv.Itoa(n)+": "+err.Error())
		}
		if beacon && ((ev.Type != model.EventConversion && ev.Type != model.EventExposure) || !s.verifyDecision(ev.RecID, ev.User)) {
			return errUnauthorized
		}
		profileEvent(snap, &ev)
		for _, f := range [...]*[]byte{&ev.User, &ev.Item, &ev.Basket, &ev.RecID, &ev.Placement, &ev.Page, &ev.Category, &ev.Path} {
			*f = b.keep(*f)
		}
		if ev.Type == model.EventLogin {
			visitor := v.GetStringBytes("visitor")
			if len(visitor) == 0 {
				visitor = v.GetStringBytes("visitor_id")
			}
			if len(visitor) > 0 {
				if err := s.checkID("visitor", visitor); err != nil {
					return errorf(fasthttp.StatusBadRequest, "bad_event", "event "+strconv.Itoa(n)+": "+err.Error())
				}
				b.logins = append(b.logins, [2][]byte{b.keep(visitor), ev.User})
			}
		}
		b.evs = append(b.evs, ev)
		return nil
	}
	if err := eachJSON(p, body, add); err != nil {
		if beacon {
			return errUnauthorized
		}
		return err
	}
	if len(b.evs) == 0 {
		return errorf(fasthttp.StatusBadRequest, "bad_json", "no events in body")
	}
	b.counters = s.attribution(b.evs, b.counters[:0])
	if err := s.state.AppendEventsAndCount(b.evs, b.counters); err != nil {
		return err
	}
	for _, l := range b.logins {
		if err := s.state.MergeHistory(l[0], l[1], now); err != nil {
			return err
		}
		if err := s.state.MergeProfile(l[0], l[1]); err != nil {
			return err
		}
	}
	s.m.eventsIngested.Add(len(b.evs))
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	out := append(make([]byte, 0, 32), `{"accepted":`...)
	out = strconv.AppendInt(out, int64(len(b.evs)), 10)
	ctx.SetBody(append(out, "}\n"...))
	return nil
}

// parseEvent reads one event object. Slices alias the parsed body.
func (s *Server) parseEvent(v *fastjson.Value, now int64) (index.StateEvent, error) {
	var ev index.StateEvent
	typ := firstString(v, "event", "type")
	t, ok := model.ParseEventType(typ)
	if !ok {
		return ev, errText("unknown event type " + strconv.Quote(string(typ)))
	}
	ev.Type = t
	ev.User = firstString(v, "user_id", "user", "visitor_id", "visitor")
	if err := s.checkID("user_id", ev.User); err != nil {
		return ev, err
	}
	ev.Item = firstString(v, "item_id", "item")
	switch t {
	case model.EventView, model.EventCart, model.EventPurchase, model.EventRating, model.EventClick:
		if err := s.checkID("item_id", ev.Item); err != nil {
			return ev, err
		}
	default:
		if len(ev.Item) > 0 {
			if err := s.checkID("item_id", ev.Item); err != nil {
				return ev, err
			}
		}
	}
	ev.TS = now
	if tv := v.Get("ts"); tv != nil {
		f, err := tv.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
			return ev, errText("ts must be Unix seconds")
		}
		ev.TS = int64(f)
	}
	if vv := v.Get("value"); vv != nil && vv.Type() != fastjson.TypeNull {
		f, err := vv.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return ev, errText("value must be a number")
		}
		ev.Value, ev.HasValue = f, true
	}
	ev.Basket = firstString(v, "basket", "order_id")
	ev.RecID = firstString(v, "rec_id")
	if len(ev.RecID) == 0 {
		ev.RecID = firstString(v, "decision_id") // landing-page conversions
	}
	ev.Placement = firstString(v, "placement")
	ev.Page = firstString(v, "page")
	for _, f := range [...][]byte{ev.Basket, ev.RecID, ev.Placement, ev.Page} {
		if len(f) > s.o.MaxIDLen {
			return ev, errText("a field is longer than " + strconv.Itoa(s.o.MaxIDLen) + " bytes")
		}
	}
	return ev, nil
}

type errText string

func (e errText) Error() string { return string(e) }

func firstString(v *fastjson.Value, keys ...string) []byte {
	for _, k := range keys {
		if f := v.Get(k); f != nil {
			switch f.Type() {
			case fastjson.TypeString:
				b, _ := f.StringBytes()
				return b
			case fastjson.TypeNumber:
				return f.MarshalTo(nil)
			}
		}
	}
	return nil
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
func (s *Server) attribution(evs []index.StateEvent, dst []index.Counter) []index.Counter {
	for i := range evs {
		ev := &evs[i]
		if ev.Type == model.EventConversion || ev.Type == model.EventPurchase || ev.Type == model.EventExposure {
			dst = s.experimentEvent(ev, dst)
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

// handlePlacementStats answers /v1/placements/{id}/stats.
func (s *Server) handlePlacementStats(ctx *fasthttp.RequestCtx, id []byte) error {
	if err := s.checkID("placement", id); err != nil {
		return err
	}
	if s.state == nil {
		return errorf(fasthttp.StatusServiceUnavailable, "no_state", "this server has no state store")
	}
	var v [4]float64
	for i, name := range [...]string{statImpressions, statClicks, statConversions, statRevenue} {
		x, err := s.state.Counter(statKey(id, name))
		if err != nil {
			return err
		}
		v[i] = x
	}
	served := s.m.servedFor(id)
	out := make([]byte, 0, 256)
	out = append(out, `{"placement":`...)
	out = appendJSONString(out, id)
	out = append(out, `,"served":`...)
	out = strconv.AppendUint(out, served, 10)
	out = append(out, `,"impressions":`...)
	out = appendJSONFloat(out, v[0], 64)
	out = append(out, `,"clicks":`...)
	out = appendJSONFloat(out, v[1], 64)
	out = append(out, `,"ctr":`...)
	ctr := 0.0
	if v[0] > 0 {
		ctr = v[1] / v[0]
	}
	out = appendJSONFloat(out, ctr, 64)
	out = append(out, `,"conversions":`...)
	out = appendJSONFloat(out, v[2], 64)
	out = append(out, `,"revenue":`...)
	out = appendJSONFloat(out, v[3], 64)
	out = append(out, "}\n"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
	return nil
}

// experimentEvent counts a conversion (or, on pages with exposure: event,
// an exposure) for the experiment variant its decision_id names, when the
// decision was randomised.
func (s *Server) experimentEvent(ev *index.StateEvent, dst []index.Counter) []index.Counter {
	exp, rest, ok := bytes.Cut(ev.RecID, []byte("."))
	if !ok {
		return dst
	}
	variant, tail, ok := bytes.Cut(rest, []byte("."))
	if !ok || len(tail) == 0 || tail[0] != 's' {
		return dst
	}
	page := s.cfg.Load().pageOf(exp)
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

func expKey(exp, variant []byte, name string) []byte {
	k := make([]byte, 0, 4+len(exp)+len(variant)+len(name))
	k = append(append(append(k, "x/"...), exp...), '/')
	k = append(append(k, variant...), '/')
	return append(k, name...)
}
