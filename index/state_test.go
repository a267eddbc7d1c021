package index

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/edgerec/edgerec/model"
)

// openState opens a state store in dir; the caller closes it (closeState),
// since several tests reopen the same directory.
func openState(t testing.TB, dir string, o StateOptions) *State {
	t.Helper()
	s, err := OpenState(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func closeState(t testing.TB, s *State) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// byHash renders views of items at ts in the order a history keeps
// events of one second: by histHash, larger first.
func byHash(ts int64, items ...string) string {
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b string) int { return cmp.Compare(histHash(model.EventView, b), histHash(model.EventView, a)) })
	var out []string
	for _, it := range items {
		out = append(out, it+"@"+strconv.FormatInt(ts, 10))
	}
	return strings.Join(out, " ")
}

func view(user, item string, ts int64) StateEvent {
	return StateEvent{User: []byte(user), Item: []byte(item), Type: model.EventView, TS: ts}
}

// historyString renders user's newest max history entries as "item@ts …",
// newest first.
func historyString(t testing.TB, s *State, h *History, user string, max int) string {
	t.Helper()
	if err := s.LoadHistory(h, []byte(user), max); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i, e := range h.Entries() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.Write(e.Item)
		b.WriteByte('@')
		b.WriteString(strconv.FormatInt(e.TS, 10))
	}
	return b.String()
}

// logString renders the event log after seq as "seq:user/item …".
func logString(t testing.TB, s *State, after uint64) string {
	t.Helper()
	var b strings.Builder
	_, err := s.ScanEvents(after, func(seq uint64, ev *StateEvent) error {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(seq, 10) + ":" + string(ev.User) + "/" + string(ev.Item))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestStateHistory(t *testing.T) {
	s := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, s)
	var h History
	f := func(user, want string) {
		t.Helper()
		if got := historyString(t, s, &h, user, 3); got != want {
			t.Fatalf("history of %q: %q; want %q", user, got, want)
		}
	}
	must(t, s.AppendEvents([]StateEvent{view("u1", "a", 10), view("u10", "x", 50), view("u1", "b", 30), view("u1", "c", 20)}))
	f("u1", "b@30 c@20 a@10")
	must(t, s.AppendEvents([]StateEvent{
		view("u1", "d", 40),
		{User: []byte("u1"), Item: []byte("e"), Type: model.EventRating, TS: 5, Value: 4, HasValue: true},
		// No item: logged, but no history entry.
		{User: []byte("u1"), Type: model.EventPageview, TS: 60},
	}))
	f("u1", "d@40 b@30 c@20") // max caps it, newest first
	f("u10", "x@50")          // "u1" is a prefix of "u10": no mixing
	f("u", "")
	f("u100", "")
	f("", "")
	// Same second: ordered by the events' content, not their arrival, so
	// whichever order they come in reads the same.
	must(t, s.AppendEvents([]StateEvent{view("t", "first", 7), view("t", "second", 7)}))
	must(t, s.AppendEvents([]StateEvent{view("t", "third", 7)}))
	must(t, s.AppendEvents([]StateEvent{view("t2", "third", 7), view("t2", "second", 7), view("t2", "first", 7)}))
	f("t", byHash(7, "first", "second", "third"))
	f("t2", byHash(7, "first", "second", "third"))
	// The same event again (a retry) is one entry; another type is not.
	must(t, s.AppendEvents([]StateEvent{view("t", "first", 7), {User: []byte("t"), Item: []byte("first"), Type: model.EventCart, TS: 7}}))
	if got := historyString(t, s, &h, "t", 10); len(strings.Fields(got)) != 4 {
		t.Fatalf("history of t after a repeated view and a cart: %q; want 4 entries", got)
	}

	// Type and value come back; no value is NaN.
	must(t, s.AppendEvents([]StateEvent{
		{User: []byte("v"), Item: []byte("p"), Type: model.EventPurchase, TS: 2, Value: 2.5, HasValue: true},
		{User: []byte("v"), Item: []byte("q"), Type: model.EventCart, TS: 1},
	}))
	must(t, s.LoadHistory(&h, []byte("v"), 3))
	e := h.Entries()
	if len(e) != 2 || e[0].Type != model.EventPurchase || e[0].Value != 2.5 || e[1].Type != model.EventCart || !math.IsNaN(float64(e[1].Value)) {
		t.Fatalf("entries of v: %+v", e)
	}
	// The next load replaces the entries.
	must(t, s.LoadHistory(&h, []byte("nobody"), 3))
	if len(h.Entries()) != 0 {
		t.Fatalf("entries of nobody: %+v", h.Entries())
	}
}

func TestStateBadEvents(t *testing.T) {
	s := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, s)
	f := func(ev StateEvent) {
		t.Helper()
		// The good event in the same call is not stored either.
		err := s.AppendEvents([]StateEvent{view("ok", "a", 1), ev})
		if !errors.Is(err, ErrBadEvent) {
			t.Fatalf("%+v: error %v; want ErrBadEvent", ev, err)
		}
		if got := logString(t, s, 0); got != "" {
			t.Fatalf("a bad batch left %q in the log", got)
		}
	}
	f(StateEvent{Item: []byte("a"), Type: model.EventView})
	f(StateEvent{User: []byte{}, Item: []byte("a"), Type: model.EventView})
	f(StateEvent{User: []byte("u"), Item: []byte("a")})
	f(StateEvent{User: []byte("u"), Item: []byte("a"), Type: model.EventType(200)})
	// Nothing to do is no error.
	must(t, s.AppendEvents(nil))
	must(t, s.AppendEventsAndCount(nil, nil))
	if err := s.MergeHistory(nil, []byte("u"), 1); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("merge without a visitor: %v", err)
	}
	if err := s.MergeHistory([]byte("v"), nil, 1); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("merge without a user: %v", err)
	}
}

