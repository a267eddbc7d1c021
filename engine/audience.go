package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/edgerec/edgerec/engine/rule"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/jsonw"
	"github.com/edgerec/edgerec/model"
)

// Audience export limits.
const (
	// MaxAudienceRecs bounds AudienceOptions.WithRecs.
	MaxAudienceRecs = 50
	// MaxAttrColumns bounds AudienceOptions.Attrs.
	MaxAttrColumns = 256
)

// AudienceOptions select what ExportAudience writes.
type AudienceOptions struct {
	// Segment names a configured segment; required.
	Segment string
	// WithRecs adds each member's top WithRecs personal recommendations
	// (0 to MaxAudienceRecs) with id, title, category and price.
	WithRecs int
	// Format is "csv" (default) or "ndjson".
	Format string
	// Since, when non-zero, writes only the users whose membership changed
	// at or after this Unix time: "joined" or "left" rows.
	Since int64
	// Channel is the consent channel: a member needs the attribute
	// consent_<Channel> true. Default "email".
	Channel string
	// After resumes the scan after this user id; Limit stops it after so
	// many rows (0: no limit).
	After string
	Limit int
	// MaxBytes, when positive, also ends the export (with More) once about
	// this many bytes are written: a page's memory stays bounded however
	// large the members' attributes.
	MaxBytes int
	// Attrs are the CSV attribute columns; when empty, every attribute key
	// of the rows written, sorted (found by a first pass over the profiles).
	Attrs []string
	// RawCSV writes CSV text cells as they are: by default a cell that a
	// spreadsheet would run as a formula gets a leading ' (see csvCell),
	// which importers that are not spreadsheets keep ("'+81 90…").
	RawCSV bool
	// Record stores the membership changes the export notices (see
	// ExportAudience), so that a later export with Since lists them. An
	// export job records; a read of members does not.
	Record bool
}

// AudienceStats say what an export did.
type AudienceStats struct {
	// Scanned profiles, Members among them now (in the segment, with
	// consent), rows Written, of which Joined and Left (with Since), and
	// profiles Skipped because they could not be decoded.
	Scanned, Members, Written, Joined, Left, Skipped int
	// More is true when the export stopped at Limit: more rows may follow
	// after Last, the user of the last row written.
	Last string
	More bool
}

// Membership statuses of the rows.
const (
	statusMember = "member"
	statusJoined = "joined"
	statusLeft   = "left"
)

func (o *AudienceOptions) validate(e *Engine, cfg *Config) (int, error) {
	if o.Format == "" {
		o.Format = "csv"
	}
	if o.Channel == "" {
		o.Channel = "email"
	}
	if o.Segment == "" {
		return 0, badParam("segment", "required")
	}
	seg, ok := cfg.segmentIndex[o.Segment]
	if !ok {
		names := make([]string, len(cfg.segments))
		for i, sg := range cfg.segments {
			names[i] = sg.name
		}
		return 0, badParam("segment", fmt.Sprintf("unknown segment %q; configured: %s", o.Segment, strings.Join(names, ", ")))
	}
	if o.Format != "csv" && o.Format != "ndjson" {
		return 0, badParam("format", fmt.Sprintf("%q: want csv or ndjson", o.Format))
	}
	if o.WithRecs < 0 || o.WithRecs > MaxAudienceRecs {
		return 0, badParam("with_recs", "must be an integer from 0 to "+strconv.Itoa(MaxAudienceRecs))
	}
	if o.Since < 0 {
		return 0, badParam("since", "must be a Unix time in seconds")
	}
	if !idPattern.MatchString(o.Channel) {
		return 0, badParam("channel", "want 1-64 of A-Z a-z 0-9 _ -")
	}
	if o.Limit < 0 {
		return 0, badParam("limit", "must not be negative")
	}
	if len(o.Attrs) > MaxAttrColumns {
		return 0, badParam("attrs", "at most "+strconv.Itoa(MaxAttrColumns)+" columns")
	}
	if o.After != "" {
		if err := e.CheckID("after", []byte(o.After)); err != nil {
			return 0, err
		}
	}
	return seg, nil
}

