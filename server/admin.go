package server

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http/pprof"
	"runtime"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"
	"github.com/valyala/fastjson"

	"github.com/edgerec/edgerec/engine"
)

// handlePutItems applies live catalog corrections (price, stock) from a JSON
// array or NDJSON of {"item_id":…, "price":…, "stock":…}
// (engine.PatchItems).
func (s *Server) handlePutItems(ctx *fasthttp.RequestCtx) error {
	if err := authorize(ctx, s.o.APIKey); err != nil {
		return err
	}
	body := bytes.TrimSpace(ctx.PostBody())
	p := parsers.Get()
	defer parsers.Put(p)
	var ups []engine.ItemUpdate
	parseOne := func(n int, v *fastjson.Value) error {
		if len(ups) >= s.o.MaxBatch {
			return errorf(fasthttp.StatusRequestEntityTooLarge, "batch_too_large", "more than "+strconv.Itoa(s.o.MaxBatch)+" items in one request")
		}
		id := firstString(v, "item_id", "id")
		if err := s.e.CheckID("item_id", id); err != nil {
			return errorf(fasthttp.StatusBadRequest, "bad_item", "item "+strconv.Itoa(n)+": "+err.Error())
		}
		u := engine.ItemUpdate{ID: string(id)}
		if f := v.Get("price"); f != nil {
			x, err := f.Float64()
			if err != nil || x < 0 || math.IsNaN(x) || math.IsInf(x, 0) {
				return errorf(fasthttp.StatusBadRequest, "bad_item", "item "+strconv.Itoa(n)+": price must be a number >= 0")
			}
			u.Price, u.HasPrice = x, true
		}
		if f := v.Get("stock"); f != nil {
			x, err := f.Int64()
			if err != nil {
				return errorf(fasthttp.StatusBadRequest, "bad_item", "item "+strconv.Itoa(n)+": stock must be an integer")
			}
			u.Stock, u.HasStock = x, true
		}
		if !u.HasPrice && !u.HasStock {
			return errorf(fasthttp.StatusBadRequest, "bad_item", "item "+strconv.Itoa(n)+": nothing to change: give price or stock")
		}
		ups = append(ups, u)
		return nil
	}
	if err := eachJSON(p, body, parseOne); err != nil {
		return err
	}
	if err := s.e.PatchItems(ups); err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(strconv.AppendInt([]byte(`{"updated":`), int64(len(ups)), 10))
	ctx.Response.AppendBodyString("}\n")
	return nil
}

// eachJSON calls fn for every object of a JSON array or NDJSON body. What
// fastjson's parser takes beyond JSON (numbers such as 00, 1-2 or nan,
// which became ids as written; FuzzEventsBody) is refused by its
// validator, run after the parse so that the parser's messages stay.
func eachJSON(p *fastjson.Parser, body []byte, fn func(n int, v *fastjson.Value) error) error {
	if len(body) == 0 {
		return errorf(fasthttp.StatusBadRequest, "bad_json", "empty body")
	}
	if body[0] == '[' {
		v, err := p.ParseBytes(body)
		if err == nil {
			err = fastjson.ValidateBytes(body)
		}
		if err != nil {
			return errorf(fasthttp.StatusBadRequest, "bad_json", "cannot parse JSON array: "+err.Error())
		}
		arr, err := v.Array()
		if err != nil {
			return errorf(fasthttp.StatusBadRequest, "bad_json", "body is not an array")
		}
		for i, e := range arr {
			if e.Type() != fastjson.TypeObject {
				return errorf(fasthttp.StatusBadRequest, "bad_json", "entry "+strconv.Itoa(i+1)+" is not an object")
			}
			if err := fn(i+1, e); err != nil {
				return err
			}
		}
		return nil
	}
	n := 0
	for len(body) > 0 {
		line, rest, _ := bytes.Cut(body, []byte("\n"))
		body = rest
		n++
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		v, err := p.ParseBytes(line)
		if err == nil {
			err = fastjson.ValidateBytes(line)
		}
		if err != nil {
			return errorf(fasthttp.StatusBadRequest, "bad_json", "line "+strconv.Itoa(n)+": cannot parse JSON: "+err.Error())
		}
		if v.Type() != fastjson.TypeObject {
			return errorf(fasthttp.StatusBadRequest, "bad_json", "line "+strconv.Itoa(n)+" is not an object")
		}
		if err := fn(n, v); err != nil {
			return err
		}
	}
	return nil
}

// handleLoadSnapshot loads the snapshot root's CURRENT version (or the
// "path" query argument, a version directory under the root) and swaps it
// in. A bad snapshot is refused with 409 and the old one keeps serving.
func (s *Server) handleLoadSnapshot(ctx *fasthttp.RequestCtx) error {
	if err := authorize(ctx, s.o.AdminKey); err != nil {
		return err
	}
	path := s.o.SnapshotRoot
	if path == "" {
		return errorf(fasthttp.StatusConflict, "no_root", "the server was started without a snapshot root")
	}
	m, err := s.e.LoadSnapshot(context.Background(), path)
	if err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	b, _ := json.Marshal(map[string]any{"loaded": m.Version, "items": m.Items, "created": m.Created})
	ctx.SetBody(append(b, '\n'))
	return nil
}

// handleStatus answers /v1/admin/status.
func (s *Server) handleStatus(ctx *fasthttp.RequestCtx) error {
	if err := authorize(ctx, s.o.AdminKey); err != nil {
		return err
	}
	es := s.e.Stats()
	st := map[string]any{
		"uptime_seconds": time.Since(s.started).Seconds(),
		"goroutines":     runtime.NumGoroutine(),
		"events":         s.m.eventsIngested.Get(),
		"cache": map[string]any{
			"hits": s.m.cacheHits.Get() + es.Lists.Hits, "misses": s.m.cacheMisses.Get() + es.Lists.Misses,
			"cost_added": s.cacheCost(true) + es.Lists.CostAdded, "cost_evicted": s.cacheCost(false) + es.Lists.CostEvicted,
		},
		"catalog_patches": es.CatalogPatches,
	}
	if m := s.e.Snapshot(); m != nil {
		st["snapshot"] = m
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
	return nil
}

// pprofIndex is net/http/pprof's index page. pprofhandler answers 404 to
// every path ending in '/', /debug/pprof/ included.
var pprofIndex = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)

// handlePprof serves net/http/pprof behind the admin key: the index at
// /debug/pprof/, the profiles under it.
func (s *Server) handlePprof(ctx *fasthttp.RequestCtx) error {
	if err := authorize(ctx, s.o.AdminKey); err != nil {
		return err
	}
	switch string(ctx.Path()) {
	case "/debug/pprof":
		// The index's links are relative to /debug/pprof/.
		ctx.Response.Header.Set("Location", "/debug/pprof/")
		ctx.SetStatusCode(fasthttp.StatusPermanentRedirect)
	case "/debug/pprof/":
		pprofIndex(ctx)
	default:
		pprofhandler.PprofHandler(ctx)
	}
	return nil
}

// cacheCost returns the cost the body cache added (or evicted).
func (s *Server) cacheCost(added bool) uint64 {
	if s.cache == nil {
		return 0
	}
	if added {
		return s.cache.Metrics.CostAdded()
	}
	return s.cache.Metrics.CostEvicted()
}
