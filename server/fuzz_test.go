package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/edgerec/edgerec/bench"
	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// The HTTP door under fuzzing: the real Server, fasthttp's request
// parsing and ErrorHandler included, served on an in-memory listener
// over a small generated shop and a real state store. Each request is
// written as raw bytes, so what the fuzzer makes reaches the server as a
// client would send it. Seed corpora: testdata/fuzz/FuzzEventsBody and
// FuzzReadQuery, written by TestWriteFuzzSeeds.

const (
	fuzzKey      = "fuzz-key"
	fuzzMaxBody  = 4096
	fuzzMaxBatch = 8
)

// fuzzNow is the servers' clock (the generated shop's events end on
// 2026-03-01); fuzzSignKey signs their decision ids, so that seeds can
// carry a valid one.
var (
	fuzzNow     = time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	fuzzSignKey = []byte("fuzz-sign-key")
)

// discardLogger keeps the engine's logs ("serving snapshot …", rules
// failing at run time) out of fuzzing output.
var discardLogger = slog.New(slog.DiscardHandler)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora of FuzzEventsBody and FuzzReadQuery")

// fuzzStack is a Server with its engine and state store, served on an
// in-memory listener.
type fuzzStack struct {
	s     *Server
	e     *engine.Engine
	state *index.State
	ln    *fasthttputil.InmemoryListener
	seq   uint64 // the state store's last event seq seen
}