func TestStateEventLog(t *testing.T) {
	s := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, s)
	full := StateEvent{User: []byte("u"), Item: []byte("c"), Type: model.EventPurchase, TS: -3, Value: 9.5, HasValue: true,
		Basket: []byte("o1"), RecID: []byte("r1"), Placement: []byte("home"), Page: []byte("/p")}
	must(t, s.AppendEvents([]StateEvent{view("u", "a", 1), {User: []byte("u"), Type: model.EventPageview, TS: 2, Page: []byte("/x")}}))
	must(t, s.AppendEvents([]StateEvent{full}))
	if got, want := logString(t, s, 0), "1:u/a 2:u/ 3:u/c"; got != want {
		t.Fatalf("log %q; want %q", got, want)
	}
	if got, want := logString(t, s, 2), "3:u/c"; got != want {
		t.Fatalf("log after 2: %q; want %q", got, want)
	}
	var got StateEvent
	last, err := s.ScanEvents(2, func(_ uint64, ev *StateEvent) error {
		got = cloneStateEvent(ev)
		return nil
	})
	must(t, err)
	if last != 3 || !equalStateEvents(&got, &full) {
		t.Fatalf("logged event %+v (last %d); want %+v", got, last, full)
	}
	// An error from fn stops the scan; the returned seq is the last one
	// fn accepted, the one to resume after.
	stop := errors.New("stop")
	last, err = s.ScanEvents(0, func(seq uint64, _ *StateEvent) error {
		if seq == 2 {
			return stop
		}
		return nil
	})
	if err != stop || last != 1 {
		t.Fatalf("stopped scan: %d, %v", last, err)
	}
	if last, err := s.ScanEvents(3, func(uint64, *StateEvent) error { t.Fatal("called"); return nil }); last != 3 || err != nil {
		t.Fatalf("scan past the end: %d, %v", last, err)
	}
	if last, err := s.ScanEvents(math.MaxUint64, func(uint64, *StateEvent) error { t.Fatal("called"); return nil }); last != math.MaxUint64 || err != nil {
		t.Fatalf("scan after max: %d, %v", last, err)
	}
}

func cloneStateEvent(ev *StateEvent) StateEvent {
	c := *ev
	for _, f := range [...]*[]byte{&c.User, &c.Item, &c.Basket, &c.RecID, &c.Placement, &c.Page, &c.Goal, &c.ID} {
		*f = bytes.Clone(*f)
	}
	return c
}

func equalStateEvents(a, b *StateEvent) bool {
	return bytes.Equal(a.User, b.User) && bytes.Equal(a.Item, b.Item) && a.Type == b.Type && a.TS == b.TS &&
		a.HasValue == b.HasValue && (a.Value == b.Value || math.IsNaN(a.Value) && math.IsNaN(b.Value)) &&
		bytes.Equal(a.Basket, b.Basket) && bytes.Equal(a.RecID, b.RecID) &&
		bytes.Equal(a.Placement, b.Placement) && bytes.Equal(a.Page, b.Page) && bytes.Equal(a.Goal, b.Goal) &&
		bytes.Equal(a.ID, b.ID)
}

