package server

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/model"
)

// variantResult is one row of an experiment's results.
type variantResult struct {
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

type experimentResult struct {
	Experiment string          `json:"experiment"`
	Page       string          `json:"page"`
	Mode       string          `json:"mode"`
	Variants   []variantResult `json:"variants"`
	// Shares is the traffic share of each variant per hour of new
	// exposures: how a bandit moved traffic over time.
	Shares []hourShare `json:"traffic_share_by_hour"`
	SRM    struct {
		Chi2   float64 `json:"chi2"`
		DF     int     `json:"df"`
		P      float64 `json:"p"`
		Flag   bool    `json:"mismatch"`
		Reason string  `json:"note"`
	} `json:"srm"`
}

// handleResults answers /v1/experiments/{id}/results (JSON, or CSV with
// format=csv): per variant exposures (randomised visitors), conversions,
// revenue, rate, lift over the control with its 95% interval, the Bayesian
// probability of beating the control, and a sample-ratio-mismatch check.
func (s *Server) handleResults(ctx *fasthttp.RequestCtx, id []byte) error {
	page := s.cfg.Load().pageOf(id)
	if page == nil {
		return errorf(fasthttp.StatusNotFound, "unknown_experiment", "no experiment with this id in the config")
	}
	if s.state == nil {
		return errorf(fasthttp.StatusServiceUnavailable, "no_state", "this server has no state store")
	}
	var r experimentResult
	r.Experiment, r.Page, r.Mode = page.Experiment, page.name, page.Mode
	if err := s.hourlyShares(page, &r); err != nil {
		return err
	}
	arms := make([]model.ArmStats, len(page.Variants))
	var observed, weights []float64
	for i, v := range page.Variants {
		row := variantResult{Variant: v.ID, Weight: v.Weight, Control: i == page.control}
		for _, c := range []struct {
			name string
			dst  *float64
		}{{"exposures", &row.Exposures}, {"conversions", &row.Conversions}, {"revenue", &row.Revenue}} {
			x, err := s.state.Counter(expKey(id, []byte(v.ID), c.name))
			if err != nil {
				return err
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
	if string(ctx.QueryArgs().Peek("format")) == "csv" {
		var b strings.Builder
		b.WriteString("variant,weight,exposures,conversions,revenue,rate,lift,lift_ci95_low,lift_ci95_high,p_beat_control,p_best,expected_loss\n")
		opt := func(p *float64) string {
			if p == nil {
				return ""
			}
			return fmt.Sprint(*p)
		}
		for _, v := range r.Variants {
			fmt.Fprintf(&b, "%s,%v,%v,%v,%v,%v,%s,%s,%s,%s,%v,%v\n", v.Variant, v.Weight, v.Exposures, v.Conversions, v.Revenue, v.Rate,
				opt(v.Lift), opt(v.LiftLow), opt(v.LiftHigh), opt(v.PBeat), v.PBest, v.Loss)
		}
		ctx.SetContentType("text/csv; charset=utf-8")
		ctx.SetBodyString(b.String())
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
	return nil
}

type hourShare struct {
	Hour   int64              `json:"hour"` // Unix seconds, start of the hour
	Shares map[string]float64 `json:"shares"`
}

// hourlyShares reads the per-hour exposure counters of page's experiment.
func (s *Server) hourlyShares(page *Page, r *experimentResult) error {
	byHour := map[int64]map[string]float64{}
	prefix := []byte("x/" + page.Experiment + "/")
	err := s.state.ScanCounters(prefix, func(key []byte, v float64) error {
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
		r.Shares = append(r.Shares, hourShare{Hour: h, Shares: byHour[h]})
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
