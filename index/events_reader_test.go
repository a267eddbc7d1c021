package index

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/edgerec/edgerec/internal/testenv"
	"github.com/edgerec/edgerec/model"
)

// formatEvent renders one event for comparisons: "line user item type
// ts[ v=value][ b=basket]".
func formatEvent(line int, ev *model.Event) string {
	s := fmt.Sprintf("%d %s %s %s %d", line, ev.User, ev.Item, ev.Type, ev.TS)
	if ev.HasValue {
		s += " v=" + strconv.FormatFloat(ev.Value, 'g', -1, 64)
	}
	if ev.Basket != nil {
		s += " b=" + string(ev.Basket)
	}
	return s
}

// readEvents reads all of r and returns each event as formatEvent does and
// each bad line as its error text. A read error fails t.
func readEvents(t testing.TB, r *EventReader) []string {
	t.Helper()
	var got []string
	var ev model.Event
	for {
		err := r.Next(&ev)
		if err == io.EOF {
			return got
		}
		var le *LineError
		switch {
		case errors.As(err, &le):
			if !errors.Is(err, ErrBadLine) {
				t.Fatalf("LineError %v does not wrap ErrBadLine", err)
			}
			if le.Line != r.Line() {
				t.Fatalf("LineError line %d, Line() %d", le.Line, r.Line())
			}
			got = append(got, err.Error())
		case err != nil:
			t.Fatalf("unexpected error: %v", err)
		default:
			got = append(got, formatEvent(r.Line(), &ev))
		}
	}
}