func TestStateEventCodec(t *testing.T) {
	f := func(ev StateEvent) {
		t.Helper()
		b := appendStateEvent([]byte("prefix"), &ev)[len("prefix"):]
		var got StateEvent
		if err := decodeStateEvent(&got, b); err != nil {
			t.Fatalf("%+v: %v", ev, err)
		}
		if !equalStateEvents(&got, &ev) {
			t.Fatalf("decoded %+v; want %+v", got, ev)
		}
		// Every truncation is an error, not a panic; except before the
		// goal or the id, where entries written before them end.
		old := StateEvent{User: ev.User, Item: ev.Item, Type: ev.Type, TS: ev.TS, Value: ev.Value,
			HasValue: ev.HasValue, Basket: ev.Basket, RecID: ev.RecID, Placement: ev.Placement, Page: ev.Page}
		noGoal := len(appendStateEvent(nil, &old))
		noID := noGoal + len(binary.AppendUvarint(nil, uint64(len(ev.Goal)))) + len(ev.Goal)
		for n := range len(b) {
			err := decodeStateEvent(&got, b[:n])
			prefix := n == noGoal || (n == noID && len(ev.ID) > 0)
			if err == nil && !prefix {
				t.Fatalf("%+v truncated to %d bytes decodes", ev, n)
			}
		}
	}
	f(StateEvent{User: []byte("u"), Type: model.EventView})
	f(StateEvent{User: []byte("u"), Item: []byte("85123A"), Type: model.EventPurchase, TS: 1700000000, Value: -1.25, HasValue: true})
	f(StateEvent{User: []byte("u"), Type: model.EventConversion, TS: math.MinInt64, Value: math.Inf(1), HasValue: true,
		Basket: []byte("b"), RecID: []byte("r"), Placement: []byte("p"), Page: []byte(strings.Repeat("x", 300))})
	f(StateEvent{User: []byte("u"), Type: model.EventRating, TS: math.MaxInt64, Value: math.NaN(), HasValue: true})
	f(StateEvent{User: []byte("u"), Type: model.EventConversion, TS: 1, RecID: []byte("d"), Goal: []byte("contact")})
	f(StateEvent{User: []byte("u"), Type: model.EventView, Item: []byte("i"), TS: 1, ID: []byte("ev-1")})
	f(StateEvent{User: []byte("u"), Type: model.EventConversion, TS: 1, Goal: []byte("g"), ID: []byte("ev-2")})
}

func FuzzDecodeStateEvent(f *testing.F) {
	f.Add(appendStateEvent(nil, &StateEvent{User: []byte("u"), Item: []byte("i"), Type: model.EventView, TS: 5}))
	f.Add(appendStateEvent(nil, &StateEvent{User: []byte("u"), Type: model.EventPurchase, Value: 3, HasValue: true, Page: []byte("/")}))
	f.Add([]byte{})
	f.Add([]byte("0\xe2\x00\x00\x00\x010\x00\x00\x00\x00")) // an overlong varint ts
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev StateEvent
		if decodeStateEvent(&ev, b) != nil {
			return
		}
		// What decodes re-encodes to an equal event (not always the same
		// bytes: a varint may come in a longer form than ours).
		enc := appendStateEvent(nil, &ev)
		var again StateEvent
		if err := decodeStateEvent(&again, enc); err != nil || !equalStateEvents(&again, &ev) {
			t.Fatalf("%x decodes to %+v, which encodes to %x, which decodes to %+v, %v", b, ev, enc, again, err)
		}
	})
}

func TestAppendPrefixEnd(t *testing.T) {
	f := func(p, want string) {
		t.Helper()
		if got := string(appendPrefixEnd([]byte("dst"), []byte(p))); got != "dst"+want {
			t.Fatalf("appendPrefixEnd(%q) = %q; want %q", p, got, "dst"+want)
		}
	}
	f("k", "l")
	f("kab", "kac")
	f("k\xff", "l")
	f("ka\xff\xff", "kb")
	f("k\xfe", "k\xff")
}

func TestStateOptions(t *testing.T) {
	f := func(o StateOptions, ok bool) {
		t.Helper()
		o.withDefaults()
		if err := o.Validate(); (err == nil) != ok {
			t.Fatalf("%+v: Validate() = %v", o, err)
		}
	}
	f(StateOptions{}, true)
	f(StateOptions{CacheBytes: -1}, false)
	f(StateOptions{ProfileRetention: time.Minute}, false)
	if _, err := OpenState(t.TempDir(), StateOptions{CacheBytes: -5}); err == nil {
		t.Fatal("OpenState accepts a negative cache size")
	}
}