// ExportAudience writes the consenting members of a segment to w, as CSV
// or NDJSON, one row a user, optionally with their personal
// recommendations. Compression is the caller's.
//
// A user is a member only when the segment matches their profile and
// the attribute consent_<channel> is true; nobody else's data is written.
//
// # Membership records
//
// An export is also what notices membership changes: for every profile it
// evaluates it compares membership with the record stored under the
// metadata key sg/<segment>/<channel>/<user> (one byte, 'i' member or 'o'
// not, then the uvarint Unix time of the change) and stores a new record,
// stamped with the export's time, when they differ. So changed_at is when
// an export first saw the change, not when the profile changed, and users
// who joined and left between two exports are never seen. With Since, the
// rows are the users whose record changed at or after Since: "joined"
// (members now) or "left" (out of the segment, or consent withdrawn:
// these rows carry only user_id, status and changed_at). Without it, the
// rows are the current members, status "member", changed_at when they
// joined.
//
// # Formats
//
// CSV: user_id,status,changed_at, one column per attribute (o.Attrs, or
// every attribute key of the rows written, sorted), then rec_N_id,
// rec_N_title, rec_N_category, rec_N_price for N up to WithRecs. NDJSON:
// {"user_id","status","changed_at","attributes":{…},
// "recommendations":[{"id","title","category","price"}]}.
//
// Errors in o are Invalid. ctx stops a long export between rows.
func (e *Engine) ExportAudience(ctx context.Context, w io.Writer, o AudienceOptions) (AudienceStats, error) {
	v := e.Acquire()
	defer v.Release()
	seg, err := o.validate(e, v.cfg)
	if err != nil {
		return AudienceStats{}, err
	}
	if e.state == nil {
		return AudienceStats{}, ErrNoState
	}
	if o.WithRecs > 0 && v.snap == nil {
		return AudienceStats{}, ErrNoSnapshot
	}
	x := &audienceExport{e: e, v: v, ctx: ctx, o: &o, segs: v.cfg.segments[seg : seg+1], now: e.exactNow()}
	x.prefix = fmt.Appendf(nil, "sg/%s/%s/", o.Segment, o.Channel)
	x.consent = "consent_" + o.Channel
	x.out = &countingWriter{w: w}
	bw := bufio.NewWriterSize(x.out, 64<<10)
	if o.Format == "csv" {
		attrs := o.Attrs
		if len(attrs) == 0 {
			// First pass: the attribute keys of the rows to write.
			keys := map[string]bool{}
			if _, err := x.scan(true, func(r *audienceRow) error {
				if r.p == nil {
					return nil
				}
				for _, a := range r.p.Attrs {
					if !keys[string(a.Key)] {
						keys[string(a.Key)] = true
					}
				}
				return nil
			}); err != nil {
				return AudienceStats{}, err
			}
			attrs = sortedKeys(keys)
		}
		c := newAudienceCSV(bw, attrs, o.WithRecs, o.RawCSV)
		if err := c.header(); err != nil {
			return AudienceStats{}, err
		}
		stats, err := x.scan(false, func(r *audienceRow) error { return c.rowOf(r, x) })
		if err == nil {
			err = c.flush()
		}
		if err == nil {
			err = bw.Flush()
		}
		return stats, err
	}
	var line []byte
	stats, err := x.scan(false, func(r *audienceRow) error {
		var err error
		if line, err = x.appendNDJSON(line[:0], r); err != nil {
			return err
		}
		_, err = bw.Write(line)
		return err
	})
	if err == nil {
		err = bw.Flush()
	}
	return stats, err
}

// SegmentSize is how many stored profiles a segment matches.
type SegmentSize struct {
	Segment, Description string
	// Members match the segment now; Email of them consent to email
	// (consent_email true): the rows of export audience --segment with
	// its default channel.
	Members, Email int
}