// newFuzzStack serves a generated shop (60 items in 4 categories, 2,000
// events) with the bundled edgerec.yaml, at fuzzNow. When tb ends it
// closes the server, the engine, then the state store.
func newFuzzStack(tb testing.TB) *fuzzStack {
	tb.Helper()
	dir := tb.TempDir()
	events, items := filepath.Join(dir, "events.csv"), filepath.Join(dir, "items.csv")
	if _, err := bench.GenFiles(events, items, bench.GenOptions{
		Events: 2000, Items: 60, Users: 80, Categories: 4, Seed: 1, Start: 1767225600, Days: 60,
	}); err != nil {
		tb.Fatal(err)
	}
	b, err := index.NewBuilder(index.BuildOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.ReadItemsFile(items); err != nil {
		tb.Fatal(err)
	}
	if err := b.ReadEventsFile(events); err != nil {
		tb.Fatal(err)
	}
	root := filepath.Join(dir, "snapshots")
	if _, err := b.Build(root); err != nil {
		tb.Fatal(err)
	}
	cfg, err := engine.LoadConfig("../edgerec.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	now := func() time.Time { return fuzzNow }
	state, err := index.OpenState(filepath.Join(dir, "state"), index.StateOptions{NoSync: true, Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = state.Close() })
	e, err := engine.New(engine.Options{Now: now, Config: cfg, SignKey: fuzzSignKey, Logger: discardLogger}, state)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	s, err := New(e, Options{SnapshotRoot: root, APIKey: fuzzKey, MaxBodySize: fuzzMaxBody, MaxBatch: fuzzMaxBatch})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.LoadSnapshot(context.Background(), root); err != nil {
		tb.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() {
		_ = s.Shutdown()
		_ = ln.Close()
	})
	fs := &fuzzStack{s: s, e: e, state: state, ln: ln}
	fs.seq = fs.scanEvents(tb, nil)
	return fs
}

// roundTrip writes one raw request and reads its response, gunzipped.
func (fs *fuzzStack) roundTrip(t testing.TB, raw []byte) (status int, header *fasthttp.ResponseHeader, body []byte) {
	t.Helper()
	c, err := fs.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(raw); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("no answer to %q: %v", raw, err)
	}
	body = resp.Body()
	if string(resp.Header.ContentEncoding()) == "gzip" {
		if body, err = resp.BodyGunzip(); err != nil {
			t.Fatalf("%q: bad gzip: %v", raw, err)
		}
	}
	h := new(fasthttp.ResponseHeader)
	resp.Header.CopyTo(h)
	return resp.StatusCode(), h, append([]byte(nil), body...)
}

// scanEvents calls fn for the events stored after fs.seq and returns the
// last seq.
func (fs *fuzzStack) scanEvents(t testing.TB, fn func(ev *index.StateEvent)) uint64 {
	t.Helper()
	last, err := fs.state.ScanEvents(fs.seq, func(_ uint64, ev *index.StateEvent) error {
		if fn != nil {
			fn(ev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return max(last, fs.seq)
}

// checkJSONAnswer checks what every answer shares: an allowed status, a
// JSON body, and on errors {"error":{"code":…,"message":…}}.
func checkJSONAnswer(t *testing.T, what string, status int, h *fasthttp.ResponseHeader, body []byte, allowed ...int) {
	t.Helper()
	ok := false
	for _, s := range allowed {
		ok = ok || s == status
	}
	if !ok {
		t.Fatalf("%s: status %d, want one of %v: %s", what, status, allowed, body)
	}
	if ct := string(h.ContentType()); ct != "application/json" {
		t.Fatalf("%s: %d with content type %q: %s", what, status, ct, body)
	}
	if !json.Valid(body) {
		t.Fatalf("%s: %d with a body that is not JSON: %q", what, status, body)
	}
	if status == fasthttp.StatusOK {
		return
	}
	var e struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == nil || *e.Error.Code == "" || e.Error.Message == nil {
		t.Fatalf("%s: %d with a body that is not an error: %s", what, status, body)
	}
}

// FuzzEventsBody: any body POSTed to /v1/events, with the API key or
// without (a beacon), is answered 200, 400, 401, 413 or 429 with JSON,
// never 500; an error stores nothing (a batch is taken whole); a 200
// counts as accepted the events of the body (a JSON array's elements,
// NDJSON's non-blank lines, counted here with encoding/json), and the
// event log grows by the accepted events less the repeats, in the
// body's order, with the body's user and item ids.
func FuzzEventsBody(f *testing.F) {
	fs := newFuzzStack(f)
	f.Fuzz(func(t *testing.T, body []byte, keyed bool) {
		var raw bytes.Buffer
		raw.WriteString("POST /v1/events HTTP/1.1\r\nHost: edgerec\r\nContent-Type: application/json\r\n")
		if keyed {
			raw.WriteString("Authorization: Bearer " + fuzzKey + "\r\n")
		}
		fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n", len(body))
		raw.Write(body)
		status, h, resp := fs.roundTrip(t, raw.Bytes())
		checkJSONAnswer(t, "POST /v1/events", status, h, resp, 200, 400, 401, 413, 429)
		var stored []index.StateEvent
		fs.seq = fs.scanEvents(t, func(ev *index.StateEvent) {
			stored = append(stored, index.StateEvent{User: bytes.Clone(ev.User), Item: bytes.Clone(ev.Item), Type: ev.Type})
		})
		if status != fasthttp.StatusOK {
			if len(stored) > 0 {
				t.Fatalf("%d, yet %d events stored: %s", status, len(stored), resp)
			}
			return
		}
		var ack struct {
			Accepted *int `json:"accepted"`
			Repeats  int  `json:"repeats"`
		}
		if err := json.Unmarshal(resp, &ack); err != nil || ack.Accepted == nil {
			t.Fatalf("200 without an accepted count: %s", resp)
		}
		sent, err := bodyEvents(body)
		if err != nil {
			t.Fatalf("200 for a body encoding/json does not read (%v): %q", err, body)
		}
		if *ack.Accepted != len(sent) || ack.Repeats < 0 || ack.Repeats > *ack.Accepted || *ack.Accepted > fuzzMaxBatch {
			t.Fatalf("%d events sent; answer %s", len(sent), resp)
		}
		if len(stored) != *ack.Accepted-ack.Repeats {
			t.Fatalf("%d events accepted, %d repeats, %d stored", *ack.Accepted, ack.Repeats, len(stored))
		}
		// The stored events are the body's less its repeats, in order.
		i := 0
		for _, ev := range sent {
			if i < len(stored) && sameID(stored[i].User, ev.user) && sameID(stored[i].Item, ev.item) {
				i++
			}
		}
		if i != len(stored) {
			t.Fatalf("stored events %+v are not those of the body %+v", stored, sent)
		}
		for _, ev := range stored {
			if ev.Type == model.EventUnknown || len(ev.User) == 0 {
				t.Fatalf("stored %+v", ev)
			}
		}
	})
}

// sentEvent is an event of a request body as encoding/json reads it: the
// first of its user and item fields that is a string or a number, as
// the server reads them (firstString).
type sentEvent struct{ user, item []byte }

// bodyEvents splits a body as the server does: a JSON array when it
// starts with '[' (after white space), else NDJSON, a blank line being
// no event.
//
// fastjson, unlike encoding/json, takes raw control characters in
// strings: they are read here as spaces, in the ids compared too
// (sameID).
func bodyEvents(body []byte) ([]sentEvent, error) {
	body = bytes.TrimSpace(body)
	body = controlsAsSpaces(body)
	var elems []json.RawMessage
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &elems); err != nil {
			return nil, err
		}
	} else {
		for _, line := range bytes.Split(body, []byte("\n")) {
			if line = bytes.TrimSpace(line); len(line) > 0 {
				elems = append(elems, line)
			}
		}
	}
	evs := make([]sentEvent, 0, len(elems))
	for _, el := range elems {
		fields, err := firstFields(el)
		if err != nil {
			return nil, err
		}
		evs = append(evs, sentEvent{
			user: pick(fields, "user_id", "user", "visitor_id", "visitor"),
			item: pick(fields, "item_id", "item"),
		})
	}
	return evs, nil
}

// controlsAsSpaces returns b with its control characters other than
// JSON's white space (\t \n \r) as spaces.
func controlsAsSpaces(b []byte) []byte {
	out := bytes.Clone(b)
	for i, c := range out {
		if c < ' ' && c != '\t' && c != '\n' && c != '\r' {
			out[i] = ' '
		}
	}
	return out
}

// sameID compares a stored id with one bodyEvents read, control
// characters as spaces (a raw one was read as a space, an escaped one
// as itself).
func sameID(stored, sent []byte) bool {
	return bytes.Equal(controlsAsSpaces(stored), controlsAsSpaces(sent))
}

// firstFields reads a JSON object's fields, the first of each name
// (fastjson's Get finds the first).
func firstFields(obj []byte) (map[string]json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(obj))
	d.UseNumber()
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object: %q", obj)
	}
	fields := map[string]json.RawMessage{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := fields[tok.(string)]; !dup {
			fields[tok.(string)] = v
		}
	}
	if _, err := d.Token(); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the object: %q", obj)
	}
	return fields, nil
}

