package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestEnsureMemory: the server paces its collections by a memory limit,
// twice the caches' budgets unless -memory-mb says otherwise, and leaves
// the runtime alone when the operator set GOGC or GOMEMLIMIT.
func TestEnsureMemory(t *testing.T) {
	prevLimit, prevPercent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit); debug.SetGCPercent(prevPercent) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	const noLimit = 1<<63 - 1
	debug.SetMemoryLimit(noLimit)
	check := func(what string, limit int64, percent int) {
		t.Helper()
		if got := debug.SetMemoryLimit(-1); got != limit {
			t.Errorf("%s: memory limit %d MiB, want %d MiB", what, got>>20, limit>>20)
		}
		if got := debug.SetGCPercent(percent); got != percent {
			t.Errorf("%s: GOGC %d, want %d", what, got, percent)
		}
	}

	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Setenv(env, "100")
		ensureMemory(logger, 0, 64)
		check(env+" set", noLimit, 100)
		os.Unsetenv(env) // t.Setenv restores it
	}
	if b := memoryBudget(64); b != 64+32+8+16 {
		t.Fatalf("memoryBudget(64) = %d MiB, want the Ristretto 64, the state store's 32 + 8, two snapshots' 8 each", b)
	}
	ensureMemory(logger, 0, 64)
	check("-memory-mb 0", defaultMemoryMB(memoryBudget(64), machineMemoryMB())<<20, -1)
	ensureMemory(logger, 500, 64)
	check("-memory-mb 500", 500<<20, -1)
}

// TestDefaultMemoryMB: twice the caches' budget, held to 60% of a small
// machine's memory, never under the budget and the heap's work.
func TestDefaultMemoryMB(t *testing.T) {
	for _, c := range []struct{ budget, machine, want int64 }{
		{120, 0, 240},         // machine unknown
		{120, 16 << 10, 240},  // a large machine: twice the budget
		{120, 400, 240},       // 60% of 400 is exactly 240
		{120, 300, 184},       // 60% of 300 is 180, under 120+64
		{120, 350, 210},       // 60% of 350
		{72, 256, 144},        // -cache-mb 16 on a 256 MiB box
		{1000, 1 << 10, 1064}, // budgets larger than the machine: the least that works
	} {
		if got := defaultMemoryMB(c.budget, c.machine); got != c.want {
			t.Errorf("defaultMemoryMB(%d, %d) = %d, want %d", c.budget, c.machine, got, c.want)
		}
	}
	if runtime.GOOS == "linux" {
		if mb := machineMemoryMB(); mb <= 0 {
			t.Errorf("machineMemoryMB() = %d on linux, want the machine's memory", mb)
		}
	}
}

// TestPacedLimit: the default limit holds until the live heap passes half
// of it, then follows at twice the live heap, in whole MiB; an explicit
// one never moves.
func TestPacedLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		base, live int64
		follow     bool
		want       int64
	}{
		{240 * mib, 70 * mib, true, 240 * mib},
		{240 * mib, 120 * mib, true, 240 * mib},
		{240 * mib, 120*mib + 1, true, 241 * mib},
		{240 * mib, 300 * mib, true, 600 * mib},
		{240 * mib, 300 * mib, false, 240 * mib},
	} {
		if got := pacedLimit(c.base, c.live, c.follow); got != c.want {
			t.Errorf("pacedLimit(%d MiB, %d, %v) = %d, want %d", c.base/mib, c.live, c.follow, got, c.want)
		}
	}
}

// TestMemoryPacer: the default limit follows a live heap past half of it
// up and back down, logging each crossing once; an explicit limit stays,
// with a warning past 80% at most every 10 minutes.
func TestMemoryPacer(t *testing.T) {
	prevLimit, prevPercent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit); debug.SetGCPercent(prevPercent) })
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Setenv(env, "") // restored after the test
		os.Unsetenv(env)
	}
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	limit := func() int64 { return debug.SetMemoryLimit(-1) }
	lines := func(s string) int { return strings.Count(log.String(), s) }

	m := ensureMemory(logger, 0, 64)
	base := limit()
	now := time.Unix(1e9, 0)
	m.update(base/2, now)
	if limit() != base {
		t.Fatalf("live heap at half the limit: limit %d, want %d", limit(), base)
	}
	m.update(base, now)
	m.update(base+1<<20, now)
	if want := 2*base + 2<<20; limit() != want {
		t.Fatalf("live heap at the default limit and over: limit %d MiB, want %d MiB", limit()>>20, want>>20)
	}
	m.update(base/4, now)
	if limit() != base {
		t.Fatalf("live heap back to a quarter: limit %d MiB, want the default %d MiB", limit()>>20, base>>20)
	}
	if up, down := lines("passed half the default memory limit"), lines("back under half"); up != 1 || down != 1 {
		t.Errorf("logged %d raises and %d returns, want one of each:\n%s", up, down, log.String())
	}

	log.Reset()
	m = ensureMemory(logger, 500, 64)
	for _, after := range []time.Duration{0, time.Minute, 9 * time.Minute, 10 * time.Minute, 11 * time.Minute} {
		m.update(450<<20, now.Add(after))
	}
	if limit() != 500<<20 {
		t.Errorf("explicit -memory-mb 500: limit %d MiB, want 500", limit()>>20)
	}
	if n := lines("over 80% of -memory-mb"); n != 2 {
		t.Errorf("logged %d warnings for 11 minutes over 80%%, want 2 (at 0 and 10 minutes):\n%s", n, log.String())
	}
}