// TestStateReopen checks that event numbers continue after a reopen: new
// events come after the old ones and no key is overwritten.
func TestStateReopen(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir, StateOptions{})
	must(t, s.AppendEvents([]StateEvent{view("u", "a", 1), view("u", "b", 1)}))
	must(t, s.AppendEvents([]StateEvent{{User: []byte("u"), Type: model.EventPageview, TS: 1}}))
	closeState(t, s)

	s = openState(t, dir, StateOptions{})
	// Same user, same time: the items tell these keys apart.
	must(t, s.AppendEvents([]StateEvent{view("u", "c", 1)}))
	closeState(t, s)

	s = openState(t, dir, StateOptions{})
	defer closeState(t, s)
	must(t, s.AppendEvents([]StateEvent{view("u", "d", 1)}))
	if got, want := logString(t, s, 0), "1:u/a 2:u/b 3:u/ 4:u/c 5:u/d"; got != want {
		t.Fatalf("log %q; want %q", got, want)
	}
	var h History
	if got, want := historyString(t, s, &h, "u", 10), byHash(1, "a", "b", "c", "d"); got != want {
		t.Fatalf("history %q; want %q", got, want)
	}
}

func TestStateMergeHistory(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir, StateOptions{})
	var h History
	f := func(user, want string) {
		t.Helper()
		if got := historyString(t, s, &h, user, 4); got != want {
			t.Fatalf("history of %q: %q; want %q", user, got, want)
		}
	}
	must(t, s.AppendEvents([]StateEvent{view("anon", "v1", 10), view("anon", "v2", 30), view("anon", "v3", 50)}))
	must(t, s.AppendEvents([]StateEvent{view("alice", "a1", 20), view("alice", "a2", 40)}))
	must(t, s.MergeHistory([]byte("anon"), []byte("alice"), 4))
	f("alice", "v3@50 a2@40 v2@30 a1@20") // interleaved by time, capped
	f("anon", "v3@50 v2@30 v1@10")        // the visitor keeps theirs
	// A repeated merge (a retried login) adds nothing.
	must(t, s.MergeHistory([]byte("anon"), []byte("alice"), 4))
	n := 0
	it, err := s.db.NewIter(nil)
	must(t, err)
	prefix := appendHistPrefix(nil, []byte("alice"))
	for ok := it.First(); ok; ok = it.Next() {
		if bytes.HasPrefix(it.Key(), prefix) {
			n++
		}
	}
	must(t, it.Close())
	if n != 5 {
		t.Fatalf("alice has %d history keys after two merges; want 5", n)
	}
	// Merging an unknown visitor, or a user into themselves, changes nothing.
	must(t, s.MergeHistory([]byte("nobody"), []byte("alice"), 4))
	must(t, s.MergeHistory([]byte("alice"), []byte("alice"), 4))
	// The merge is durable and not in the event log.
	closeState(t, s)
	s = openState(t, dir, StateOptions{})
	defer closeState(t, s)
	f("alice", "v3@50 a2@40 v2@30 a1@20")
	if got, want := logString(t, s, 0), "1:anon/v1 2:anon/v2 3:anon/v3 4:alice/a1 5:alice/a2"; got != want {
		t.Fatalf("log %q; want %q", got, want)
	}
	// Only the newest max entries of the visitor are copied.
	must(t, s.AppendEvents([]StateEvent{view("anon", "v0", 1), view("anon", "v4", 70), view("anon", "v5", 80)}))
	must(t, s.MergeHistory([]byte("anon"), []byte("bob"), 4))
	f("bob", "v5@80 v4@70 v3@50 v2@30")
}

