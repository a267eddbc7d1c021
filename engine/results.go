package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/edgerec/edgerec/model"
)

// DefaultDecisionTTL is how long a decision id is taken in a keyless
// beacon by default.
const DefaultDecisionTTL = 30 * 24 * time.Hour

// Arm is what one arm of an experiment measured in a phase, for one goal:
// visitors exposed, of them converted (each once), the value their
// conversions added up to (capped per visitor at the goal's max_value),
// and the rate converted/exposed, null before the first exposure.
type Arm struct {
	Exposures   float64  `json:"exposures"`
	Conversions float64  `json:"conversions"`
	Revenue     float64  `json:"revenue"`
	Rate        *float64 `json:"rate"`
}

func (a *Arm) stats() model.ArmStats {
	return model.ArmStats{Exposures: a.Exposures, Conversions: a.Conversions}
}

// Comparison is an arm measured against its control: relative lift with
// the fixed-horizon 95% interval (valid at one look, planned in advance)
// and the always-valid 95% interval (valid however often it is looked
// at), the Bayesian probability of beating the control, and what the
// always-valid interval says: "better", "worse" or "inconclusive". Each
// is null, with a note saying why, when it cannot be computed.
type Comparison struct {
	Lift     *float64 `json:"lift"`
	LiftLow  *float64 `json:"lift_ci95_low"`
	LiftHigh *float64 `json:"lift_ci95_high"`
	SeqLow   *float64 `json:"lift_always_valid_low"`
	SeqHigh  *float64 `json:"lift_always_valid_high"`
	PBeat    *float64 `json:"p_beat_control"`
	Decision string   `json:"decision"`
	Notes    []string `json:"notes,omitempty"`
}

// VariantResult is one row of an experiment's results.
type VariantResult struct {
	Variant string  `json:"variant"`
	Weight  float64 `json:"weight"`
	Control bool    `json:"control,omitempty"`
	Arm
	Comparison
	PBest *float64 `json:"p_best"`
	Loss  *float64 `json:"expected_loss"`
	// Impressions, Clicks and CTR (clicks per impression, null before
	// the first) are counted from events, for a placement's variants.
	Impressions float64  `json:"impressions,omitempty"`
	Clicks      float64  `json:"clicks,omitempty"`
	CTR         *float64 `json:"ctr,omitempty"`
}

// RuleResult measures a targeting rule with a holdback: the visitors it
// matched who saw its variant against those held back on the control.
type RuleResult struct {
	Rule     string  `json:"rule"`
	Variant  string  `json:"variant"`
	Holdback float64 `json:"holdback"`
	Treated  Arm     `json:"rule_arm"`
	Held     Arm     `json:"holdback_arm"`
	Comparison
}

// ResultsRequest selects what Results measures.
type ResultsRequest struct {
	// Phase is the phase to measure; 0 the current one.
	Phase uint64
	// Goal is the goal; empty the primary one.
	Goal string
}

// ExperimentResult is what Results measures; its JSON form is the answer
// of GET /v1/experiments/{id}/results.
type ExperimentResult struct {
	Experiment   string   `json:"experiment"`
	Page         string   `json:"page"`
	Mode         string   `json:"mode"`
	Phase        uint64   `json:"phase"`
	PhaseStart   int64    `json:"phase_started_at"`
	CurrentPhase uint64   `json:"current_phase"`
	Phases       []Phase  `json:"phases"`
	Goal         string   `json:"goal"`
	Goals        []string `json:"goals"`
	// Variants are the randomised split's arms.
	Variants []VariantResult `json:"variants"`
	// Rules are the rules with a holdback.
	Rules []RuleResult `json:"rules"`
	// Shares is the traffic share of each variant per hour of new
	// exposures: how a bandit moved traffic over time.
	Shares []HourShare `json:"traffic_share_by_hour"`
	SRM    struct {
		Chi2   float64  `json:"chi2"`
		DF     int      `json:"df"`
		P      *float64 `json:"p"`
		Flag   bool     `json:"mismatch"`
		Reason string   `json:"note"`
	} `json:"srm"`
}

