package model

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// Buckets of 100k visitors are uniform: χ² over 100 groups of 100 buckets
// passes at the 0.001 level, for two seeds.
func TestBucketUniform(t *testing.T) {
	for _, seed := range []string{"headline-2026", "cta"} {
		var groups [100]float64
		var id []byte
		for v := 0; v < 100_000; v++ {
			id = strconv.AppendInt(append(id[:0], 'v'), int64(v), 10)
			b := Bucket(seed, id)
			if b >= Buckets {
				t.Fatalf("bucket %d out of range", b)
			}
			groups[b/100]++
		}
		weights := make([]float64, 100)
		for i := range weights {
			weights[i] = 1
		}
		chi2, df := ChiSquareSRM(groups[:], weights)
		if p := ChiSquarePValue(chi2, df); p < 0.001 {
			t.Fatalf("seed %q: buckets not uniform: χ²=%.1f df=%d p=%.2g", seed, chi2, df, p)
		}
	}
	// Deterministic and seed-dependent.
	if Bucket("a", []byte("v1")) != Bucket("a", []byte("v1")) || Bucket("a", []byte("v1")) == Bucket("b", []byte("v1")) && Bucket("a", []byte("v2")) == Bucket("b", []byte("v2")) {
		t.Fatal("bucket not deterministic or not seed-dependent")
	}
}

func TestPickWeighted(t *testing.T) {
	f := func(w []float64, b uint32, want int) {
		t.Helper()
		if got := PickWeighted(w, b); got != want {
			t.Fatalf("PickWeighted(%v, %d) = %d; want %d", w, b, got, want)
		}
	}
	f([]float64{50, 50}, 0, 0)
	f([]float64{50, 50}, 4999, 0)
	f([]float64{50, 50}, 5000, 1)
	f([]float64{1, 3}, 2499, 0)
	f([]float64{1, 3}, 2500, 1)
	f([]float64{0, 1}, 0, 1)
	f(nil, 7, 0)
}

func TestLift(t *testing.T) {
	a, b := ArmStats{Exposures: 10000, Conversions: 300}, ArmStats{Exposures: 10000, Conversions: 360}
	lift, lo, hi, ok := Lift(a, b)
	// By hand: ratio 1.2; se = sqrt(0.97/300 + 0.964/360) = 0.07702.
	se := math.Sqrt(0.97/300 + 0.964/360)
	if !ok || math.Abs(lift-0.2) > 1e-12 || math.Abs(lo-(1.2*math.Exp(-1.959963984540054*se)-1)) > 1e-9 ||
		math.Abs(hi-(1.2*math.Exp(1.959963984540054*se)-1)) > 1e-9 || lo > 0.2 || hi < 0.2 {
		t.Fatalf("lift %v [%v, %v] %v", lift, lo, hi, ok)
	}
	if _, _, _, ok := Lift(ArmStats{Exposures: 10}, b); ok {
		t.Fatal("lift over a zero rate")
	}
}

// The closed form of P(B beats A) agrees with Monte Carlo draws from the
// Beta posteriors (gonum).
func TestProbBBeatsA(t *testing.T) {
	src := rand.NewPCG(7, 7)
	for _, c := range []struct{ a, b ArmStats }{
		{ArmStats{1000, 30}, ArmStats{1000, 40}},
		{ArmStats{500, 50}, ArmStats{500, 50}},
		{ArmStats{200, 20}, ArmStats{220, 12}},
	} {
		got := ProbBBeatsA(c.a, c.b)
		da := distuv.Beta{Alpha: 1 + c.a.Conversions, Beta: 1 + c.a.Exposures - c.a.Conversions, Src: src}
		db := distuv.Beta{Alpha: 1 + c.b.Conversions, Beta: 1 + c.b.Exposures - c.b.Conversions, Src: src}
		wins := 0
		const n = 200_000
		for i := 0; i < n; i++ {
			if db.Rand() > da.Rand() {
				wins++
			}
		}
		if mc := float64(wins) / n; math.Abs(mc-got) > 0.005 {
			t.Fatalf("%+v: closed form %.4f, Monte Carlo %.4f", c, got, mc)
		}
	}
}

// An injected 52/48 split on 50/50 weights over 20k visitors is a sample
// ratio mismatch; 50.2/49.8 is not.
func TestSRM(t *testing.T) {
	chi2, df := ChiSquareSRM([]float64{10400, 9600}, []float64{50, 50})
	if p := ChiSquarePValue(chi2, df); chi2 != 32 || p >= 0.001 {
		t.Fatalf("52/48: χ²=%v p=%v", chi2, p)
	}
	chi2, df = ChiSquareSRM([]float64{10040, 9960}, []float64{50, 50})
	if p := ChiSquarePValue(chi2, df); p < 0.001 {
		t.Fatalf("50.2/49.8 flagged: χ²=%v p=%v", chi2, p)
	}
}

func TestProbBestAndLoss(t *testing.T) {
	src := rand.NewPCG(3, 3)
	sample := func(a, b float64) float64 { return distuv.Beta{Alpha: a, Beta: b, Src: src}.Rand() }
	arms := []ArmStats{{1000, 30}, {1000, 40}}
	p, loss := ProbBestAndLoss(arms, 50_000, sample)
	// With two arms P(best) of B is P(B beats A), known in closed form.
	if want := ProbBBeatsA(arms[0], arms[1]); math.Abs(p[1]-want) > 0.01 || math.Abs(p[0]+p[1]-1) > 1e-9 {
		t.Fatalf("P(best) %v; closed form for B %v", p, want)
	}
	if loss[1] >= loss[0] || loss[1] < 0 {
		t.Fatalf("expected loss %v", loss)
	}
	// Three identical arms: about a third each.
	p, _ = ProbBestAndLoss([]ArmStats{{500, 50}, {500, 50}, {500, 50}}, 30_000, sample)
	for _, x := range p {
		if math.Abs(x-1.0/3) > 0.02 {
			t.Fatalf("identical arms: %v", p)
		}
	}
}
