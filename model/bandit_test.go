package model

import (
	"math/rand/v2"
	"testing"
)

// On a simulated two-arm problem (3% against 4% conversion) over 50k
// visitors, Thompson sampling loses fewer conversions than a 50/50 split.
// Posteriors are refreshed every 200 visitors, as the server refreshes them
// from its counters every second rather than per visitor.
func TestBanditRegret(t *testing.T) {
	rates := []float64{0.03, 0.04}
	simulate := func(pick func(arms []ArmStats, rng *rand.Rand) int) (regret float64, share1 float64) {
		rng := rand.New(rand.NewPCG(42, 1))
		live := make([]ArmStats, 2)
		seen := make([]ArmStats, 2)
		const visitors = 50_000
		for v := 0; v < visitors; v++ {
			if v%200 == 0 {
				copy(seen, live)
			}
			i := pick(seen, rng)
			live[i].Exposures++
			if rng.Float64() < rates[i] {
				live[i].Conversions++
			}
			regret += rates[1] - rates[i]
		}
		return regret, live[1].Exposures / visitors
	}
	split, _ := simulate(func(_ []ArmStats, rng *rand.Rand) int { return rng.IntN(2) })
	ts, share := simulate(Bandit{}.Pick)
	t.Logf("expected conversions lost: 50/50 split %.0f, Thompson %.0f (%.0f%% of traffic to the better arm)", split, ts, 100*share)
	if ts >= split || share < 0.6 {
		t.Fatalf("Thompson regret %.0f not below the split's %.0f (share %.2f)", ts, split, share)
	}
}

func TestBanditExploresAndBurnsIn(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b := Bandit{BurnIn: 50, MinShare: 0.1}
	// During burn-in, uniform.
	counts := [3]int{}
	for i := 0; i < 3000; i++ {
		counts[b.Pick([]ArmStats{{10, 5}, {10, 0}, {100, 1}}, rng)]++
	}
	for _, c := range counts {
		if c < 800 {
			t.Fatalf("burn-in not uniform: %v", counts)
		}
	}
	// A clear loser still gets about its minimum share.
	counts = [3]int{}
	for i := 0; i < 10000; i++ {
		counts[b.Pick([]ArmStats{{10000, 900}, {10000, 100}, {10000, 100}}, rng)]++
	}
	if counts[1] < 700 || counts[0] < 6000 {
		t.Fatalf("shares %v", counts)
	}
}
