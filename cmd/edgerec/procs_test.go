package main

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
)

// TestEnsureProcs: a server on one core runs two Ps (see minProcs),
// unless the operator set GOMAXPROCS.
func TestEnsureProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOMAXPROCS", "1")
	ensureProcs(logger)
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS=1 in the environment: %d Ps, want 1", n)
	}
	os.Unsetenv("GOMAXPROCS") // t.Setenv restores it
	ensureProcs(logger)
	if n := runtime.GOMAXPROCS(0); n != minProcs {
		t.Fatalf("one core: %d Ps, want %d", n, minProcs)
	}
	runtime.GOMAXPROCS(4)
	ensureProcs(logger)
	if n := runtime.GOMAXPROCS(0); n != 4 {
		t.Fatalf("four cores: %d Ps, want 4", n)
	}
}

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
		{120, 0, 240},           // machine unknown
		{120, 16 << 10, 240},    // a large machine: twice the budget
		{120, 400, 240},         // 60% of 400 is exactly 240
		{120, 300, 184},         // 60% of 300 is 180, under 120+64
		{120, 350, 210},         // 60% of 350
		{72, 256, 144},          // -cache-mb 16 on a 256 MiB box
		{1000, 1 << 10, 1064},   // budgets larger than the machine: the least that works
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
