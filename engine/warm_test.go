package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWarm: while a HoldReady is held Ready says "warming"; Warm reads
// every item's lists and computes the answers of the visitors with the
// most history, so that asking for them afterwards reads no list; Ready
// is ready once the hold is released (once: a second release does
// nothing).
func TestWarm(t *testing.T) {
	// A fixed clock: visitors' answers are kept for the minute they were
	// computed in, and a slow run (the race detector) may cross one.
	now := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	e, _ := testEngine(t, Options{CacheBytes: 64 << 20, Config: sampleConfig(t), Now: func() time.Time { return now }})
	release := e.HoldReady()
	warming := func(when string) {
		t.Helper()
		var ee *Error
		if _, err := e.Ready(); !errors.As(err, &ee) || ee.Code != "warming" || KindOf(err) != Unavailable {
			t.Fatalf("Ready %s: %v; want Unavailable, code warming", when, err)
		}
	}
	warming("before Warm")
	st, err := e.Warm(context.Background(), WarmOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := e.Acquire()
	n := v.snap.NumItems()
	v.Release()
	if st.Items != n || st.Visitors == 0 || !st.Complete || st.Answers < 2*n+st.Visitors {
		t.Fatalf("Warm: %+v; want all %d items, some visitors, complete", st, n)
	}
	warming("after Warm, the hold not released")
	users, err := e.warmVisitors(0, 4)
	if err != nil || len(users) == 0 {
		t.Fatalf("warmVisitors: %d, %v", len(users), err)
	}
	release()
	release()
	if _, err := e.Ready(); err != nil {
		t.Fatalf("Ready after the release: %v", err)
	}

	// Every item's lists are in the list cache, and the warmed visitors'
	// personal answers in the answer cache: asking reads no list from
	// the snapshot.
	before := e.Stats().Lists
	var out Recs
	for i := range n {
		v := e.Acquire()
		req := RecRequest{Item: []byte(v.snap.Item(uint32(i)).ID)}
		if err := v.Similar(&req, &out); err != nil {
			t.Fatal(err)
		}
		v.Release()
	}
	after := e.Stats().Lists
	if after.Misses != before.Misses || after.Hits < before.Hits+uint64(n) {
		t.Fatalf("similar lists of %d items after Warm: list cache %+v before, %+v after; want hits only", n, before, after)
	}
	for _, u := range users[:min(len(users), 100)] {
		v := e.Acquire()
		if err := v.Personal(u, &RecRequest{}, &out); err != nil {
			t.Fatal(err)
		}
		v.Release()
	}
	if end := e.Stats().Lists; end != after {
		t.Fatalf("personal answers of warmed visitors read lists: list cache %+v, then %+v; want them all remembered", after, end)
	}
}

// TestWarmDeadline: a deadline already passed ends Warm at once,
// incomplete; with no snapshot it says so.
func TestWarmDeadline(t *testing.T) {
	e, _ := testEngine(t, Options{CacheBytes: 64 << 20})
	st, err := e.Warm(context.Background(), WarmOptions{Deadline: e.Now().Add(-1)})
	if err != nil || st.Complete || st.Items != 0 || st.Visitors != 0 {
		t.Fatalf("Warm past its deadline: %+v, %v; want nothing done, incomplete", st, err)
	}
	empty := newEngine(t, Options{}, nil, "")
	if _, err := empty.Warm(context.Background(), WarmOptions{}); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Warm with no snapshot: %v; want ErrNoSnapshot", err)
	}
}
