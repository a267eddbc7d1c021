package bench

import (
	"testing"
	"time"
)

func TestConstantPacer(t *testing.T) {
	p := ConstantPacer{Freq: 100, Per: time.Second} // one every 10 ms
	f := func(hits uint64, want time.Duration) {
		t.Helper()
		due, stop := p.Due(hits)
		if due != want || stop {
			t.Fatalf("Due(%d) = %v, %v; want %v, false", hits, due, stop, want)
		}
	}
	f(0, 0) // the first hit at once
	f(1, 10*time.Millisecond)
	f(99, 990*time.Millisecond)
	f(150, 1500*time.Millisecond)
	f(360_000_000, 1000*time.Hour) // no drift over a long attack
	if _, stop := (ConstantPacer{}).Due(0); !stop {
		t.Fatal("zero pacer does not stop")
	}
	if r := p.Rate(0); r != 100 {
		t.Fatalf("rate %v", r)
	}
	// 3 a second: slots rounded to the nanosecond, none twice.
	p = ConstantPacer{Freq: 3, Per: time.Second}
	f(1, 333333333)
	f(2, 666666667)
	f(3, time.Second)
	// Within a second the pacer schedules exactly Freq hits.
	for _, p := range []ConstantPacer{{Freq: 100, Per: time.Second}, {Freq: 7, Per: time.Second}, {Freq: 1000, Per: time.Second}} {
		var n uint64
		for due, _ := p.Due(n); due < time.Second; due, _ = p.Due(n) {
			n++
		}
		if n != uint64(p.Freq) {
			t.Fatalf("%d/s: %d hits due within a second", p.Freq, n)
		}
	}
}
