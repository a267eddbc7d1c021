package engine

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/testenv"
	"github.com/edgerec/edgerec/model"
)

const audienceYAML = `
segments:
  pricing:
    if: 'views("/pricing", "30d") >= 1'
`

// audienceEngine serves the test shop with a config of segment "pricing" at a
// settable clock (Unix seconds).
func audienceEngine(t *testing.T) (*Engine, *index.State, *atomic.Int64) {
	t.Helper()
	cfg, err := ParseConfig([]byte(audienceYAML), "audience.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clock := new(atomic.Int64)
	clock.Store(time.Now().Unix() / 3600 * 3600)
	e, st := testEngine(t, Options{Config: cfg, Now: func() time.Time { return time.Unix(clock.Load(), 0) }})
	return e, st, clock
}

func export(t *testing.T, e *Engine, o AudienceOptions) ([]byte, AudienceStats) {
	t.Helper()
	var b bytes.Buffer
	st, err := e.ExportAudience(context.Background(), &b, o)
	if err != nil {
		t.Fatalf("export %+v: %v", o, err)
	}
	return b.Bytes(), st
}

// seedAudience: u1 and u4 are consenting members; u2 is in the segment
// without consent, u3 consents but is not in it, u5 has no attributes.
func seedAudience(t *testing.T, e *Engine) {
	t.Helper()
	post(t, e, pageview("u1", "/pricing"), pageview("u2", "/pricing"), pageview("u3", "/about"),
		pageview("u4", "/pricing/"), pageview("u5", "/pricing"), view("u1", "i90"), view("u1", "i157"))
	setAttrs(t, e, "u1", `{"email":"a@x.jp","company":"ACME, \"Inc\"","consent_email":true}`)
	setAttrs(t, e, "u2", `{"email":"b@x.jp","consent_email":false,"secret":"no"}`)
	setAttrs(t, e, "u3", `{"email":"c@x.jp","consent_email":true}`)
	setAttrs(t, e, "u4", `{"email":"d@x.jp","score":3.5,"consent_email":"yes","consent_dm":true}`)
}

func TestExportAudience(t *testing.T) {
	e, _, clock := audienceEngine(t)
	seedAudience(t, e)
	now := clock.Load()

	b, st := export(t, e, AudienceOptions{Segment: "pricing", WithRecs: 5, Format: "ndjson"})
	rows := testenv.ParseNDJSON(t, b)
	if len(rows) != 2 || rows[0].UserID != "u1" || rows[1].UserID != "u4" {
		t.Fatalf("members: %s", b)
	}
	if st.Scanned != 5 || st.Members != 2 || st.Written != 2 || st.More {
		t.Fatalf("stats %+v", st)
	}
	for _, r := range rows {
		if r.Status != "member" || r.ChangedAt != now || len(r.Recommendations) != 5 {
			t.Fatalf("row %+v", r)
		}
		for _, rec := range r.Recommendations {
			if rec.ID == "" || rec.Title == "" || rec.Category == "" || r.UserID == "u1" && (rec.ID == "i90" || rec.ID == "i157") {
				t.Fatalf("rec %+v of %s", rec, r.UserID)
			}
		}
	}
	if rows[0].Attributes["company"] != `ACME, "Inc"` || rows[1].Attributes["score"] != 3.5 || rows[1].Attributes["consent_dm"] != true {
		t.Fatalf("attributes: %s", b)
	}
	// u1's recommendations are personal, as the API answers them
	// (GET /v1/users/u1/recommendations?k=5 asks View.PersonalTop).
	l := personal(t, e, "u1", 5)
	for i, it := range l {
		if rows[0].Recommendations[i].ID != it.ID {
			t.Fatalf("u1: export recs %+v; API %+v", rows[0].Recommendations, l)
		}
	}

	b, _ = export(t, e, AudienceOptions{Segment: "pricing", WithRecs: 2})
	crows, header := testenv.ParseCSV(t, b)
	want := []string{"user_id", "status", "changed_at", "company", "consent_dm", "consent_email", "email", "score",
		"rec_1_id", "rec_1_title", "rec_1_category", "rec_1_price", "rec_2_id", "rec_2_title", "rec_2_category", "rec_2_price"}
	if !slices.Equal(header, want) {
		t.Fatalf("header %q; want %q", header, want)
	}
	if len(crows) != 2 || crows[0]["company"] != `ACME, "Inc"` || crows[0]["consent_email"] != "true" || crows[0]["score"] != "" ||
		crows[1]["score"] != "3.5" || crows[1]["consent_email"] != "yes" || crows[0]["rec_2_id"] != rows[0].Recommendations[1].ID ||
		crows[0]["changed_at"] != strconv.FormatInt(now, 10) {
		t.Fatalf("CSV rows: %s", b)
	}
	if bytes.Contains(b, []byte("b@x.jp")) || bytes.Contains(b, []byte("secret")) {
		t.Fatalf("a user without consent was written: %s", b)
	}
	// Fixed columns.
	b, _ = export(t, e, AudienceOptions{Segment: "pricing", Attrs: []string{"email"}})
	if crows, header = testenv.ParseCSV(t, b); !slices.Equal(header, []string{"user_id", "status", "changed_at", "email"}) || crows[1]["email"] != "d@x.jp" {
		t.Fatalf("CSV with attrs: %s", b)
	}
	// Another channel: only u4 consents to dm.
	b, _ = export(t, e, AudienceOptions{Segment: "pricing", Format: "ndjson", Channel: "dm"})
	if rows = testenv.ParseNDJSON(t, b); len(rows) != 1 || rows[0].UserID != "u4" || rows[0].Recommendations != nil {
		t.Fatalf("dm: %s", b)
	}

	// The NDJSON form converts to the same CSV.
	nd, _ := export(t, e, AudienceOptions{Segment: "pricing", WithRecs: 3, Format: "ndjson"})
	direct, _ := export(t, e, AudienceOptions{Segment: "pricing", WithRecs: 3})
	var conv bytes.Buffer
	if n, err := WriteAudienceCSV(&conv, bytes.NewReader(nd), 3, nil, false); err != nil || n != 2 || conv.String() != string(direct) {
		t.Fatalf("converted %d rows, %v:\n%s\nwant\n%s", n, err, conv.Bytes(), direct)
	}
}

// Bad options are refused as Invalid, before anything is written (the
// end of the old server's TestMembersBadInput).
func TestExportAudienceBadOptions(t *testing.T) {
	e, _, _ := audienceEngine(t)
	seedAudience(t, e)
	for _, o := range []AudienceOptions{{}, {Segment: "nope"}, {Segment: "pricing", Format: "xml"}, {Segment: "pricing", WithRecs: 51}, {Segment: "pricing", Limit: -1}} {
		var b bytes.Buffer
		if _, err := e.ExportAudience(context.Background(), &b, o); err == nil || KindOf(err) != Invalid || b.Len() != 0 {
			t.Fatalf("export %+v: %v (kind %d), %q", o, err, KindOf(err), b.Bytes())
		}
	}
}

// TestExportAudienceHostileCells: CSV cells that a spreadsheet would run
// as formulas are defused, attributes named like the fixed columns get
// their own names, and NDJSON carries the values unchanged.
func TestExportAudienceHostileCells(t *testing.T) {
	e, _, _ := audienceEngine(t)
	post(t, e, pageview("=1+2", "/pricing"), pageview("u9", "/pricing"))
	setAttrs(t, e, "=1+2", `{"company":"=HYPERLINK(\"http://evil.example\",\"click\")","status":"customer","consent_email":true}`)
	setAttrs(t, e, "u9", `{"company":"@SUM(A1)","note":"-2+3","rec_1_id":"x","employees":-5,"consent_email":true}`)
	b, st := export(t, e, AudienceOptions{Segment: "pricing", WithRecs: 1})
	rows, header := testenv.ParseCSV(t, b)
	if st.Written != 2 || len(rows) != 2 {
		t.Fatalf("%+v\n%s", st, b)
	}
	want := "user_id,status,changed_at,company,consent_email,employees,note,attr_rec_1_id,attr_status,rec_1_id,rec_1_title,rec_1_category,rec_1_price"
	if got := strings.Join(header, ","); got != want {
		t.Fatalf("header\n%s\nwant\n%s", got, want)
	}
	r0, r1 := rows[0], rows[1]
	if r0["user_id"] != "'=1+2" || r0["company"] != `'=HYPERLINK("http://evil.example","click")` || r0["status"] != "member" || r0["attr_status"] != "customer" {
		t.Fatalf("row 1: %v", r0)
	}
	if r1["company"] != "'@SUM(A1)" || r1["note"] != "'-2+3" || r1["employees"] != "-5" || r1["attr_rec_1_id"] != "x" || r1["rec_1_id"] == "x" {
		t.Fatalf("row 2: %v", r1)
	}
	// The same rows through NDJSON, and back to CSV (export --url): the
	// same cells.
	nd, _ := export(t, e, AudienceOptions{Segment: "pricing", Format: "ndjson", WithRecs: 1})
	if r := testenv.ParseNDJSON(t, nd); r[0].UserID != "=1+2" || r[0].Attributes["company"] != `=HYPERLINK("http://evil.example","click")` {
		t.Fatalf("NDJSON: %+v", r[0])
	}
	var back bytes.Buffer
	if _, err := WriteAudienceCSV(&back, bytes.NewReader(nd), 1, nil, false); err != nil {
		t.Fatal(err)
	}
	brows, bheader := testenv.ParseCSV(t, back.Bytes())
	if strings.Join(bheader, ",") != want || brows[0]["user_id"] != "'=1+2" || brows[1]["company"] != "'@SUM(A1)" || brows[1]["employees"] != "-5" {
		t.Fatalf("from NDJSON:\n%s", back.Bytes())
	}
	// RawCSV, for importers that are not spreadsheets: cells as they are.
	raw, _ := export(t, e, AudienceOptions{Segment: "pricing", RawCSV: true})
	if rrows, _ := testenv.ParseCSV(t, raw); rrows[0]["user_id"] != "=1+2" || rrows[1]["note"] != "-2+3" {
		t.Fatalf("raw CSV:\n%s", raw)
	}
	// Attribute names that start like formulas, or like the renamed
	// columns, keep columns of their own; attrs naming one twice get one.
	setAttrs(t, e, "u9", `{"=x":"1","'=x":"2","attr_=x":"3"}`)
	b, _ = export(t, e, AudienceOptions{Segment: "pricing", Attrs: []string{"=x", "'=x", "attr_=x", "note", "note"}})
	if _, h := testenv.ParseCSV(t, b); strings.Join(h, ",") != "user_id,status,changed_at,attr_=x,attr_'=x,attr_attr_=x,note" {
		t.Fatalf("header %q", h)
	}
}

// TestExportAudienceDamaged: a profile that cannot be decoded (a newer
// version's, or damaged) and a damaged membership record do not stop an
// export: the profile is skipped and counted, the record rewritten.
func TestExportAudienceDamaged(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig([]byte(audienceYAML), "audience.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	st, err := index.OpenState(dir, index.StateOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AppendEvents([]index.StateEvent{{User: []byte("u1"), Type: model.EventPageview, TS: now, Page: []byte("/pricing")}}); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateProfile([]byte("u1"), func(p *model.Profile) error {
		p.SetAttr([]byte("consent_email"), model.AttrBool, nil, 1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// u2 is out of the segment; its record is damaged too.
	if err := st.AppendEvents([]index.StateEvent{{User: []byte("u2"), Type: model.EventPageview, TS: now, Page: []byte("/home")}}); err != nil {
		t.Fatal(err)
	}
	mw := st.NewMetaWriter()
	if err := mw.Set([]byte("sg/pricing/email/u1"), []byte{'x'}); err != nil {
		t.Fatal(err)
	}
	if err := mw.Set([]byte("sg/pricing/email/u2"), []byte{'i'}); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// A profile value no version of this one decodes, under the state
	// store's profile key ("p" + user, index/doc.go).
	// Pebble refuses to open a store under another merge operator's name.
	merger := &pebble.Merger{Name: "edgerec.add.v1", Merge: func(_, _ []byte) (pebble.ValueMerger, error) { return nil, errors.New("unused") }}
	db, err := pebble.Open(dir, &pebble.Options{Merger: merger})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("pbroken"), []byte{99, 0}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	st = openState(t, dir, index.StateOptions{})
	e := newEngine(t, Options{Config: cfg}, st, "")
	for _, format := range []string{"csv", "ndjson"} {
		var out bytes.Buffer
		stats, err := e.ExportAudience(context.Background(), &out, AudienceOptions{Segment: "pricing", Format: format, Record: true})
		if err != nil || stats.Skipped != 1 || stats.Written != 1 || !strings.Contains(out.String(), "u1") {
			t.Fatalf("%s export over a damaged profile: %+v, %v\n%s", format, stats, err, out.String())
		}
	}
	// Both damaged records were rewritten: u1 joined, u2 is out.
	var out bytes.Buffer
	stats, err := e.ExportAudience(context.Background(), &out, AudienceOptions{Segment: "pricing", Format: "ndjson", Since: now - 3600, Record: true})
	if rows := testenv.ParseNDJSON(t, out.Bytes()); err != nil || stats.Joined != 1 || stats.Left != 1 || len(rows) != 2 || rows[1].UserID != "u2" {
		t.Fatalf("since: %+v, %v\n%s", stats, err, out.String())
	}
}

// Membership changes noticed by exports that record them (an export
// job's): joined and left rows.
func TestExportAudienceSince(t *testing.T) {
	e, _, clock := audienceEngine(t)
	seedAudience(t, e)
	t0 := clock.Load()
	// The first export notices u1 and u4 joining.
	b, st := export(t, e, AudienceOptions{Segment: "pricing", Since: t0, Format: "ndjson", Record: true})
	rows := testenv.ParseNDJSON(t, b)
	if len(rows) != 2 || rows[0].Status != "joined" || rows[1].Status != "joined" || st.Joined != 2 || rows[0].ChangedAt != t0 {
		t.Fatalf("first export: %+v %s", st, b)
	}
	// An hour later u1 withdraws consent and u3 visits the pricing page.
	t1 := t0 + 3600
	clock.Store(t1)
	setAttrs(t, e, "u1", `{"consent_email":false}`)
	post(t, e, pageview("u3", "/pricing"))
	b, st = export(t, e, AudienceOptions{Segment: "pricing", Since: t1, Format: "ndjson", WithRecs: 3, Record: true})
	rows = testenv.ParseNDJSON(t, b)
	if len(rows) != 2 || st.Joined != 1 || st.Left != 1 {
		t.Fatalf("after changes: %+v %s", st, b)
	}
	if r := rows[0]; r.UserID != "u1" || r.Status != "left" || r.ChangedAt != t1 || r.Attributes != nil || r.Recommendations != nil {
		t.Fatalf("u1 left: %s", b)
	}
	if bytes.Contains(b, []byte("a@x.jp")) {
		t.Fatalf("a left row carries data: %s", b)
	}
	if r := rows[1]; r.UserID != "u3" || r.Status != "joined" || r.ChangedAt != t1 || r.Attributes["email"] != "c@x.jp" || len(r.Recommendations) != 3 {
		t.Fatalf("u3 joined: %s", b)
	}
	// CSV: the left row has only its first three cells.
	b, _ = export(t, e, AudienceOptions{Segment: "pricing", Since: t1, WithRecs: 1, Record: true})
	crows, _ := testenv.ParseCSV(t, b)
	if len(crows) != 2 || crows[0]["status"] != "left" || crows[0]["email"] != "" || crows[0]["rec_1_id"] != "" || crows[1]["email"] != "c@x.jp" {
		t.Fatalf("CSV since: %s", b)
	}
	// Without since: the current members, u4 since t0, u3 since t1.
	b, _ = export(t, e, AudienceOptions{Segment: "pricing", Format: "ndjson", Record: true})
	if rows = testenv.ParseNDJSON(t, b); len(rows) != 2 || rows[0].UserID != "u3" || rows[0].ChangedAt != t1 || rows[1].UserID != "u4" || rows[1].ChangedAt != t0 {
		t.Fatalf("members: %s", b)
	}
	// Thirty-one days on, the pricing views have left the window: everyone
	// left, noticed now.
	t2 := t0 + 31*86400
	clock.Store(t2)
	b, st = export(t, e, AudienceOptions{Segment: "pricing", Since: t2, Format: "ndjson", Record: true})
	if rows = testenv.ParseNDJSON(t, b); len(rows) != 2 || st.Left != 2 || rows[0].UserID != "u3" || rows[1].UserID != "u4" || rows[1].ChangedAt != t2 {
		t.Fatalf("after the window: %+v %s", st, b)
	}
	// Nothing changed since.
	clock.Store(t2 + 60)
	if b, st = export(t, e, AudienceOptions{Segment: "pricing", Since: t2 + 1, Record: true}); st.Written != 0 || string(b) != "user_id,status,changed_at\n" {
		t.Fatalf("no change: %+v %q", st, b)
	}
}

// TestExportAudienceReadOnly: an export without Record (a read of the
// members) writes no membership record, and its rows are those of the
// same export with Record.
func TestExportAudienceReadOnly(t *testing.T) {
	e, st, clock := audienceEngine(t)
	seedAudience(t, e)
	records := func() map[string]string {
		t.Helper()
		m := map[string]string{}
		if err := st.ScanMeta([]byte("sg/"), func(k, v []byte) error {
			m[string(k)] = string(v)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t0 := clock.Load()
	opts := []AudienceOptions{
		{Segment: "pricing"},
		{Segment: "pricing", Format: "ndjson", WithRecs: 2},
		{Segment: "pricing", Since: t0},
		{Segment: "pricing", Since: t0, Format: "ndjson", WithRecs: 1},
		{Segment: "pricing", Channel: "dm", Format: "ndjson"},
	}
	// compare exports every o without Record, checks the records did not
	// change, then exports it with Record: the same bytes and stats.
	compare := func(when string) {
		t.Helper()
		for _, o := range opts {
			before := records()
			got, gst := export(t, e, o)
			if after := records(); !maps.Equal(before, after) {
				t.Fatalf("%s: export %+v without Record changed the records:\n%v\nto\n%v", when, o, before, after)
			}
			o.Record = true
			want, wst := export(t, e, o)
			if !bytes.Equal(got, want) || gst != wst {
				t.Fatalf("%s: export %+v: without Record %+v\n%s\nwith Record %+v\n%s", when, o, gst, got, wst, want)
			}
		}
	}
	compare("first exports")
	// The exports with Record noted the members who joined; the others
	// never were members and get no record.
	if got := slices.Sorted(maps.Keys(records())); !slices.Equal(got, []string{"sg/pricing/dm/u4", "sg/pricing/email/u1", "sg/pricing/email/u4"}) {
		t.Fatalf("records after exports with Record: %q", got)
	}
	// Changes an hour later: u1 leaves (consent withdrawn), u3 joins.
	t1 := t0 + 3600
	clock.Store(t1)
	setAttrs(t, e, "u1", `{"consent_email":false}`)
	post(t, e, pageview("u3", "/pricing"))
	opts = append(opts, AudienceOptions{Segment: "pricing", Since: t1, Format: "ndjson"})
	compare("after changes")
}

// SegmentSizes counts every segment's members in one scan, as the
// audience export sees them: the export's Members are the segment's
// consenting members; it records nothing.
func TestSegmentSizes(t *testing.T) {
	cfg, err := ParseConfig([]byte(audienceYAML+`
  about:
    description: saw /about
    if: 'views("/about", "30d") >= 1'
  nobody:
    if: 'purchases >= 100'
`), "sizes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, st := testEngine(t, Options{Config: cfg})
	seedAudience(t, e)
	got, err := e.SegmentSizes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// pricing: u1, u2, u4, u5; of them u1 and u4 consent to email.
	want := []SegmentSize{{"about", "saw /about", 1, 1}, {"nobody", "", 0, 0}, {"pricing", "", 4, 2}}
	if got.Scanned != 5 || got.Skipped != 0 || !slices.Equal(got.Segments, want) || got.At == 0 {
		t.Fatalf("sizes %+v; want %+v of 5 profiles", got, want)
	}
	for _, s := range got.Segments {
		_, ast := export(t, e, AudienceOptions{Segment: s.Segment})
		if ast.Members != s.Email || ast.Scanned != got.Scanned {
			t.Fatalf("segment %s: sizes %+v, export %+v", s.Segment, s, ast)
		}
	}
	n := 0
	if err := st.ScanMeta([]byte("sg/"), func(k, v []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("%d membership records after SegmentSizes and exports without Record (%v)", n, err)
	}
}
