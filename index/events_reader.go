package index

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/edgerec/edgerec/model"
	"github.com/valyala/fastjson"
)

// EventReader streams events from a CSV or NDJSON stream.
//
// CSV needs a header row; columns are found by name in any order (user_id or
// user, item_id or item, event or type are required; ts, value and basket
// are optional) and other columns are ignored. NDJSON holds one JSON object
// per line with the same keys; ids may be strings or numbers, ts a number of
// Unix seconds or an RFC 3339 string, value a number or a numeric string.
// The format is told by the first byte that is not white space: '{' is
// NDJSON, anything else CSV. Empty lines are skipped, and in NDJSON also
// lines of white space only.
//
// An EventReader is not safe for concurrent use.
type EventReader struct {
	lr     lineReader
	format inputFormat
	err    error // sticky read error
	line   int

	// CSV
	csv                              csvScanner
	ncols                            int
	user, item, typ, ts, val, basket int

	// NDJSON
	p                           fastjson.Parser
	userBuf, itemBuf, basketBuf []byte
}

// NewEventReader returns a reader of the events in r. file names the input
// in errors. For CSV it reads the header: a missing required column is an
// error wrapping ErrBadFormat that names file and column. Input with no
// bytes but white space holds no events.
func NewEventReader(r io.Reader, file string) (*EventReader, error) {
	er := &EventReader{lr: newLineReader(r, file)}
	format, err := er.lr.detectFormat()
	if err != nil {
		return nil, fmt.Errorf("cannot read events from %q: %w", file, err)
	}
	er.format = format
	if format != formatCSV {
		return er, nil
	}
	er.csv.lr = &er.lr
	fields, err := er.csv.next()
	if err != nil {
		return nil, fmt.Errorf("cannot read header of %q: %w", file, err)
	}
	cols := header(fields)
	er.ncols = len(cols)
	for _, c := range []struct {
		dst      *int
		names    []string
		required bool
	}{
		{&er.user, []string{"user_id", "user"}, true},
		{&er.item, []string{"item_id", "item"}, true},
		{&er.typ, []string{"event", "type"}, true},
		{&er.ts, []string{"ts"}, false},
		{&er.val, []string{"value"}, false},
		{&er.basket, []string{"basket"}, false},
	} {
		i, err := findColumn(cols, c.names...)
		if err != nil {
			return nil, fmt.Errorf("cannot read events from %q: %w", file, err)
		}
		if i < 0 && c.required {
			return nil, fmt.Errorf("cannot read events from %q: header %q has no column %q: %w", file, strings.Join(cols, ","), c.names[0], ErrBadFormat)
		}
		*c.dst = i
	}
	return er, nil
}

// Line returns the line number of the record the last call to Next read: the
// event it returned or the bad line it reported.
func (r *EventReader) Line() int { return r.line }

// Next fills ev with the next event. ev's slices point into the reader's
// buffers: they are valid until the next call to Next and must not be
// modified. Next returns a *LineError for a bad line (the reader stays
// usable: count it and call Next again), io.EOF at the end, or another error
// for a read failure, which every later call returns again. After an error
// ev's contents are unspecified.
func (r *EventReader) Next(ev *model.Event) error {
	if r.err != nil {
		return r.err
	}
	var err error
	switch r.format {
	case formatCSV:
		err = r.nextCSV(ev)
	case formatNDJSON:
		err = r.nextJSON(ev)
	default:
		return io.EOF
	}
	if err == nil || err == io.EOF {
		return err
	}
	var le *LineError
	if errors.As(err, &le) {
		return err
	}
	r.err = fmt.Errorf("cannot read events from %q: %w", r.lr.file, err)
	return r.err
}

func (r *EventReader) nextCSV(ev *model.Event) error {
	fields, err := r.csv.next()
	r.line = r.csv.start
	if err != nil {
		return err
	}
	if len(fields) != r.ncols {
		return r.lr.bad(r.line, "wrong number of fields: "+strconv.Itoa(len(fields))+", want "+strconv.Itoa(r.ncols))
	}
	ev.User = fields[r.user]
	ev.Item = fields[r.item]
	if reason := checkID("user_id", ev.User); reason != "" {
		return r.lr.bad(r.line, reason)
	}
	if reason := checkID("item_id", ev.Item); reason != "" {
		return r.lr.bad(r.line, reason)
	}
	var ok bool
	if ev.Type, ok = parseEventType(fields[r.typ]); !ok {
		return r.lr.bad(r.line, badEventType(fields[r.typ]))
	}
	ev.TS = 0
	if r.ts >= 0 {
		if b := bytes.TrimSpace(fields[r.ts]); len(b) > 0 {
			if ev.TS, ok = parseTS(b); !ok {
				return r.lr.bad(r.line, "bad ts "+quote(b))
			}
		}
	}
	ev.Value, ev.HasValue = 0, false
	if r.val >= 0 {
		if b := bytes.TrimSpace(fields[r.val]); len(b) > 0 {
			if ev.Value, ok = parseFloat(b); !ok {
				return r.lr.bad(r.line, "bad value "+quote(b))
			}
			ev.HasValue = true
		}
	}
	ev.Basket = nil
	if r.basket >= 0 && len(fields[r.basket]) > 0 {
		ev.Basket = fields[r.basket]
		if reason := checkID("basket", ev.Basket); reason != "" {
			return r.lr.bad(r.line, reason)
		}
	}
	return nil
}

