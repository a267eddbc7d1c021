package index

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/edgerec/edgerec/model"
)

// EvalOptions configure an offline evaluation.
type EvalOptions struct {
	// K is the cut-off of the ranking metrics; default 10.
	K int
	// Weights turn the training events into user affinity, as the server
	// does with a visitor's history; zero means model.DefaultWeights.
	Weights model.Weights
	// Now is the reference time of the affinity decay; 0 means the newest
	// training event.
	Now int64
	// MaxBad is the number of bad input lines skipped before evaluation
	// fails, as BuildOptions.MaxBad; 0 tolerates none.
	MaxBad int
}

// EvalResult holds the figures of the snapshot's personal ranking and of
// the popularity baseline (the snapshot's global popular list).
type EvalResult struct {
	model.RankingMetrics
	Popularity model.RankingMetrics `json:"popularity"`
	// Skipped counts test users with no training history.
	Skipped int `json:"skipped_users"`
}

// similarSource reads similar-items lists of a snapshot.
type similarSource struct{ s *Snapshot }

func (src similarSource) AppendNeighbours(dst []model.Neighbour, item uint32) ([]model.Neighbour, error) {
	return src.s.AppendList(dst, ListSimilar, item)
}

// Evaluate ranks items for every test user from their training history
// through the snapshot's similar-items lists and model.BlendHistory, with
// training items removed, and scores the top K against the test events.
func Evaluate(s *Snapshot, trainPath, testPath string, o EvalOptions) (*EvalResult, error) {
	if o.K <= 0 {
		o.K = 10
	}
	if o.Weights == (model.Weights{}) {
		o.Weights = model.DefaultWeights()
	}
	users := map[string]int{}
	var hist [][]model.HistoryEvent
	var newest int64
	bad := 0
	err := readAll(trainPath, o.MaxBad, &bad, func(ev *model.Event) {
		item, ok := s.Lookup(ev.Item)
		if !ok {
			return
		}
		u, ok := users[string(ev.User)]
		if !ok {
			u = len(hist)
			users[string(ev.User)] = u
			hist = append(hist, nil)
		}
		v := float32(math.NaN())
		if ev.HasValue {
			v = float32(ev.Value)
		}
		hist[u] = append(hist[u], model.HistoryEvent{Item: item, Type: ev.Type, TS: ev.TS, Value: v})
		newest = max(newest, ev.TS)
	})
	if err != nil {
		return nil, err
	}
	if o.Now == 0 {
		o.Now = newest
	}
	// Test sets: distinct items per user, by external id (test items need
	// not be in the snapshot, and still count as relevant).
	test := map[string]map[string]struct{}{}
	var order []string
	err = readAll(testPath, o.MaxBad, &bad, func(ev *model.Event) {
		m, ok := test[string(ev.User)]
		if !ok {
			m = map[string]struct{}{}
			test[string(ev.User)] = m
			order = append(order, string(ev.User))
		}
		m[string(ev.Item)] = struct{}{}
	})
	if err != nil {
		return nil, err
	}
	pop, err := s.AppendList(nil, ListPopular, 0)
	if err != nil {
		return nil, err
	}
	res := &EvalResult{}
	recAcc := model.NewMetricsAcc(o.K, s.NumItems())
	popAcc := model.NewMetricsAcc(o.K, s.NumItems())
	sc := model.NewScorer(s.NumItems())
	var aff []model.ItemWeight
	var buf, top []model.Neighbour
	for _, user := range order {
		u, ok := users[user]
		if !ok {
			res.Skipped++
			continue
		}
		rel := test[user]
		relevant := func(item uint32) bool {
			_, ok := rel[s.Item(item).ID]
			return ok
		}
		aff = o.Weights.AppendAffinity(aff[:0], hist[u], o.Now)
		sc.Reset(s.NumItems())
		model.ExcludeHistory(sc, aff)
		buf, err = model.BlendHistory(sc, aff, similarSource{s}, 1, buf)
		if err != nil {
			return nil, err
		}
		top = sc.AppendTop(top[:0], o.K)
		recAcc.AddUser(top, relevant, len(rel))

		top = top[:0]
		for _, n := range pop {
			if len(top) == o.K {
				break
			}
			if !sc.Excluded(n.Item) {
				top = append(top, n)
			}
		}
		popAcc.AddUser(top, relevant, len(rel))
	}
	res.RankingMetrics = recAcc.Result()
	res.Popularity = popAcc.Result()
	return res, nil
}

// readAll calls fn for every event of the file at path. Bad lines are
// skipped and counted in *bad; more than maxBad of them fail the read.
func readAll(path string, maxBad int, bad *int, fn func(ev *model.Event)) error {
	f, err := OpenInput(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := NewEventReader(f, path)
	if err != nil {
		return err
	}
	var ev model.Event
	for {
		err := r.Next(&ev)
		if errors.Is(err, io.EOF) {
			return nil
		}
		var le *LineError
		if errors.As(err, &le) {
			if *bad++; *bad > maxBad {
				return fmt.Errorf("%w: %d (max %d); last: %v", ErrTooManyBadLines, *bad, maxBad, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		fn(&ev)
	}
}