func TestStateCounters(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir, StateOptions{})
	const goroutines, rounds = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				evs := []StateEvent{view("u"+strconv.Itoa(g), "i"+strconv.Itoa(i), int64(i))}
				cs := []Counter{{Key: []byte("p/home/clicks"), Delta: 1}, {Key: []byte("p/home/revenue"), Delta: 0.5}}
				var err error
				if i%2 == 0 {
					err = s.AppendEventsAndCount(evs, cs)
				} else {
					err = s.SetMetaAndCount(nil, nil, cs)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	must(t, s.AppendEventsAndCount(nil, []Counter{{Key: []byte("p/\xff"), Delta: -2}, {Key: []byte("q"), Delta: 1}}))
	closeState(t, s)

	s = openState(t, dir, StateOptions{})
	defer closeState(t, s)
	f := func(key string, want float64) {
		t.Helper()
		if v, err := s.Counter([]byte(key)); err != nil || v != want {
			t.Fatalf("counter %q: %v, %v; want %v", key, v, err, want)
		}
	}
	f("p/home/clicks", goroutines*rounds)
	f("p/home/revenue", goroutines*rounds/2)
	f("p/\xff", -2)
	f("p/none", 0)
	var got []string
	must(t, s.ScanCounters([]byte("p/"), func(key []byte, v float64) error {
		got = append(got, string(key)+"="+strconv.FormatFloat(v, 'g', -1, 64))
		return nil
	}))
	if want := []string{"p/home/clicks=1600", "p/home/revenue=800", "p/\xff=-2"}; !slices.Equal(got, want) {
		t.Fatalf("counters under p/: %q; want %q", got, want)
	}
	// Operands merged across memtable, sstables and a compaction add up
	// the same.
	must(t, s.db.Flush())
	must(t, s.AppendEventsAndCount(nil, []Counter{{Key: []byte("p/home/clicks"), Delta: 1}}))
	must(t, s.db.Compact(context.Background(), []byte{stateCounter}, []byte{stateCounter + 1}, true))
	f("p/home/clicks", goroutines*rounds+1)
}

func TestStateMeta(t *testing.T) {
	s := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, s)
	must(t, s.PutMeta([]byte("item/a"), []byte("1")))
	must(t, s.PutMeta([]byte("item/\xff\xff"), []byte("2")))
	must(t, s.PutMeta([]byte("itemz"), []byte("3")))
	must(t, s.SetMetaAndCount([]byte("as/e/v"), []byte("B"), nil))
	v, ok, err := s.AppendMeta([]byte("x"), []byte("as/e/v"))
	if err != nil || !ok || string(v) != "xB" {
		t.Fatalf("AppendMeta: %q, %v, %v", v, ok, err)
	}
	if v, ok, err := s.AppendMeta(nil, []byte("as/e/w")); err != nil || ok || len(v) != 0 {
		t.Fatalf("AppendMeta of a missing key: %q, %v, %v", v, ok, err)
	}
	var got []string
	must(t, s.ScanMeta([]byte("item/"), func(k, v []byte) error {
		got = append(got, string(k)+"="+string(v))
		return nil
	}))
	if want := []string{"item/a=1", "item/\xff\xff=2"}; !slices.Equal(got, want) {
		t.Fatalf("meta under item/: %q; want %q", got, want)
	}
}

