package bench

import (
	"testing"
	"time"
)

func TestConstantPacer(t *testing.T) {
	p := ConstantPacer{Freq: 100, Per: time.Second} // one every 10 ms
	f := func(elapsed time.Duration, hits uint64, wantWait time.Duration, wantStop bool) {
		t.Helper()
		wait, stop := p.Pace(elapsed, hits)
		if wait != wantWait || stop != wantStop {
			t.Fatalf("Pace(%v, %d) = %v, %v; want %v, %v", elapsed, hits, wait, stop, wantWait, wantStop)
		}
	}
	f(0, 0, 0, false)                   // first hit at once
	f(0, 1, 10*time.Millisecond, false) // second after 10 ms
	f(5*time.Millisecond, 1, 5*time.Millisecond, false)
	f(10*time.Millisecond, 1, 0, false) // due now
	f(35*time.Millisecond, 2, 0, false) // behind schedule: no wait, catch up
	f(time.Second, 100, 0, false)
	f(time.Second, 150, 500*time.Millisecond, false) // ahead of schedule
	if w, stop := (ConstantPacer{}).Pace(0, 0); !stop || w != 0 {
		t.Fatal("zero pacer does not stop")
	}
	if r := p.Rate(0); r != 100 {
		t.Fatalf("rate %v", r)
	}
	// Over a simulated second the pacer schedules exactly Freq hits.
	var hits uint64
	for elapsed := time.Duration(0); elapsed < time.Second; {
		wait, _ := p.Pace(elapsed, hits)
		elapsed += wait
		if elapsed < time.Second {
			hits++
		}
		if wait == 0 {
			elapsed += time.Microsecond
		}
	}
	if hits != 100 {
		t.Fatalf("%d hits in a second; want 100", hits)
	}
}
