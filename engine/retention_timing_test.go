package engine

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkDecideDuringSweep times decisions of new visitors (each
// stores an assignment) and of a returning one, alone and while the
// retention sweeper, at its default pace, deletes 200,000 expired
// anonymous assignments beside them: p50 and p99 per call, the sweeper's
// cost to request latency. A pass that ends before the timed calls do is
// reported (sweep_done=1): its tail was not measured.
func BenchmarkDecideDuringSweep(b *testing.B) {
	for _, sweeping := range []bool{false, true} {
		for _, who := range []string{"new", "sticky"} {
			name := who + "/idle"
			if sweeping {
				name = who + "/sweeping"
			}
			b.Run(name, func(b *testing.B) { decideDuringSweep(b, who == "new", sweeping) })
		}
	}
}

func decideDuringSweep(b *testing.B, fresh, sweeping bool) {
	x := newRetEngine(b, b.TempDir(), twoGoals, Retention{Anonymous: time.Hour})
	// The default pace, not the tests' none.
	x.o.Retention.Pause, x.o.Retention.CompactBytes = 0, 0
	x.Close()
	x.Engine = newEngine(b, x.o, x.st, "")
	const expired = 200_000
	v := x.Acquire()
	var d Decision
	for range expired {
		if err := v.Decide(&DecideRequest{Page: []byte("lp"), UserAgent: []byte("Mozilla/5.0")}, &d); err != nil {
			b.Fatal(err)
		}
	}
	v.Release()
	x.add(2 * time.Hour)
	x.decide(b, "returning")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	done := make(chan struct{})
	if sweeping {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			_ = x.Sweep(ctx)
		}()
	}
	lat := make([]time.Duration, 0, b.N)
	req := DecideRequest{Page: []byte("lp"), Visitor: []byte("returning"), UserAgent: []byte("Mozilla/5.0")}
	if fresh {
		req.Visitor = nil
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		v := x.Acquire()
		err := v.Decide(&req, &d)
		v.Release()
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	finished := 0.0
	if sweeping {
		select {
		case <-done:
			finished = 1
		default:
		}
	}
	cancel()
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)*999/1000].Nanoseconds()), "p999-ns")
	if sweeping {
		b.ReportMetric(finished, "sweep_done")
	}
}
