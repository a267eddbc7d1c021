package server

import (
	"bytes"
	"math"
	"strconv"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/jsonw"
	"github.com/edgerec/edgerec/model"
)

var parsers fastjson.ParserPool

// eventBatch is the scratch of one POST /v1/events.
type eventBatch struct {
	evs    []index.StateEvent
	logins []engine.Login
	arena  []byte
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
// only once the events are durable (engine.Ingest).
func (s *Server) handleEvents(ctx *fasthttp.RequestCtx) error {
	// Without the key, only beacons are taken: conversion or exposure
	// events whose decision_id this server signed for their visitor.
	beacon := authorize(ctx, s.o.APIKey) != nil
	if beacon {
		if err := s.limitAddress(ctx); err != nil {
			return err
		}
	}
	if !s.e.HasState() {
		return engine.ErrNoState
	}
	body := bytes.TrimSpace(ctx.PostBody())
	p := parsers.Get()
	defer parsers.Put(p)
	b := eventBatch{arena: make([]byte, 0, len(body)+64)}
	now := s.e.Now().Unix()
	add := func(n int, v *fastjson.Value) error {
		if len(b.evs) >= s.o.MaxBatch {
			return errorf(fasthttp.StatusRequestEntityTooLarge, "batch_too_large", "more than "+strconv.Itoa(s.o.MaxBatch)+" events in one request")
		}
		ev, err := s.parseEvent(v, now)
		if err != nil {
			return errorf(fasthttp.StatusBadRequest, "bad_event", "event "+strconv.Itoa(n)+": "+err.Error())
		}
		for _, f := range [...]*[]byte{&ev.User, &ev.Item, &ev.Basket, &ev.RecID, &ev.Placement, &ev.Page, &ev.Goal, &ev.ID} {
			*f = b.keep(*f)
		}
		if ev.Type == model.EventLogin {
			visitor := v.GetStringBytes("visitor")
			if len(visitor) == 0 {
				visitor = v.GetStringBytes("visitor_id")
			}
			if len(visitor) > 0 {
				if err := s.e.CheckID("visitor", visitor); err != nil {
					return errorf(fasthttp.StatusBadRequest, "bad_event", "event "+strconv.Itoa(n)+": "+err.Error())
				}
				b.logins = append(b.logins, engine.Login{Visitor: b.keep(visitor), User: ev.User})
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
	repeats, err := s.e.IngestEvents(b.evs, b.logins, beacon)
	if err != nil {
		return err
	}
	s.m.eventsIngested.Add(len(b.evs) - repeats)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	out := append(make([]byte, 0, 48), `{"accepted":`...)
	out = strconv.AppendInt(out, int64(len(b.evs)), 10)
	if repeats > 0 {
		// Acknowledged again, stored and counted once.
		out = append(out, `,"repeats":`...)
		out = strconv.AppendInt(out, int64(repeats), 10)
	}
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
	if err := s.e.CheckID("user_id", ev.User); err != nil {
		return ev, err
	}
	ev.Item = firstString(v, "item_id", "item")
	switch t {
	case model.EventView, model.EventCart, model.EventPurchase, model.EventRating, model.EventClick:
		if err := s.e.CheckID("item_id", ev.Item); err != nil {
			return ev, err
		}
	default:
		if len(ev.Item) > 0 {
			if err := s.e.CheckID("item_id", ev.Item); err != nil {
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
	if ev.ID = firstString(v, "event_id"); len(ev.ID) > 0 {
		if err := s.e.CheckID("event_id", ev.ID); err != nil {
			return ev, err
		}
	}
	if ev.Goal = firstString(v, "goal"); len(ev.Goal) > 0 {
		if err := s.e.CheckID("goal", ev.Goal); err != nil {
			return ev, err
		}
	}
	for _, f := range [...][]byte{ev.Basket, ev.RecID, ev.Placement, ev.Page} {
		if len(f) > s.e.MaxIDLen() {
			return ev, errText("a field is longer than " + strconv.Itoa(s.e.MaxIDLen()) + " bytes")
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

// handlePlacementStats answers /v1/placements/{id}/stats.
func (s *Server) handlePlacementStats(ctx *fasthttp.RequestCtx, id []byte) error {
	st, err := s.e.PlacementStats(id)
	if err != nil {
		return err
	}
	out := make([]byte, 0, 256)
	out = append(out, `{"placement":`...)
	out = jsonw.AppendString(out, id)
	out = append(out, `,"served":`...)
	out = strconv.AppendUint(out, st.Served, 10)
	out = append(out, `,"impressions":`...)
	out = jsonw.AppendFloat(out, st.Impressions, 64)
	out = append(out, `,"clicks":`...)
	out = jsonw.AppendFloat(out, st.Clicks, 64)
	out = append(out, `,"ctr":`...)
	out = jsonw.AppendFloat(out, st.CTR(), 64)
	out = append(out, `,"conversions":`...)
	out = jsonw.AppendFloat(out, st.Conversions, 64)
	out = append(out, `,"revenue":`...)
	out = jsonw.AppendFloat(out, st.Revenue, 64)
	out = append(out, "}\n"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
	return nil
}