// pick returns the first of keys whose value is a string (unquoted) or
// a number (as written).
func pick(fields map[string]json.RawMessage, keys ...string) []byte {
	for _, k := range keys {
		v, ok := fields[k]
		if !ok || len(v) == 0 {
			continue
		}
		switch c := v[0]; {
		case c == '"':
			var s string
			if json.Unmarshal(v, &s) == nil {
				return []byte(s)
			}
		case c == '-' || '0' <= c && c <= '9':
			return v
		}
	}
	return nil
}

// readRoutes are the read endpoints FuzzReadQuery asks: a path of an id,
// or none.
var readRoutes = [...]struct{ prefix, suffix string }{
	{"/v1/items/", "/similar"},
	{"/v1/items/", "/bought-together"},
	{"/v1/users/", "/recommendations"},
	{"/v1/recommend", ""},
	{"/v1/decide", ""},
	{"/v1/page", ""},
	{"/v1/popular", ""},
}

var recIDPat = regexp.MustCompile(`^[0-9a-f]{16}$`)

// FuzzReadQuery: a GET of a read endpoint with any query string, path
// id and User-Agent, gzip or not, is answered 200, 400, 404, 429 or 503
// (431 for a request over MaxHeaderBytes) with JSON, never 500; a 200
// is an answer of the endpoint's shape: a rec_id and at most the largest
// k of distinct items, or a decision, or a page. The id goes as a client sends one: '/' as %2F, any other '%'
// as it is.
func FuzzReadQuery(f *testing.F) {
	fs := newFuzzStack(f)
	f.Fuzz(func(t *testing.T, route uint8, id, query, ua string, gzip bool) {
		r := readRoutes[int(route)%len(readRoutes)]
		if dec, err := url.PathUnescape(id); r.suffix != "" && (dec == "." || dec == ".." || err != nil && (id == "." || id == "..")) {
			// A dot segment: URL rules resolve it before routing, to
			// another endpoint (/v1/users/./recommendations is the profile
			// of user "recommendations").
			return
		}
		var raw bytes.Buffer
		raw.WriteString("GET ")
		raw.WriteString(r.prefix)
		if r.suffix != "" {
			raw.Write(escapeRequestLine([]byte(id), "?#/"))
			raw.WriteString(r.suffix)
		}
		raw.WriteByte('?')
		raw.Write(escapeRequestLine([]byte(query), "#"))
		raw.WriteString(" HTTP/1.1\r\nHost: edgerec\r\n")
		if ua != "" {
			raw.WriteString("User-Agent: ")
			raw.Write(headerValue([]byte(ua)))
			raw.WriteString("\r\n")
		}
		if gzip {
			raw.WriteString("Accept-Encoding: gzip\r\n")
		}
		raw.WriteString("\r\n")
		what := fmt.Sprintf("%q", raw.Bytes())
		status, h, body := fs.roundTrip(t, raw.Bytes())
		allowed := []int{200, 400, 404, 429, 503}
		if raw.Len() > fs.s.o.MaxHeaderBytes {
			// A request line and headers over the limit: 431, or what
			// fasthttp answers first.
			allowed = append(allowed, fasthttp.StatusRequestHeaderFieldsTooLarge)
		}
		checkJSONAnswer(t, what, status, h, body, allowed...)
		if status != fasthttp.StatusOK {
			return
		}
		switch r.prefix {
		case "/v1/decide":
			checkDecision(t, what, body)
		case "/v1/page":
			var p struct {
				Decision        json.RawMessage            `json:"decision"`
				Recommendations map[string]json.RawMessage `json:"recommendations"`
				Segments        []string                   `json:"segments"`
				Visitor         *string                    `json:"visitor"`
			}
			if err := json.Unmarshal(body, &p); err != nil || p.Recommendations == nil || p.Segments == nil || p.Visitor == nil {
				t.Fatalf("%s: not a page (%v): %s", what, err, body)
			}
			if string(p.Decision) != "null" {
				checkDecision(t, what, p.Decision)
			}
			for _, l := range p.Recommendations {
				checkList(t, what, l, fs.e.MaxK())
			}
		default:
			checkList(t, what, body, fs.e.MaxK())
		}
	})
}