// SegmentSizes are every configured segment's size at one time.
type SegmentSizes struct {
	At               int64 // Unix time of the count
	Scanned, Skipped int   // profiles read, and skipped as undecodable
	Segments         []SegmentSize
}

// SegmentSizes counts the members of every configured segment (in name
// order) in one scan of the stored profiles, evaluated as the audience
// export evaluates them (scanSegments). It reads only: no membership is
// recorded. A scan costs about a microsecond a profile and segment (a
// million profiles: seconds), so callers remember its answer; ctx stops
// it between profiles.
func (e *Engine) SegmentSizes(ctx context.Context) (SegmentSizes, error) {
	cfg := e.Config()
	r := SegmentSizes{At: e.exactNow(), Segments: make([]SegmentSize, len(cfg.segments))}
	for i, sg := range cfg.segments {
		r.Segments[i] = SegmentSize{Segment: sg.name, Description: sg.Description}
	}
	if len(cfg.segments) == 0 {
		return r, nil
	}
	if e.state == nil {
		return r, ErrNoState
	}
	var err error
	r.Scanned, r.Skipped, err = e.scanSegments(ctx, nil, r.At, cfg.segments, func(_ []byte, p *model.Profile, set SegSet) error {
		email := rule.HasConsent(p, "consent_email")
		for i := range r.Segments {
			if set.has(i) {
				r.Segments[i].Members++
				if email {
					r.Segments[i].Email++
				}
			}
		}
		return nil
	})
	return r, err
}

// audienceExport is the state of one export.
type audienceExport struct {
	out     *countingWriter // what the export wrote (flushed) so far
	e       *Engine
	v       *View // recommendations, with WithRecs
	ctx     context.Context
	o       *AudienceOptions
	segs    []*Segment // the one segment
	now     int64
	prefix  []byte // sg/<segment>/<channel>/
	consent string
	recs    Recs
}

// audienceRow is one row while it is written: p is valid only then.
type audienceRow struct {
	user      []byte
	status    string
	changedAt int64
	p         *model.Profile // nil for "left" rows
}

var errLimit = errors.New("limit reached")

// scan evaluates the segment over every profile after o.After, keeps the
// membership records up to date (unless dry), and calls fn for each row
// to write.
func (x *audienceExport) scan(dry bool, fn func(r *audienceRow) error) (AudienceStats, error) {
	var st AudienceStats
	var mw *index.MetaWriter
	if !dry && x.o.Record {
		mw = x.e.state.NewMetaWriter()
	}
	key := slices.Clip(x.prefix)
	var rec, val []byte
	var row audienceRow
	var err error
	st.Scanned, st.Skipped, err = x.e.scanSegments(x.ctx, []byte(x.o.After), x.now, x.segs, func(user []byte, p *model.Profile, set SegSet) error {
		member := set.has(0) && rule.HasConsent(p, x.consent)
		if member {
			st.Members++
		}
		key = append(key[:len(x.prefix)], user...)
		ok := false
		// The first pass of a CSV export without Since needs only the
		// members' attributes: no record reads (half the export's time).
		if !dry || x.o.Since > 0 {
			var err error
			if rec, ok, err = x.e.state.AppendMeta(rec[:0], key); err != nil {
				return err
			}
		}
		was, changedAt, damaged := false, int64(0), false
		if ok {
			t, n := uint64(0), 0
			if len(rec) >= 2 && (rec[0] == 'i' || rec[0] == 'o') {
				t, n = binary.Uvarint(rec[1:])
			}
			if n <= 0 {
				// A damaged record counts as none, and this export
				// writes a new one, member or not.
				ok, damaged = false, true
			}
			was, changedAt = ok && rec[0] == 'i', int64(t)
		}
		if member != was || !ok && member || damaged {
			changedAt = x.now
			if mw != nil {
				val = append(val[:0], 'o')
				if member {
					val[0] = 'i'
				}
				val = binary.AppendUvarint(val, uint64(x.now))
				if err := mw.Set(key, val); err != nil {
					return err
				}
			}
			ok = true
		}
		row = audienceRow{user: user, changedAt: changedAt}
		switch {
		case x.o.Since == 0:
			if !member {
				return nil
			}
			row.status, row.p = statusMember, p
		case !ok || changedAt < x.o.Since:
			return nil
		case member:
			row.status, row.p = statusJoined, p
			st.Joined++
		default:
			row.status = statusLeft
			st.Left++
		}
		if err := fn(&row); err != nil {
			return err
		}
		st.Written++
		if (x.o.Limit > 0 && st.Written >= x.o.Limit) || (x.o.MaxBytes > 0 && x.out != nil && x.out.n >= int64(x.o.MaxBytes)) {
			st.Last, st.More = string(user), true
			return errLimit
		}
		return nil
	})
	if !dry {
		x.e.audienceSkipped.Add(uint64(st.Skipped))
	}
	if errors.Is(err, errLimit) {
		err = nil
	}
	if mw != nil {
		if cerr := mw.Close(); err == nil {
			err = cerr
		}
	}
	return st, err
}

