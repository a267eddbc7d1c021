package index

import (
	"math"
	"strconv"
	"testing"

	"github.com/edgerec/edgerec/model"
)

// importEntries adds users × perUser history entries with w: user u<n>,
// item i<k> viewed at time k.
func importEntries(tb testing.TB, w *HistoryWriter, users, perUser int) {
	tb.Helper()
	var user []byte
	e := HistoryEntry{Type: model.EventView, Value: float32(math.NaN())}
	for u := range users {
		user = strconv.AppendInt(append(user[:0], 'u'), int64(u), 10)
		for k := range perUser {
			e.Item = strconv.AppendInt(append(e.Item[:0], 'i'), int64(k), 10)
			e.TS = int64(1000 + k)
			if err := w.Add(user, &e); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// TestHistoryWriterBatches: an import larger than one batch (it commits
// every 256 KiB and reuses the batch) keeps every entry.
func TestHistoryWriterBatches(t *testing.T) {
	const users, perUser = 40, 500 // about 1 MB of batch: four commits
	s := openState(t, t.TempDir(), StateOptions{NoSync: true})
	defer closeState(t, s)
	w := s.NewHistoryWriter()
	importEntries(t, w, users, perUser)
	must(t, w.Close())
	if w.Entries() != users*perUser {
		t.Fatalf("%d entries written", w.Entries())
	}
	for _, u := range []int{0, 17, users - 1} {
		var h History
		must(t, s.LoadHistory(&h, []byte("u"+strconv.Itoa(u)), perUser+1))
		e := h.Entries()
		if len(e) != perUser || string(e[0].Item) != "i"+strconv.Itoa(perUser-1) || string(e[perUser-1].Item) != "i0" {
			t.Fatalf("history of u%d: %d entries, %s", u, len(e), entryString(e[:min(len(e), 3)]))
		}
	}
}

// BenchmarkHistoryImport writes 50,000 history entries (a snapshot's
// histories, as a swap imports them) into a state store; B/op is what one
// import allocates.
func BenchmarkHistoryImport(b *testing.B) {
	s := openState(b, b.TempDir(), StateOptions{NoSync: true})
	defer closeState(b, s)
	b.ReportAllocs()
	for b.Loop() {
		w := s.NewHistoryWriter()
		importEntries(b, w, 100, 500)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