// escapeRequestLine percent-encodes what cannot stand in a request line
// (controls, space, DEL) and the bytes of also; the rest goes as it is,
// invalid UTF-8 and stray '%' included.
func escapeRequestLine(b []byte, also string) []byte {
	var out []byte
	for _, c := range b {
		if c <= ' ' || c == 0x7f || bytes.IndexByte([]byte(also), c) >= 0 {
			out = fmt.Appendf(out, "%%%02X", c)
			continue
		}
		out = append(out, c)
	}
	return out
}

// headerValue makes b a header value: controls become spaces.
func headerValue(b []byte) []byte {
	out := bytes.Clone(b)
	for i, c := range out {
		if c < ' ' || c == 0x7f {
			out[i] = ' '
		}
	}
	return out
}

func checkList(t *testing.T, what string, body []byte, maxK int) {
	t.Helper()
	var l struct {
		RecID string `json:"rec_id"`
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &l); err != nil || !recIDPat.MatchString(l.RecID) || l.Items == nil {
		t.Fatalf("%s: not a list (%v): %s", what, err, body)
	}
	if len(l.Items) > maxK {
		t.Fatalf("%s: %d items: %s", what, len(l.Items), body)
	}
	seen := map[string]bool{}
	for _, it := range l.Items {
		if it.ID == "" || seen[it.ID] {
			t.Fatalf("%s: item %q empty or twice: %s", what, it.ID, body)
		}
		seen[it.ID] = true
	}
}