// scanSegments decodes every stored profile after after and evaluates
// segs over it at Unix time now, calling fn with the user (valid during
// the call only), the decoded profile (likewise) and the segments it is
// in. A profile that cannot be decoded is skipped and counted: one
// written by a newer version, or damaged, must not stop every scan (the
// user's next event rewrites it). ctx stops the scan between profiles.
// It reads and writes nothing else: the audience export and SegmentSizes
// both see the profiles through it.
func (e *Engine) scanSegments(ctx context.Context, after []byte, now int64, segs []*Segment,
	fn func(user []byte, p *model.Profile, set SegSet) error) (scanned, skipped int, err error) {
	sc := &rule.Ctx{Now: now}
	err = e.state.ScanProfiles(after, func(user, value []byte) error {
		if scanned++; scanned&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		// A copy: the pooled sc must not keep the iterator's memory.
		sc.Raw = append(sc.Raw[:0], value...)
		if err := sc.P.Decode(sc.Raw); err != nil {
			skipped++
			return nil
		}
		return fn(user, &sc.P, e.evalSegments(sc, segs))
	})
	return scanned, skipped, err
}

// recommend fills x.recs with user's top o.WithRecs recommendations, as
// GET /v1/users/{id}/recommendations?k=WithRecs answers.
func (x *audienceExport) recommend(user []byte) error {
	return x.v.PersonalTop(user, x.o.WithRecs, &x.recs)
}

// appendNDJSON appends r as one NDJSON line.
func (x *audienceExport) appendNDJSON(dst []byte, r *audienceRow) ([]byte, error) {
	dst = append(dst, `{"user_id":`...)
	dst = jsonw.AppendString(dst, r.user)
	dst = append(dst, `,"status":"`...)
	dst = append(dst, r.status...)
	dst = append(dst, `","changed_at":`...)
	dst = strconv.AppendInt(dst, r.changedAt, 10)
	if r.p != nil {
		dst = append(dst, `,"attributes":`...)
		dst = jsonw.AppendAttrs(dst, r.p)
		if x.o.WithRecs > 0 {
			if err := x.recommend(r.user); err != nil {
				return dst, err
			}
			dst = append(dst, `,"recommendations":[`...)
			for i, p := range x.recs.Picks {
				if i > 0 {
					dst = append(dst, ',')
				}
				it := x.v.Item(p.Item)
				dst = append(dst, `{"id":`...)
				dst = jsonw.AppendString(dst, it.ID)
				dst = append(dst, `,"title":`...)
				dst = jsonw.AppendString(dst, it.Title)
				dst = append(dst, `,"category":`...)
				dst = jsonw.AppendString(dst, it.Category)
				dst = append(dst, `,"price":`...)
				if it.HasPrice {
					dst = jsonw.AppendFloat(dst, it.Price, 64)
				} else {
					dst = append(dst, "null"...)
				}
				dst = append(dst, '}')
			}
			dst = append(dst, ']')
		}
	}
	return append(dst, "}\n"...), nil
}

