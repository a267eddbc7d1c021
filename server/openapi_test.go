package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/edgerec/edgerec/api"
)

// loadSpec loads and validates api/openapi.yaml as OpenAPI 3.1.
func loadSpec(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.YAML)
	if err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("api/openapi.yaml: openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("api/openapi.yaml is not valid OpenAPI: %v", err)
	}
	// Requests go to a loopback address, not the document's server "/".
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// Body decoders for the media types the API speaks beyond JSON: NDJSON
// becomes an array of its lines' values; CSV, HTML, JavaScript and
// binary bodies are strings.
func init() {
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		out := []any{}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var v any
			if err := json.Unmarshal(line, &v); err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, sc.Err()
	})
	text := func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	}
	for _, ct := range []string{"text/csv", "text/html", "text/javascript", "application/octet-stream"} {
		openapi3filter.RegisterBodyDecoder(ct, text)
	}
}

// contractCase is one real request of TestOpenAPIContract and what it
// must get.
type contractCase struct {
	method, uri string
	key         string // Authorization: Bearer key
	body, ctype string
	hdr         []string // request header name, value pairs
	status      int
	// invalid: the request breaks the document (a bad parameter, a
	// missing key, a bad body), which ValidateRequest must say; the
	// server's answer is validated all the same.
	invalid bool
}

// TestOpenAPIContract sends real requests, over loopback TCP to a server
// over a generated shop (goldenListen), to every route of the router
// (Routes), and validates each request and each answer, error answers
// included, against api/openapi.yaml with kin-openapi's openapi3filter.
// It fails on a route of the router the document lacks, a path of the
// document the router does not answer, a /v1 route whose query
// parameters differ from the document's, a route without a request, and
// an answer (status, headers, body) the document does not describe.
func TestOpenAPIContract(t *testing.T) {
	doc, router := loadSpec(t)
	addr, _, _ := goldenListen(t)

	// The router's routes and the document's paths, both ways.
	routed := map[string]Route{}
	for _, r := range Routes() {
		for _, m := range r.Methods {
			routed[m+" "+r.Path] = r
		}
	}
	documented := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			documented[m+" "+path] = op
		}
	}
	for k := range routed {
		if documented[k] == nil {
			t.Errorf("route %s is not in api/openapi.yaml", k)
		}
	}
	for k := range documented {
		if _, ok := routed[k]; !ok {
			t.Errorf("api/openapi.yaml has %s, which the router does not answer (server.Routes)", k)
		}
	}
	// Query parameters: the document's are the ones the router takes.
	for k, r := range routed {
		op := documented[k]
		if op == nil || r.Unchecked {
			continue
		}
		var names []string
		for _, p := range op.Parameters {
			if p.Value.In == openapi3.ParameterInQuery {
				names = append(names, p.Value.Name)
			}
		}
		sort.Strings(names)
		if prefix, _ := op.Extensions["x-query-prefix"].(string); prefix != r.QueryPrefix {
			t.Errorf("%s: api/openapi.yaml's x-query-prefix is %q, the router's %q", k, prefix, r.QueryPrefix)
		}
		want := slices.Clone(r.Query)
		sort.Strings(want)
		if !slices.Equal(names, want) {
			t.Errorf("%s: api/openapi.yaml documents query parameters %v, the router takes %v", k, names, want)
		}
	}

	errorSchema := doc.Components.Schemas["Error"].Value
	cases := contractCases(t, addr)
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    authenticate,
	}
	asked := map[string]int{}    // route → requests
	failures := map[string]int{} // /v1 route → requests answered 4xx
	for _, c := range cases {
		what := c.method + " " + c.uri
		req, err := http.NewRequest(c.method, "http://"+addr+c.uri, strings.NewReader(c.body))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		for i := 0; i+1 < len(c.hdr); i += 2 {
			req.Header.Set(c.hdr[i], c.hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d: %s", what, resp.StatusCode, c.status, body)
			continue
		}

		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}

		// The request as validated: a fresh copy, its body unread.
		vreq, _ := http.NewRequest(c.method, "http://"+addr+c.uri, strings.NewReader(c.body))
		vreq.Header = req.Header.Clone()
		route, params, err := router.FindRoute(vreq)
		var re *routers.RouteError
		if errors.As(err, &re) && re.Reason == routers.ErrMethodNotAllowed.Error() && resp.StatusCode == 405 && c.invalid {
			// A method the route does not answer has no operation: the
			// answer is the Error schema with Allow.
			if err := errorSchema.VisitJSON(decodeJSON(t, what, body)); err != nil || resp.Header.Get("Allow") == "" {
				t.Errorf("%s: 405 without Allow or not an Error (%v): %s", what, err, body)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: no operation of api/openapi.yaml: %v", what, err)
			continue
		}
		key := c.method + " " + route.Path
		asked[key]++
		if resp.StatusCode >= 400 && strings.HasPrefix(route.Path, "/v1/") {
			failures[key]++
		}
		in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
		err = openapi3filter.ValidateRequest(context.Background(), in)
		if err == nil && strings.HasPrefix(route.Path, "/v1/") {
			err = undocumentedQuery(route.Operation, vreq.URL.Query())
		}
		switch {
		case c.invalid && err == nil:
			t.Errorf("%s: the server refused it (%d %s), but api/openapi.yaml allows it", what, resp.StatusCode, body)
		case !c.invalid && err != nil:
			t.Errorf("%s: request breaks api/openapi.yaml: %v", what, err)
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
		out.SetBodyBytes(body)
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s: answer %d breaks api/openapi.yaml: %v\n%s", what, resp.StatusCode, err, clipBody(body))
		}
	}
	// Every route and method had a request; every /v1 route an error
	// answer too.
	keys := make([]string, 0, len(routed))
	for k := range routed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if asked[k] == 0 {
			t.Errorf("%s: no request of TestOpenAPIContract", k)
		}
		if strings.Contains(k, " /v1/") && failures[k] == 0 {
			t.Errorf("%s: no error answer validated", k)
		}
	}
	t.Logf("%d requests over %d routes (%d methods × paths), %d documented operations", len(cases), len(Routes()), len(routed), len(documented))
}

