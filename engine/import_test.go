package engine

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// logBuffer collects an engine's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const importedLog = "imported the build's histories"

// histories returns the state store's history of every user, rendered.
func histories(t *testing.T, st *index.State, users []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	var h index.History
	for _, u := range users {
		if err := st.LoadHistory(&h, []byte(u), maxHistoryRead); err != nil {
			t.Fatal(err)
		}
		m[u] = renderHistory(h.Entries())
	}
	return m
}

func renderHistory(es []index.HistoryEntry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Type.String() + ":" + string(e.Item) + "@" + strconv.FormatInt(e.TS, 10) + "=" +
			strconv.FormatFloat(float64(e.Value), 'g', -1, 32) + " ")
	}
	return b.String()
}

// TestImportHistories: the first load of a snapshot brings its users'
// histories into the state store, so a customer of the build data gets
// personal answers without posting an event; a later load (another
// engine, a restart, on the same state) skips the import by its mark;
// the build's events posted after the import change no history.
func TestImportHistories(t *testing.T) {
	root := shopRoot(t)
	st := openState(t, t.TempDir(), index.StateOptions{})
	var logs logBuffer
	e1, err := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer e1.Close() // closing twice is harmless
	m, err := e1.LoadSnapshot(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if m.Histories < 400 || !strings.Contains(logs.String(), importedLog) {
		t.Fatalf("%d histories in the snapshot; log:\n%s", m.Histories, logs.String())
	}
	if m.HistoriesChecksum == "" {
		t.Fatal("the build wrote no histories' checksum")
	}
	mark := "imported/h" + m.HistoriesChecksum
	if _, ok, err := st.AppendMeta(nil, []byte(mark)); err != nil || !ok {
		t.Fatalf("mark %s: %v, %v", mark, ok, err)
	}
	// The snapshot's histories are the store's now.
	var users []string
	built := map[string]string{}
	ref := e1.live.Acquire()
	err = ref.ScanHistories(func(user []byte, entries []index.HistoryEntry) error {
		users = append(users, string(user))
		built[string(user)] = renderHistory(entries)
		return nil
	})
	ref.Release()
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != m.Histories {
		t.Fatalf("scanned %d histories; the manifest says %d", len(users), m.Histories)
	}
	imported := histories(t, st, users)
	for _, u := range users {
		if imported[u] != built[u] {
			t.Fatalf("history of %s in the store:\n%s\nin the snapshot:\n%s", u, imported[u], built[u])
		}
	}
	// Customers of the build get personal answers, without events posted.
	v := e1.Acquire()
	var r Recs
	fallbacks := 0
	for _, u := range users {
		if err := v.Personal([]byte(u), &RecRequest{K: 10}, &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Picks) != 10 || r.Picks[0].Reason != ReasonHistory {
			t.Fatalf("%s: %+v", u, picks(v, &r))
		}
		if r.Fallback() {
			fallbacks++
		}
	}
	// The test is not vacuous: someone else gets the fallback.
	if err := v.Personal([]byte("nobody"), &RecRequest{K: 10}, &r); err != nil || r.Picks[0].Reason != ReasonPopular {
		t.Fatalf("nobody: %+v, %v", picks(v, &r), err)
	}
	v.Release()
	if fallbacks > 0 {
		t.Errorf("%d of %d customers of the build got popular items among their 10", fallbacks, len(users))
	}
	e1.Close()

	// Another engine on the same state, as after a restart: the mark
	// says the import is done.
	logs = logBuffer{}
	e2 := newEngine(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, st, root)
	if strings.Contains(logs.String(), importedLog) {
		t.Fatalf("the second load imported again:\n%s", logs.String())
	}
	if p := personal(t, e2, users[0], 5); p[0].Reason != "history" {
		t.Fatalf("%s after a restart: %+v", users[0], p)
	}
	// A rebuild of the same events with other lists (k 20): the same
	// histories, so nothing is imported again; a build of other events
	// imports its own.
	events, items := shopFile(t, shopEventsFile), shopFile(t, shopItemsFile)
	same := t.TempDir()
	if m2 := buildRoot(t, same, index.BuildOptions{K: 20}, items, events); m2.HistoriesChecksum != m.HistoriesChecksum || m2.Checksum == m.Checksum {
		t.Fatalf("rebuild with k 20: histories' sum %s, store's %s; first build %s, %s",
			m2.HistoriesChecksum, m2.Checksum, m.HistoriesChecksum, m.Checksum)
	}
	if _, err := e2.LoadSnapshot(context.Background(), same); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), importedLog) {
		t.Fatalf("a rebuild with the same histories imported again:\n%s", logs.String())
	}
	var first *model.Event
	readEventFile(t, events, func(x *model.Event) {
		if first == nil {
			c := *x
			c.Item = bytes.Clone(x.Item)
			first = &c
		}
	})
	extra := filepath.Join(t.TempDir(), "extra.csv")
	line := "user_id,item_id,event,ts,value,basket\nnew-customer," + string(first.Item) + ",view," + strconv.FormatInt(first.TS, 10) + ",,\n"
	if err := os.WriteFile(extra, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	buildRoot(t, other, index.BuildOptions{}, items, events, extra)
	if _, err := e2.LoadSnapshot(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), importedLog) {
		t.Fatalf("a build with other histories did not import them:\n%s", logs.String())
	}

	// The shop sends the events the build read: each is the entry the
	// import wrote, and no history changes.
	var batch []index.StateEvent
	flush := func() {
		t.Helper()
		if err := e2.Ingest(batch, nil, false); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	readEventFile(t, shopFile(t, shopEventsFile), func(x *model.Event) {
		batch = append(batch, index.StateEvent{User: bytes.Clone(x.User), Item: bytes.Clone(x.Item), Type: x.Type, TS: x.TS,
			Value: x.Value, HasValue: x.HasValue, Basket: bytes.Clone(x.Basket)})
		if len(batch) == 1000 {
			flush()
		}
	})
	flush()
	after := histories(t, st, users)
	for _, u := range users {
		if after[u] != imported[u] {
			t.Fatalf("history of %s after the build's events were posted:\n%s\nimported:\n%s", u, after[u], imported[u])
		}
	}
}