// audienceCSV writes the CSV form; ExportAudience and WriteAudienceCSV
// share it, so both write the same bytes for the same rows.
type audienceCSV struct {
	w        *csv.Writer
	raw      bool // no csvCell
	attrs    []string
	col      map[string]int // attribute key → column
	withRecs int
	rec      []string // reused record
	num      []byte
}

func newAudienceCSV(w io.Writer, attrs []string, withRecs int, raw bool) *audienceCSV {
	// One column an attribute, however often attrs names it.
	seen := make(map[string]bool, len(attrs))
	attrs = slices.DeleteFunc(slices.Clone(attrs), func(a string) bool {
		dup := seen[a]
		seen[a] = true
		return dup
	})
	c := &audienceCSV{w: csv.NewWriter(w), raw: raw, attrs: attrs, col: make(map[string]int, len(attrs)), withRecs: withRecs}
	for i, a := range attrs {
		c.col[a] = 3 + i
	}
	c.rec = make([]string, 3+len(attrs)+4*withRecs)
	return c
}

// header writes the column names. An attribute whose name is one of the
// fixed columns' (user_id, status, changed_at, rec_N_…), starts with
// attr_, or starts like a formula (= + - @ ' tab CR) is named attr_NAME:
// no reader mistakes it for another column, no spreadsheet runs it, and
// distinct attributes keep distinct columns.
func (c *audienceCSV) header() error {
	fixed := []string{"user_id", "status", "changed_at"}
	var recs []string
	for i := 1; i <= c.withRecs; i++ {
		n := "rec_" + strconv.Itoa(i)
		recs = append(recs, n+"_id", n+"_title", n+"_category", n+"_price")
	}
	h := slices.Clone(fixed)
	for _, a := range c.attrs {
		if slices.Contains(fixed, a) || strings.HasPrefix(a, "rec_") || strings.HasPrefix(a, "attr_") ||
			a != "" && strings.IndexByte(formulaStart+"'", a[0]) >= 0 {
			a = "attr_" + a
		}
		h = append(h, a)
	}
	return c.w.Write(append(h, recs...))
}

// cell is s as a text cell: defused by csvCell unless c.raw.
func (c *audienceCSV) cell(s string) string {
	if c.raw {
		return s
	}
	return csvCell(s)
}

// formulaStart holds the first bytes that make a spreadsheet read a cell
// as a formula.
const formulaStart = "=+-@\t\r"