// undocumentedQuery names the query parameters op neither documents nor
// accepts by its x-query-prefix: the server refuses them (checkQuery),
// which openapi3filter does not check.
func undocumentedQuery(op *openapi3.Operation, q url.Values) error {
	prefix, _ := op.Extensions["x-query-prefix"].(string)
	var bad []string
	for name := range q {
		if op.Parameters.GetByInAndName(openapi3.ParameterInQuery, name) == nil && (prefix == "" || !strings.HasPrefix(name, prefix)) {
			bad = append(bad, name)
		}
	}
	if bad != nil {
		return fmt.Errorf("query parameters %v are not documented", bad)
	}
	return nil
}

func decodeJSON(t *testing.T, what string, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Errorf("%s: not JSON: %v: %s", what, err, b)
	}
	return v
}

// authenticate checks a request carries what a security scheme asks:
// a bearer header, or the dashboard's cookie. Whether the key is right
// is the server's business (its 401s are validated as answers).
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch in.SecurityScheme.Type {
	case "http":
		if h := r.Header.Get("Authorization"); !strings.HasPrefix(h, "Bearer ") || len(h) == len("Bearer ") {
			return errors.New("no bearer key")
		}
	case "apiKey":
		if _, err := r.Cookie(in.SecurityScheme.Name); err != nil {
			return err
		}
	}
	return nil
}