func (r *EventReader) nextJSON(ev *model.Event) error {
	var o *fastjson.Object
	for {
		line, err := r.lr.next()
		r.line = r.lr.n
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		v, err := r.p.ParseBytes(line)
		if err != nil {
			return r.lr.bad(r.line, "malformed JSON: "+err.Error())
		}
		if o, err = v.Object(); err != nil {
			return r.lr.bad(r.line, "not a JSON object")
		}
		break
	}
	var reason string
	if r.userBuf, reason = jsonID(r.userBuf[:0], o, "user_id", "user"); reason != "" {
		return r.lr.bad(r.line, reason)
	}
	if r.itemBuf, reason = jsonID(r.itemBuf[:0], o, "item_id", "item"); reason != "" {
		return r.lr.bad(r.line, reason)
	}
	ev.User, ev.Item = r.userBuf, r.itemBuf

	v := o.Get("event")
	if v == nil {
		v = o.Get("type")
	}
	if v == nil || v.Type() == fastjson.TypeNull {
		return r.lr.bad(r.line, "missing event")
	}
	b, err := v.StringBytes()
	if err != nil {
		return r.lr.bad(r.line, "bad event: want a string, got "+v.Type().String())
	}
	var ok bool
	if ev.Type, ok = parseEventType(b); !ok {
		return r.lr.bad(r.line, badEventType(b))
	}

	ev.TS = 0
	if v := o.Get("ts"); v != nil {
		if ev.TS, reason = jsonTS(v); reason != "" {
			return r.lr.bad(r.line, reason)
		}
	}
	ev.Value, ev.HasValue = 0, false
	if v := o.Get("value"); v != nil {
		if ev.Value, ev.HasValue, reason = jsonNumber(v, "value"); reason != "" {
			return r.lr.bad(r.line, reason)
		}
	}
	ev.Basket = nil
	if v := o.Get("basket"); v != nil && v.Type() != fastjson.TypeNull {
		if r.basketBuf, reason = jsonScalar(r.basketBuf[:0], v, "basket"); reason != "" {
			return r.lr.bad(r.line, reason)
		}
		if len(r.basketBuf) > 0 {
			if reason := checkID("basket", r.basketBuf); reason != "" {
				return r.lr.bad(r.line, reason)
			}
			ev.Basket = r.basketBuf
		}
	}
	return nil
}

// jsonTS returns the Unix seconds of a JSON number or a string holding a
// number or an RFC 3339 time. null is 0.
func jsonTS(v *fastjson.Value) (int64, string) {
	switch v.Type() {
	case fastjson.TypeNull:
		return 0, ""
	case fastjson.TypeNumber:
		if n, err := v.Int64(); err == nil {
			return n, ""
		}
		if f, err := v.Float64(); err == nil {
			if ts, ok := floatTS(f); ok {
				return ts, ""
			}
		}
		return 0, "bad ts " + quote(v.MarshalTo(nil))
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if len(b) == 0 {
			return 0, ""
		}
		if ts, ok := parseTS(b); ok {
			return ts, ""
		}
		return 0, "bad ts " + quote(b)
	}
	return 0, "bad ts: want a number or a string, got " + v.Type().String()
}

// parseEventType parses an event type, also in upper case or with spaces
// around it.
func parseEventType(b []byte) (model.EventType, bool) {
	if t, ok := model.ParseEventType(b); ok {
		return t, true
	}
	b = bytes.TrimSpace(b)
	var lower [16]byte
	if len(b) > len(lower) {
		return model.EventUnknown, false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return model.ParseEventType(lower[:len(b)])
}

func badEventType(b []byte) string {
	if len(bytes.TrimSpace(b)) == 0 {
		return "empty event"
	}
	return "unknown event type " + quote(b)
}

// parseTS parses Unix seconds, as an integer, a decimal number (the fraction
// is dropped) or an RFC 3339 time.
func parseTS(b []byte) (int64, bool) {
	// string(b) does not allocate: strconv and time copy the input into the
	// errors they return, so the string does not escape.
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return n, true
	}
	if f, err := strconv.ParseFloat(string(b), 64); err == nil {
		return floatTS(f)
	}
	if t, err := time.Parse(time.RFC3339, string(b)); err == nil {
		return t.Unix(), true
	}
	return 0, false
}

func floatTS(f float64) (int64, bool) {
	if math.IsNaN(f) || f >= math.MaxInt64 || f <= math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}

// EachEvent calls fn for every event of the file at path (CSV or NDJSON;
// plain, gzip or zstd). Bad lines are skipped and counted in *bad; more
// than maxBad of them fail the read with an error wrapping
// ErrTooManyBadLines and naming the last one's file and line. ev is valid
// only during fn; an error from fn stops the read and is returned as is.
func EachEvent(path string, maxBad int, bad *int, fn func(ev *model.Event) error) error {
	f, err := OpenInput(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := NewEventReader(f, path)
	if err != nil {
		return err
	}
	var ev model.Event
	for {
		err := r.Next(&ev)
		if errors.Is(err, io.EOF) {
			return nil
		}
		var le *LineError
		if errors.As(err, &le) {
			if *bad++; *bad > maxBad {
				return fmt.Errorf("%w: %d (max %d); last: %v", ErrTooManyBadLines, *bad, maxBad, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(&ev); err != nil {
			return err
		}
	}
}
