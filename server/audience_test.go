package server

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

const audienceYAML = `
segments:
  pricing:
    if: 'views("/pricing", "30d") >= 1'
`

// audienceServer serves a config with segment "pricing" at a settable
// clock (Unix seconds).
func audienceServer(t *testing.T) (*Server, *atomic.Int64) {
	t.Helper()
	cfg, err := ParseConfig([]byte(audienceYAML), "audience.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clock := new(atomic.Int64)
	clock.Store(time.Now().Unix() / 3600 * 3600)
	s, _ := testServer(t, Options{Config: cfg, Now: func() time.Time { return time.Unix(clock.Load(), 0) }})
	return s, clock
}

func putAttrs(t *testing.T, s *Server, user, body string) {
	t.Helper()
	if code, resp := do(t, s.testClient, "PUT", "/v1/users/"+user, testKey, body); code != 200 {
		t.Fatalf("PUT %s: %d %s", user, code, resp)
	}
}

func pageview(user, page string) string {
	return fmt.Sprintf(`{"user_id":%q,"event":"pageview","page":%q}`+"\n", user, "https://shop.example"+page+"?utm_source=x")
}

// ndjsonRow is a row of the NDJSON form.
type ndjsonRow struct {
	UserID          string         `json:"user_id"`
	Status          string         `json:"status"`
	ChangedAt       int64          `json:"changed_at"`
	Attributes      map[string]any `json:"attributes"`
	Recommendations []struct {
		ID, Title, Category string
		Price               *float64
	} `json:"recommendations"`
}

func parseNDJSON(t *testing.T, b []byte) []ndjsonRow {
	t.Helper()
	var rows []ndjsonRow
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r ndjsonRow
		d := json.NewDecoder(bytes.NewReader(line))
		d.DisallowUnknownFields()
		if err := d.Decode(&r); err != nil {
			t.Fatalf("bad NDJSON line %s: %v", line, err)
		}
		rows = append(rows, r)
	}
	return rows
}

// parseCSV returns the rows as maps of column → cell, and the header.
func parseCSV(t *testing.T, b []byte) ([]map[string]string, []string) {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("bad CSV %v: %s", err, b)
	}
	var rows []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		rows = append(rows, m)
	}
	return rows, recs[0]
}

func export(t *testing.T, s *Server, o AudienceOptions) ([]byte, AudienceStats) {
	t.Helper()
	var b bytes.Buffer
	st, err := s.ExportAudience(&b, o)
	if err != nil {
		t.Fatalf("export %+v: %v", o, err)
	}
	return b.Bytes(), st
}

// seedAudience: u1 and u4 are consenting members; u2 is in the segment
// without consent, u3 consents but is not in it, u5 has no attributes.
func seedAudience(t *testing.T, s *Server) {
	t.Helper()
	postEvents(t, s, pageview("u1", "/pricing")+pageview("u2", "/pricing")+pageview("u3", "/about")+
		pageview("u4", "/pricing/")+pageview("u5", "/pricing")+
		`{"user_id":"u1","item_id":"50","event":"view"}`+"\n"+`{"user_id":"u1","item_id":"181","event":"view"}`+"\n")
	putAttrs(t, s, "u1", `{"email":"a@x.jp","company":"ACME, \"Inc\"","consent_email":true}`)
	putAttrs(t, s, "u2", `{"email":"b@x.jp","consent_email":false,"secret":"no"}`)
	putAttrs(t, s, "u3", `{"email":"c@x.jp","consent_email":true}`)
	putAttrs(t, s, "u4", `{"email":"d@x.jp","score":3.5,"consent_email":"yes","consent_dm":true}`)
}

