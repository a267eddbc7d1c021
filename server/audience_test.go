package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/internal/testenv"
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
	cfg, err := engine.ParseConfig([]byte(audienceYAML), "audience.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clock := new(atomic.Int64)
	clock.Store(time.Now().Unix() / 3600 * 3600)
	s, _ := testServer(t, engine.Options{Config: cfg, Now: func() time.Time { return time.Unix(clock.Load(), 0) }}, Options{})
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

// seedAudience: u1 and u4 are consenting members; u2 is in the segment
// without consent, u3 consents but is not in it, u5 has no attributes.
func seedAudience(t *testing.T, s *Server) {
	t.Helper()
	postEvents(t, s, pageview("u1", "/pricing")+pageview("u2", "/pricing")+pageview("u3", "/about")+
		pageview("u4", "/pricing/")+pageview("u5", "/pricing")+
		`{"user_id":"u1","item_id":"i90","event":"view"}`+"\n"+`{"user_id":"u1","item_id":"i157","event":"view"}`+"\n")
	putAttrs(t, s, "u1", `{"email":"a@x.jp","company":"ACME, \"Inc\"","consent_email":true}`)
	putAttrs(t, s, "u2", `{"email":"b@x.jp","consent_email":false,"secret":"no"}`)
	putAttrs(t, s, "u3", `{"email":"c@x.jp","consent_email":true}`)
	putAttrs(t, s, "u4", `{"email":"d@x.jp","score":3.5,"consent_email":"yes","consent_dm":true}`)
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
	rows := testenv.ParseNDJSON(t, b)
	if code != 200 || len(rows) != 1 || rows[0].UserID != "u1" || string(h.Peek("X-Next-After")) != "u1" ||
		string(h.ContentType()) != "application/x-ndjson" {
		t.Fatalf("page 1: %d %s %s", code, h.Peek("X-Next-After"), b)
	}
	code, b, h = get("/v1/segments/pricing/members?format=ndjson&limit=1&after=u1")
	if rows = testenv.ParseNDJSON(t, b); code != 200 || len(rows) != 1 || rows[0].UserID != "u4" || string(h.Peek("X-Next-After")) != "u4" {
		t.Fatalf("page 2: %d %s", code, b)
	}
	code, b, h = get("/v1/segments/pricing/members?format=ndjson&limit=1&after=u4")
	if code != 200 || len(b) != 0 || h.Peek("X-Next-After") != nil {
		t.Fatalf("page 3: %d %q", code, b)
	}
	code, b, h = get("/v1/segments/pricing/members?with_recs=20", "Accept-Encoding", "gzip")
	crows, _ := testenv.ParseCSV(t, b)
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
	// POST was refused (405) here; it is now an export job, which reads
	// the same page and records the membership changes (the GET only
	// reads). Another method is still refused.
	f("PUT", "/v1/segments/pricing/members", testKey, 405, "method")
	f("DELETE", "/v1/segments/pricing/members", testKey, 405, "method")
	f("GET", "/v1/segments/pricing/other", testKey, 404, "endpoint")
	for _, o := range []engine.AudienceOptions{{}, {Segment: "nope"}, {Segment: "pricing", Format: "xml"}, {Segment: "pricing", WithRecs: 51}, {Segment: "pricing", Limit: -1}} {
		if _, err := s.e.ExportAudience(context.Background(), io.Discard, o); err == nil {
			t.Fatalf("export %+v: no error", o)
		}
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
