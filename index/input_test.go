package index

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/edgerec/edgerec/model"
	"github.com/klauspost/compress/zstd"
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

func TestLineError(t *testing.T) {
	err := error(&LineError{File: "events.csv", Line: 17, Reason: `unknown event type "buy"`})
	if got, want := err.Error(), `events.csv:17: unknown event type "buy"`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if !errors.Is(fmt.Errorf("cannot build: %w", err), ErrBadLine) {
		t.Fatalf("LineError does not wrap ErrBadLine")
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

func TestDetectCompression(t *testing.T) {
	f := func(b string, want Compression) {
		t.Helper()
		if got := DetectCompression([]byte(b)); got != want {
			t.Fatalf("DetectCompression(%q) = %s, want %s", b, got, want)
		}
	}
	f("", CompressionNone)
	f("\x1f", CompressionNone)
	f("\x1f\x8b", CompressionGzip)
	f("\x1f\x8b\x08\x00", CompressionGzip)
	f("\x28\xb5\x2f", CompressionNone)
	f("\x28\xb5\x2f\xfd", CompressionZstd)
	f("\x5a\x2a\x4d\x18", CompressionZstd)
	f("user_id,item_id", CompressionNone)
	f("{\"user_id\"", CompressionNone)
}

func TestOpenInput(t *testing.T) {
	const text = "user_id,item_id,event\nu,i,view\n"
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	gz := func(s string) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return buf.Bytes()
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := enc.EncodeAll([]byte(text), nil)
	_ = enc.Close()

	f := func(path, want string) {
		t.Helper()
		rc, err := OpenInput(path)
		if err != nil {
			t.Fatalf("OpenInput(%q): %v", path, err)
		}
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %q: %v", path, err)
		}
		if string(got) != want {
			t.Fatalf("%q: got %q, want %q", path, got, want)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	// The names lie: the magic bytes decide.
	f(write("plain.gz", []byte(text)), text)
	f(write("gzip.csv", gz(text)), text)
	f(write("zstd.txt", zst), text)
	// Concatenated gzip members are one stream.
	f(write("multi.gz", append(gz("ab"), gz("cd")...)), "abcd")
	f(write("empty", nil), "")
	f(write("short", []byte("\x1f")), "\x1f")

	if _, err := OpenInput(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
	path := write("bad.gz", []byte("\x1f\x8b\x08"))
	if _, err := OpenInput(path); err == nil || !strings.Contains(err.Error(), "cannot read gzip header") {
		t.Fatalf("got %v, want a gzip header error", err)
	}

	// A corrupt stream surfaces as a read error from the reader.
	bad := gz(strings.Repeat(text, 100))
	bad[len(bad)-5] ^= 0xff // the length in the trailer
	rc, err := OpenInput(write("corrupt.gz", bad))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, err := NewEventReader(rc, "corrupt.gz")
	if err != nil {
		t.Fatal(err)
	}
	var ev model.Event
	for err == nil || errors.Is(err, ErrBadLine) { // the repeated header lines are bad lines
		err = r.Next(&ev)
	}
	if err == io.EOF || errors.Is(err, ErrBadLine) {
		t.Fatalf("got %v, want a read error", err)
	}

	// NewDecompressReader on a stream, leaving it open.
	for _, b := range [][]byte{[]byte(text), gz(text), zst} {
		rc, err := NewDecompressReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || string(got) != text {
			t.Fatalf("got %q, %v", got, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestItemReaderCSV(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		r, err := NewItemReader(strings.NewReader(in), "items.csv")
		if err != nil {
			t.Fatalf("NewItemReader: %v", err)
		}
		got := readItems(t, r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\ngot\n\t%s\nwant\n\t%s", in, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}
	f("item_id,title,category,price\n1,Toy Story (1995),Animation|Children's|Comedy,\n12,\"Usual Suspects, The (1995)\",Crime|Thriller,9.99\n",
		`2 "1" "Toy Story (1995)" ["Animation" "Children's" "Comedy"]`,
		`3 "12" "Usual Suspects, The (1995)" ["Crime" "Thriller"] price=9.99`)
	// Aliases, any order, attrs in column order, empty values skipped,
	// categories trimmed with empties dropped.
	f("Color,stock,ID,categories,brand,size,Title\nred,5,a1, x || y |,Acme,,Hat\n,,a2,,,L,\n",
		`2 "a1" "Hat" ["x" "y"] stock=5 brand="Acme" attrs=[{Color red}]`,
		`3 "a2" "" [] attrs=[{size L}]`)
	f("id,stock\na,-3\nb,5.0\n", `2 "a" "" [] stock=-3`, `3 "b" "" [] stock=5`)
	// Bad UTF-8 outside ids is replaced.
	f("id,title,brand\na,T\xffx,B\xc3\n", "2 \"a\" \"T\ufffdx\" [] brand=\"B\ufffd\"")
	// Columns without a name are ignored; header names are made valid UTF-8.
	f("id,,\xd3,\n0,x,y,\n", "2 \"0\" \"\" [] attrs=[{\ufffd y}]")
	f("id\n\n")
	f("")

	const h = "item_id,title,price,stock\n"
	f(h+",t,,\n1,t,,\n", `items.csv:2: empty item_id`, `3 "1" "t" []`)
	f(h+"\xff,t,,\n", `items.csv:2: invalid UTF-8 in item_id`)
	f(h+strings.Repeat("1", 257)+",t,,\n", `items.csv:2: item_id longer than 256 bytes`)
	f(h+"1,t,x,\n", `items.csv:2: bad price "x"`)
	f(h+"1,t,-1,\n", `items.csv:2: bad price "-1"`)
	f(h+"1,t,NaN,\n", `items.csv:2: bad price "NaN"`)
	f(h+"1,t,,1.5\n", `items.csv:2: bad stock "1.5"`)
	f(h+"1,t,,x\n", `items.csv:2: bad stock "x"`)
	f(h+"1,t\n", `items.csv:2: wrong number of fields: 2, want 4`)
}

func TestItemReaderNDJSON(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		r, err := NewItemReader(strings.NewReader(in), "items.ndjson")
		if err != nil {
			t.Fatalf("NewItemReader: %v", err)
		}
		got := readItems(t, r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\ngot\n\t%s\nwant\n\t%s", in, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}
	f(`{"item_id":"1","title":"Toy Story (1995)","category":"Animation|Children's|Comedy","price":null}`+"\n\n"+
		`{"id":12,"categories":["Crime"," ","Thriller"],"price":"9.99","stock":3,"brand":"B","color":"red","new":true,"rank":1.5,"tags":["x"],"dims":{},"none":null,"empty":""}`,
		`1 "1" "Toy Story (1995)" ["Animation" "Children's" "Comedy"]`,
		`3 "12" "" ["Crime" "Thriller"] price=9.99 stock=3 brand="B" attrs=[{color red} {new true} {rank 1.5}]`)
	f(`{"item_id":"a","stock":"7"}`, `1 "a" "" [] stock=7`)

	f(`{"title":"t"}`, `items.ndjson:1: missing item_id`)
	f(`{"item_id":""}`, `items.ndjson:1: empty item_id`)
	f(`{"item_id":"a","title":1}`, `items.ndjson:1: bad title: want a string, got number`)
	f(`{"item_id":"a","brand":[]}`, `items.ndjson:1: bad brand: want a string, got array`)
	f(`{"item_id":"a","category":[1]}`, `items.ndjson:1: bad category: want a string, got number`)
	f(`{"item_id":"a","category":{}}`, `items.ndjson:1: bad category: want a string or an array of strings, got object`)
	f(`{"item_id":"a","price":-2}`, `items.ndjson:1: bad price "-2"`)
	f(`{"item_id":"a","price":"x"}`, `items.ndjson:1: bad price "x"`)
	f(`{"item_id":"a","stock":1.5}`, `items.ndjson:1: bad stock "1.5"`)
	f(`{"item_id":"a","stock":1e300}`, `items.ndjson:1: bad stock "1e300"`)
	f("{\"item_id\":\"a\"\n{\"item_id\":\"b\"}",
		`items.ndjson:1: malformed JSON: cannot parse JSON: cannot parse object: unexpected end of object; unparsed tail: ""`,
		`2 "b" "" []`)
}

// readItems reads all of r, rendering items and bad lines as strings.
func readItems(t testing.TB, r *ItemReader) []string {
	t.Helper()
	var got []string
	for {
		var it model.Item
		err := r.Next(&it)
		if err == io.EOF {
			return got
		}
		var le *LineError
		if errors.As(err, &le) {
			if le.Line != r.Line() {
				t.Fatalf("LineError line %d, Line() %d", le.Line, r.Line())
			}
			got = append(got, err.Error())
			continue
		}
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		got = append(got, formatItem(r.Line(), &it))
	}
}

func formatItem(line int, it *model.Item) string {
	cats := make([]string, len(it.Categories))
	for i, c := range it.Categories {
		cats[i] = strconv.Quote(c)
	}
	s := fmt.Sprintf("%d %q %q [%s]", line, it.ID, it.Title, strings.Join(cats, " "))
	if it.HasPrice {
		s += " price=" + strconv.FormatFloat(it.Price, 'g', -1, 64)
	}
	if it.HasStock {
		s += " stock=" + strconv.FormatInt(it.Stock, 10)
	}
	if it.Brand != "" {
		s += fmt.Sprintf(" brand=%q", it.Brand)
	}
	if len(it.Attrs) > 0 {
		s += fmt.Sprintf(" attrs=%v", it.Attrs)
	}
	return s
}

func TestItemReaderFixtures(t *testing.T) {
	read := func(name string) []string {
		t.Helper()
		rc, err := OpenInput(filepath.Join("testdata", "input", name))
		if err != nil {
			t.Fatalf("OpenInput: %v", err)
		}
		defer rc.Close()
		r, err := NewItemReader(rc, name)
		if err != nil {
			t.Fatalf("NewItemReader: %v", err)
		}
		got := readItems(t, r)
		for i, s := range got {
			got[i] = s[strings.IndexByte(s, ' ')+1:] // drop line numbers
		}
		return got
	}
	csvItems := read("items.csv")
	jsonItems := read("items.ndjson")
	if len(csvItems) != 4 {
		t.Fatalf("items.csv: got %d items, want 4:\n%s", len(csvItems), strings.Join(csvItems, "\n"))
	}
	if !reflect.DeepEqual(csvItems, jsonItems) {
		t.Fatalf("items.csv and items.ndjson differ:\n%s\n---\n%s", strings.Join(csvItems, "\n"), strings.Join(jsonItems, "\n"))
	}
}

func TestEventReaderRealData(t *testing.T) {
	t.Parallel()
	f := func(name string, events, users, items, baskets int, typ model.EventType) {
		t.Helper()
		rc, err := OpenInput(sharedData(t, name))
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		r, err := NewEventReader(rc, name)
		if err != nil {
			t.Fatal(err)
		}
		userSet, itemSet, basketSet := map[string]bool{}, map[string]bool{}, map[string]bool{}
		n := 0
		var ev model.Event
		for {
			err := r.Next(&ev)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			n++
			if ev.Type != typ {
				t.Fatalf("%s:%d: type %s, want %s", name, r.Line(), ev.Type, typ)
			}
			userSet[string(ev.User)] = true
			itemSet[string(ev.Item)] = true
			if ev.Basket != nil {
				basketSet[string(ev.Basket)] = true
			}
		}
		if n != events || len(userSet) != users || len(itemSet) != items || len(basketSet) != baskets {
			t.Fatalf("%s: got %d events, %d users, %d items, %d baskets; want %d, %d, %d, %d",
				name, n, len(userSet), len(itemSet), len(basketSet), events, users, items, baskets)
		}
		if r.Line() != events+1 {
			t.Fatalf("%s: last line %d, want %d", name, r.Line(), events+1)
		}
	}
	f("ml100k_events.csv.gz", 100000, 943, 1682, 0, model.EventRating)
	f("groceries_events.csv.gz", 43367, 9835, 169, 9835, model.EventPurchase)
}

func TestItemReaderRealData(t *testing.T) {
	t.Parallel()
	const name = "ml100k_items.csv.gz"
	rc, err := OpenInput(sharedData(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, err := NewItemReader(rc, name)
	if err != nil {
		t.Fatal(err)
	}
	var items []model.Item
	for {
		var it model.Item
		err := r.Next(&it)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	if len(items) != 1682 {
		t.Fatalf("got %d items, want 1682", len(items))
	}
	want := model.Item{ID: "1", Title: "Toy Story (1995)", Categories: []string{"Animation", "Children's", "Comedy"}}
	if !reflect.DeepEqual(items[0], want) {
		t.Fatalf("item 1: got %+v, want %+v", items[0], want)
	}
	if it := items[266]; it.ID != "267" || it.Title != "unknown" {
		t.Fatalf("item 267: got %+v", it)
	}
}

// TestCSVScannerMatchesEncodingCSV checks the hand-rolled splitter against
// encoding/csv on tricky input; FuzzCSVScanner does the same on random input.
func TestCSVScannerMatchesEncodingCSV(t *testing.T) {
	for _, in := range []string{
		"a,b,c\n",
		"a,b,c",
		"\n\na\r\n\r\nb\n",
		`"a""b",c` + "\n",
		"\"a\nb\",\"c\r\nd\"\ne\n",
		"\"\"\n\"\",\"\"\n",
		",,\n,\n",
		"a,\"b\"\r\n",
		"\"\n\n\"\n",
		" \"a\"\n",
		"a\"b\n",
		"\"a\"b\n",
		"\"a\n",
		"a\rb,c\r\r\n",
	} {
		checkCSVScanner(t, []byte(in))
	}
}

// checkCSVScanner compares the records of csvScanner and encoding/csv on in,
// up to the first error, which both must see on the same line.
func checkCSVScanner(t *testing.T, in []byte) {
	t.Helper()
	cr := csv.NewReader(bytes.NewReader(in))
	cr.FieldsPerRecord = -1
	lr := newLineReader(bytes.NewReader(in), "x")
	s := csvScanner{lr: &lr}
	for n := 1; ; n++ {
		want, wantErr := cr.Read()
		got, gotErr := s.next()
		if wantErr != nil || gotErr != nil {
			if (wantErr == io.EOF) != (gotErr == io.EOF) || (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("input %q record %d: got error %v, encoding/csv %v", in, n, gotErr, wantErr)
			}
			var pe *csv.ParseError
			var le *LineError
			if errors.As(wantErr, &pe) && errors.As(gotErr, &le) && pe.StartLine != le.Line {
				t.Fatalf("input %q record %d: error on line %d, encoding/csv on line %d", in, n, le.Line, pe.StartLine)
			}
			return
		}
		if len(got) != len(want) {
			t.Fatalf("input %q record %d: got %q, encoding/csv %q", in, n, got, want)
		}
		for i := range got {
			if string(got[i]) != want[i] {
				t.Fatalf("input %q record %d: got %q, encoding/csv %q", in, n, got, want)
			}
		}
		if line, _ := cr.FieldPos(0); line != s.start {
			t.Fatalf("input %q record %d: line %d, encoding/csv %d", in, n, s.start, line)
		}
	}
}