func checkDecision(t *testing.T, what string, body []byte) {
	t.Helper()
	var d struct {
		Page, Experiment, Variant, Reason, Visitor string
		DecisionID                                 string          `json:"decision_id"`
		Payload                                    json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(body, &d); err != nil || d.Page == "" || d.Experiment == "" || d.Variant == "" || d.Reason == "" ||
		d.Visitor == "" || len(d.Payload) == 0 || d.Payload[0] != '{' {
		t.Fatalf("%s: not a decision (%v): %s", what, err, body)
	}
	if want := d.Experiment + "." + d.Variant + "."; len(d.DecisionID) <= len(want) || d.DecisionID[:len(want)] != want {
		t.Fatalf("%s: decision id %q", what, d.DecisionID)
	}
}

// TestWriteFuzzSeeds writes the seed corpora of FuzzEventsBody and
// FuzzReadQuery when run with -update-seeds. A beacon seed carries a
// decision id the fuzz server signs (fixed key and clock).
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("go test -run TestWriteFuzzSeeds ./server -args -update-seeds rewrites testdata/fuzz/Fuzz{EventsBody,ReadQuery}")
	}
	fs := newFuzzStack(t)
	status, _, body := fs.roundTrip(t, []byte("GET /v1/decide?page=lp_consulting&visitor=v1 HTTP/1.1\r\nHost: edgerec\r\n\r\n"))
	var d struct {
		DecisionID string `json:"decision_id"`
	}
	if err := json.Unmarshal(body, &d); status != 200 || err != nil {
		t.Fatalf("decide: %d %s", status, body)
	}
	// A recommendation's rec_id and placement, for keyless clicks.
	status, _, body = fs.roundTrip(t, []byte("GET /v1/recommend?placement=home&user=v1 HTTP/1.1\r\nHost: edgerec\r\n\r\n"))
	var l struct {
		RecID string `json:"rec_id"`
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &l); status != 200 || err != nil || len(l.Items) == 0 {
		t.Fatalf("recommend: %d %s", status, body)
	}
	item := l.Items[0].ID
	events := map[string]struct {
		body  string
		keyed bool
	}{
		"seed-ndjson": {`{"user_id":"v1","item_id":"` + item + `","event":"view"}` + "\n" +
			`{"user_id":"v1","item_id":"` + item + `","event":"click","placement":"home","rec_id":"` + l.RecID + `"}` + "\n" +
			`{"user_id":"v1","item_id":"` + item + `","event":"purchase","value":19.9,"basket":"o1","ts":1772700000}` + "\n" +
			`{"event":"login","visitor":"v1","user_id":"alice"}` + "\n", true},
		"seed-array": {`[{"user":"v2","item":"` + item + `","type":"cart"},{"visitor_id":42,"item_id":7,"event":"rating","value":4}]`, true},
		"seed-event-ids": {`{"user_id":"v3","item_id":"` + item + `","event":"view","event_id":"e-1"}` + "\n" +
			`{"user_id":"v3","item_id":"` + item + `","event":"view","event_id":"e-1"}` + "\n", true},
		"seed-bad-event": {`[{"user_id":"v1","item_id":"i1","event":"view"},{"user_id":"","event":"view"}]`, true},
		"seed-too-many":  {bytes.NewBufferString(stringsRepeat(`{"user_id":"v4","event":"pageview","page":"/pricing"}`+"\n", fuzzMaxBatch+1)).String(), true},
		"seed-escapes-blank-lines": {"\r\n  \n" + `{"user_id":"\u00e9\ud83d\ude00","item_id":"` + item + `","event":"view","user_id":"dup"}` + "\n\n" +
			`{"user_id":"x\"\\\/","event":"pageview","page":"https://example.jp/pricing?x=1"}` + "\r\n", true},
		"seed-inf-value":      {`{"user_id":"inf","event":"conversion","value":1e999}`, true},
		"seed-not-json":       {`{"user_id":"v1","item_id":` + "\n", true},
		"seed-keyless-beacon": {`{"event":"conversion","visitor":"v1","decision_id":"` + d.DecisionID + `","value":12}`, false},
		"seed-keyless-click": {`[{"event":"click","user_id":"v1","item_id":"` + item + `","placement":"home","rec_id":"` + l.RecID + `"},` +
			`{"event":"impression","user_id":"v1","placement":"home","rec_id":"` + l.RecID + `"}]`, false},
		"seed-keyless-forged": {`{"event":"conversion","visitor":"v2","decision_id":"` + d.DecisionID + `"}`, false},
		"seed-keyless-view":   {`{"event":"view","user_id":"v1","item_id":"` + item + `"}`, false},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzEventsBody")
	must(t, os.MkdirAll(dir, 0o755))
	for name, s := range events {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nbool(%v)\n", strconv.Quote(s.body), s.keyed)), 0o644))
	}
	type read struct {
		route         int
		id, query, ua string
		gzip          bool
	}
	reads := map[string]read{
		"seed-similar":          {0, item, "k=5&category=electronics&exclude=" + item + ",x&price_min=0&price_max=1e3", "", true},
		"seed-similar-bad-k":    {0, item, "k=0x10&price_min=-1&price_max=NaN", "", false},
		"seed-slash-id":         {0, "a%2Fb", "k=3", "", false},
		"seed-bought-cart":      {1, item, "cart=" + item + ",,%20,i2&k=100", "", true},
		"seed-user":             {2, "v1", "k=101&category=%ff%fe", "", false},
		"seed-user-utf8":        {2, "caf\xc3\xa9\xff", "visitor=v1&user=", "", false},
		"seed-recommend":        {3, "", "placement=product_page&item=" + item + "&visitor=v1&k=4", "", true},
		"seed-recommend-bad":    {3, "", "placement=nope&item=&&=&k=-1", "", false},
		"seed-decide-rule":      {4, "", "page=lp_consulting&visitor=v9&q=%E5%96%B6%E6%A5%AD%E3%80%80%E6%88%90%E7%B4%84%E7%8E%87%E6%94%B9%E5%96%84", "Mozilla/5.0 (iPhone) Mobile", false},
		"seed-decide-ref":       {4, "", "page=lp_consulting&ref=https%3A%2F%2Fwww.bing.com%2Fsearch%3Fq%3Dseo%26q%3D%25zz&utm_campaign=sales-enablement", "Googlebot/2.1", false},
		"seed-decide-new":       {4, "", "page=lp_consulting", "Mozilla/5.0", false},
		"seed-page":             {5, "", "page=lp_consulting&placements=home,product_page,cart&item=" + item + "&visitor=v1&k=4&user=alice", "", false},
		"seed-page-too-many":    {5, "", "placements=home,home,home,home,home,home,home,home,home", "", false},
		"seed-popular":          {6, "", "category=computers&k=10", "", true},
		"seed-popular-repeated": {6, "", "k=1&k=2&category=&category=computers", "", false},
	}
	dir = filepath.Join("testdata", "fuzz", "FuzzReadQuery")
	must(t, os.MkdirAll(dir, 0o755))
	for name, r := range reads {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\nuint8(%d)\nstring(%s)\nstring(%s)\nstring(%s)\nbool(%v)\n",
			r.route, strconv.Quote(r.id), strconv.Quote(r.query), strconv.Quote(r.ua), r.gzip)), 0o644))
	}
}