// TestStatePowerLoss simulates a power cut with Pebble's crashable memory
// file system, which keeps only what was synced: every event acknowledged
// before the cut must be there after it. The NoSync control shows that the
// simulation does drop unsynced writes.
func TestStatePowerLoss(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openState(t, "state", StateOptions{FS: fs})
	var (
		mu    sync.Mutex
		acked []string
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := strconv.Itoa(g) + "-" + strconv.Itoa(i)
				if err := s.AppendEvents([]StateEvent{view("u"+strconv.Itoa(g), id, int64(i))}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 || t.Failed() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	want := slices.Clone(acked)
	mu.Unlock()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // only synced data survives
	stop.Store(true)
	wg.Wait()
	closeState(t, s)

	s = openState(t, "state", StateOptions{FS: crashed})
	defer closeState(t, s)
	stored := map[string]bool{}
	_, err := s.ScanEvents(0, func(_ uint64, ev *StateEvent) error {
		stored[string(ev.Item)] = true
		return nil
	})
	must(t, err)
	for _, id := range want {
		if !stored[id] {
			t.Fatalf("acknowledged event %s lost in the power cut (%d acknowledged, %d stored)", id, len(want), len(stored))
		}
	}

	// Control: without sync, acknowledged events are lost.
	fs = vfs.NewCrashableMem()
	s2 := openState(t, "state", StateOptions{FS: fs, NoSync: true})
	for i := range 100 {
		must(t, s2.AppendEvents([]StateEvent{view("u", strconv.Itoa(i), int64(i))}))
	}
	crashed = fs.CrashClone(vfs.CrashCloneCfg{})
	closeState(t, s2)
	s2 = openState(t, "state", StateOptions{FS: crashed})
	defer closeState(t, s2)
	if got := logString(t, s2, 0); strings.Count(got, ":") >= 100 {
		t.Fatal("the NoSync control kept all its events: the simulation drops nothing")
	}
}

// The crash child (TestStateCrashHelper) runs when crashDirEnv names its
// store directory.
const (
	crashDirEnv = "EDGEREC_STATE_CRASH_DIR"
	crashAcks   = 2000
)

// TestStateCrash runs a child process that appends events to a state store
// from several goroutines and prints each acknowledged event, kills it with
// SIGKILL while it writes, reopens the store and checks that every
// acknowledged event is there, in a consistent store that numbers new
// events after the old ones. (A kill keeps what reached the kernel, synced
// or not: this proves the acknowledgement waits for the WAL write;
// TestStatePowerLoss covers the sync.)
func TestStateCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the crash child")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStateCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		}
	}
	defer kill()

	// Read acks until there are enough; a watchdog kills a stuck child.
	watchdog := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	acked := map[string]bool{}
	newest := map[string]int{} // per user, the newest acknowledged ts
	sc := bufio.NewScanner(out)
	for len(acked) < crashAcks && sc.Scan() {
		user, id, ts, ok := parseCrashAck(sc.Text())
		if !ok {
			continue
		}
		acked[id] = true
		newest[user] = max(newest[user], ts)
	}
	watchdog.Stop()
	kill() // with writes in flight
	if len(acked) < crashAcks {
		t.Fatalf("the child acknowledged %d events, then stopped: %s", len(acked), stderr.Bytes())
	}

	s := openState(t, dir, StateOptions{})
	defer closeState(t, s)
	stored := map[string]bool{}
	var prev uint64
	last, err := s.ScanEvents(0, func(seq uint64, ev *StateEvent) error {
		if seq <= prev || stored[string(ev.Item)] {
			t.Fatalf("log out of order or duplicated at seq %d (%s)", seq, ev.Item)
		}
		prev = seq
		stored[string(ev.Item)] = true
		return nil
	})
	must(t, err)
	for id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged event %s lost after kill -9 (%d acknowledged, %d stored)", id, len(acked), len(stored))
		}
	}
	// Each writer's history starts with its newest acknowledged event or a
	// later one.
	var h History
	for user, ts := range newest {
		must(t, s.LoadHistory(&h, []byte(user), 1))
		if e := h.Entries(); len(e) != 1 || e[0].TS < int64(ts) {
			t.Fatalf("history of %s: %+v; want ts >= %d", user, e, ts)
		}
	}
	// New events are numbered after everything that survived.
	must(t, s.AppendEvents([]StateEvent{view("after", "after-crash", 1)}))
	if got, want := logString(t, s, last), strconv.FormatUint(last+1, 10)+":after/after-crash"; got != want {
		t.Fatalf("log after the crash: %q; want %q", got, want)
	}
	t.Logf("%d events acknowledged, %d stored when killed", len(acked), len(stored))
}

// parseCrashAck reads "ACK user id ts".
func parseCrashAck(line string) (user, id string, ts int, ok bool) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "ACK" {
		return "", "", 0, false
	}
	ts, err := strconv.Atoi(f[3])
	return f[1], f[2], ts, err == nil
}

// TestStateCrashHelper is the child of TestStateCrash: it appends events,
// one to three a call, from four goroutines until it is killed, and prints
// "ACK user id ts" for each event once its call has returned.
func TestStateCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs as the child of TestStateCrash")
	}
	s := openState(t, dir, StateOptions{})
	var mu sync.Mutex
	for g := range 4 {
		go func() {
			rng := rand.New(rand.NewSource(int64(g)))
			user := "u" + strconv.Itoa(g)
			var line []byte
			for i := 0; ; {
				evs := make([]StateEvent, 1+rng.Intn(3))
				for j := range evs {
					evs[j] = view(user, user+"-"+strconv.Itoa(i), int64(i))
					i++
				}
				if err := s.AppendEvents(evs); err != nil {
					panic(err)
				}
				line = line[:0]
				for _, ev := range evs {
					line = append(line, "ACK "+user+" "...)
					line = append(line, ev.Item...)
					line = append(line, ' ')
					line = strconv.AppendInt(line, ev.TS, 10)
					line = append(line, '\n')
				}
				mu.Lock()
				_, err := os.Stdout.Write(line) // unbuffered: the parent sees it now
				mu.Unlock()
				if err != nil {
					os.Exit(1) // the parent is gone
				}
			}
		}()
	}
	time.Sleep(3 * time.Minute) // the parent kills us long before
	os.Exit(1)
}

