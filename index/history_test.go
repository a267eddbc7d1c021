package index

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/model"
)

// entryString renders history entries as "type:item@ts=value …".
func entryString(es []HistoryEntry) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%s@%d", e.Type, e.Item, e.TS)
		if !math.IsNaN(float64(e.Value)) {
			fmt.Fprintf(&b, "=%g", e.Value)
		}
	}
	return b.String()
}

// scanHistories returns the snapshot's histories as entry strings, and
// its users in scan order.
func scanHistories(t testing.TB, s *Snapshot) (map[string]string, []string) {
	t.Helper()
	m := map[string]string{}
	var users []string
	err := s.ScanHistories(func(user []byte, entries []HistoryEntry) error {
		m[string(user)] = entryString(entries)
		users = append(users, string(user))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, users
}

// loadHistory returns user's newest max entries of the state store as an
// entry string.
func loadHistory(t testing.TB, s *State, user string, max int) string {
	t.Helper()
	var h History
	if err := s.LoadHistory(&h, []byte(user), max); err != nil {
		t.Fatal(err)
	}
	return entryString(h.Entries())
}

// historyEvents are the events of TestBuildHistories, in arrival order.
func historyEvents() []model.Event {
	ev := func(user, item string, typ model.EventType, ts int64, value float64) model.Event {
		e := model.Event{User: []byte(user), Item: []byte(item), Type: typ, TS: ts}
		if !math.IsNaN(value) {
			e.Value, e.HasValue = value, true
		}
		return e
	}
	none := math.NaN()
	return []model.Event{
		ev("u1", "a", model.EventView, 100, none),
		ev("u1", "b", model.EventView, 300, none),
		// One second, several events: the store orders them by content.
		ev("u1", "c", model.EventView, 200, none),
		ev("u1", "d", model.EventView, 200, none),
		ev("u1", "e", model.EventView, 200, none),
		// The same event twice (a retry, with another value): one entry,
		// the later arrival's, as the store keeps it; another type of
		// the same item and second is an entry of its own.
		ev("u1", "f", model.EventPurchase, 400, 10),
		ev("u1", "f", model.EventCart, 400, none),
		ev("u1", "f", model.EventPurchase, 400, 20),
		ev("u1", "a", model.EventView, 50, none), // the oldest, beyond the cut
		ev("u2", "a", model.EventView, 10, none),
		ev("u2", "b", model.EventRating, 20, 4),
		ev("u10", "c", model.EventView, 30, none),
	}
}

// TestBuildHistories: a build writes each user's newest events as the
// state store keeps them, newest first in its key order, one entry per
// (time, type, item), cut at MaxUserItems; ScanHistories reads them back.
func TestBuildHistories(t *testing.T) {
	const maxItems = 6
	b, err := NewBuilder(BuildOptions{MaxUserItems: maxItems})
	if err != nil {
		t.Fatal(err)
	}
	evs := historyEvents()
	for i := range evs {
		b.AddEvent(&evs[i])
	}
	// No interest under the weights: neither kept by the build nor in a
	// history; a user with only such events has none.
	b.AddEvent(&model.Event{User: []byte("u2"), Item: []byte("z"), Type: model.EventImpression, TS: 99})
	b.AddEvent(&model.Event{User: []byte("u3"), Item: []byte("a"), Type: model.EventImpression, TS: 99})
	s := openBuilt(t, b, t.TempDir())
	got, users := scanHistories(t, s)
	if s.Manifest().Histories != 3 || strings.Join(users, " ") != "u1 u10 u2" {
		t.Fatalf("histories of %q; manifest counts %d", users, s.Manifest().Histories)
	}
	cde := func() string {
		// The entries of second 200, in key order: ^h ascending.
		var parts []string
		for _, it := range strings.Fields(byHash(200, "c", "d", "e")) {
			item, _, _ := strings.Cut(it, "@")
			parts = append(parts, "view:"+item+"@200")
		}
		return strings.Join(parts, " ")
	}()
	f400 := "purchase:f@400=20 cart:f@400"
	if histHash(model.EventCart, "f") > histHash(model.EventPurchase, "f") {
		f400 = "cart:f@400 purchase:f@400=20"
	}
	want := map[string]string{
		"u1":  f400 + " view:b@300 " + cde + " view:a@100", // 7 entries: cut at 6
		"u2":  "rating:b@20=4 view:a@10",
		"u10": "view:c@30",
	}
	want["u1"] = strings.Join(strings.Fields(want["u1"])[:maxItems], " ")
	for user, w := range want {
		if got[user] != w {
			t.Errorf("history of %s:\n%s\nwant\n%s", user, got[user], w)
		}
	}
	// The same events posted to a state store read the same.
	st := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, st)
	must(t, st.AppendEvents(stateEvents(evs)))
	for user := range want {
		if h := loadHistory(t, st, user, maxItems); h != got[user] {
			t.Errorf("history of %s in the state store:\n%s\nin the snapshot\n%s", user, h, got[user])
		}
	}
}

func stateEvents(evs []model.Event) []StateEvent {
	out := make([]StateEvent, len(evs))
	for i, e := range evs {
		out[i] = StateEvent{User: e.User, Item: e.Item, Type: e.Type, TS: e.TS, Value: e.Value, HasValue: e.HasValue, Basket: e.Basket}
	}
	return out
}

// randomEvents are n events of users u0…u29 over items i0…i19 in a few
// hundred seconds, so that many share a second, with repeats.
func randomEvents(seed uint64, n int) []model.Event {
	r := rand.New(rand.NewPCG(seed, 2))
	evs := make([]model.Event, 0, n)
	for range n {
		e := model.Event{
			User: []byte("u" + strconv.Itoa(r.IntN(30))),
			Item: []byte("i" + strconv.Itoa(r.IntN(20))),
			Type: [...]model.EventType{model.EventView, model.EventClick, model.EventCart, model.EventPurchase, model.EventRating}[r.IntN(5)],
			TS:   1_700_000_000 + int64(r.IntN(300)),
		}
		if e.Type == model.EventPurchase || e.Type == model.EventRating {
			e.Value, e.HasValue = float64(r.IntN(8))/2, true
		}
		evs = append(evs, e)
	}
	return evs
}

// TestHistoryImport: a snapshot's histories written with a HistoryWriter
// read as the same events posted with AppendEvents do, in the same
// order; an import repeated, or the events posted after it, change
// nothing.
func TestHistoryImport(t *testing.T) {
	const maxItems = 25
	evs := randomEvents(1, 3000)
	b, err := NewBuilder(BuildOptions{MaxUserItems: maxItems})
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		b.AddEvent(&evs[i])
	}
	snap := openBuilt(t, b, t.TempDir())
	built, users := scanHistories(t, snap)
	if len(users) != 30 {
		t.Fatalf("%d histories", len(users))
	}
	importInto := func(st *State) {
		t.Helper()
		w := st.NewHistoryWriter()
		n := 0
		err := snap.ScanHistories(func(user []byte, entries []HistoryEntry) error {
			for i := range entries {
				if err := w.Add(user, &entries[i]); err != nil {
					return err
				}
			}
			n += len(entries)
			return nil
		})
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		if w.Entries() != n || n != 30*maxItems {
			t.Fatalf("writer counted %d entries of %d; want %d", w.Entries(), n, 30*maxItems)
		}
	}
	imported := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, imported)
	importInto(imported)
	posted := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, posted)
	must(t, posted.AppendEvents(stateEvents(evs)))
	for _, user := range users {
		got := loadHistory(t, imported, user, maxHistoryLen)
		if want := loadHistory(t, posted, user, maxItems); got != want || got != built[user] {
			t.Fatalf("history of %s imported:\n%s\nposted:\n%s\nin the snapshot:\n%s", user, got, want, built[user])
		}
	}
	// Again: the same keys, nothing added.
	importInto(imported)
	for _, user := range users {
		if got := loadHistory(t, imported, user, maxHistoryLen); got != built[user] {
			t.Fatalf("history of %s imported twice:\n%s\nonce:\n%s", user, got, built[user])
		}
	}
	// The events posted on top (a shop sending what the build read):
	// the store holds what posting alone gives.
	must(t, imported.AppendEvents(stateEvents(evs)))
	for _, user := range users {
		got, want := loadHistory(t, imported, user, maxHistoryLen), loadHistory(t, posted, user, maxHistoryLen)
		if got != want {
			t.Fatalf("history of %s imported and posted:\n%s\nposted:\n%s", user, got, want)
		}
		if !strings.HasPrefix(got, built[user]) {
			t.Fatalf("history of %s: the snapshot's is not its newest part", user)
		}
	}
	// Entries share seconds, so the order within one was tested.
	shared := 0
	for _, h := range built {
		seconds := map[string]bool{}
		for _, e := range strings.Fields(h) {
			_, ts, _ := strings.Cut(e, "@")
			ts, _, _ = strings.Cut(ts, "=")
			if seconds[ts] {
				shared++
			}
			seconds[ts] = true
		}
	}
	if shared < 10 {
		t.Fatalf("%d entries share a second with another: the test shows little", shared)
	}
}
