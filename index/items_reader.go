package index

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/edgerec/edgerec/model"
	"github.com/valyala/fastjson"
)

// ItemReader streams catalog entries from a CSV or NDJSON stream.
//
// CSV needs a header row: item_id (or id) is required; title, category (or
// categories: several values joined by '|'), price, stock and brand are
// known; any other column with a name becomes an Attr, keyed by its header
// name (empty values are skipped). NDJSON holds one JSON object per line with the same
// keys; category may also be an array of strings, and other keys with a
// string, number or boolean value become Attrs. Text other than ids is
// made valid UTF-8 (bad bytes become U+FFFD); ids with invalid UTF-8 are
// bad lines.
//
// An ItemReader is not safe for concurrent use.
type ItemReader struct {
	lr     lineReader
	format inputFormat
	err    error
	line   int

	// CSV
	csv                                 csvScanner
	ncols                               int
	id, title, cat, price, stock, brand int
	attrCols                            []int
	attrKeys                            []string

	// NDJSON
	p fastjson.Parser
}

// NewItemReader returns a reader of the catalog in r. file names the input
// in errors. For CSV it reads the header: a missing item_id column is an
// error wrapping ErrBadFormat.
func NewItemReader(r io.Reader, file string) (*ItemReader, error) {
	ir := &ItemReader{lr: newLineReader(r, file)}
	format, err := ir.lr.detectFormat()
	if err != nil {
		return nil, fmt.Errorf("cannot read items from %q: %w", file, err)
	}
	ir.format = format
	if format != formatCSV {
		return ir, nil
	}
	ir.csv.lr = &ir.lr
	fields, err := ir.csv.next()
	if err != nil {
		return nil, fmt.Errorf("cannot read header of %q: %w", file, err)
	}
	cols := header(fields)
	ir.ncols = len(cols)
	known := make([]bool, len(cols))
	for _, c := range []struct {
		dst   *int
		names []string
	}{
		{&ir.id, []string{"item_id", "id"}},
		{&ir.title, []string{"title"}},
		{&ir.cat, []string{"category", "categories"}},
		{&ir.price, []string{"price"}},
		{&ir.stock, []string{"stock"}},
		{&ir.brand, []string{"brand"}},
	} {
		i, err := findColumn(cols, c.names...)
		if err != nil {
			return nil, fmt.Errorf("cannot read items from %q: %w", file, err)
		}
		*c.dst = i
		if i >= 0 {
			known[i] = true
		}
	}
	if ir.id < 0 {
		return nil, fmt.Errorf("cannot read items from %q: header %q has no column %q: %w", file, strings.Join(cols, ","), "item_id", ErrBadFormat)
	}
	for i, c := range cols {
		if !known[i] && c != "" {
			ir.attrCols = append(ir.attrCols, i)
			ir.attrKeys = append(ir.attrKeys, c)
		}
	}
	return ir, nil
}

// Line returns the line number of the record the last call to Next read.
func (r *ItemReader) Line() int { return r.line }

