package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// StepOptions configure a search for the saturation point: the rate goes
// up by Factor each step until p99 passes MaxP99, p50 passes MaxP50 (when
// set), errors pass 1%, or the achieved rate falls below 90% of the target.
//
// The median is the better sign of a queue on a machine shared with other
// work: stalls there reach p99 at any rate, while a server past its
// capacity moves the median too, from well under a millisecond to tens of
// them, before p99 passes a bound loose enough to ignore the stalls.
type StepOptions struct {
	Attack   AttackOptions // Pacer and Duration are set per step
	Start    float64       // first rate; default 1000/s
	Factor   float64       // default 1.5
	Step     time.Duration // per step; default 5 s
	MaxP99   time.Duration // default 10 ms
	MaxP50   time.Duration // 0: no bound
	MaxSteps int           // default 12
	Log      io.Writer     // one line per step; nil for none

	// attack runs a step; nil: Attack. (Tests give a stand-in whose
	// answers depend on the rate alone.)
	attack func(context.Context, AttackOptions) (*Report, error)
}

// StepResult is one step of a search.
type StepResult struct {
	Rate   float64 `json:"target_rate"`
	Report *Report `json:"report"`
	OK     bool    `json:"ok"`
}

// Saturation holds the steps and the highest rate that met the bounds.
type Saturation struct {
	Steps      []StepResult `json:"steps"`
	Rate       float64      `json:"saturation_rate"`
	Throughput float64      `json:"saturation_throughput"`
}

// FindSaturation runs the search.
func FindSaturation(ctx context.Context, o StepOptions) (*Saturation, error) {
	if o.Start <= 0 {
		o.Start = 1000
	}
	if o.Factor <= 1 {
		o.Factor = 1.5
	}
	if o.Step <= 0 {
		o.Step = 5 * time.Second
	}
	if o.MaxP99 <= 0 {
		o.MaxP99 = 10 * time.Millisecond
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = 12
	}
	if o.attack == nil {
		o.attack = Attack
	}
	sat := &Saturation{}
	rate := o.Start
	for i := 0; i < o.MaxSteps && ctx.Err() == nil; i++ {
		a := o.Attack
		a.Pacer = ConstantPacer{Freq: int(rate), Per: time.Second}
		a.Duration = o.Step
		rep, err := o.attack(ctx, a)
		if err != nil {
			return sat, err
		}
		ok := rep.Latency.P99 <= float64(o.MaxP99.Microseconds()) &&
			(o.MaxP50 <= 0 || rep.Latency.P50 <= float64(o.MaxP50.Microseconds())) &&
			float64(rep.ErrorCount()) <= 0.01*float64(rep.Requests) && rep.Rate >= 0.9*rate
		sat.Steps = append(sat.Steps, StepResult{Rate: rate, Report: rep, OK: ok})
		if o.Log != nil {
			fmt.Fprintf(o.Log, "step %2d  target %8.0f/s  achieved %8.0f/s  p50 %9s  p99 %9s  errors %d  %s\n",
				i+1, rate, rep.Rate, us(rep.Latency.P50), us(rep.Latency.P99), rep.ErrorCount(), map[bool]string{true: "ok", false: "saturated"}[ok])
		}
		if !ok {
			break
		}
		sat.Rate, sat.Throughput = rate, rep.Rate
		rate *= o.Factor
	}
	return sat, nil
}
