package bench

import (
	"math"
	"time"
)

// Pacer schedules the sends of an open loop: Due returns when hit number
// hits (counted from 0) is due, as time since the start of the attack, or
// stop when the schedule holds no such hit.
//
// vegeta's lib/pacer.go, the model, asks Pace(elapsed, hits) for the wait
// until the next hit instead, which is 0 for every hit already overdue.
// Naming the slot itself lets a hit that goes out late (the generator was
// descheduled, or every worker was busy) count its latency from its slot,
// and lets the attack send every hit due within its duration: how many
// were sent is then a count of the schedule, not of what fitted in a
// wall-clock window.
type Pacer interface {
	Due(hits uint64) (due time.Duration, stop bool)
	// Rate is the intended hits per second at elapsed.
	Rate(elapsed time.Duration) float64
}

// ConstantPacer sends Freq requests every Per, evenly spaced.
type ConstantPacer struct {
	Freq int
	Per  time.Duration
}

// Due implements Pacer: hit n is due at n × Per/Freq.
func (p ConstantPacer) Due(hits uint64) (time.Duration, bool) {
	if p.Freq <= 0 || p.Per <= 0 {
		return 0, true
	}
	return time.Duration(math.Round(float64(hits) * float64(p.Per) / float64(p.Freq))), false
}

// Rate implements Pacer.
func (p ConstantPacer) Rate(time.Duration) float64 {
	if p.Per <= 0 {
		return 0
	}
	return float64(p.Freq) / p.Per.Seconds()
}
