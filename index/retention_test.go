package index

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgerec/edgerec/model"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newSweeper(t *testing.T, s *State, o SweepOptions) *Sweeper {
	t.Helper()
	o.Pause, o.CompactBytes = -1, -1
	w, err := s.NewSweeper(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func sweep(t *testing.T, w *Sweeper) {
	t.Helper()
	if err := w.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func logSeqs(t *testing.T, s *State) []uint64 {
	t.Helper()
	var seqs []uint64
	if _, err := s.ScanEvents(0, func(seq uint64, _ *StateEvent) error {
		seqs = append(seqs, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seqs
}

// TestSweepEvents: the log goes by arrival (checkpoints), from its start,
// in batches, but never its last entry, and the numbering continues after
// a reopen.
func TestSweepEvents(t *testing.T) {
	dir := t.TempDir()
	clk := &testClock{now: time.Unix(1_700_000_000, 0)}
	s := openState(t, dir, StateOptions{NoSync: true, Now: clk.Now})
	w := newSweeper(t, s, SweepOptions{Events: time.Hour, BatchKeys: 3})
	ev := func(n int) {
		t.Helper()
		evs := make([]StateEvent, n)
		for i := range evs {
			// An old event time: the log goes by arrival, not by it.
			evs[i] = StateEvent{User: []byte("u"), Type: model.EventPageview, TS: 1}
		}
		if err := s.AppendEvents(evs); err != nil {
			t.Fatal(err)
		}
	}
	ev(10)
	sweep(t, w) // checkpoint at t0: seq 10
	if got := logSeqs(t, s); len(got) != 10 {
		t.Fatalf("log after the first pass: %v, want all 10", got)
	}
	clk.Add(30 * time.Minute)
	ev(5)
	sweep(t, w) // checkpoint at t0+30m: seq 15
	clk.Add(31 * time.Minute)
	ev(1)
	sweep(t, w) // t0 is older than the hour: seqs 1-10 go
	if got := logSeqs(t, s); len(got) != 6 || got[0] != 11 || got[5] != 16 {
		t.Fatalf("log: %v, want 11-16", got)
	}
	if st := w.Stats().Kinds[KindEvents]; st.Rows != 10 || st.Bytes == 0 {
		t.Fatalf("events stats %+v, want 10 rows", st)
	}
	clk.Add(10 * time.Hour)
	sweep(t, w)
	if got := logSeqs(t, s); len(got) != 1 || got[0] != 16 {
		t.Fatalf("log after everything expired: %v, want the last entry 16", got)
	}
	closeState(t, s)
	s = openState(t, dir, StateOptions{NoSync: true, Now: clk.Now})
	defer closeState(t, s)
	ev(1)
	if got := logSeqs(t, s); len(got) != 2 || got[1] != 17 {
		t.Fatalf("log after a reopen: %v, want 16 17", got)
	}
}

// TestSweepHistories: entries older than the TTL go, per user, as the
// tail of the user's keys; users whose ids prefix each other stay apart.
func TestSweepHistories(t *testing.T) {
	clk := &testClock{now: time.Unix(1_700_000_000, 0)}
	s := openState(t, t.TempDir(), StateOptions{NoSync: true, Now: clk.Now})
	defer closeState(t, s)
	now := clk.Now().Unix()
	var evs []StateEvent
	for u := range 30 {
		user := fmt.Appendf(nil, "u%d", u)
		for i := range 10 {
			// Entries 0-4 are two days old, 5-9 fresh.
			ts := now - int64(i)*60
			if i < 5 {
				ts = now - 2*86400 - int64(i)
			}
			evs = append(evs, StateEvent{User: user, Item: fmt.Appendf(nil, "i%d", i), Type: model.EventView, TS: ts})
		}
	}
	evs = append(evs, StateEvent{User: []byte("old"), Item: []byte("x"), Type: model.EventView, TS: now - 3*86400})
	if err := s.AppendEvents(evs); err != nil {
		t.Fatal(err)
	}
	w := newSweeper(t, s, SweepOptions{Histories: 24 * time.Hour, BatchKeys: 7})
	sweep(t, w)
	var h History
	for u := range 30 {
		if err := s.LoadHistory(&h, fmt.Appendf(nil, "u%d", u), 100); err != nil {
			t.Fatal(err)
		}
		if n := len(h.Entries()); n != 5 {
			t.Fatalf("u%d keeps %d entries, want 5", u, n)
		}
		for _, e := range h.Entries() {
			if e.TS < now-86400 {
				t.Fatalf("u%d keeps an entry of %d", u, e.TS)
			}
		}
	}
	if err := s.LoadHistory(&h, []byte("old"), 100); err != nil || len(h.Entries()) != 0 {
		t.Fatalf("old keeps %d entries (%v)", len(h.Entries()), err)
	}
	if st := w.Stats().Kinds[KindHistories]; st.Rows != 30*5+1 {
		t.Fatalf("histories stats %+v, want %d rows", st, 30*5+1)
	}
}

// TestSweepProfiles: a profile goes a TTL after its last event; one with
// attributes only stays; the merge mark of a visitor without a profile
// goes.
func TestSweepProfiles(t *testing.T) {
	clk := &testClock{now: time.Unix(1_700_000_000, 0)}
	s := openState(t, t.TempDir(), StateOptions{NoSync: true, Now: clk.Now})
	defer closeState(t, s)
	now := clk.Now().Unix()
	if err := s.AppendEvents([]StateEvent{
		pageview("stale", "/a", now-10*86400),
		pageview("fresh", "/a", now-3600),
		pageview("visitor", "/a", now-10*86400),
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateProfile([]byte("stale"), func(p *model.Profile) error {
		p.SetAttr([]byte("plan"), model.AttrString, []byte("pro"), 0)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateProfile([]byte("attrs"), func(p *model.Profile) error {
		p.SetAttr([]byte("n"), model.AttrNumber, nil, 3)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.MergeProfile([]byte("visitor"), []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	w := newSweeper(t, s, SweepOptions{Profiles: 7 * 24 * time.Hour})
	sweep(t, w)
	for user, want := range map[string]bool{"stale": false, "visitor": false, "fresh": true, "attrs": true} {
		if ok, err := s.HasProfile([]byte(user)); err != nil || ok != want {
			t.Fatalf("profile of %s: %v (%v), want %v", user, ok, err, want)
		}
	}
	marks := 0
	if err := s.ScanMeta([]byte("pm/"), func(_, _ []byte) error { marks++; return nil }); err != nil {
		t.Fatal(err)
	}
	if marks != 0 {
		t.Fatalf("%d merge marks left", marks)
	}
	if st := w.Stats().Kinds[KindProfiles]; st.Rows != 3 {
		t.Fatalf("profiles stats %+v, want 3 rows (2 profiles, 1 mark)", st)
	}
}

// TestSweepMetaRule: a rule's records go when it says so, with the epoch
// for records without a time, and a record renewed while its lock is
// awaited stays.
func TestSweepMetaRule(t *testing.T) {
	clk := &testClock{now: time.Unix(1_700_000_000, 0)}
	s := openState(t, t.TempDir(), StateOptions{NoSync: true, Now: clk.Now})
	defer closeState(t, s)
	put := func(k string, at int64) {
		t.Helper()
		var v []byte
		if at != 0 {
			v = binary.AppendVarint(nil, at)
		}
		if err := s.PutMeta([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	now := clk.Now().Unix()
	put("t/old", now-7200)
	put("t/new", now-60)
	put("t/none", 0)
	put("t/renewed", now-7200)
	put("u/other", now-7200)
	var locked [][]string
	rule := MetaRule{
		Prefix: "t/",
		Expired: func(_, v []byte, now, epoch int64) string {
			at := epoch
			if len(v) > 0 {
				at, _ = binary.Varint(v)
			}
			if at < now-3600 {
				return "test"
			}
			return ""
		},
		Lock: func(keys [][]byte) func() {
			var ks []string
			for _, k := range keys {
				ks = append(ks, string(k))
				if string(k) == "t/renewed" {
					// A writer renews it before the sweeper gets the lock.
					put("t/renewed", clk.Now().Unix())
				}
			}
			locked = append(locked, ks)
			return func() {}
		},
	}
	w := newSweeper(t, s, SweepOptions{Meta: []MetaRule{rule}})
	if w.Epoch() != now {
		t.Fatalf("epoch %d, want %d", w.Epoch(), now)
	}
	sweep(t, w)
	has := func(k string) bool {
		_, ok, err := s.AppendMeta(nil, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for k, want := range map[string]bool{"t/old": false, "t/new": true, "t/none": true, "t/renewed": true, "u/other": true} {
		if has(k) != want {
			t.Fatalf("%s kept: %v, want %v", k, !want, want)
		}
	}
	if len(locked) != 1 || len(locked[0]) != 2 {
		t.Fatalf("locked %q, want one chunk of t/old and t/renewed", locked)
	}
	// The epoch stays across sweepers: records without a time expire an
	// hour after it.
	clk.Add(2 * time.Hour)
	w = newSweeper(t, s, SweepOptions{Meta: []MetaRule{rule}})
	sweep(t, w)
	if has("t/none") || has("t/new") || !has("t/renewed") {
		t.Fatalf("after two hours: none %v new %v renewed %v", has("t/none"), has("t/new"), has("t/renewed"))
	}
	if st := w.Stats(); st.Kinds["test"].Rows != 2 || st.Passes != 1 || st.LastDuration <= 0 {
		t.Fatalf("stats %+v", st)
	}
}
