package index

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
	"unicode/utf8"

	"github.com/edgerec/edgerec/model"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; crashers found by fuzzing
// stay there as regression cases.

func FuzzEventReaderCSV(f *testing.F) {
	f.Add([]byte("user_id,item_id,event,ts,value,basket\n196,242,rating,881250949,3,\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkEventReader(t, data)
	})
}

func FuzzEventReaderNDJSON(f *testing.F) {
	f.Add([]byte(`{"user_id":"196","item_id":"242","event":"rating","ts":881250949,"value":3}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Most mutations of the first byte would turn the input into CSV:
		// a leading empty object keeps it NDJSON.
		checkEventReader(t, append([]byte("{}\n"), data...))
	})
}

// checkEventReader reads all events of data and checks what the reader
// promises: no panic, an end, and only valid events.
func checkEventReader(t *testing.T, data []byte) {
	r, err := NewEventReader(bytes.NewReader(data), "fuzz")
	if err != nil {
		if errors.Is(err, ErrBadLine) || errors.Is(err, ErrBadFormat) {
			return
		}
		t.Fatalf("unexpected error: %v", err)
	}
	var ev model.Event
	prev := 0
	// Each call reads at least one line.
	for calls := 0; ; calls++ {
		if calls > len(data)+1 {
			t.Fatalf("more than %d calls to Next", calls)
		}
		err := r.Next(&ev)
		if err == io.EOF {
			return
		}
		if r.Line() <= prev {
			t.Fatalf("line %d after line %d", r.Line(), prev)
		}
		prev = r.Line()
		var le *LineError
		if errors.As(err, &le) {
			if le.Line != r.Line() || le.Reason == "" {
				t.Fatalf("bad LineError %+v at line %d", le, r.Line())
			}
			continue
		}
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		for _, id := range [][]byte{ev.User, ev.Item} {
			if len(id) == 0 || len(id) > MaxIDLen || !utf8.Valid(id) {
				t.Fatalf("line %d: bad id %q", r.Line(), id)
			}
		}
		if len(ev.Basket) > MaxIDLen || !utf8.Valid(ev.Basket) {
			t.Fatalf("line %d: bad basket %q", r.Line(), ev.Basket)
		}
		if ev.Type == model.EventUnknown || ev.Type.String() == "unknown" {
			t.Fatalf("line %d: unknown type %d", r.Line(), ev.Type)
		}
		if ev.HasValue && (math.IsNaN(ev.Value) || math.IsInf(ev.Value, 0)) {
			t.Fatalf("line %d: value %v", r.Line(), ev.Value)
		}
	}
}