func TestEventReaderCSV(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		r, err := NewEventReader(strings.NewReader(in), "events.csv")
		if err != nil {
			t.Fatalf("NewEventReader: %v", err)
		}
		got := readEvents(t, r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\ngot\n\t%s\nwant\n\t%s", in, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}

	// The common schema.
	f("user_id,item_id,event,ts,value,basket\n196,242,rating,881250949,3,\n1,citrus fruit,purchase,1,,1\n",
		"2 196 242 rating 881250949 v=3",
		"3 1 citrus fruit purchase 1 b=1")
	// Header only, and empty input.
	f("user_id,item_id,event\n")
	f("")
	f(" \n\t\n")
	// No trailing newline.
	f("user_id,item_id,event\nu,i,view", "2 u i view 0")
	// Columns in any order, extra columns ignored, names trimmed and case-insensitive.
	f("basket,Event, ts ,extra,item_id,user_id,value\nb1,cart,100,x,i1,u1,2.5\n",
		"2 u1 i1 cart 100 v=2.5 b=b1")
	// Aliases and no optional columns.
	f("user,item,type\nu1,i1,purchase\n", "2 u1 i1 purchase 0")
	// Empty optional fields.
	f("user_id,item_id,event,ts,value,basket\nu,i,view,,,\n", "2 u i view 0")
	// Event aliases, case and spaces.
	f("user_id,item_id,event\nu,i,add_to_cart\nu,i,ORDER\nu,i, View \n",
		"2 u i cart 0", "3 u i purchase 0", "4 u i view 0")
	// ts as RFC 3339 and as a decimal number; value with spaces and exponent.
	f("user_id,item_id,event,ts,value\nu,i,view,2024-01-02T03:04:05Z,1e2\nu,i,view,1700000000.75, -1.5 \n",
		"2 u i view 1704164645 v=100", "3 u i view 1700000000 v=-1.5")
	// Quoted fields with commas, quotes and line ends; line numbers after them.
	f("user_id,item_id,event,ts\n\"u,1\",\"i \"\"x\"\"\",view,1\n\"u\n2\",\"i\r\n2\",view,2\nu3,i3,view,3\n",
		"2 u,1 i \"x\" view 1",
		"3 u\n2 i\n2 view 2",
		"6 u3 i3 view 3")
	// A quoted header, CRLF line ends, blank lines, a byte order mark.
	f("\ufeff\"user_id\",item_id,event\r\n\r\nu1,i1,view\r\n\r\n\r\nu2,i2,view\r\n",
		"3 u1 i1 view 0", "6 u2 i2 view 0")
	// Leading blank lines count.
	f("\n\nuser_id,item_id,event\nu,i,view\n", "4 u i view 0")

	// Bad lines: each is reported and the reader goes on.
	const h = "user_id,item_id,event,ts,value,basket\n"
	f(h+"u,i,buy,1,,\nu,i,view,1,,\n",
		`events.csv:2: unknown event type "buy"`, "3 u i view 1")
	f(h+"u,i,,1,,\n", `events.csv:2: empty event`)
	f(h+",i,view,1,,\n", `events.csv:2: empty user_id`)
	f(h+"u,,view,1,,\n", `events.csv:2: empty item_id`)
	f(h+"u,i,view,abc,,\n", `events.csv:2: bad ts "abc"`)
	f(h+"u,i,view,1e300,,\n", `events.csv:2: bad ts "1e300"`)
	f(h+"u,i,view,NaN,,\n", `events.csv:2: bad ts "NaN"`)
	f(h+"u,i,view,1,x,\n", `events.csv:2: bad value "x"`)
	f(h+"u,i,view,1,NaN,\n", `events.csv:2: bad value "NaN"`)
	f(h+"u,i,view,1,-Inf,\n", `events.csv:2: bad value "-Inf"`)
	f(h+"u,i,view,1,1e400,\n", `events.csv:2: bad value "1e400"`)
	f(h+"u,i,view,1\n", `events.csv:2: wrong number of fields: 4, want 6`)
	f(h+"u,i,view,1,,,\n", `events.csv:2: wrong number of fields: 7, want 6`)
	f(h+"u,\xff,view,1,,\n", `events.csv:2: invalid UTF-8 in item_id`)
	f(h+"\xc3,i,view,1,,\n", `events.csv:2: invalid UTF-8 in user_id`)
	f(h+"u,i,view,1,,\xff\n", `events.csv:2: invalid UTF-8 in basket`)
	f(h+strings.Repeat("u", 256)+",i,view,1,,\n", "2 "+strings.Repeat("u", 256)+" i view 1")
	f(h+strings.Repeat("u", 257)+",i,view,1,,\n", `events.csv:2: user_id longer than 256 bytes`)
	f(h+"u,"+strings.Repeat("i", 300)+",view,1,,\n", `events.csv:2: item_id longer than 256 bytes`)
	f(h+"u,i,view,1,,"+strings.Repeat("b", 257)+"\n", `events.csv:2: basket longer than 256 bytes`)
	f(h+"u,i,"+strings.Repeat("x", 100)+",1,,\n", `events.csv:2: unknown event type "`+strings.Repeat("x", 64)+`"…`)
	// Malformed quoting, as encoding/csv sees it.
	f(h+"u\"x,i,view,1,,\nu,i,view,2,,\n", `events.csv:2: bare " in unquoted field`, "3 u i view 2")
	f(h+"\"u\"x,i,view,1,,\nu,i,view,2,,\n", `events.csv:2: extraneous " in quoted field`, "3 u i view 2")
	f(h+"u,i,view,1,,\"b\nu,i,view,2,,\n", `events.csv:2: missing closing " in quoted field`)
	// Several bad lines in a row keep their numbers.
	f(h+"a\nb\n\nu,i,view,4,,\nc\n",
		`events.csv:2: wrong number of fields: 1, want 6`,
		`events.csv:3: wrong number of fields: 1, want 6`,
		"5 u i view 4",
		`events.csv:6: wrong number of fields: 1, want 6`)
}

func TestEventReaderNDJSON(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		r, err := NewEventReader(strings.NewReader(in), "events.ndjson")
		if err != nil {
			t.Fatalf("NewEventReader: %v", err)
		}
		got := readEvents(t, r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\ngot\n\t%s\nwant\n\t%s", in, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}

	f(`{"user_id":"196","item_id":"242","event":"rating","ts":881250949,"value":3}`+"\n"+
		`{"user_id":"1","item_id":"citrus fruit","event":"purchase","ts":1,"basket":"1"}`,
		"1 196 242 rating 881250949 v=3",
		"2 1 citrus fruit purchase 1 b=1")
	// Aliases, numbers as ids, keys in any order, extra keys ignored.
	f(`{"extra":{"a":[1,2]},"type":"view","item":42,"user":7,"basket":9}`, "1 7 42 view 0 b=9")
	// user_id wins over user.
	f(`{"user":"a","user_id":"b","item_id":"i","event":"view"}`, "1 b i view 0")
	// ts as RFC 3339, numeric string, float; value as numeric string; nulls.
	f(`{"user_id":"u","item_id":"i","event":"view","ts":"2024-01-02T03:04:05+01:00","value":"4.5"}`+"\n"+
		`{"user_id":"u","item_id":"i","event":"view","ts":"1700000000","value":null,"basket":null}`+"\n"+
		`{"user_id":"u","item_id":"i","event":"view","ts":1.7e9,"value":""}`+"\n"+
		`{"user_id":"u","item_id":"i","event":"view","ts":null,"basket":""}`,
		"1 u i view 1704161045 v=4.5",
		"2 u i view 1700000000",
		"3 u i view 1700000000",
		"4 u i view 0")
	// Escapes and blank lines, CRLF, white space around the object.
	f("\n  {\"user_id\":\"a\\\"b\",\"item_id\":\"\\u00e9\",\"event\":\"view\"}  \r\n\r\n\t\n{\"user_id\":\"u\",\"item_id\":\"i\",\"event\":\"cart\"}\n",
		"2 a\"b é view 0", "5 u i cart 0")

	// Bad lines.
	ok := `{"user_id":"u","item_id":"i","event":"view"}`
	f(`{"user_id":"u","item_id":"i","event":"buy"}`+"\n"+ok,
		`events.ndjson:1: unknown event type "buy"`, "2 u i view 0")
	f(`{"user_id":"u","item_id":"i"}`, `events.ndjson:1: missing event`)
	f(`{"user_id":"u","item_id":"i","event":1}`, `events.ndjson:1: bad event: want a string, got number`)
	f(`{"user_id":"","item_id":"i","event":"view"}`, `events.ndjson:1: empty user_id`)
	f(`{"item_id":"i","event":"view"}`, `events.ndjson:1: missing user_id`)
	f(`{"user_id":null,"item_id":"i","event":"view"}`, `events.ndjson:1: missing user_id`)
	f(`{"user_id":"u","event":"view"}`, `events.ndjson:1: missing item_id`)
	f(`{"user_id":"u","item_id":"","event":"view"}`, `events.ndjson:1: empty item_id`)
	f(`{"user_id":["u"],"item_id":"i","event":"view"}`, `events.ndjson:1: bad user_id: want a string or a number, got array`)
	f("{\"user_id\":\"u\",\"item_id\":\"\xff\",\"event\":\"view\"}", `events.ndjson:1: invalid UTF-8 in item_id`)
	f(`{"user_id":"\ud800","item_id":"i","event":"view"}`, `1 \ud800 i view 0`) // fastjson keeps a lone surrogate escape as written
	f(`{"user_id":"`+strings.Repeat("u", 257)+`","item_id":"i","event":"view"}`, `events.ndjson:1: user_id longer than 256 bytes`)
	f(`{"user_id":"u","item_id":"i","event":"view","ts":"abc"}`, `events.ndjson:1: bad ts "abc"`)
	f(`{"user_id":"u","item_id":"i","event":"view","ts":1e300}`, `events.ndjson:1: bad ts "1e300"`)
	f(`{"user_id":"u","item_id":"i","event":"view","ts":true}`, `events.ndjson:1: bad ts: want a number or a string, got true`)
	f(`{"user_id":"u","item_id":"i","event":"view","value":"x"}`, `events.ndjson:1: bad value "x"`)
	f(`{"user_id":"u","item_id":"i","event":"view","value":NaN}`, `events.ndjson:1: bad value "NaN"`)
	f(`{"user_id":"u","item_id":"i","event":"view","value":"Inf"}`, `events.ndjson:1: bad value "Inf"`)
	f(`{"user_id":"u","item_id":"i","event":"view","value":[]}`, `events.ndjson:1: bad value: want a number, got array`)
	f(`{"user_id":"u","item_id":"i","event":"view","basket":{}}`, `events.ndjson:1: bad basket: want a string or a number, got object`)
	f(`{"user_id":"u","item_id":"i","event":"view","basket":"`+strings.Repeat("b", 257)+`"}`, `events.ndjson:1: basket longer than 256 bytes`)
	f("{\"user_id\":\"u\"\n"+ok,
		`events.ndjson:1: malformed JSON: cannot parse JSON: cannot parse object: unexpected end of object; unparsed tail: ""`,
		"2 u i view 0")
	f(`{"user_id":"u","item_id":"i","event":"view"} x`, `events.ndjson:1: malformed JSON: unexpected tail: "x"`)
	f(ok+"\n[1]\n\"s\"\n", "1 u i view 0", `events.ndjson:2: not a JSON object`, `events.ndjson:3: not a JSON object`)
}

func TestEventReaderFormatErrors(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		_, err := NewEventReader(strings.NewReader(in), "events.csv")
		if err == nil {
			t.Fatalf("input %q: no error", in)
		}
		if err.Error() != want {
			t.Fatalf("input %q\ngot  %s\nwant %s", in, err, want)
		}
	}
	f("user_id,event,ts\nu,view,1\n",
		`cannot read events from "events.csv": header "user_id,event,ts" has no column "item_id": index: bad input format`)
	f("item_id,event\n", `cannot read events from "events.csv": header "item_id,event" has no column "user_id": index: bad input format`)
	f("user_id,item_id\n", `cannot read events from "events.csv": header "user_id,item_id" has no column "event": index: bad input format`)
	f("user_id,item_id,event,USER\n", `cannot read events from "events.csv": duplicate column "USER" in header: index: bad input format`)
	f(` [{"user_id":"u"}]`, `cannot read events from "events.csv": a JSON array is not supported, write one JSON object per line (NDJSON): index: bad input format`)
	f("\"user_id,item_id,event\n", `cannot read header of "events.csv": events.csv:1: missing closing " in quoted field`)

	_, err := NewEventReader(strings.NewReader("user_id\n"), "x")
	if !errors.Is(err, ErrBadFormat) {
		t.Fatalf("error %v does not wrap ErrBadFormat", err)
	}
	_, err = NewItemReader(strings.NewReader("title\n"), "items.csv")
	if !errors.Is(err, ErrBadFormat) || !strings.Contains(err.Error(), `no column "item_id"`) {
		t.Fatalf("unexpected error %v", err)
	}
}

func TestEventReaderLongLines(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		r, err := NewEventReader(strings.NewReader(in), "e")
		if err != nil {
			t.Fatalf("NewEventReader: %v", err)
		}
		got := readEvents(t, r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}
	long := strings.Repeat("x", 100<<10)    // over the read buffer, under MaxLineLen
	huge := strings.Repeat("x", MaxLineLen) // over MaxLineLen with its line end

	// CSV: a long line is read; a huge one is skipped, also as the last line.
	f("user_id,item_id,event,note\nu,i,view,"+long+"\nu,i,view,"+huge+"\nu,i,cart,\nu,i,view,"+huge,
		"2 u i view 0",
		"e:3: line longer than 1048576 bytes",
		"4 u i cart 0",
		"e:5: line longer than 1048576 bytes")
	// A quoted field over several lines is bounded too.
	f("user_id,item_id,event,note\nu,i,view,\""+strings.Repeat(long+"\n", 11)+long+"\"\nu,i,cart,\n",
		"e:2: record longer than 1048576 bytes",
		// The rest of the open field is read as a record.
		"e:13: bare \" in unquoted field",
		"14 u i cart 0")
	// NDJSON.
	ok := `{"user_id":"u","item_id":"i","event":"view"}`
	f(`{"user_id":"u","item_id":"i","event":"view","note":"`+long+`"}`+"\n"+
		`{"note":"`+huge+`"}`+"\n"+ok,
		"1 u i view 0",
		"e:2: line longer than 1048576 bytes",
		"3 u i view 0")
}

func TestEventReaderReadError(t *testing.T) {
	in := "user_id,item_id,event\nu,i,view\nu,i,cart\n"
	for _, in := range []string{in, `{"user_id":"u","item_id":"i","event":"view"}` + "\n" + `{"user_id":"u","item_id":"i","event":"cart"}` + "\n"} {
		boom := errors.New("boom")
		src := io.MultiReader(strings.NewReader(in), iotest.ErrReader(boom))
		r, err := NewEventReader(iotest.OneByteReader(src), "e")
		if err != nil {
			t.Fatalf("NewEventReader: %v", err)
		}
		var ev model.Event
		for i := 0; i < 2; i++ {
			if err := r.Next(&ev); err != nil {
				t.Fatalf("Next %d: %v", i, err)
			}
		}
		for i := 0; i < 2; i++ {
			err := r.Next(&ev)
			if !errors.Is(err, boom) || errors.Is(err, ErrBadLine) || err.Error() != `cannot read events from "e": boom` {
				t.Fatalf("got %v, want the read error", err)
			}
		}
	}
}

// TestEventReaderAllocs pins the allocation budget of Next: none once warm,
// as the event slices point into the reader's buffers.
func TestEventReaderAllocs(t *testing.T) {
	for _, format := range []string{"csv", "ndjson"} {
		in := genEvents(format, 2000)
		r, err := NewEventReader(bytes.NewReader(in), "e")
		if err != nil {
			t.Fatalf("NewEventReader: %v", err)
		}
		var ev model.Event
		for i := 0; i < 10; i++ {
			if err := r.Next(&ev); err != nil {
				t.Fatalf("Next: %v", err)
			}
		}
		allocs := testing.AllocsPerRun(1000, func() {
			if err := r.Next(&ev); err != nil {
				t.Fatalf("Next: %v", err)
			}
		})
		if allocs != 0 {
			t.Fatalf("%s: %v allocs per event, want 0", format, allocs)
		}
	}
}

func TestEventReaderFixtures(t *testing.T) {
	read := func(name string) []string {
		t.Helper()
		rc, err := OpenInput(filepath.Join("testdata", "input", name))
		if err != nil {
			t.Fatalf("OpenInput: %v", err)
		}
		defer rc.Close()
		r, err := NewEventReader(rc, name)
		if err != nil {
			t.Fatalf("NewEventReader: %v", err)
		}
		var got []string
		var ev model.Event
		for {
			err := r.Next(&ev)
			if err == io.EOF {
				return got
			}
			if err != nil {
				got = append(got, "error "+err.(*LineError).Reason)
				continue
			}
			got = append(got, formatEvent(0, &ev))
		}
	}
	csvEvents := read("events.csv")
	jsonEvents := read("events.ndjson")
	if len(csvEvents) != 8 {
		t.Fatalf("events.csv: got %d records, want 8:\n%s", len(csvEvents), strings.Join(csvEvents, "\n"))
	}
	if !reflect.DeepEqual(csvEvents, jsonEvents) {
		t.Fatalf("events.csv and events.ndjson differ:\n%s\n---\n%s", strings.Join(csvEvents, "\n"), strings.Join(jsonEvents, "\n"))
	}
}

// TestEventReaderShop reads the test shop's gzipped events (views,
// carts, purchases in baskets, quantities) and compares every event with
// the row as encoding/csv reads it.
func TestEventReaderShop(t *testing.T) {
	t.Parallel()
	events, _ := testenv.Shop(t)
	rows := gzipCSV(t, events)
	rc, err := OpenInput(events)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, err := NewEventReader(rc, events)
	if err != nil {
		t.Fatal(err)
	}
	types := map[model.EventType]int{}
	baskets := map[string]bool{}
	var ev model.Event
	for i := 1; ; i++ {
		err := r.Next(&ev)
		if err == io.EOF {
			if i != len(rows) {
				t.Fatalf("read %d events; the file has %d rows", i-1, len(rows)-1)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(rows) {
			t.Fatalf("more events than the file's %d rows", len(rows)-1)
		}
		row := rows[i] // user_id,item_id,event,ts,value,basket
		ts, _ := strconv.ParseInt(row[3], 10, 64)
		value, _ := strconv.ParseFloat(row[4], 64)
		if string(ev.User) != row[0] || string(ev.Item) != row[1] || ev.Type.String() != row[2] || ev.TS != ts ||
			ev.HasValue != (row[4] != "") || ev.Value != value || string(ev.Basket) != row[5] || r.Line() != i+1 {
			t.Fatalf("line %d: %+v; the row is %q", r.Line(), ev, row)
		}
		types[ev.Type]++
		if ev.Basket != nil {
			baskets[string(ev.Basket)] = true
		}
	}
	if types[model.EventView] == 0 || types[model.EventCart] == 0 || types[model.EventPurchase] == 0 || len(baskets) < 100 {
		t.Fatalf("the shop has %v events by type and %d baskets: the test shows little", types, len(baskets))
	}
}
