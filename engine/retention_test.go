package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// retEngine is an engine over a state store in dir with retention r,
// sweeping only when the test calls sweep, on a clock the test moves.
type retEngine struct {
	*Engine
	st     *index.State
	now    *atomic.Int64
	closed bool
}

// close closes the engine and the store: Pebble has then deleted the
// files its compactions made obsolete.
func (x *retEngine) close(t testing.TB) {
	t.Helper()
	x.Close()
	x.closed = true
	if err := x.st.Close(); err != nil {
		t.Fatal(err)
	}
}

func newRetEngine(t testing.TB, dir, y string, r Retention) *retEngine {
	t.Helper()
	c, err := ParseConfig([]byte(y), "exp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	x := &retEngine{now: new(atomic.Int64)}
	x.now.Store(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).Unix())
	now := func() time.Time { return time.Unix(x.now.Load(), 0) }
	x.st, err = index.OpenState(dir, index.StateOptions{Now: now, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !x.closed {
			_ = x.st.Close()
		}
	})
	r.Interval, r.Pause, r.CompactBytes = -1, -1, -1
	x.Engine = newEngine(t, Options{Config: c, Now: now, Retention: r, DecisionTTL: time.Hour}, x.st, "")
	return x
}

func (x *retEngine) add(d time.Duration) { x.now.Add(int64(d / time.Second)) }

