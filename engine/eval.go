package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// EvalOptions configure an offline evaluation.
type EvalOptions struct {
	// K is the cut-off of the ranking metrics; default 10.
	K int
	// MaxBad is the number of bad input lines skipped before evaluation
	// fails, as BuildOptions.MaxBad; 0 tolerates none.
	MaxBad int
	// PostTrain posts the training events to the engine as live events
	// before the test users are asked, as a shop that sends its events
	// does: for a snapshot built from other data, or one that carries no
	// histories. A snapshot built from the training file carries them
	// already.
	PostTrain bool
	// Engine are the options of the engine that answers, as edgerec serve
	// would set them (history window, seen items, config, weights). Its
	// Now defaults to the time of the snapshot's newest event, so that
	// affinity decay sees the data as it was when built; Logger to a
	// discarding one.
	Engine Options
}

// EvalResult holds the figures of the served personal ranking and of the
// popularity baseline.
type EvalResult struct {
	model.RankingMetrics
	// Popularity ranks items by their number of training events, undecayed
	// (ties: the item seen first in the training data first), each user's
	// training items left out: the baseline of the Microsoft Recommenders
	// benchmarks. Nil when not measured (eval --url).
	Popularity *model.RankingMetrics `json:"popularity,omitempty"`
	// NoHistory counts test users the server knew no history of: they were
	// answered (popular items) and scored like everyone.
	NoHistory int `json:"users_without_history"`
}

