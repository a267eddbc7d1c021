package model

import (
	"math/rand/v2"

	"gonum.org/v1/gonum/stat/distuv"
)

// Bandit chooses arms by Thompson sampling on conversion rate: each arm's
// rate has a Beta(1+conversions, 1+non-conversions) posterior; a draw from
// each picks the arm with the highest draw. Until every arm has BurnIn
// exposures, and with probability MinShare×arms otherwise, it picks an arm
// uniformly, so no arm starves and a late winner can still show.
type Bandit struct {
	BurnIn   float64 // exposures per arm before sampling; default 100
	MinShare float64 // least traffic share per arm; default 0.05
}

func (b Bandit) withDefaults() Bandit {
	if b.BurnIn <= 0 {
		b.BurnIn = 100
	}
	if b.MinShare <= 0 {
		b.MinShare = 0.05
	}
	return b
}

// Pick returns the index of the arm to show. rng is the caller's (not safe
// for concurrent use).
func (b Bandit) Pick(arms []ArmStats, rng *rand.Rand) int {
	b = b.withDefaults()
	n := len(arms)
	if n == 0 {
		return 0
	}
	explore := rng.Float64() < b.MinShare*float64(n)
	for _, a := range arms {
		if a.Exposures < b.BurnIn {
			explore = true
		}
	}
	if explore {
		return rng.IntN(n)
	}
	best, bestDraw := 0, -1.0
	for i, a := range arms {
		d := distuv.Beta{Alpha: 1 + a.Conversions, Beta: 1 + max(a.Exposures-a.Conversions, 0), Src: rng}.Rand()
		if d > bestDraw {
			best, bestDraw = i, d
		}
	}
	return best
}