// TestStateLoadHistoryAllocs pins LoadHistory at zero allocations once the
// History has grown, reading from the memtable and from an sstable.
func TestStateLoadHistoryAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	s := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, s)
	evs := make([]StateEvent, 80)
	for i := range evs {
		evs[i] = view("user-42", "item-"+strconv.Itoa(i), int64(1000+i))
	}
	must(t, s.AppendEvents(evs))
	user := []byte("user-42")
	var h History
	f := func(where string) {
		t.Helper()
		for range 3 {
			must(t, s.LoadHistory(&h, user, 50))
		}
		n := testing.AllocsPerRun(200, func() {
			if err := s.LoadHistory(&h, user, 50); err != nil || len(h.Entries()) != 50 {
				t.Fatalf("LoadHistory: %d entries, %v", len(h.Entries()), err)
			}
		})
		if n != 0 {
			t.Fatalf("LoadHistory from %s allocates %v times a call; want 0", where, n)
		}
	}
	f("the memtable")
	must(t, s.db.Flush())
	f("an sstable")
}

// Write sets metadata records in the batch of its events and counters:
// after a reopen all three are there.
func TestStateWriteMeta(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir, StateOptions{})
	ev := StateEvent{User: []byte("v"), Type: model.EventConversion, TS: 5, RecID: []byte("d"), Goal: []byte("contact")}
	must(t, s.Write([]StateEvent{ev}, []Counter{{Key: []byte("x/c"), Delta: 2}}, []KV{{Key: []byte("xc/v"), Value: []byte("1")}}))
	closeState(t, s)
	s = openState(t, dir, StateOptions{})
	defer closeState(t, s)
	v, ok, err := s.AppendMeta(nil, []byte("xc/v"))
	c, err2 := s.Counter([]byte("x/c"))
	if err != nil || err2 != nil || !ok || string(v) != "1" || c != 2 {
		t.Fatalf("meta %q %v %v, counter %v %v", v, ok, err, c, err2)
	}
	var got StateEvent
	if _, err := s.ScanEvents(0, func(_ uint64, e *StateEvent) error { got = cloneStateEvent(e); return nil }); err != nil || !equalStateEvents(&got, &ev) {
		t.Fatalf("logged %+v %v; want %+v", got, err, ev)
	}
}

// walFaults fails or stalls writes and syncs of the state store's WAL
// files, when told, and counts their syncs.
type walFaults struct {
	fail    atomic.Bool
	stall   atomic.Bool
	syncs   atomic.Int64
	entered chan struct{} // a stalled sync began
	release chan struct{} // let the stalled sync go on
}

func newWALFaults() *walFaults {
	return &walFaults{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (f *walFaults) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		if !strings.HasSuffix(op.Path, ".log") {
			break
		}
		f.syncs.Add(1)
		if f.stall.Load() {
			f.entered <- struct{}{}
			<-f.release
		}
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpCreate:
	default:
		return nil
	}
	if f.fail.Load() {
		return errorfs.ErrInjected
	}
	return nil
}

func (f *walFaults) String() string { return "wal faults" }