// Results measures experiment id in a phase for a goal: per variant the
// visitors exposed and converted, value, rate, lift over the control with
// its fixed-horizon and always-valid 95% intervals, the Bayesian
// probability of beating the control, P(best) and expected loss among
// the variants with exposures, a sample-ratio-mismatch check, the traffic
// share per hour; and each rule with a holdback against its holdback.
// Every number is finite; what cannot be computed is null with a note.
func (e *Engine) Results(id []byte, req ResultsRequest) (*ExperimentResult, error) {
	page := e.Config().pageOf(id)
	if page == nil {
		return nil, errorf(NotFound, "unknown_experiment", "no experiment with this id in the config")
	}
	if e.state == nil {
		return nil, ErrNoState
	}
	r := &ExperimentResult{Experiment: page.Experiment, Page: page.name, Mode: page.Mode, CurrentPhase: page.phase,
		Phases: page.phases, Phase: page.phase, Rules: []RuleResult{}}
	if req.Phase != 0 {
		r.Phase = req.Phase
	}
	found := false
	for _, ph := range page.phases {
		if ph.N == r.Phase {
			r.PhaseStart, found = ph.Start, true
		}
	}
	if !found {
		return nil, badParam("phase", fmt.Sprintf("experiment %q has phases 1 to %d", page.Experiment, page.phase))
	}
	g := page.goal([]byte(req.Goal))
	if g < 0 {
		return nil, badParam("goal", fmt.Sprintf("experiment %q has no goal %q; its goals: %s", page.Experiment, req.Goal, page.goalNames()))
	}
	r.Goal = page.Goals[g].ID
	for _, x := range page.Goals {
		r.Goals = append(r.Goals, x.ID)
	}
	if err := e.hourlyShares(page, r); err != nil {
		return nil, err
	}
	var observed, weights []float64
	for i, v := range page.Variants {
		arm, err := e.readArm(appendSplitKey(nil, page.Experiment, r.Phase, []byte(v.ID)), r.Goal)
		if err != nil {
			return nil, err
		}
		vr := VariantResult{Variant: v.ID, Weight: v.Weight, Control: i == page.control, Arm: arm}
		if page.placement {
			prefix := appendSplitKey(nil, page.Experiment, r.Phase, []byte(v.ID))
			if vr.Impressions, err = e.state.Counter(append(prefix, "impressions"...)); err != nil {
				return nil, err
			}
			if vr.Clicks, err = e.state.Counter(append(prefix[:len(prefix):len(prefix)], "clicks"...)); err != nil {
				return nil, err
			}
			if vr.Impressions > 0 {
				vr.CTR = finite(vr.Clicks / vr.Impressions)
			}
		}
		r.Variants = append(r.Variants, vr)
		if v.Weight > 0 {
			observed = append(observed, arm.Exposures)
			weights = append(weights, v.Weight)
		}
	}
	ctrl := r.Variants[page.control].stats()
	var exposed []model.ArmStats
	var exposedIdx []int
	for i := range r.Variants {
		vr := &r.Variants[i]
		if i != page.control {
			vr.Comparison = compare(ctrl, vr.stats())
		} else {
			vr.Decision = "control"
		}
		if vr.Exposures > 0 {
			exposed = append(exposed, vr.stats())
			exposedIdx = append(exposedIdx, i)
		}
	}
	if len(exposed) > 0 {
		// P(best) and expected loss from 20k posterior draws, seeded by
		// the counts so that the same data gives the same figures.
		src := rand.NewPCG(uint64(len(exposed)), uint64(ctrl.Exposures)<<20^uint64(ctrl.Conversions))
		pBest, loss := model.ProbBestAndLoss(exposed, 20_000, func(a, b float64) float64 {
			return distuv.Beta{Alpha: a, Beta: b, Src: src}.Rand()
		})
		for j, i := range exposedIdx {
			r.Variants[i].PBest, r.Variants[i].Loss = finite(pBest[j]), finite(loss[j])
		}
	}
	r.SRM.Chi2, r.SRM.DF = model.ChiSquareSRM(observed, weights)
	r.SRM.Reason = "exposures against the configured weights; mismatch when p < 0.001"
	if r.SRM.DF > 0 {
		p := model.ChiSquarePValue(r.SRM.Chi2, r.SRM.DF)
		r.SRM.P = finite(p)
		r.SRM.Flag = p < 0.001
	} else {
		r.SRM.Reason = "no exposures yet, or one variant with a weight: nothing to test"
	}
	for _, ri := range page.holdbacks {
		rule := page.Rules[ri]
		rr := RuleResult{Rule: rule.ID, Variant: page.Variants[rule.variant].ID, Holdback: rule.Holdback}
		var err error
		if rr.Treated, err = e.readArm(appendRuleArmKey(nil, page.Experiment, r.Phase, rule.ID, armRule), r.Goal); err != nil {
			return nil, err
		}
		if rr.Held, err = e.readArm(appendRuleArmKey(nil, page.Experiment, r.Phase, rule.ID, armHoldback), r.Goal); err != nil {
			return nil, err
		}
		rr.Comparison = compare(rr.Held.stats(), rr.Treated.stats())
		r.Rules = append(r.Rules, rr)
	}
	return r, nil
}

