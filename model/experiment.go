package model

import "math"

// Buckets is the number of assignment buckets of an experiment.
const Buckets = 10000

// Bucket places a visitor in [0, Buckets) for an experiment seed:
//
//	bucket = mix64(FNV-1a-64(seed ‖ 0x00 ‖ visitor)) mod 10000
//
// where mix64 is the splitmix64 finaliser (FNV-1a alone leaves its low bits
// poorly mixed for short ids). The same seed and visitor always give the
// same bucket, on any machine; a different seed gives an independent one.
// It does not allocate.
func Bucket(seed string, visitor []byte) uint32 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(seed); i++ {
		h = (h ^ uint64(seed[i])) * prime
	}
	h = (h ^ 0) * prime
	for _, c := range visitor {
		h = (h ^ uint64(c)) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return uint32(h % Buckets)
}

// PickWeighted returns the index whose cumulative weight range holds bucket
// b of [0, Buckets): weights need not sum to anything in particular.
func PickWeighted(weights []float64, b uint32) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	if total <= 0 || len(weights) == 0 {
		return 0
	}
	x := (float64(b) + 0.5) / Buckets * total
	acc := 0.0
	for i, w := range weights {
		acc += w
		if x < acc {
			return i
		}
	}
	return len(weights) - 1
}

// ArmStats are the counts of one variant.
type ArmStats struct {
	Exposures   float64 // visitors exposed
	Conversions float64 // of them, converted
}

// Rate is the conversion rate; 0 with no exposure.
func (a ArmStats) Rate() float64 {
	if a.Exposures <= 0 {
		return 0
	}
	return a.Conversions / a.Exposures
}

// Lift is the relative lift of b's rate over control a's, with a 95%
// interval from the delta method on the log of the rate ratio. ok is false
// when either arm has no conversion (the ratio is undefined).
func Lift(a, b ArmStats) (lift, lo, hi float64, ok bool) {
	pa, pb := a.Rate(), b.Rate()
	if pa <= 0 || pb <= 0 {
		return 0, 0, 0, false
	}
	se := math.Sqrt((1-pa)/(a.Exposures*pa) + (1-pb)/(b.Exposures*pb))
	r := math.Log(pb / pa)
	const z = 1.959963984540054
	return pb/pa - 1, math.Exp(r-z*se) - 1, math.Exp(r+z*se) - 1, true
}

// ProbBBeatsA is P(p_b > p_a) under independent Beta(1+conversions,
// 1+non-conversions) posteriors, in closed form (Evan Miller, "Formulas for
// Bayesian A/B testing"): exact, no sampling. Counts are rounded to
// integers; cost is O(conversions of b).
func ProbBBeatsA(a, b ArmStats) float64 {
	alphaA, betaA := 1+math.Round(a.Conversions), 1+math.Round(a.Exposures-a.Conversions)
	alphaB, betaB := 1+math.Round(b.Conversions), 1+math.Round(b.Exposures-b.Conversions)
	total := 0.0
	for i := 0.0; i < alphaB; i++ {
		total += math.Exp(lbeta(alphaA+i, betaA+betaB) - math.Log(betaB+i) - lbeta(1+i, betaB) - lbeta(alphaA, betaA))
	}
	return math.Min(math.Max(total, 0), 1)
}

func lbeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}

// ChiSquareSRM tests observed exposure counts against the expected shares
// (weights): it returns Pearson's χ² statistic and its degrees of freedom.
// A sample-ratio mismatch is flagged when the p-value is below 0.001.
func ChiSquareSRM(observed, weights []float64) (chi2 float64, df int) {
	n, total := 0.0, 0.0
	for i := range observed {
		n += observed[i]
		total += weights[i]
	}
	if n == 0 || total == 0 {
		return 0, 0
	}
	for i := range observed {
		e := n * weights[i] / total
		if e > 0 {
			d := observed[i] - e
			chi2 += d * d / e
		}
	}
	return chi2, len(observed) - 1
}

// ProbBestAndLoss estimates, for each arm, the probability that its rate
// is the highest and the expected loss of choosing it (the rate given up
// against the best arm, in expectation), from draws of the Beta
// posteriors. draws fixes the precision (about 1/sqrt(draws)); sample
// draws from Beta(alpha, beta), and a seeded one makes the result
// repeatable.
func ProbBestAndLoss(arms []ArmStats, draws int, sample func(alpha, beta float64) float64) (pBest, loss []float64) {
	pBest = make([]float64, len(arms))
	loss = make([]float64, len(arms))
	if len(arms) == 0 || draws <= 0 {
		return pBest, loss
	}
	x := make([]float64, len(arms))
	for d := 0; d < draws; d++ {
		best := 0
		for i, a := range arms {
			x[i] = sample(1+a.Conversions, 1+math.Max(a.Exposures-a.Conversions, 0))
			if x[i] > x[best] {
				best = i
			}
		}
		pBest[best]++
		for i := range arms {
			loss[i] += x[best] - x[i]
		}
	}
	for i := range arms {
		pBest[i] /= float64(draws)
		loss[i] /= float64(draws)
	}
	return pBest, loss
}

// DefaultSequentialN is the sample size (both arms) at which the
// always-valid interval of SequentialLift is tightest, as GrowthBook's
// default tuning parameter: a test of a few thousand visitors pays little
// for looking early, and a much larger one pays a little more.
const DefaultSequentialN = 5000

// SequentialLift is Lift's estimate with an always-valid 1-alpha interval
// (the normal mixture sequential probability ratio test of Johari, Pekelis
// and Walsh, "Always valid inference", in the form GrowthBook uses): the
// interval may be looked at after every visitor and still excludes the
// true lift with probability at most alpha over the whole test, where a
// fixed-horizon interval looked at daily would be wrong far more often.
// The estimate is the log rate ratio with its delta-method variance V;
// the mixing variance is tuned so the interval is tightest at nStar
// visitors in all (DefaultSequentialN when 0). ok is false when either
// arm has no conversion.
func SequentialLift(a, b ArmStats, alpha float64, nStar float64) (lift, lo, hi float64, ok bool) {
	pa, pb := a.Rate(), b.Rate()
	if pa <= 0 || pb <= 0 || alpha <= 0 || alpha >= 1 {
		return 0, 0, 0, false
	}
	if nStar <= 0 {
		nStar = DefaultSequentialN
	}
	v := (1-pa)/(a.Exposures*pa) + (1-pb)/(b.Exposures*pb)
	n := a.Exposures + b.Exposures
	hw := SequentialHalfWidth(v*n, n, alpha, nStar)
	r := math.Log(pb / pa)
	return pb/pa - 1, math.Exp(r-hw) - 1, math.Exp(r+hw) - 1, true
}

// SequentialHalfWidth is the half-width of the always-valid interval of
// an estimate whose variance is s2/n after n observations:
//
//	ρ² = (−2 ln α + ln(1 − 2 ln α)) / n*
//	hw = √s2 · √( 2(nρ² + 1) / (n²ρ²) · ln(√(nρ² + 1) / α) )
//
// that is, the set of effects a mixture SPRT with mixing variance s2·ρ²
// has not rejected at level alpha.
func SequentialHalfWidth(s2, n, alpha, nStar float64) float64 {
	l := -2 * math.Log(alpha)
	rho2 := (l + math.Log(1+l)) / nStar
	return math.Sqrt(s2) * math.Sqrt(2*(n*rho2+1)/(n*n*rho2)*math.Log(math.Sqrt(n*rho2+1)/alpha))
}
