package engine

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/edgerec/edgerec/model"
)

// VariantResult is one row of an experiment's results.
type VariantResult struct {
	Variant     string   `json:"variant"`
	Weight      float64  `json:"weight"`
	Exposures   float64  `json:"exposures"`
	Conversions float64  `json:"conversions"`
	Revenue     float64  `json:"revenue"`
	Rate        float64  `json:"rate"`
	Lift        *float64 `json:"lift,omitempty"`
	LiftLow     *float64 `json:"lift_ci95_low,omitempty"`
	LiftHigh    *float64 `json:"lift_ci95_high,omitempty"`
	PBeat       *float64 `json:"p_beat_control,omitempty"`
	PBest       float64  `json:"p_best"`
	Loss        float64  `json:"expected_loss"`
	Control     bool     `json:"control,omitempty"`
}

// ExperimentResult is what Results measures; its JSON form is the answer
// of GET /v1/experiments/{id}/results.
type ExperimentResult struct {
	Experiment string          `json:"experiment"`
	Page       string          `json:"page"`
	Mode       string          `json:"mode"`
	Variants   []VariantResult `json:"variants"`
	// Shares is the traffic share of each variant per hour of new
	// exposures: how a bandit moved traffic over time.
	Shares []HourShare `json:"traffic_share_by_hour"`
	SRM    struct {
		Chi2   float64 `json:"chi2"`
		DF     int     `json:"df"`
		P      float64 `json:"p"`
		Flag   bool    `json:"mismatch"`
		Reason string  `json:"note"`
	} `json:"srm"`
}

// Results measures the experiment id: per variant exposures
// (randomised visitors), conversions, revenue, rate, lift over the
// control with its 95% interval, the Bayesian probability of beating the
// control, P(best) and expected loss, a sample-ratio-mismatch check, and
// the traffic share per hour.
func (e *Engine) Results(id []byte) (*ExperimentResult, error) {
	page := e.Config().pageOf(id)
	if page == nil {
		return nil, errorf(NotFound, "unknown_experiment", "no experiment with this id in the config")
	}
	if e.state == nil {
		return nil, ErrNoState
	}
	r := &ExperimentResult{Experiment: page.Experiment, Page: page.name, Mode: page.Mode}
	if err := e.hourlyShares(page, r); err != nil {
		return nil, err
	}
	arms := make([]model.ArmStats, len(page.Variants))
	var observed, weights []float64
	for i, v := range page.Variants {
		row := VariantResult{Variant: v.ID, Weight: v.Weight, Control: i == page.control}
		for _, c := range []struct {
			name string
			dst  *float64
		}{{"exposures", &row.Exposures}, {"conversions", &row.Conversions}, {"revenue", &row.Revenue}} {
			x, err := e.state.Counter(expKey(id, []byte(v.ID), c.name))
			if err != nil {
				return nil, err
			}
			*c.dst = x
		}
		arms[i] = model.ArmStats{Exposures: row.Exposures, Conversions: row.Conversions}
		row.Rate = arms[i].Rate()
		r.Variants = append(r.Variants, row)
		if v.Weight > 0 {
			observed = append(observed, row.Exposures)
			weights = append(weights, v.Weight)
		}
	}
	ctrl := arms[page.control]
	for i := range r.Variants {
		if i == page.control {
			continue
		}
		if lift, lo, hi, ok := model.Lift(ctrl, arms[i]); ok {
			r.Variants[i].Lift, r.Variants[i].LiftLow, r.Variants[i].LiftHigh = &lift, &lo, &hi
		}
		if ctrl.Exposures > 0 && arms[i].Exposures > 0 {
			p := model.ProbBBeatsA(ctrl, arms[i])
			r.Variants[i].PBeat = &p
		}
	}
	// P(best) and expected loss from 20k posterior draws, seeded by the
	// counts so that the same data gives the same figures.
	src := rand.NewPCG(uint64(len(arms)), uint64(ctrl.Exposures)<<20^uint64(ctrl.Conversions))
	pBest, loss := model.ProbBestAndLoss(arms, 20_000, func(a, b float64) float64 {
		return distuv.Beta{Alpha: a, Beta: b, Src: src}.Rand()
	})
	for i := range r.Variants {
		r.Variants[i].PBest, r.Variants[i].Loss = pBest[i], loss[i]
	}
	r.SRM.Chi2, r.SRM.DF = model.ChiSquareSRM(observed, weights)
	r.SRM.P = model.ChiSquarePValue(r.SRM.Chi2, r.SRM.DF)
	r.SRM.Flag = r.SRM.DF > 0 && r.SRM.P < 0.001
	r.SRM.Reason = "exposures against the configured weights; mismatch when p < 0.001"
	return r, nil
}

// HourShare is the share of each variant among an hour's new exposures.
type HourShare struct {
	Hour   int64              `json:"hour"` // Unix seconds, start of the hour
	Shares map[string]float64 `json:"shares"`
}

// hourlyShares reads the per-hour exposure counters of page's experiment.
func (e *Engine) hourlyShares(page *Page, r *ExperimentResult) error {
	byHour := map[int64]map[string]float64{}
	prefix := []byte("x/" + page.Experiment + "/")
	err := e.state.ScanCounters(prefix, func(key []byte, v float64) error {
		rest := string(key[len(prefix):]) // variant/exposures@hour
		variant, tail, ok := strings.Cut(rest, "/exposures@")
		if !ok {
			return nil
		}
		hour, err := strconv.ParseInt(tail, 10, 64)
		if err != nil {
			return nil
		}
		if byHour[hour] == nil {
			byHour[hour] = map[string]float64{}
		}
		byHour[hour][variant] += v
		return nil
	})
	if err != nil {
		return err
	}
	for _, h := range sortedHours(byHour) {
		total := 0.0
		for _, v := range byHour[h] {
			total += v
		}
		for k := range byHour[h] {
			byHour[h][k] /= total
		}
		r.Shares = append(r.Shares, HourShare{Hour: h, Shares: byHour[h]})
	}
	return nil
}

func sortedHours(m map[int64]map[string]float64) []int64 {
	hs := make([]int64, 0, len(m))
	for h := range m {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
	return hs
}