func TestExportAudience(t *testing.T) {
	s, clock := audienceServer(t)
	seedAudience(t, s)
	now := clock.Load()

	b, st := export(t, s, AudienceOptions{Segment: "pricing", WithRecs: 5, Format: "ndjson"})
	rows := parseNDJSON(t, b)
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
			if rec.ID == "" || rec.Title == "" || rec.Category == "" || r.UserID == "u1" && (rec.ID == "50" || rec.ID == "181") {
				t.Fatalf("rec %+v of %s", rec, r.UserID)
			}
		}
	}
	if rows[0].Attributes["company"] != `ACME, "Inc"` || rows[1].Attributes["score"] != 3.5 || rows[1].Attributes["consent_dm"] != true {
		t.Fatalf("attributes: %s", b)
	}
	// u1's recommendations are personal, as the API answers them.
	l := getList(t, s.testClient, "/v1/users/u1/recommendations?k=5")
	for i, it := range l.Items {
		if rows[0].Recommendations[i].ID != it.ID {
			t.Fatalf("u1: export recs %+v; API %+v", rows[0].Recommendations, l.Items)
		}
	}

	b, _ = export(t, s, AudienceOptions{Segment: "pricing", WithRecs: 2})
	crows, header := parseCSV(t, b)
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
	b, _ = export(t, s, AudienceOptions{Segment: "pricing", Attrs: []string{"email"}})
	if crows, header = parseCSV(t, b); !slices.Equal(header, []string{"user_id", "status", "changed_at", "email"}) || crows[1]["email"] != "d@x.jp" {
		t.Fatalf("CSV with attrs: %s", b)
	}
	// Another channel: only u4 consents to dm.
	b, _ = export(t, s, AudienceOptions{Segment: "pricing", Format: "ndjson", Channel: "dm"})
	if rows = parseNDJSON(t, b); len(rows) != 1 || rows[0].UserID != "u4" || rows[0].Recommendations != nil {
		t.Fatalf("dm: %s", b)
	}

	// The NDJSON form converts to the same CSV.
	nd, _ := export(t, s, AudienceOptions{Segment: "pricing", WithRecs: 3, Format: "ndjson"})
	direct, _ := export(t, s, AudienceOptions{Segment: "pricing", WithRecs: 3})
	var conv bytes.Buffer
	if n, err := WriteAudienceCSV(&conv, bytes.NewReader(nd), 3, nil, false); err != nil || n != 2 || conv.String() != string(direct) {
		t.Fatalf("converted %d rows, %v:\n%s\nwant\n%s", n, err, conv.Bytes(), direct)
	}
}

// Pages over HTTP: limit, X-Next-After, after, gzip.
func TestMembersEndpoint(t *testing.T) {
	s, _ := audienceServer(t)
	seedAudience(t, s)
	c := s.testClient
	get := func(uri string, header ...string) (int, []byte, *fasthttp.ResponseHeader) {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://edgerec" + uri)
		req.Header.Set("Authorization", "Bearer "+testKey)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		body, err := resp.BodyUncompressed()
		if err != nil {
			t.Fatal(err)
		}
		var h fasthttp.ResponseHeader
		resp.Header.CopyTo(&h)
		return resp.StatusCode(), append([]byte(nil), body...), &h
	}
	code, b, h := get("/v1/segments/pricing/members?format=ndjson&limit=1&with_recs=1")
	rows := parseNDJSON(t, b)
	if code != 200 || len(rows) != 1 || rows[0].UserID != "u1" || string(h.Peek("X-Next-After")) != "u1" ||
		string(h.ContentType()) != "application/x-ndjson" {
		t.Fatalf("page 1: %d %s %s", code, h.Peek("X-Next-After"), b)
	}
	code, b, h = get("/v1/segments/pricing/members?format=ndjson&limit=1&after=u1")
	if rows = parseNDJSON(t, b); code != 200 || len(rows) != 1 || rows[0].UserID != "u4" || string(h.Peek("X-Next-After")) != "u4" {
		t.Fatalf("page 2: %d %s", code, b)
	}
	code, b, h = get("/v1/segments/pricing/members?format=ndjson&limit=1&after=u4")
	if code != 200 || len(b) != 0 || h.Peek("X-Next-After") != nil {
		t.Fatalf("page 3: %d %q", code, b)
	}
	code, b, h = get("/v1/segments/pricing/members?with_recs=20", "Accept-Encoding", "gzip")
	crows, _ := parseCSV(t, b)
	if code != 200 || len(crows) != 2 || string(h.Peek("Content-Encoding")) != "gzip" || !strings.HasPrefix(string(h.ContentType()), "text/csv") {
		t.Fatalf("gzip CSV: %d %s %s", code, h.Peek("Content-Encoding"), b)
	}
}