// Next fills it with the next catalog entry. Unlike EventReader, it holds
// fresh strings and freshly allocated Categories and Attrs: they may be kept.
// Errors are as for EventReader.Next.
func (r *ItemReader) Next(it *model.Item) error {
	if r.err != nil {
		return r.err
	}
	*it = model.Item{}
	var err error
	switch r.format {
	case formatCSV:
		err = r.nextCSV(it)
	case formatNDJSON:
		err = r.nextJSON(it)
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
	r.err = fmt.Errorf("cannot read items from %q: %w", r.lr.file, err)
	return r.err
}

func (r *ItemReader) nextCSV(it *model.Item) error {
	fields, err := r.csv.next()
	r.line = r.csv.start
	if err != nil {
		return err
	}
	bad := func(reason string) error { return r.lr.bad(r.line, reason) }
	if len(fields) != r.ncols {
		return bad("wrong number of fields: " + strconv.Itoa(len(fields)) + ", want " + strconv.Itoa(r.ncols))
	}
	if reason := checkID("item_id", fields[r.id]); reason != "" {
		return bad(reason)
	}
	it.ID = string(fields[r.id])
	if r.title >= 0 {
		it.Title = text(fields[r.title])
	}
	if r.cat >= 0 {
		it.Categories = appendCategories(nil, fields[r.cat])
	}
	if r.brand >= 0 {
		it.Brand = text(fields[r.brand])
	}
	var ok bool
	if r.price >= 0 {
		if b := bytes.TrimSpace(fields[r.price]); len(b) > 0 {
			if it.Price, ok = parseFloat(b); !ok || it.Price < 0 {
				return bad("bad price " + quote(b))
			}
			it.HasPrice = true
		}
	}
	if r.stock >= 0 {
		if b := bytes.TrimSpace(fields[r.stock]); len(b) > 0 {
			if it.Stock, ok = parseInt(b); !ok {
				return bad("bad stock " + quote(b))
			}
			it.HasStock = true
		}
	}
	for i, col := range r.attrCols {
		if len(fields[col]) > 0 {
			it.Attrs = append(it.Attrs, model.Attr{Key: r.attrKeys[i], Value: text(fields[col])})
		}
	}
	return nil
}

func (r *ItemReader) nextJSON(it *model.Item) error {
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
	id, reason := jsonID(nil, o, "item_id", "id")
	if reason != "" {
		return r.lr.bad(r.line, reason)
	}
	it.ID = string(id)
	o.Visit(func(key []byte, v *fastjson.Value) {
		if reason != "" {
			return
		}
		switch string(key) {
		case "item_id", "id":
		case "title":
			it.Title, reason = jsonText(v, "title")
		case "category", "categories":
			it.Categories, reason = jsonCategories(it.Categories, v)
		case "brand":
			it.Brand, reason = jsonText(v, "brand")
		case "price":
			it.Price, it.HasPrice, reason = jsonNumber(v, "price")
			if it.Price < 0 {
				reason = "bad price " + quote(v.MarshalTo(nil))
			}
		case "stock":
			var f float64
			if f, it.HasStock, reason = jsonNumber(v, "stock"); reason == "" && it.HasStock {
				if f != math.Trunc(f) || f >= math.MaxInt64 || f <= math.MinInt64 {
					reason = "bad stock " + quote(v.MarshalTo(nil))
				}
				it.Stock = int64(f)
			}
		default:
			var val string
			switch v.Type() {
			case fastjson.TypeString:
				b, _ := v.StringBytes()
				val = text(b)
			case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
				val = string(v.MarshalTo(nil))
			}
			if val != "" && len(key) > 0 {
				it.Attrs = append(it.Attrs, model.Attr{Key: text(key), Value: val})
			}
		}
	})
	if reason != "" {
		return r.lr.bad(r.line, reason)
	}
	return nil
}

// jsonText returns a JSON string (null is "").
func jsonText(v *fastjson.Value, name string) (string, string) {
	switch v.Type() {
	case fastjson.TypeNull:
		return "", ""
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return text(b), ""
	}
	return "", "bad " + name + ": want a string, got " + v.Type().String()
}

// jsonCategories appends the categories of a '|'-joined string or an array
// of strings.
func jsonCategories(dst []string, v *fastjson.Value) ([]string, string) {
	switch v.Type() {
	case fastjson.TypeNull:
		return dst, ""
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return appendCategories(dst, b), ""
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, e := range a {
			b, err := e.StringBytes()
			if err != nil {
				return dst, "bad category: want a string, got " + e.Type().String()
			}
			if b = bytes.TrimSpace(b); len(b) > 0 {
				dst = append(dst, text(b))
			}
		}
		return dst, ""
	}
	return dst, "bad category: want a string or an array of strings, got " + v.Type().String()
}

// appendCategories appends the '|'-separated values of b, trimmed, dropping
// empty ones.
func appendCategories(dst []string, b []byte) []string {
	for len(b) > 0 {
		var c []byte
		if i := bytes.IndexByte(b, '|'); i >= 0 {
			c, b = b[:i], b[i+1:]
		} else {
			c, b = b, nil
		}
		if c = bytes.TrimSpace(c); len(c) > 0 {
			dst = append(dst, text(c))
		}
	}
	return dst
}

// parseInt parses an integer; a decimal number with no fraction ("5.0") is
// also one.
func parseInt(b []byte) (int64, bool) {
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return n, true
	}
	f, ok := parseFloat(b)
	if !ok || f != math.Trunc(f) || f >= math.MaxInt64 || f <= math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}