// csvCell keeps a spreadsheet from running a cell as a formula: text
// starting with = + - @, a tab or a carriage return gets a leading ' (the
// OWASP advice for CSV injection). Ids, titles and attributes come from
// events, catalogs and CRMs, so a user id "=HYPERLINK(…)" is possible.
// Numbers are written as they are; NDJSON carries every value unchanged.
func csvCell(s string) string {
	if s != "" && strings.IndexByte(formulaStart, s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// start clears the record and fills its first three columns.
func (c *audienceCSV) start(user, status string, changedAt int64) {
	clear(c.rec)
	c.rec[0], c.rec[1], c.rec[2] = c.cell(user), status, strconv.FormatInt(changedAt, 10)
}

// setAttr fills the column of attribute key, if it has one; v is already
// a safe cell.
func (c *audienceCSV) setAttr(key []byte, v string) {
	if i, ok := c.col[string(key)]; ok {
		c.rec[i] = v
	}
}

// setRec fills the columns of the i-th recommendation (from 0).
func (c *audienceCSV) setRec(i int, id, title, category, price string) {
	if i >= c.withRecs {
		return
	}
	j := 3 + len(c.attrs) + 4*i
	c.rec[j], c.rec[j+1], c.rec[j+2], c.rec[j+3] = c.cell(id), c.cell(title), c.cell(category), price
}

func (c *audienceCSV) write() error { return c.w.Write(c.rec) }

func (c *audienceCSV) flush() error {
	c.w.Flush()
	return c.w.Error()
}

// rowOf writes a row of an export.
func (c *audienceCSV) rowOf(r *audienceRow, x *audienceExport) error {
	c.start(string(r.user), r.status, r.changedAt)
	if r.p != nil {
		for i := range r.p.Attrs {
			a := &r.p.Attrs[i]
			if _, ok := c.col[string(a.Key)]; ok {
				c.setAttr(a.Key, c.attrValue(a))
			}
		}
		if c.withRecs > 0 {
			if err := x.recommend(r.user); err != nil {
				return err
			}
			for i, p := range x.recs.Picks {
				it := x.v.Item(p.Item)
				pr := ""
				if it.HasPrice {
					c.num = jsonw.AppendFloat(c.num[:0], it.Price, 64)
					pr = string(c.num)
				}
				c.setRec(i, it.ID, it.Title, it.Category, pr)
			}
		}
	}
	return c.write()
}

// attrValue is an attribute as a CSV cell: the string, the number as
// JSON writes it, or true/false.
func (c *audienceCSV) attrValue(a *model.ProfileAttr) string {
	switch a.Type {
	case model.AttrString:
		return c.cell(string(a.Str))
	case model.AttrBool:
		return strconv.FormatBool(a.Num == 1)
	}
	return strconv.FormatFloat(a.Num, 'f', -1, 64)
}

// AudienceRow is one NDJSON row of an audience export, as WriteAudienceCSV
// reads it back.
type AudienceRow struct {
	UserID          string                     `json:"user_id"`
	Status          string                     `json:"status"`
	ChangedAt       int64                      `json:"changed_at"`
	Attributes      map[string]json.RawMessage `json:"attributes"`
	Recommendations []AudienceRec              `json:"recommendations"`
}

// AudienceRec is one recommendation of an AudienceRow.
type AudienceRec struct {
	ID       string       `json:"id"`
	Title    string       `json:"title"`
	Category string       `json:"category"`
	Price    *json.Number `json:"price"`
}

// WriteAudienceCSV converts NDJSON rows of ExportAudience (for instance
// the pages of GET /v1/segments/{id}/members?format=ndjson, concatenated)
// to the CSV ExportAudience writes with the same options: it reads src
// twice, once for the attribute columns (unless attrs are given), then
// for the rows. It returns the rows written.
func WriteAudienceCSV(w io.Writer, src io.ReadSeeker, withRecs int, attrs []string, raw bool) (int, error) {
	each := func(fn func(r *AudienceRow) error) error {
		if _, err := src.Seek(0, io.SeekStart); err != nil {
			return err
		}
		sc := bufio.NewScanner(src)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		line := 0
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			var r AudienceRow
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			if err := d.Decode(&r); err != nil {
				return fmt.Errorf("row %d: %w", line, err)
			}
			if err := fn(&r); err != nil {
				return err
			}
		}
		return sc.Err()
	}
	if len(attrs) == 0 {
		keys := map[string]bool{}
		if err := each(func(r *AudienceRow) error {
			for k := range r.Attributes {
				keys[k] = true
			}
			return nil
		}); err != nil {
			return 0, err
		}
		attrs = sortedKeys(keys)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	c := newAudienceCSV(bw, attrs, withRecs, raw)
	if err := c.header(); err != nil {
		return 0, err
	}
	n := 0
	err := each(func(r *AudienceRow) error {
		c.start(r.UserID, r.Status, r.ChangedAt)
		for k, v := range r.Attributes {
			c.setAttr([]byte(k), c.jsonCell(v))
		}
		for i, rec := range r.Recommendations {
			pr := ""
			if rec.Price != nil {
				pr = rec.Price.String()
			}
			c.setRec(i, rec.ID, rec.Title, rec.Category, pr)
		}
		n++
		return c.write()
	})
	if err == nil {
		err = c.flush()
	}
	if err == nil {
		err = bw.Flush()
	}
	return n, err
}

// jsonCell is a JSON scalar as a CSV cell: a string's text, a number or
// boolean as written.
func (c *audienceCSV) jsonCell(v json.RawMessage) string {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return c.cell(s)
		}
	}
	return string(v)
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