func TestMembersBadInput(t *testing.T) {
	s, _ := audienceServer(t)
	seedAudience(t, s)
	f := func(method, uri, key string, want int, msg string) {
		t.Helper()
		code, resp := do(t, s.testClient, method, uri, key, "")
		var e struct {
			Error struct{ Code, Message string }
		}
		if code != want || json.Unmarshal(resp, &e) != nil || !strings.Contains(e.Error.Message, msg) {
			t.Fatalf("%s %s: %d %s; want %d and %q", method, uri, code, resp, want, msg)
		}
	}
	f("GET", "/v1/segments/nope/members", testKey, 400, `segment: unknown segment "nope"; configured: pricing`)
	f("GET", "/v1/segments/pricing/members?format=xml", testKey, 400, "format")
	f("GET", "/v1/segments/pricing/members?limit=0", testKey, 400, "limit")
	f("GET", "/v1/segments/pricing/members?limit=10001", testKey, 400, "limit")
	f("GET", "/v1/segments/pricing/members?limit=x", testKey, 400, "limit")
	f("GET", "/v1/segments/pricing/members?with_recs=51", testKey, 400, "with_recs")
	f("GET", "/v1/segments/pricing/members?since=yesterday", testKey, 400, "since")
	f("GET", "/v1/segments/pricing/members?since=0", testKey, 400, "since")
	f("GET", "/v1/segments/pricing/members?channel=e%20mail", testKey, 400, "channel")
	f("GET", "/v1/segments/pricing/members?after=%ff", testKey, 400, "after")
	f("GET", "/v1/segments/pricing/members", "", 401, "API key")
	f("GET", "/v1/segments/pricing/members", "wrong", 401, "API key")
	f("POST", "/v1/segments/pricing/members", testKey, 405, "method")
	f("GET", "/v1/segments/pricing/other", testKey, 404, "endpoint")
	for _, o := range []AudienceOptions{{}, {Segment: "nope"}, {Segment: "pricing", Format: "xml"}, {Segment: "pricing", WithRecs: 51}, {Segment: "pricing", Limit: -1}} {
		if _, err := s.ExportAudience(io.Discard, o); err == nil {
			t.Fatalf("export %+v: no error", o)
		}
	}
}