func clipBody(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// contractCases is the requests of TestOpenAPIContract, in order: state
// carries over (events before profiles and audiences).
func contractCases(t *testing.T, addr string) []contractCase {
	const (
		k      = goldenKey
		origin = "https://shop.example"
		json_  = "application/json"
		ndjson = "application/x-ndjson"
	)
	ts := strconv.FormatInt(goldenNow.Unix()-3600, 10)
	decision := decideID(t, addr, "/v1/decide?page=lp_consulting&visitor=oa-v9")
	return []contractCase{
		// Recommendations.
		{method: "GET", uri: "/v1/items/i90/similar?k=5", status: 200},
		{method: "GET", uri: "/v1/items/i90/similar?k=20&category=electronics&price_min=1&price_max=500&exclude=i15,i16&user=oa-u1&cart=i157", hdr: []string{"Accept-Encoding", "gzip"}, status: 200},
		{method: "GET", uri: "/v1/items/nope/similar", status: 404},
		{method: "GET", uri: "/v1/items/i90/similar?k=0", status: 400, invalid: true},
		{method: "GET", uri: "/v1/items/i90/similar?k=101", status: 400, invalid: true},
		{method: "GET", uri: "/v1/items/i90/similar?k=abc", status: 400, invalid: true},
		{method: "GET", uri: "/v1/items/i90/similar?price_min=cheap", status: 400, invalid: true},
		{method: "GET", uri: "/v1/items/" + strings.Repeat("x", 257) + "/similar", status: 400, invalid: true},
		{method: "GET", uri: "/v1/items/i90/similar?limit=5", status: 400, invalid: true},
		{method: "GET", uri: "/v1/items/i90/bought-together?k=5&cart=i15,i79", status: 200},
		{method: "GET", uri: "/v1/items/i90/bought-together?kk=5", status: 400, invalid: true},
		{method: "GET", uri: "/v1/items/nope/bought-together", status: 404},
		{method: "GET", uri: "/v1/popular?k=3&category=audio", status: 200},
		{method: "GET", uri: "/v1/popular", hdr: []string{"Origin", origin}, status: 200},
		{method: "GET", uri: "/v1/popular?category=nope", status: 400},
		{method: "GET", uri: "/v1/popular?cart=i1", status: 400, invalid: true},
		{method: "GET", uri: "/v1/users/oa-u1/recommendations?k=4", status: 200},
		{method: "GET", uri: "/v1/users/oa-u1/recommendations?visitor=x", status: 400, invalid: true},
		{method: "GET", uri: "/v1/recommend?placement=product_page&item=i90&visitor=oa-u1", status: 200},
		{method: "GET", uri: "/v1/recommend?placement=cart&cart=i157,i79&k=3", status: 200},
		{method: "GET", uri: "/v1/recommend?placement=home&user=oa-u1&price_max=100", status: 200},
		{method: "GET", uri: "/v1/recommend?placement=nowhere", status: 400},
		{method: "GET", uri: "/v1/recommend", status: 400, invalid: true},

		// Events: NDJSON, a JSON array, a retry, beacons, bad batches.
		{method: "POST", uri: "/v1/events", key: k, ctype: ndjson, status: 200, body: strings.Join([]string{
			`{"user_id":"oa-u1","item_id":"i90","event":"view","ts":` + ts + `}`,
			`{"user_id":"oa-u1","event":"pageview","page":"/pricing"}`,
			`{"user_id":"oa-u1","event":"pageview","page":"/pricing/"}`,
			`{"visitor":"oa-v2","item_id":"i157","event":"cart","event_id":"oa-e1"}`,
		}, "\n") + "\n"},
		{method: "POST", uri: "/v1/events", key: k, ctype: json_, status: 200,
			body: `[{"user_id":"oa-u3","item_id":"i90","event":"purchase","value":19.9,"basket":"o1","event_id":"oa-e2"},{"user_id":"oa-u3","item_id":42,"event":"view"}]`},
		{method: "POST", uri: "/v1/events", key: k, ctype: json_, status: 200,
			body: `{"user_id":"oa-u3","item_id":"i90","event":"purchase","value":19.9,"basket":"o1","event_id":"oa-e2"}`},
		{method: "POST", uri: "/v1/events", ctype: "text/plain", status: 200,
			body: `{"event":"exposure","visitor":"oa-v9","decision_id":"` + decision + `"}`},
		// Without the key only beacons: the document cannot tell a
		// beacon by its body, so this request is valid there.
		{method: "POST", uri: "/v1/events", ctype: json_, status: 401, body: `{"user_id":"x","item_id":"i90","event":"view"}`},
		{method: "POST", uri: "/v1/events", key: k, ctype: json_, status: 400, invalid: true, body: `{"user_id":"x","item_id":"i90"}`},
		{method: "POST", uri: "/v1/events", key: k, ctype: json_, status: 400, invalid: true, body: `{"user_id":"x","item_id":"i90","event":"view","ts":"yesterday"}`},
		{method: "POST", uri: "/v1/events?debug=1", key: k, ctype: json_, status: 400, invalid: true, body: `{"user_id":"x","item_id":"i90","event":"view"}`},
		{method: "GET", uri: "/v1/events", key: k, status: 405, invalid: true},

		// Profiles and segments.
		{method: "PUT", uri: "/v1/users/oa-u1", key: k, ctype: json_, status: 200, body: `{"consent_email":true,"plan":"pro","seats":3}`},
		{method: "POST", uri: "/v1/users/oa-u3", key: k, ctype: json_, status: 200, body: `{"consent_email":true,"name":"Three"}`},
		{method: "PUT", uri: "/v1/users/oa-u1", key: k, ctype: json_, status: 400, invalid: true, body: `{"plan":{"tier":1}}`},
		{method: "PUT", uri: "/v1/users/oa-u1", ctype: json_, status: 401, invalid: true, body: `{"plan":"free"}`},
		{method: "POST", uri: "/v1/users/oa-u1", key: k, ctype: json_, status: 400, invalid: true, body: `["plan"]`},
		{method: "GET", uri: "/v1/users/oa-u1", key: k, status: 200},
		{method: "GET", uri: "/v1/users/oa-nobody", key: k, status: 404},
		{method: "GET", uri: "/v1/users/oa-u1", status: 401, invalid: true},
		{method: "GET", uri: "/v1/users/oa-u1/segments", status: 200},
		// Not UTF-8: JSON Schema cannot say so (ID's description does).
		{method: "GET", uri: "/v1/users/%ff/segments", status: 400},

		// Landing pages.
		{method: "GET", uri: "/v1/decide?page=lp_consulting&visitor=oa-d1&q=" + url.QueryEscape("営業　成約率改善") + "&utm_source=news&utm_id=42", status: 200},
		{method: "GET", uri: "/v1/decide?page=lp_consulting", hdr: []string{"Cookie", "edgerec_vid=oa-d2"}, status: 200},
		{method: "GET", uri: "/v1/decide?page=lp_consulting", hdr: []string{"User-Agent", "Mozilla/5.0 (compatible; bingbot/2.0)"}, status: 200},
		{method: "GET", uri: "/v1/decide?page=nope&visitor=oa-d1", status: 400},
		{method: "GET", uri: "/v1/decide?visitor=oa-d1", status: 400, invalid: true},
		{method: "GET", uri: "/v1/decide?page=lp_consulting&gclid=abc", status: 400, invalid: true},
		{method: "GET", uri: "/v1/page?page=lp_consulting&placements=home,product_page&item=i90&k=4&visitor=oa-u1", status: 200},
		{method: "GET", uri: "/v1/page?placements=cart&cart=i157&visitor=oa-v2&k=3", status: 200},
		{method: "GET", uri: "/v1/page", status: 400},
		{method: "GET", uri: "/v1/page?placements=home&plcement=x", status: 400, invalid: true},
		{method: "GET", uri: "/v1/edgerec.js", status: 200},
		{method: "GET", uri: "/v1/edgerec.js?v=" + browserScript.version, hdr: []string{"Accept-Encoding", "gzip"}, status: 200},
		{method: "GET", uri: "/v1/edgerec.js", hdr: []string{"If-None-Match", browserScript.etag}, status: 304},
		{method: "GET", uri: "/v1/edgerec.js?cb=1", status: 400, invalid: true},

		// Catalog.
		{method: "PUT", uri: "/v1/items", key: k, ctype: ndjson, status: 200, body: `{"item_id":"i157","price":15}` + "\n" + `{"item_id":"i15","stock":0}` + "\n"},
		{method: "POST", uri: "/v1/items", key: k, ctype: json_, status: 200, body: `[{"item_id":"i3","stock":5,"price":19.5}]`},
		{method: "PUT", uri: "/v1/items", key: k, ctype: json_, status: 400, invalid: true, body: `{"item_id":"i90","price":-1}`},
		{method: "POST", uri: "/v1/items", ctype: json_, status: 401, invalid: true, body: `{"item_id":"i90","price":1}`},

		// Measurement.
		{method: "GET", uri: "/v1/experiments/lp-consulting-cta/results", status: 200},
		{method: "GET", uri: "/v1/experiments/lp-consulting-cta/results?format=csv&phase=1", status: 200},
		{method: "GET", uri: "/v1/experiments/lp-consulting-cta/results?phase=0", status: 400, invalid: true},
		{method: "GET", uri: "/v1/experiments/nope/results", status: 404},
		{method: "GET", uri: "/v1/placements/home/stats", status: 200},
		{method: "GET", uri: "/v1/placements/nowhere/stats", status: 200},
		{method: "GET", uri: "/v1/placements/home/stats?from=1", status: 400, invalid: true},

		// Audiences.
		{method: "GET", uri: "/v1/segments/info_gathering/members", key: k, status: 200},
		{method: "GET", uri: "/v1/segments/info_gathering/members?format=ndjson&with_recs=3&limit=1", key: k, status: 200},
		{method: "POST", uri: "/v1/segments/info_gathering/members?format=ndjson&since=1", key: k, status: 200},
		{method: "GET", uri: "/v1/segments/info_gathering/members?limit=0", key: k, status: 400, invalid: true},
		{method: "GET", uri: "/v1/segments/nope/members", key: k, status: 400},
		{method: "POST", uri: "/v1/segments/info_gathering/members", status: 401, invalid: true},

		// Administration.
		{method: "POST", uri: "/v1/admin/config", key: k, status: 200},
		{method: "POST", uri: "/v1/admin/config", status: 401, invalid: true},
		{method: "POST", uri: "/v1/admin/snapshots", key: k, status: 200},
		{method: "POST", uri: "/v1/admin/snapshots", key: "wrong", status: 401},
		{method: "GET", uri: "/v1/admin/status", key: k, status: 200},
		{method: "GET", uri: "/v1/admin/status?verbose=1", key: k, status: 400, invalid: true},

		// Operations.
		{method: "GET", uri: "/healthz", status: 200},
		{method: "GET", uri: "/readyz", status: 200},
		{method: "GET", uri: "/metrics", status: 200},
		{method: "POST", uri: "/metrics", status: 405, invalid: true},
		{method: "GET", uri: "/openapi.json", status: 200},
		{method: "GET", uri: "/openapi.json", hdr: []string{"Accept-Encoding", "gzip"}, status: 200},
		{method: "GET", uri: "/dashboard", status: 200},
		{method: "GET", uri: "/dashboard?exp=lp-consulting-cta&phase=1&goal=conversion", key: k, status: 200},
		{method: "GET", uri: "/dashboard", hdr: []string{"Cookie", "edgerec_dash=forged"}, status: 401},
		{method: "GET", uri: "/dashboard/login", status: 303},
		{method: "POST", uri: "/dashboard/login", ctype: "application/x-www-form-urlencoded", body: "key=" + k, status: 303},
		{method: "POST", uri: "/dashboard/login", ctype: "application/x-www-form-urlencoded", body: "key=wrong", status: 401},
		{method: "GET", uri: "/dashboard/logout", status: 303},
		{method: "POST", uri: "/dashboard/logout", status: 303},
		{method: "GET", uri: "/debug/pprof/", key: k, status: 200},
		{method: "GET", uri: "/debug/pprof/", status: 401, invalid: true},
		{method: "GET", uri: "/debug/pprof/goroutine?debug=1", key: k, status: 200},
		{method: "POST", uri: "/debug/pprof/symbol", key: k, ctype: "text/plain", body: "0x1", status: 200},
	}
}

// decideID asks for a decision and returns its decision_id.
func decideID(t *testing.T, addr, uri string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + uri)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		DecisionID string `json:"decision_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || d.DecisionID == "" {
		t.Fatalf("GET %s: %d %v", uri, resp.StatusCode, err)
	}
	return d.DecisionID
}

// TestOpenAPIServed: /openapi.json is the embedded document as JSON, with
// an ETag that a second request revalidates (304).
func TestOpenAPIServed(t *testing.T) {
	addr, _, _ := goldenListen(t)
	resp, err := http.Get("http://" + addr + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want, err := api.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %s, %d bytes, want the %d of api.JSON", resp.StatusCode, resp.Header.Get("Content-Type"), len(body), len(want))
	}
	etag, cc := resp.Header.Get("ETag"), resp.Header.Get("Cache-Control")
	if etag == "" || cc != scriptMaxAge {
		t.Fatalf("ETag %q, Cache-Control %q", etag, cc)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/openapi.json", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 304 {
		t.Fatalf("If-None-Match %s: %d, want 304", etag, resp.StatusCode)
	}
}
