package main

import (
	"io"
	"log/slog"
	"os"
	"runtime"
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
