package engine

import (
	"cmp"
	"context"
	"runtime"
	"slices"
	"time"
)

// # Warming up
//
// A server that starts cold computes its first answers from nothing: the
// lists are not decoded yet, Pebble's block cache is empty, no visitor's
// answer is remembered. Under an open-loop load of half a core's
// saturation (25,000 home recommendations a second) the first 100 ms had
// a p99 of 8-35 ms, and one start in three fell behind by 0.4 s and took
// most of a second to catch up; the same server with every visitor's
// answer asked once before the load started had a p99 of 0.2-1.7 ms over
// its first second (README, Benchmarks, "Tails under open-loop load").
// Warm does that work before the server says it is ready: it decodes
// every item's lists into the list cache, asks every placement once
// without a visitor, and asks each placement that needs no context item
// (personal, popular, trending) and the personal list for the visitors
// with a history, most entries first, so that their answers, histories
// and segments are cached. It stops at its deadline, and after as many
// visitors as half the answer cache holds: warming never evicts
// what it warmed.

// WarmOptions bound Engine.Warm.
type WarmOptions struct {
	// Deadline ends warming where it is; zero: no deadline.
	Deadline time.Time
	// Visitors bounds the visitors whose answers are computed; 0: as many
	// as half the answer cache holds; negative: none.
	Visitors int
}

// WarmStats says what Warm did.
type WarmStats struct {
	Items    int // items whose similar and bought-together lists were read
	Visitors int // visitors whose answers were computed
	Answers  int // questions asked in all
	// Complete: every item and every chosen visitor was warmed before
	// the deadline.
	Complete bool
	Took     time.Duration
}

// Warm computes the answers a server is asked first (see above) and
// returns what it did. It serves nothing when no snapshot is loaded.
// Requests may run meanwhile; Ready says not ready while a HoldReady is
// held, which a server starting up takes for the time Warm runs.
func (e *Engine) Warm(ctx context.Context, o WarmOptions) (WarmStats, error) {
	start := time.Now()
	st := WarmStats{}
	over := func() bool {
		return ctx.Err() != nil || (!o.Deadline.IsZero() && !time.Now().Before(o.Deadline))
	}
	v := e.Acquire()
	if v.snap == nil {
		v.Release()
		return st, ErrNoSnapshot
	}
	n := v.snap.NumItems()
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = []byte(v.snap.Item(uint32(i)).ID)
	}
	cfg := v.cfg
	v.Release()

	var req RecRequest
	var out Recs
	ask := func(f func(v *View) error) {
		v := e.Acquire()
		_ = f(v) // an item without a list, a visitor in the holdout: not warming's business
		v.Release()
		st.Answers++
	}
	complete := true
	for _, id := range ids {
		if over() {
			complete = false
			break
		}
		req.Reset()
		req.Item = id
		ask(func(v *View) error { return v.Similar(&req, &out) })
		ask(func(v *View) error { return v.BoughtTogether(&req, &out) })
		st.Items++
	}
	// Every placement once without a visitor; those that need none again
	// for each visitor below.
	var personal [][]byte
	if cfg != nil {
		for _, name := range cfg.Names() {
			req.Reset()
			req.Placement = []byte(name)
			ask(func(v *View) error { return v.Recommend(&req, &out) })
			switch cfg.Placements[name].strategy {
			case strategyPersonal, strategyPopular, strategyTrending:
				personal = append(personal, req.Placement)
			}
		}
	}
	if e.state != nil && o.Visitors >= 0 && complete && !over() {
		users, err := e.warmVisitors(o.Visitors, len(personal)+1)
		if err != nil {
			return st, err
		}
		for _, u := range users {
			if over() {
				complete = false
				break
			}
			for _, p := range personal {
				req.Reset()
				req.Placement, req.User = p, u
				ask(func(v *View) error { return v.Recommend(&req, &out) })
			}
			req.Reset()
			ask(func(v *View) error { return v.Personal(u, &req, &out) })
			st.Visitors++
		}
	}
	e.WaitCache()
	// What warming allocated and dropped is collected now, not by the
	// first requests.
	runtime.GC()
	st.Complete = complete
	st.Took = time.Since(start)
	return st, nil
}

// warmVisitors returns the visitors with a history, most entries first:
// at most limit (0: as many as half the answer cache holds with
// per answers of the default length each).
func (e *Engine) warmVisitors(limit, per int) ([][]byte, error) {
	if limit == 0 {
		answer := int64(e.o.DefaultK)*pickSize + 64
		limit = int(max(e.o.CacheBytes/8/2/(answer*int64(per)), 0))
	}
	if limit == 0 {
		return nil, nil
	}
	type visitor struct {
		id      []byte
		entries int
	}
	var all []visitor
	err := e.state.HistoryUsers(func(user []byte, entries int) bool {
		all = append(all, visitor{append([]byte(nil), user...), entries})
		return true
	})
	if err != nil {
		return nil, err
	}
	// Stable: visitors with as many entries keep their key order.
	slices.SortStableFunc(all, func(a, b visitor) int { return cmp.Compare(b.entries, a.entries) })
	if len(all) > limit {
		all = all[:limit]
	}
	users := make([][]byte, len(all))
	for i, v := range all {
		users[i] = v.id
	}
	return users, nil
}

// HoldReady makes Ready say not ready (Unavailable, code "warming") until
// the returned release is called (once; later calls do nothing).
func (e *Engine) HoldReady() (release func()) {
	e.holds.Add(1)
	var done bool
	return func() {
		if !done {
			done = true
			e.holds.Add(-1)
		}
	}
}

// warming returns Ready's error while a HoldReady is held.
func (e *Engine) warming() error {
	if e.holds.Load() > 0 {
		return errorf(Unavailable, "warming", "warming up: the caches are being filled before the first requests")
	}
	return nil
}