// Evaluate serves the snapshot at snapDir through an Engine on a scratch
// state store, as edgerec serve would: the snapshot's users' histories are
// imported, and, with PostTrain, trainPath's events are posted as live
// events. The popularity baseline counts trainPath's events, or without
// one the snapshot's histories.
// Then it asks View.PersonalTop for every user of testPath, in file order,
// and scores the answers against the user's test items: the figures are
// those of what is served (README, "Quality").
func Evaluate(ctx context.Context, snapDir, trainPath, testPath string, o EvalOptions) (*EvalResult, error) {
	if o.K <= 0 {
		o.K = 10
	}
	scratch, err := os.MkdirTemp("", "edgerec-eval-state-")
	if err != nil {
		return nil, fmt.Errorf("cannot create a scratch state store: %w", err)
	}
	defer os.RemoveAll(scratch)
	state, err := index.OpenState(scratch, index.StateOptions{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer state.Close()
	eo := o.Engine
	if eo.Logger == nil {
		eo.Logger = slog.New(slog.DiscardHandler)
	}
	var newest int64
	if eo.Now == nil {
		eo.Now = func() time.Time { return time.Unix(newest, 0) }
	}
	e, err := New(eo, state)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	m, err := e.LoadSnapshot(ctx, snapDir)
	if err != nil {
		return nil, err
	}
	newest = m.Newest
	bad := 0
	pop := newPopularity()
	switch {
	case trainPath != "" && o.PostTrain:
		err = postEvents(ctx, e, trainPath, o.MaxBad, &bad, pop)
	case trainPath != "":
		err = index.EachEvent(trainPath, o.MaxBad, &bad, func(ev *model.Event) error { pop.add(ev); return nil })
	default:
		err = pop.fromSnapshot(e)
	}
	if err != nil {
		return nil, err
	}
	// Test sets: distinct items per user, by external id (test items need
	// not be in the snapshot, and still count as relevant).
	test := map[string]map[string]struct{}{}
	var order []string
	err = index.EachEvent(testPath, o.MaxBad, &bad, func(ev *model.Event) error {
		m, ok := test[string(ev.User)]
		if !ok {
			m = map[string]struct{}{}
			test[string(ev.User)] = m
			order = append(order, string(ev.User))
		}
		m[string(ev.Item)] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v := e.Acquire()
	defer v.Release()
	res := &EvalResult{}
	n := v.snap.NumItems()
	recAcc, popAcc := model.NewMetricsAcc(o.K, n), model.NewMetricsAcc(o.K, n)
	var recs Recs
	var top []model.Neighbour
	for i, user := range order {
		if i&255 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		rel := test[user]
		relevant := func(item uint32) bool {
			_, ok := rel[v.snap.Item(item).ID]
			return ok
		}
		if err := v.PersonalTop([]byte(user), o.K, &recs); err != nil {
			return nil, err
		}
		if len(v.hevs) == 0 {
			res.NoHistory++
		}
		top = top[:0]
		for _, p := range recs.Picks {
			top = append(top, model.Neighbour{Item: p.Item, Score: p.Score})
		}
		recAcc.AddUser(top, relevant, len(rel))
		popAcc.AddUser(pop.top(v, user, o.K, top[:0]), relevant, len(rel))
	}
	res.RankingMetrics = recAcc.Result()
	pr := popAcc.Result()
	res.Popularity = &pr
	return res, nil
}

// postEvents posts the events of path to e in batches, as a client of the
// server would, and counts them into pop.
func postEvents(ctx context.Context, e *Engine, path string, maxBad int, bad *int, pop *popularity) error {
	batch := make([]index.StateEvent, 0, 1000)
	arena := make([]byte, 0, 64<<10)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := e.Ingest(batch, nil, false)
		batch, arena = batch[:0], arena[:0]
		return err
	}
	keep := func(b []byte) []byte {
		start := len(arena)
		arena = append(arena, b...)
		return arena[start:len(arena):len(arena)]
	}
	err := index.EachEvent(path, maxBad, bad, func(ev *model.Event) error {
		pop.add(ev)
		if len(batch) == cap(batch) || len(arena)+len(ev.User)+len(ev.Item)+len(ev.Basket) > cap(arena) {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, index.StateEvent{User: keep(ev.User), Item: keep(ev.Item), Type: ev.Type, TS: ev.TS,
			Value: ev.Value, HasValue: ev.HasValue, Basket: keep(ev.Basket)})
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// popularity is the benchmarks' popularity baseline: items by their
// number of training events, each user's training items left out.
type popularity struct {
	count map[string]int
	order []string // items, first seen first
	seen  map[string]map[string]struct{}
	ranks []string // items by count, then first seen
}

func newPopularity() *popularity {
	return &popularity{count: map[string]int{}, seen: map[string]map[string]struct{}{}}
}

func (p *popularity) addEvent(user, item string) {
	if _, ok := p.count[item]; !ok {
		p.order = append(p.order, item)
	}
	p.count[item]++
	s := p.seen[user]
	if s == nil {
		s = map[string]struct{}{}
		p.seen[user] = s
	}
	s[item] = struct{}{}
	p.ranks = nil
}

func (p *popularity) add(ev *model.Event) { p.addEvent(string(ev.User), string(ev.Item)) }

// fromSnapshot counts the histories the snapshot carries, when no training
// file is given.
func (p *popularity) fromSnapshot(e *Engine) error {
	ref := e.live.Acquire()
	if ref == nil {
		return ErrNoSnapshot
	}
	defer ref.Release()
	return ref.ScanHistories(func(user []byte, entries []index.HistoryEntry) error {
		// Oldest first, as a training file lists them.
		for i := len(entries) - 1; i >= 0; i-- {
			p.addEvent(string(user), string(entries[i].Item))
		}
		return nil
	})
}

// top appends user's top k of the baseline, as items of v's snapshot.
func (p *popularity) top(v *View, user string, k int, dst []model.Neighbour) []model.Neighbour {
	if p.ranks == nil {
		p.ranks = slices.Clone(p.order)
		slices.SortStableFunc(p.ranks, func(a, b string) int { return cmp.Compare(p.count[b], p.count[a]) })
	}
	seen := p.seen[user]
	for _, it := range p.ranks {
		if len(dst) == k {
			break
		}
		if _, ok := seen[it]; ok {
			continue
		}
		if n, ok := v.snap.Lookup([]byte(it)); ok {
			dst = append(dst, model.Neighbour{Item: n, Score: float32(p.count[it])})
		}
	}
	return dst
}
