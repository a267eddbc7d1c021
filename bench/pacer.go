package bench

import (
	"math"
	"time"
)

// Pacer decides when the next request is due: given the time since the
// attack began and the hits sent so far, it returns how long to wait before
// the next one, or stop. The shape follows vegeta's lib/pacer.go.
type Pacer interface {
	Pace(elapsed time.Duration, hits uint64) (wait time.Duration, stop bool)
	// Rate is the intended hits per second at elapsed.
	Rate(elapsed time.Duration) float64
}

// ConstantPacer sends Freq requests every Per, evenly spaced.
type ConstantPacer struct {
	Freq int
	Per  time.Duration
}

// Pace implements Pacer.
func (p ConstantPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if p.Freq <= 0 || p.Per <= 0 {
		return 0, true
	}
	interval := float64(p.Per) / float64(p.Freq)
	// The next hit is due at hits × interval after the start.
	due := time.Duration(math.Round(float64(hits) * interval))
	if due <= elapsed {
		return 0, false
	}
	return due - elapsed, false
}

// Rate implements Pacer.
func (p ConstantPacer) Rate(time.Duration) float64 {
	if p.Per <= 0 {
		return 0
	}
	return float64(p.Freq) / p.Per.Seconds()
}
