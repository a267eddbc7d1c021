package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/edgerec/edgerec/index"
)

// memoryBudget is what the server's caches hold at most once full, MiB,
// with -cache-mb cacheMB: the Ristretto caches, the state store's block
// cache and memtables, and the block caches of two snapshot versions (the
// served one and the next, while a swap loads it). Without cgo Pebble's
// caches live in the Go heap too.
func memoryBudget(cacheMB int64) int64 {
	return cacheMB + (index.DefaultStateCacheBytes+index.StateMemTableBytes+2*index.SnapshotCacheBytes)>>20
}

// memoryWorkMB is the least room -memory-mb leaves beside the caches: the
// engine's decoded snapshot, requests in flight, and garbage between two
// collections.
const memoryWorkMB = 64

// ensureMemory paces the garbage collector by a memory limit instead of
// by the live heap, unless the operator set GOGC or GOMEMLIMIT (then it
// returns nil).
//
// With GOGC's default the heap may grow to twice what is live, and what is
// live grows for as long as the caches fill: Pebble's block cache of the
// state store followed the visitors' histories for 30 minutes of the soak,
// and RSS grew with it by twice as much (+41.6%, 135 to 191 MiB, and
// would have gone on to about twice the budgets). With a limit and GOGC
// off the heap fills up to the limit within a minute of traffic and stays
// there: the footprint is the limit from then on, and collections are
// rarer while the live heap is small (README, "Soak and crash trials").
//
// A live heap near the limit would make collections run back to back: a
// large catalog's items are in memory, twice while a swap loads the next
// version. The returned pacer watches for it (memoryPacer.run).
func ensureMemory(logger *slog.Logger, memoryMB, cacheMB int64) *memoryPacer {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		logger.Info("garbage collector: GOGC or GOMEMLIMIT set in the environment; -memory-mb unused")
		return nil
	}
	machineMB := machineMemoryMB()
	m := &memoryPacer{logger: logger, follow: memoryMB == 0}
	if memoryMB == 0 {
		memoryMB = defaultMemoryMB(memoryBudget(cacheMB), machineMB)
	}
	m.base, m.limit = memoryMB<<20, memoryMB<<20
	debug.SetMemoryLimit(m.limit)
	debug.SetGCPercent(-1)
	logger.Info("garbage collector paced by the memory limit", "memory_mb", memoryMB, "caches_mb", memoryBudget(cacheMB), "machine_mb", machineMB)
	if machineMB > 0 && memoryMB > machineMB*memoryShare/100 {
		logger.Warn("the memory limit is over 60% of the memory this process may use: lower -cache-mb (and -memory-mb), or give it more",
			"memory_mb", memoryMB, "machine_mb", machineMB)
	}
	return m
}

// memoryPacer keeps the memory limit above the live heap.
//
// With the default limit (follow) the limit is never under twice the live
// heap, what the last collection kept: past half the default, it follows
// the live heap up and back down, so the worst case is Go's own pacing
// (GOGC 100), never collections back to back. An explicit -memory-mb is
// the operator's: the pacer only warns when the live heap passes 80% of
// it, at most every 10 minutes.
type memoryPacer struct {
	logger   *slog.Logger
	follow   bool
	base     int64 // bytes: -memory-mb, or its default
	limit    int64 // bytes: the limit set now
	warnedAt time.Time
}

// pacedLimit is the memory limit for a live heap of live bytes: base, or
// twice the live heap when that is more and the limit follows it.
func pacedLimit(base, live int64, follow bool) int64 {
	if !follow || 2*live <= base {
		return base
	}
	return (2*live + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
}

// update applies what the live heap asks for.
func (m *memoryPacer) update(live int64, now time.Time) {
	if !m.follow {
		if live > m.limit/10*8 && (m.warnedAt.IsZero() || now.Sub(m.warnedAt) >= 10*time.Minute) {
			m.warnedAt = now
			m.logger.Warn("the live heap is over 80% of -memory-mb: collections run often; raise -memory-mb or lower -cache-mb",
				"live_mb", live>>20, "memory_mb", m.limit>>20)
		}
		return
	}
	want := pacedLimit(m.base, live, true)
	if want == m.limit {
		return
	}
	switch {
	case m.limit == m.base:
		m.logger.Warn("the live heap passed half the default memory limit: the limit follows it at twice the live heap (set -memory-mb, or lower -cache-mb)",
			"live_mb", live>>20, "memory_mb", want>>20, "default_mb", m.base>>20)
	case want == m.base:
		m.logger.Info("the live heap is back under half the default memory limit", "live_mb", live>>20, "memory_mb", want>>20)
	}
	m.limit = want
	debug.SetMemoryLimit(want)
}

// run reads the live heap every period until ctx is done.
func (m *memoryPacer) run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			metrics.Read(live)
			if live[0].Value.Kind() == metrics.KindUint64 {
				m.update(int64(live[0].Value.Uint64()), now)
			}
		}
	}
}

// memoryShare is the percentage of the machine's memory (or its cgroup's
// limit) the default memory limit takes at most, leaving the rest to the
// operating system's page cache, which Pebble's reads rely on, and to
// whatever else runs on the box.
const memoryShare = 60

// defaultMemoryMB is -memory-mb's default: twice the caches' budget, so
// that garbage has as much room as the caches, but no more than
// memoryShare of the machine's memory when that is known (machineMB > 0),
// and never less than the budget and the heap's work.
func defaultMemoryMB(budgetMB, machineMB int64) int64 {
	limit := 2 * budgetMB
	if machineMB > 0 {
		limit = min(limit, machineMB*memoryShare/100)
	}
	return max(limit, budgetMB+memoryWorkMB)
}

// machineMemoryMB is the memory this process may use, MiB: the smaller of
// the machine's (MemTotal) and its cgroup's limit (v2 memory.max, v1
// memory.limit_in_bytes); 0 when none can be read (not Linux).
func machineMemoryMB() int64 {
	var mb int64
	take := func(bytes int64) {
		if v := bytes >> 20; v > 0 && (mb == 0 || v < mb) {
			mb = v
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					take(kb << 10)
				}
			}
		}
	}
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(path); err == nil {
			// "max" (v2) and v1's huge page-aligned no-limit value parse
			// to nothing or to more than MemTotal.
			if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				take(v)
			}
		}
	}
	return mb
}