// TestStateWritable: Writable probes at most once a second, one probe at
// a time; a failed probe, a failed write or a probe stalled for over a
// second makes the store not writable; after a failure every write is
// refused (Pebble would panic on a later commit) while reads go on.
func TestStateWritable(t *testing.T) {
	var clock atomic.Int64 // ns
	clock.Store(time.Unix(1_700_000_000, 0).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	tick := func(d time.Duration) { clock.Add(int64(d)) }
	open := func() (*State, *walFaults) {
		t.Helper()
		f := newWALFaults()
		s := openState(t, "state", StateOptions{FS: errorfs.Wrap(vfs.NewMem(), f), Now: now, Logger: slog.New(slog.DiscardHandler)})
		return s, f
	}

	// A probe a second at most.
	s, f := open()
	if err := s.AppendEvents([]StateEvent{view("u1", "i1", 100)}); err != nil {
		t.Fatal(err)
	}
	syncs := f.syncs.Load()
	if err := s.Writable(); err != nil {
		t.Fatal(err)
	}
	if f.syncs.Load() != syncs+1 {
		t.Fatalf("the first Writable synced the WAL %d times; want 1 (a probe)", f.syncs.Load()-syncs)
	}
	tick(900 * time.Millisecond)
	for range 100 {
		if err := s.Writable(); err != nil {
			t.Fatal(err)
		}
	}
	if f.syncs.Load() != syncs+1 {
		t.Fatalf("100 Writable within the second synced the WAL %d more times; want 0", f.syncs.Load()-syncs-1)
	}
	// Due again, asked by many at once: one probe.
	tick(time.Second)
	syncs = f.syncs.Load()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Writable() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil || f.syncs.Load() != syncs+1 {
		t.Fatalf("8 concurrent Writable when due: %v, %d WAL syncs; want nil and 1", err, f.syncs.Load()-syncs)
	}
	tick(900 * time.Millisecond)
	// The disk fails: seen at the next probe, not before.
	f.fail.Store(true)
	if err := s.Writable(); err != nil {
		t.Fatalf("within the second: %v; want the last probe's answer", err)
	}
	tick(200 * time.Millisecond)
	err := s.Writable()
	if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("the probe after a second, on a failing disk: %v; want ErrNotWritable naming the injected error", err)
	}
	// Every write is refused without reaching Pebble, and reads go on,
	// while the disk fails.
	syncs = f.syncs.Load()
	for name, write := range map[string]func() error{
		"AppendEvents": func() error { return s.AppendEvents([]StateEvent{view("u1", "i2", 101)}) },
		"PutMeta":      func() error { return s.PutMeta([]byte("k"), []byte("v")) },
		"SetMetaAndCount": func() error {
			return s.SetMetaAndCount([]byte("k"), []byte("v"), []Counter{{Key: []byte("c"), Delta: 1}})
		},
		"MergeHistory": func() error { return s.MergeHistory([]byte("u1"), []byte("u9"), 10) },
		"UpdateProfile": func() error {
			return s.UpdateProfile([]byte("u1"), func(*model.Profile) error { return nil })
		},
		"HistoryWriter": func() error {
			w := s.NewHistoryWriter()
			_ = w.Add([]byte("u3"), &HistoryEntry{Item: []byte("i1"), Type: model.EventView, TS: 5})
			return w.Close()
		},
	} {
		if err := write(); !errors.Is(err, ErrNotWritable) {
			t.Fatalf("%s after a failed write: %v; want ErrNotWritable", name, err)
		}
	}
	tick(time.Hour)
	if err := s.Writable(); !errors.Is(err, ErrNotWritable) {
		t.Fatalf("an hour later: %v; want still ErrNotWritable", err)
	}
	if err := s.tryReopen(); err == nil {
		t.Fatal("a reopen on a failing disk: nil; want its error")
	}
	if n := f.syncs.Load() - syncs; n != 0 {
		t.Fatalf("refused writes and checks synced the WAL %d times; want 0", n)
	}
	var h History
	if got := historyString(t, s, &h, "u1", 10); got != "i1@100" {
		t.Fatalf("history after the failure: %q; want i1@100", got)
	}
	// The disk comes back: a reopen, and the store takes writes again.
	f.fail.Store(false)
	if err := s.tryReopen(); err != nil {
		t.Fatalf("a reopen once the disk is back: %v", err)
	}
	tick(time.Second)
	if err := s.Writable(); err != nil {
		t.Fatalf("Writable after the reopen: %v", err)
	}
	if err := s.AppendEvents([]StateEvent{view("u1", "i3", 102)}); err != nil {
		t.Fatalf("AppendEvents after the reopen: %v", err)
	}
	if got := historyString(t, s, &h, "u1", 10); got != "i3@102 i1@100" {
		t.Fatalf("history after the reopen: %q; want i3@102 i1@100", got)
	}
	closeState(t, s)

	// A failed event write is enough: no probe needed.
	s, f = open()
	if err := s.Writable(); err != nil {
		t.Fatal(err)
	}
	f.fail.Store(true)
	if err := s.AppendEvents([]StateEvent{view("u1", "i1", 100)}); !errors.Is(err, ErrNotWritable) {
		t.Fatalf("AppendEvents on a failing disk: %v; want ErrNotWritable", err)
	}
	if err := s.Writable(); !errors.Is(err, ErrNotWritable) {
		t.Fatalf("Writable right after a failed write: %v; want ErrNotWritable", err)
	}
	_ = s.Close()

	// A probe that stalls: under a second it is given time, past it the
	// store is not writable, and no second probe starts meanwhile.
	s, f = open()
	defer closeState(t, s)
	f.stall.Store(true)
	done := make(chan error)
	go func() { done <- s.Writable() }()
	<-f.entered
	syncs = f.syncs.Load()
	tick(500 * time.Millisecond)
	if err := s.Writable(); err != nil {
		t.Fatalf("a probe in flight for 0.5 s: %v; want nil", err)
	}
	tick(time.Second)
	if err := s.Writable(); !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), "not finished in 1.5s") {
		t.Fatalf("a probe in flight for 1.5 s: %v; want ErrNotWritable, not finished", err)
	}
	if f.syncs.Load() != syncs {
		t.Fatal("a second probe started while one was in flight")
	}
	f.stall.Store(false)
	close(f.release)
	if err := <-done; err != nil {
		t.Fatalf("the stalled probe, let go: %v", err)
	}
	if err := s.Writable(); err != nil {
		t.Fatalf("after the stall: %v", err)
	}
}