func (x *retEngine) sweep(t testing.TB) {
	t.Helper()
	if err := x.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (x *retEngine) decide(t testing.TB, visitor string) Decision {
	t.Helper()
	v := x.Acquire()
	defer v.Release()
	var d Decision
	if err := v.Decide(&DecideRequest{Page: []byte("lp"), Visitor: []byte(visitor), UserAgent: []byte("Mozilla/5.0")}, &d); err != nil {
		t.Fatal(err)
	}
	d.DecisionID = append([]byte(nil), d.DecisionID...)
	d.Visitor = append([]byte(nil), d.Visitor...)
	return d
}

func (x *retEngine) has(t testing.TB, key string) bool {
	t.Helper()
	_, ok, err := x.st.AppendMeta(nil, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func (x *retEngine) count(t testing.TB, prefix string) int {
	t.Helper()
	n := 0
	if err := x.st.ScanMeta([]byte(prefix), func(_, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetentionAssignments: a visitor who keeps deciding keeps their
// assignment (renewed, counted once); an anonymous one who stops loses it
// an hour (plus the renewal interval) later, one with events after the
// longer TTL; records from before retention count from the epoch; a
// conversion marker lives as long as its visitor's assignment; event-id
// markers last their window.
func TestRetentionAssignments(t *testing.T) {
	x := newRetEngine(t, t.TempDir(), twoGoals, Retention{Anonymous: time.Hour, Assignments: 3 * time.Hour, EventIDs: time.Hour})
	if x.renewal != 450 {
		t.Fatalf("renewal %d s, want 450 (an eighth of an hour)", x.renewal)
	}
	if err := x.st.PutMeta([]byte("as/cta/old"), []byte("a\x00\x01\x01")); err != nil {
		t.Fatal(err)
	}
	first := x.decide(t, "active")
	x.decide(t, "gone")
	conv := x.decide(t, "known")
	ev := beacon("known", conv, model.EventConversion, "contact", 0)
	ev.TS, ev.ID = x.now.Load(), []byte("id-1")
	if _, err := x.IngestEvents([]index.StateEvent{ev}, nil, false); err != nil {
		t.Fatal(err)
	}
	if x.count(t, "xc/") != 1 || !x.has(t, "ei/id-1") {
		t.Fatal("no conversion or event-id marker")
	}
	// Every 20 minutes for 5 hours: active decides, everyone is swept.
	for i := range 15 {
		x.add(20 * time.Minute)
		if d := x.decide(t, "active"); d.Variant != first.Variant || d.Reason != reasonSticky {
			t.Fatalf("round %d: active got %s (%s), first %s", i, d.Variant, d.Reason, first.Variant)
		}
		x.sweep(t)
		elapsed := time.Duration(i+1) * 20 * time.Minute
		want := map[string]bool{
			"as/cta/active": true,
			// Anonymous: 1h + 7.5 min after its decision.
			"as/cta/gone": elapsed <= time.Hour,
			// With events (a profile): 3h + 7.5 min.
			"as/cta/known": elapsed <= 3*time.Hour,
			// No time: from the epoch, and anonymous.
			"as/cta/old": elapsed <= time.Hour,
			"ei/id-1":    elapsed <= time.Hour,
		}
		for k, w := range want {
			if x.has(t, k) != w {
				t.Fatalf("after %v: %s kept %v, want %v", elapsed, k, !w, w)
			}
		}
		if got, want := x.count(t, "xc/"), 1; elapsed > 3*time.Hour {
			if got != 0 {
				t.Fatalf("after %v: conversion marker kept after its assignment", elapsed)
			}
		} else if got != want {
			t.Fatalf("after %v: %d conversion markers", elapsed, got)
		}
	}
	r, err := x.Results([]byte("cta"), ResultsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Variants[0].Exposures + r.Variants[1].Exposures; n != 3 {
		t.Fatalf("exposures %v, want 3 (active, gone, known: renewals count nothing)", n)
	}
	st, ok := x.RetentionStats()
	if !ok || st.Kinds[KindAnonymous].Rows != 2 || st.Kinds[KindAssignments].Rows != 1 ||
		st.Kinds[KindConversions].Rows != 1 || st.Kinds[KindEventIDs].Rows != 1 || st.Passes != 15 {
		t.Fatalf("retention stats %+v", st)
	}
	// A new phase: the old phase's conversion markers go at once.
	d := x.decide(t, "buyer")
	ev = beacon("buyer", d, model.EventConversion, "contact", 0)
	ev.TS = x.now.Load()
	if _, err := x.IngestEvents([]index.StateEvent{ev}, nil, false); err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig([]byte(strings.Replace(twoGoals, "{id: b, weight: 1}", "{id: b, weight: 2}", 1)), "exp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	x.SetConfig(c)
	x.sweep(t)
	if n := x.count(t, "xc/"); n != 0 {
		t.Fatalf("%d conversion markers of a past phase kept", n)
	}
}

// dirSize is the size of the files under dir, and of its tables (.sst):
// the data, without Pebble's WAL files.
func dirSize(t testing.TB, dir string) (total, tables int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted by Pebble meanwhile
		}
		if err != nil {
			return err
		}
		total += info.Size()
		if strings.HasSuffix(path, ".sst") {
			tables += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total, tables
}

// closedSize closes the engine and the store, measures dir and opens
// them again: a closed Pebble has deleted its obsolete files.
func (x *retEngine) closedSize(t testing.TB, dir string) (total, tables int64) {
	t.Helper()
	o, r := x.o, x.o.Retention
	x.close(t)
	total, tables = dirSize(t, dir)
	var err error
	if x.st, err = index.OpenState(dir, index.StateOptions{Now: o.Now, NoSync: true}); err != nil {
		t.Fatal(err)
	}
	x.closed = false
	o.Retention, o.Config = r, x.cfg.Load()
	x.Engine = newEngine(t, o, x.st, "")
	return total, tables
}

// TestRetentionPlateau: under a stream of new anonymous visitors with a
// one-hour TTL, the state directory stops growing once the first ones
// expire, and returns to its size before them once they all have.
// 20,000 visitors under -short or the race detector, 200,000 without;
// EDGEREC_RETENTION_N sets the count (make test-retention: 1,000,000).
func TestRetentionPlateau(t *testing.T) {
	n := 200_000
	if testing.Short() || raceEnabled {
		n = 20_000
	}
	if s := os.Getenv("EDGEREC_RETENTION_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 10 {
			t.Fatalf("EDGEREC_RETENTION_N=%q: want a count of 10 or more", s)
		}
	}
	plateau(t, n)
}

func plateau(t *testing.T, n int) {
	const rounds = 10
	dir := t.TempDir()
	x := newRetEngine(t, dir, twoGoals, Retention{Anonymous: time.Hour})
	// The baseline: the store with the experiment's phase and a first
	// pass (the epoch, Pebble's files).
	x.decide(t, "warm-up")
	x.add(2 * time.Hour)
	x.sweep(t)
	base, baseTables := x.closedSize(t, dir)
	start := time.Now()
	var sizes []int64
	var decided, swept time.Duration
	for range rounds {
		t0 := time.Now()
		v := x.Acquire()
		var d Decision
		for range n / rounds {
			if err := v.Decide(&DecideRequest{Page: []byte("lp"), UserAgent: []byte("Mozilla/5.0")}, &d); err != nil {
				t.Fatal(err)
			}
		}
		v.Release()
		t1 := time.Now()
		x.add(20 * time.Minute)
		x.sweep(t)
		decided, swept = decided+t1.Sub(t0), swept+time.Since(t1)
		total, _ := dirSize(t, dir)
		sizes = append(sizes, total)
	}
	peak := slices.Max(sizes)
	x.add(2 * time.Hour)
	t2 := time.Now()
	x.sweep(t)
	swept += time.Since(t2)
	st, _ := x.RetentionStats()
	left := x.count(t, "as/")
	final, finalTables := x.closedSize(t, dir)
	del := st.Kinds[KindAnonymous]
	t.Logf("%d decisions in %v (%.0f/s); sweeps with compaction %v (%.0f deletions/s); deleted %+v",
		n, decided.Round(time.Millisecond), float64(n)/decided.Seconds(), swept.Round(time.Millisecond), float64(del.Rows)/swept.Seconds(), del)
	t.Logf("state dir: baseline %d B (tables %d B); after each round %v; peak %d B; after expiry %d B (tables %d B); test %v",
		base, baseTables, sizes, peak, final, finalTables, time.Since(start).Round(time.Millisecond))
	if del.Rows != uint64(n/rounds*rounds) || left != 0 {
		t.Fatalf("deleted %d anonymous assignments, %d left; want %d, 0", del.Rows, left, n/rounds*rounds)
	}
	// The live set is the visitors of the last hour and a bit: four
	// rounds. The last rounds stay within a fifth of the round that first
	// held it.
	if last := sizes[rounds-1]; last > sizes[4]*6/5+1<<20 {
		t.Fatalf("no plateau: %v", sizes)
	}
	// Back to the baseline: the tables within 64 KiB; the directory
	// within Pebble's recycled WAL files, at most four of a memtable's
	// size (4 MiB) each, which do not grow with the data.
	if finalTables > baseTables+64<<10 || final > base+16<<20 {
		t.Fatalf("after expiry %d B (tables %d B); baseline %d B (tables %d B)", final, finalTables, base, baseTables)
	}
}
