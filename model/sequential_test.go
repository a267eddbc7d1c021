package model

import (
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// abTrial runs one experiment of days daily looks with perDay visitors an
// arm, control rate pa and variant rate pb, and reports whether the
// always-valid interval, and the fixed-horizon one, ever excluded a lift
// of 0 at a look.
func abTrial(src rand.Source, days int, perDay, pa, pb float64) (seqHit, fixedHit bool, seqDay int) {
	ba := distuv.Binomial{N: perDay, P: pa, Src: src}
	bb := distuv.Binomial{N: perDay, P: pb, Src: src}
	var a, b ArmStats
	for d := 1; d <= days; d++ {
		a.Exposures += perDay
		b.Exposures += perDay
		a.Conversions += ba.Rand()
		b.Conversions += bb.Rand()
		if _, lo, hi, ok := SequentialLift(a, b, 0.05, 0); ok && (lo > 0 || hi < 0) && !seqHit {
			seqHit, seqDay = true, d
		}
		if _, lo, hi, ok := Lift(a, b); ok && (lo > 0 || hi < 0) {
			fixedHit = true
		}
	}
	return seqHit, fixedHit, seqDay
}

// A/A: 1,000 experiments of 30 days, 300 visitors an arm a day, looked at
// every day. The always-valid interval excludes 0 in at most 5% of them;
// the fixed-horizon interval, looked at the same way, far more often
// (which is why the sequential one exists).
func TestSequentialAAFalsePositives(t *testing.T) {
	src := rand.NewPCG(7, 11)
	const n = 1000
	seq, fixed := 0, 0
	for i := 0; i < n; i++ {
		s, f, _ := abTrial(src, 30, 300, 0.05, 0.05)
		if s {
			seq++
		}
		if f {
			fixed++
		}
	}
	t.Logf("A/A, %d experiments, 30 daily looks: always-valid %d false positives (%.1f%%), fixed-horizon %d (%.1f%%)",
		n, seq, 100*float64(seq)/n, fixed, 100*float64(fixed)/n)
	if float64(seq) > 0.05*n {
		t.Fatalf("always-valid false-positive rate %.1f%% > 5%%", 100*float64(seq)/n)
	}
	if float64(fixed) < 0.10*n {
		t.Fatalf("fixed-horizon with daily looks %.1f%%: the simulation should show peeking inflates it", 100*float64(fixed)/n)
	}
}

// A real lift (4% → 6%) is found: in most of 200 experiments the
// always-valid interval excludes 0 within 20k visitors.
func TestSequentialPower(t *testing.T) {
	src := rand.NewPCG(3, 5)
	const n = 200
	found := 0
	for i := 0; i < n; i++ {
		if s, _, _ := abTrial(src, 20, 500, 0.04, 0.06); s {
			found++
		}
	}
	t.Logf("4%% → 6%%, 20k visitors: found in %d of %d", found, n)
	if found < n*8/10 {
		t.Fatalf("found in %d of %d experiments", found, n)
	}
}

func TestSequentialWiderThanFixed(t *testing.T) {
	a, b := ArmStats{Exposures: 5000, Conversions: 250}, ArmStats{Exposures: 5000, Conversions: 300}
	l1, lo1, hi1, _ := Lift(a, b)
	l2, lo2, hi2, ok := SequentialLift(a, b, 0.05, 0)
	if !ok || l1 != l2 || lo2 >= lo1 || hi2 <= hi1 {
		t.Fatalf("fixed %v [%v, %v], sequential %v [%v, %v]", l1, lo1, hi1, l2, lo2, hi2)
	}
	if _, _, _, ok := SequentialLift(ArmStats{Exposures: 10}, b, 0.05, 0); ok {
		t.Fatal("no conversions in the control: want no interval")
	}
}