func stringsRepeat(s string, n int) string { return string(bytes.Repeat([]byte(s), n)) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestEmptyPathID: an empty id in the path is a bad request, not, through
// fasthttp's collapsing of "//", another endpoint (FuzzReadQuery found
// /v1/users//recommendations answering as the profile of user
// "recommendations").
func TestEmptyPathID(t *testing.T) {
	fs := newFuzzStack(t)
	f := func(path string, want int) {
		t.Helper()
		status, _, body := fs.roundTrip(t, []byte("GET "+path+" HTTP/1.1\r\nHost: edgerec\r\n\r\n"))
		if status != want {
			t.Fatalf("GET %s: %d %s; want %d", path, status, body, want)
		}
	}
	f("/v1/users//recommendations", 400)
	f("/v1/users//segments", 400)
	f("/v1/items//similar", 400)
	f("/v1/items//bought-together", 400)
	f("/v1/users/v1/recommendations", 200)
	f("/v1/users/recommendations", 401) // the profile of user "recommendations"
}

// TestEventsRefuseNonJSON: bodies fastjson's parser takes but JSON does
// not have (FuzzEventsBody found "visitor_id":00 stored as user "00")
// are refused whole, NDJSON and arrays alike.
func TestEventsRefuseNonJSON(t *testing.T) {
	fs := newFuzzStack(t)
	f := func(body string, want int) {
		t.Helper()
		raw := fmt.Sprintf("POST /v1/events HTTP/1.1\r\nHost: edgerec\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", fuzzKey, len(body), body)
		status, _, resp := fs.roundTrip(t, []byte(raw))
		if status != want {
			t.Fatalf("%s: %d %s; want %d", body, status, resp, want)
		}
		if n := fs.scanEvents(t, nil); want != 200 && n != fs.seq {
			t.Fatalf("%s: %d, yet events stored", body, status)
		}
		fs.seq = fs.scanEvents(t, nil)
	}
	f(`{"visitor_id":00,"event":"pageview"}`, 400)
	f(`[{"user_id":1-2,"event":"pageview"}]`, 400)
	f(`{"user_id":nan,"event":"pageview"}`, 400)
	f(`{"user_id":"u","event":"pageview","value":inf}`, 400)
	f(`{"user_id":"u","event":"pageview"}`+"\n"+`{"user_id":+1,"event":"pageview"}`, 400)
	f(`{"user_id":0,"event":"pageview","value":-1.5e3}`, 200)
}
