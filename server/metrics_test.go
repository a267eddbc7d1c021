package server

import (
	"testing"
	"time"
)

func TestLatencyHistogram(t *testing.T) {
	f := func(ds []time.Duration, want string) {
		t.Helper()
		var h latencyHistogram
		for _, d := range ds {
			h.observe(d)
		}
		if got := string(h.appendPrometheus(nil, "x_seconds", `route="r"`)); got != want {
			t.Fatalf("observed %v:\n%s\nwant:\n%s", ds, got, want)
		}
	}
	f(nil, "")
	// A bound belongs to its bucket (le: less or equal); past 10 s is +Inf only.
	f([]time.Duration{30 * time.Microsecond, 50 * time.Microsecond, 51 * time.Microsecond, 3 * time.Millisecond, 11 * time.Second}, `x_seconds_bucket{route="r",le="5e-05"} 2
x_seconds_bucket{route="r",le="0.0001"} 3
x_seconds_bucket{route="r",le="0.00025"} 3
x_seconds_bucket{route="r",le="0.0005"} 3
x_seconds_bucket{route="r",le="0.001"} 3
x_seconds_bucket{route="r",le="0.0025"} 3
x_seconds_bucket{route="r",le="0.005"} 4
x_seconds_bucket{route="r",le="0.01"} 4
x_seconds_bucket{route="r",le="0.025"} 4
x_seconds_bucket{route="r",le="0.05"} 4
x_seconds_bucket{route="r",le="0.1"} 4
x_seconds_bucket{route="r",le="0.25"} 4
x_seconds_bucket{route="r",le="0.5"} 4
x_seconds_bucket{route="r",le="1"} 4
x_seconds_bucket{route="r",le="2.5"} 4
x_seconds_bucket{route="r",le="5"} 4
x_seconds_bucket{route="r",le="10"} 4
x_seconds_bucket{route="r",le="+Inf"} 5
x_seconds_sum{route="r"} 11.003131
x_seconds_count{route="r"} 5
`)
	// A clock step back counts in the first bucket and adds nothing to the sum.
	f([]time.Duration{-time.Second}, `x_seconds_bucket{route="r",le="5e-05"} 1
x_seconds_bucket{route="r",le="0.0001"} 1
x_seconds_bucket{route="r",le="0.00025"} 1
x_seconds_bucket{route="r",le="0.0005"} 1
x_seconds_bucket{route="r",le="0.001"} 1
x_seconds_bucket{route="r",le="0.0025"} 1
x_seconds_bucket{route="r",le="0.005"} 1
x_seconds_bucket{route="r",le="0.01"} 1
x_seconds_bucket{route="r",le="0.025"} 1
x_seconds_bucket{route="r",le="0.05"} 1
x_seconds_bucket{route="r",le="0.1"} 1
x_seconds_bucket{route="r",le="0.25"} 1
x_seconds_bucket{route="r",le="0.5"} 1
x_seconds_bucket{route="r",le="1"} 1
x_seconds_bucket{route="r",le="2.5"} 1
x_seconds_bucket{route="r",le="5"} 1
x_seconds_bucket{route="r",le="10"} 1
x_seconds_bucket{route="r",le="+Inf"} 1
x_seconds_sum{route="r"} 0
x_seconds_count{route="r"} 1
`)
}