// readArm reads an arm's counters (prefix from appendSplitKey or
// appendRuleArmKey) for goal.
func (e *Engine) readArm(prefix []byte, goal string) (Arm, error) {
	var a Arm
	for _, c := range [...]struct {
		name string
		dst  *float64
	}{{"exposures", &a.Exposures}, {"conv/" + goal, &a.Conversions}, {"value/" + goal, &a.Revenue}} {
		x, err := e.state.Counter(append(append([]byte(nil), prefix...), c.name...))
		if err != nil {
			return a, err
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			x = 0
		}
		*c.dst = x
	}
	// Converters never exceed the exposed: a conversion counts only for
	// a visitor exposed in the phase. Kept so whatever the store holds.
	a.Conversions = min(a.Conversions, a.Exposures)
	if a.Exposures > 0 {
		a.Rate = finite(a.Conversions / a.Exposures)
	}
	return a, nil
}

// armStats is readArm's exposures and conversions; zero on a read error.
func (e *Engine) armStats(prefix []byte, goal string) model.ArmStats {
	a, _ := e.readArm(prefix, goal)
	return a.stats()
}

// compare measures arm b against control a.
func compare(a, b model.ArmStats) Comparison {
	c := Comparison{Decision: "inconclusive"}
	switch {
	case a.Exposures <= 0 || b.Exposures <= 0:
		c.Notes = append(c.Notes, "no exposures in this phase for this arm or its control: no comparison")
		return c
	case a.Conversions <= 0 || b.Conversions <= 0:
		c.Notes = append(c.Notes, "no conversions yet for this arm or its control: the lift is undefined")
	default:
		if lift, lo, hi, ok := model.Lift(a, b); ok {
			c.Lift, c.LiftLow, c.LiftHigh = finite(lift), finite(lo), finite(hi)
		}
		if _, lo, hi, ok := model.SequentialLift(a, b, 0.05, 0); ok {
			c.SeqLow, c.SeqHigh = finite(lo), finite(hi)
			switch {
			case lo > 0:
				c.Decision = "better"
			case hi < 0:
				c.Decision = "worse"
			}
		}
	}
	c.PBeat = finite(model.ProbBBeatsA(a, b))
	return c
}

// finite returns a pointer to x, or nil when x is NaN or infinite.
func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// HourShare is the share of each variant among an hour's new exposures.
type HourShare struct {
	Hour   int64              `json:"hour"` // Unix seconds, start of the hour
	Shares map[string]float64 `json:"shares"`
}

// hourlyShares reads the per-hour exposure counters of page's experiment.
func (e *Engine) hourlyShares(page *Page, r *ExperimentResult) error {
	byHour := map[int64]map[string]float64{}
	prefix := appendSplitKey(nil, page.Experiment, r.Phase, nil)
	prefix = prefix[:len(prefix)-1] // ".../v/"
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