// TestExportAudienceHostileCells: CSV cells that a spreadsheet would run
// as formulas are defused, attributes named like the fixed columns get
// their own names, and NDJSON carries the values unchanged.
func TestExportAudienceHostileCells(t *testing.T) {
	s, _ := audienceServer(t)
	postEvents(t, s, pageview("=1+2", "/pricing")+pageview("u9", "/pricing"))
	putAttrs(t, s, "%3D1%2B2", `{"company":"=HYPERLINK(\"http://evil.example\",\"click\")","status":"customer","consent_email":true}`)
	putAttrs(t, s, "u9", `{"company":"@SUM(A1)","note":"-2+3","rec_1_id":"x","employees":-5,"consent_email":true}`)
	b, st := export(t, s, AudienceOptions{Segment: "pricing", WithRecs: 1})
	rows, header := parseCSV(t, b)
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
	nd, _ := export(t, s, AudienceOptions{Segment: "pricing", Format: "ndjson", WithRecs: 1})
	if r := parseNDJSON(t, nd); r[0].UserID != "=1+2" || r[0].Attributes["company"] != `=HYPERLINK("http://evil.example","click")` {
		t.Fatalf("NDJSON: %+v", r[0])
	}
	var back bytes.Buffer
	if _, err := WriteAudienceCSV(&back, bytes.NewReader(nd), 1, nil, false); err != nil {
		t.Fatal(err)
	}
	brows, bheader := parseCSV(t, back.Bytes())
	if strings.Join(bheader, ",") != want || brows[0]["user_id"] != "'=1+2" || brows[1]["company"] != "'@SUM(A1)" || brows[1]["employees"] != "-5" {
		t.Fatalf("from NDJSON:\n%s", back.Bytes())
	}
	// RawCSV, for importers that are not spreadsheets: cells as they are.
	raw, _ := export(t, s, AudienceOptions{Segment: "pricing", RawCSV: true})
	if rrows, _ := parseCSV(t, raw); rrows[0]["user_id"] != "=1+2" || rrows[1]["note"] != "-2+3" {
		t.Fatalf("raw CSV:\n%s", raw)
	}
	// Attribute names that start like formulas, or like the renamed
	// columns, keep columns of their own; attrs naming one twice get one.
	putAttrs(t, s, "u9", `{"=x":"1","'=x":"2","attr_=x":"3"}`)
	b, _ = export(t, s, AudienceOptions{Segment: "pricing", Attrs: []string{"=x", "'=x", "attr_=x", "note", "note"}})
	if _, h := parseCSV(t, b); strings.Join(h, ",") != "user_id,status,changed_at,attr_=x,attr_'=x,attr_attr_=x,note" {
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
	if st, err = index.OpenState(dir, index.StateOptions{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(Options{Config: cfg}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	for _, format := range []string{"csv", "ndjson"} {
		var out bytes.Buffer
		stats, err := s.ExportAudience(&out, AudienceOptions{Segment: "pricing", Format: format})
		if err != nil || stats.Skipped != 1 || stats.Written != 1 || !strings.Contains(out.String(), "u1") {
			t.Fatalf("%s export over a damaged profile: %+v, %v\n%s", format, stats, err, out.String())
		}
	}
	// Both damaged records were rewritten: u1 joined, u2 is out.
	var out bytes.Buffer
	stats, err := s.ExportAudience(&out, AudienceOptions{Segment: "pricing", Format: "ndjson", Since: now - 3600})
	if rows := parseNDJSON(t, out.Bytes()); err != nil || stats.Joined != 1 || stats.Left != 1 || len(rows) != 2 || rows[1].UserID != "u2" {
		t.Fatalf("since: %+v, %v\n%s", stats, err, out.String())
	}
}

// TestMembersAttrsPages: with attrs=, every CSV page has the same columns.
func TestMembersAttrsPages(t *testing.T) {
	s, _ := audienceServer(t)
	seedAudience(t, s)
	var headers []string
	for _, after := range []string{"", "u1"} {
		code, b := do(t, s.testClient, "GET", "/v1/segments/pricing/members?limit=1&attrs=email,score&after="+after, testKey, "")
		if code != 200 {
			t.Fatalf("%d %s", code, b)
		}
		h, _, _ := bytes.Cut(b, []byte("\n"))
		headers = append(headers, string(h))
	}
	if headers[0] != headers[1] || headers[0] != "user_id,status,changed_at,email,score" {
		t.Fatalf("page headers: %q", headers)
	}
}

// Membership changes noticed by exports: joined and left rows.
func TestExportAudienceSince(t *testing.T) {
	s, clock := audienceServer(t)
	seedAudience(t, s)
	t0 := clock.Load()
	// The first export notices u1 and u4 joining.
	b, st := export(t, s, AudienceOptions{Segment: "pricing", Since: t0, Format: "ndjson"})
	rows := parseNDJSON(t, b)
	if len(rows) != 2 || rows[0].Status != "joined" || rows[1].Status != "joined" || st.Joined != 2 || rows[0].ChangedAt != t0 {
		t.Fatalf("first export: %+v %s", st, b)
	}
	// An hour later u1 withdraws consent and u3 visits the pricing page.
	t1 := t0 + 3600
	clock.Store(t1)
	putAttrs(t, s, "u1", `{"consent_email":false}`)
	postEvents(t, s, pageview("u3", "/pricing"))
	b, st = export(t, s, AudienceOptions{Segment: "pricing", Since: t1, Format: "ndjson", WithRecs: 3})
	rows = parseNDJSON(t, b)
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
	b, _ = export(t, s, AudienceOptions{Segment: "pricing", Since: t1, WithRecs: 1})
	crows, _ := parseCSV(t, b)
	if len(crows) != 2 || crows[0]["status"] != "left" || crows[0]["email"] != "" || crows[0]["rec_1_id"] != "" || crows[1]["email"] != "c@x.jp" {
		t.Fatalf("CSV since: %s", b)
	}
	// Without since: the current members, u4 since t0, u3 since t1.
	b, _ = export(t, s, AudienceOptions{Segment: "pricing", Format: "ndjson"})
	if rows = parseNDJSON(t, b); len(rows) != 2 || rows[0].UserID != "u3" || rows[0].ChangedAt != t1 || rows[1].UserID != "u4" || rows[1].ChangedAt != t0 {
		t.Fatalf("members: %s", b)
	}
	// Thirty-one days on, the pricing views have left the window: everyone
	// left, noticed now.
	t2 := t0 + 31*86400
	clock.Store(t2)
	b, st = export(t, s, AudienceOptions{Segment: "pricing", Since: t2, Format: "ndjson"})
	if rows = parseNDJSON(t, b); len(rows) != 2 || st.Left != 2 || rows[0].UserID != "u3" || rows[1].UserID != "u4" || rows[1].ChangedAt != t2 {
		t.Fatalf("after the window: %+v %s", st, b)
	}
	// Nothing changed since.
	clock.Store(t2 + 60)
	if b, st = export(t, s, AudienceOptions{Segment: "pricing", Since: t2 + 1}); st.Written != 0 || string(b) != "user_id,status,changed_at\n" {
		t.Fatalf("no change: %+v %q", st, b)
	}
	// Over HTTP too.
	code, body := do(t, s.testClient, "GET", "/v1/segments/pricing/members?format=ndjson&since="+strconv.FormatInt(t2, 10), testKey, "")
	if rows = parseNDJSON(t, body); code != 200 || len(rows) != 2 || rows[0].Status != "left" {
		t.Fatalf("GET since: %d %s", code, body)
	}
}

// BenchmarkExportAudience1M exports a segment of a million profiles with
// five recommendations per member (a third of them).
//
//	go test -run NONE -bench ExportAudience1M -benchtime 1x ./server/
func BenchmarkExportAudience1M(b *testing.B) {
	const users = 1_000_000
	root := buildML100k(b)
	state, err := index.OpenState(b.TempDir(), index.StateOptions{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer state.Close()
	cfg, err := ParseConfig([]byte(audienceYAML), "audience.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Config: cfg, APIKey: testKey}, state)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown()
	if _, err := s.LoadSnapshot(root); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	seedMillion(b, state, users)
	b.Logf("seeded %d profiles in %v", users, time.Since(start).Round(time.Millisecond))
	members := 0
	for i := range users {
		if i%2 == 0 && i%3 != 2 {
			members++
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		st, err := s.ExportAudience(io.Discard, AudienceOptions{Segment: "pricing", WithRecs: 5})
		if err != nil {
			b.Fatal(err)
		}
		if st.Scanned != users || st.Written != members {
			b.Fatalf("stats %+v", st)
		}
	}
	b.ReportMetric(float64(users*b.N)/b.Elapsed().Seconds(), "profiles/s")
}

// seedMillion stores n users: every other one viewed /pricing, each viewed
// two movies, two in three consent to email.
func seedMillion(b *testing.B, state *index.State, n int) {
	now := time.Now().Unix()
	const batch = 1000
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := make([]index.StateEvent, 0, 3*batch)
			for lo := w * batch; lo < n; lo += 2 * batch {
				evs = evs[:0]
				for i := lo; i < min(lo+batch, n); i++ {
					user := fmt.Appendf(nil, "u%07d", i)
					page := []byte("/home")
					if i%2 == 0 {
						page = []byte("/pricing")
					}
					evs = append(evs,
						index.StateEvent{User: user, Type: model.EventPageview, TS: now - 3600, Page: page},
						index.StateEvent{User: user, Item: []byte(strconv.Itoa(i*7%1682 + 1)), Type: model.EventView, TS: now - 1800},
						index.StateEvent{User: user, Item: []byte(strconv.Itoa(i*13%1682 + 1)), Type: model.EventView, TS: now - 60})
				}
				if err := state.AppendEvents(evs); err != nil {
					errs <- err
					return
				}
				for i := lo; i < min(lo+batch, n); i++ {
					user := fmt.Appendf(nil, "u%07d", i)
					err := state.UpdateProfile(user, func(p *model.Profile) error {
						p.SetAttr([]byte("email"), model.AttrString, append(user, "@example.jp"...), 0)
						p.SetAttr([]byte("company"), model.AttrString, []byte("Company "+strconv.Itoa(i%997)), 0)
						consent := 1.0
						if i%3 == 2 {
							consent = 0
						}
						p.SetAttr([]byte("consent_email"), model.AttrBool, nil, consent)
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}
