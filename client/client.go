// Package client is the typed Go client of edgerec's HTTP API
// (api/openapi.yaml, served at /openapi.json): the SDK for Go back ends.
// Every method takes a context, sends one request and decodes the answer;
// an error answer is an *Error with the status and the server's code.
//
//	c, err := client.New("http://127.0.0.1:8080", client.Options{APIKey: "dev-key"})
//	list, err := c.Similar(ctx, "i1", &client.ListOptions{K: 5})
//	_, err = c.SendEvents(ctx, []client.Event{{Event: "view", UserID: "v1", ItemID: "i1", EventID: "e-1"}})
//
// It imports nothing of the server: it speaks HTTP only, as any client.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options configure a Client. The zero value reads only.
type Options struct {
	// APIKey authorises writes (events, catalog, profiles) and audiences;
	// AdminKey snapshots, configuration and status, defaulting to APIKey.
	APIKey, AdminKey string
	// HTTP sends the requests; default http.DefaultClient. Give one with
	// a Timeout, or pass contexts with deadlines.
	HTTP *http.Client
}

// Client calls one edgerec server. It is safe for concurrent use.
type Client struct {
	base string // scheme://host[:port][/prefix], without a trailing slash
	o    Options
}

// New returns a client of the server at baseURL (http://host:port).
func New(baseURL string, o Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	if o.HTTP == nil {
		o.HTTP = http.DefaultClient
	}
	if o.AdminKey == "" {
		o.AdminKey = o.APIKey
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), o: o}, nil
}

// Error is an error answer of the server: {"error":{"code","message"}}
// and its status.
type Error struct {
	Status  int
	Code    string // stable, snake_case: bad_parameter, unknown_parameter, unauthorized, …
	Message string
	// RetryAfter is the server's Retry-After (429, 503), 0 when none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("edgerec: %d %s: %s", e.Status, e.Code, e.Message)
}

// maxAnswer bounds an answer read into memory (a members page is at most
// 16 MiB).
const maxAnswer = 64 << 20

// do sends a request and returns the answer's body when its status is
// 2xx, else an *Error. key is sent as a bearer key when not empty.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, key, ctype string, body []byte) ([]byte, http.Header, error) {
	return c.doUA(ctx, method, path, q, key, ctype, "", body)
}

// doUA is do with a User-Agent header when ua is not empty.
func (c *Client) doUA(ctx context.Context, method, path string, q url.Values, key, ctype, ua string, body []byte) ([]byte, http.Header, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	resp, err := c.o.HTTP.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, nil, fmt.Errorf("client: %s %s: cannot read the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return b, resp.Header, nil
	}
	e := &Error{Status: resp.StatusCode}
	var eb struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
	} else {
		e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(b[:min(len(b), 200)]))
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return nil, resp.Header, e
}

// getJSON GETs path and decodes its JSON answer into v.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, key string, v any) error {
	return c.getJSONUA(ctx, path, q, key, "", v)
}

// getJSONUA is getJSON with a User-Agent header when ua is not empty.
func (c *Client) getJSONUA(ctx context.Context, path string, q url.Values, key, ua string, v any) error {
	b, _, err := c.doUA(ctx, "GET", path, q, key, "", ua, nil)
	if err != nil {
		return err
	}
	return decode(path, b, v)
}

// sendJSON sends v as JSON with method and decodes the answer into out.
func (c *Client) sendJSON(ctx context.Context, method, path, key string, v, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	b, _, err := c.do(ctx, method, path, nil, key, "application/json", body)
	if err != nil {
		return err
	}
	return decode(path, b, out)
}

func decode(path string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("client: %s: cannot decode the answer: %w", path, err)
	}
	return nil
}

// esc escapes a path segment (an id may hold '/': %2F).
func esc(id string) string { return url.PathEscape(id) }

var errEmptyID = errors.New("client: empty id")

// Item is one recommended item.
type Item struct {
	ID       string   `json:"id"`
	Title    string   `json:"title,omitempty"`
	Category string   `json:"category,omitempty"`
	Price    *float64 `json:"price,omitempty"`
	Score    float64  `json:"score"`
	// Reason: similar_to, bought_with (with Because), history, popular,
	// pinned, trending.
	Reason  string `json:"reason"`
	Because string `json:"because,omitempty"`
}

// List is a recommendation answer.
type List struct {
	// RecID attributes later events: send it back with clicks and purchases.
	RecID      string `json:"rec_id"`
	Placement  string `json:"placement,omitempty"`
	Experiment string `json:"experiment,omitempty"`
	Variant    string `json:"variant,omitempty"`
	Snapshot   uint64 `json:"snapshot"`
	Items      []Item `json:"items"`
	// Fallback: popular items filled what the strategy could not.
	Fallback bool `json:"fallback"`
}

// ListOptions are the filters of the recommendation endpoints; zero
// fields are not sent. Each endpoint takes those api/openapi.yaml lists
// (the server refuses others with 400 unknown_parameter): Popular takes
// no Cart, UserRecommendations neither User, Visitor nor Cart.
type ListOptions struct {
	K                  int
	Category           string
	PriceMin, PriceMax float64 // 0: no bound
	Exclude            []string
	// User or Visitor: their seen items are left out (and their history
	// blended by personal placements).
	User, Visitor string
	// Cart: further context items.
	Cart []string
}

func (o *ListOptions) query(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if o == nil {
		return q
	}
	if o.K > 0 {
		q.Set("k", strconv.Itoa(o.K))
	}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("category", o.Category)
	if o.PriceMin > 0 {
		q.Set("price_min", strconv.FormatFloat(o.PriceMin, 'g', -1, 64))
	}
	if o.PriceMax > 0 {
		q.Set("price_max", strconv.FormatFloat(o.PriceMax, 'g', -1, 64))
	}
	set("exclude", strings.Join(o.Exclude, ","))
	set("user", o.User)
	set("visitor", o.Visitor)
	set("cart", strings.Join(o.Cart, ","))
	return q
}

func (c *Client) list(ctx context.Context, path string, q url.Values) (*List, error) {
	var l List
	if err := c.getJSON(ctx, path, q, "", &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Similar answers GET /v1/items/{item}/similar.
func (c *Client) Similar(ctx context.Context, item string, o *ListOptions) (*List, error) {
	if item == "" {
		return nil, errEmptyID
	}
	return c.list(ctx, "/v1/items/"+esc(item)+"/similar", o.query(nil))
}

// BoughtTogether answers GET /v1/items/{item}/bought-together.
func (c *Client) BoughtTogether(ctx context.Context, item string, o *ListOptions) (*List, error) {
	if item == "" {
		return nil, errEmptyID
	}
	return c.list(ctx, "/v1/items/"+esc(item)+"/bought-together", o.query(nil))
}

// Popular answers GET /v1/popular.
func (c *Client) Popular(ctx context.Context, o *ListOptions) (*List, error) {
	return c.list(ctx, "/v1/popular", o.query(nil))
}

// UserRecommendations answers GET /v1/users/{user}/recommendations.
func (c *Client) UserRecommendations(ctx context.Context, user string, o *ListOptions) (*List, error) {
	if user == "" {
		return nil, errEmptyID
	}
	return c.list(ctx, "/v1/users/"+esc(user)+"/recommendations", o.query(nil))
}

// Recommend answers GET /v1/recommend: placement (of edgerec.yaml), the
// context item (may be empty) and the filters.
func (c *Client) Recommend(ctx context.Context, placement, item string, o *ListOptions) (*List, error) {
	q := o.query(url.Values{"placement": {placement}})
	if item != "" {
		q.Set("item", item)
	}
	return c.list(ctx, "/v1/recommend", q)
}

// DecideRequest is a landing-page decision request.
type DecideRequest struct {
	Page string
	// Visitor: empty, the server makes one (Decision.Visitor).
	Visitor string
	// User: a logged-in user, whose segments rules read.
	User string
	// Q and Ref: the search keyword and the referrer URL.
	Q, Ref string
	// The campaign parameters of the landing page's URL.
	UTMSource, UTMMedium, UTMCampaign, UTMTerm, UTMContent string
	// UserAgent is the visitor's User-Agent header, sent as the request's:
	// the server tells bots and devices by it. Pass the browser's along;
	// without one the request goes with Go's ("Go-http-client/1.1"), an
	// HTTP client, which gets the control with reason "bot".
	UserAgent string
}

func (d *DecideRequest) query(q url.Values) {
	for _, kv := range [...][2]string{
		{"page", d.Page}, {"visitor", d.Visitor}, {"user", d.User}, {"q", d.Q}, {"ref", d.Ref},
		{"utm_source", d.UTMSource}, {"utm_medium", d.UTMMedium}, {"utm_campaign", d.UTMCampaign},
		{"utm_term", d.UTMTerm}, {"utm_content", d.UTMContent},
	} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
}

// Decision is which variant a visitor sees.
type Decision struct {
	Page       string          `json:"page"`
	Experiment string          `json:"experiment"`
	Variant    string          `json:"variant"`
	Payload    json.RawMessage `json:"payload"`
	// DecisionID goes back with exposure and conversion events.
	DecisionID string `json:"decision_id"`
	Reason     string `json:"reason"`
	Holdout    bool   `json:"holdout"`
	Exposure   string `json:"exposure,omitempty"` // "event": report exposures by event
	Visitor    string `json:"visitor"`
}

// Decide answers GET /v1/decide.
func (c *Client) Decide(ctx context.Context, r DecideRequest) (*Decision, error) {
	q := url.Values{}
	r.query(q)
	var d Decision
	if err := c.getJSONUA(ctx, "/v1/decide", q, "", r.UserAgent, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// PageRequest asks for everything one page view needs: a decision (with
// Decide.Page), placements' lists and the visitor's segments.
type PageRequest struct {
	Decide     DecideRequest
	Placements []string
	Item       string // the context item of the placements
	List       ListOptions
}

// PageResult is the answer of GET /v1/page.
type PageResult struct {
	Decision        *Decision       `json:"decision"` // nil without a page
	Recommendations map[string]List `json:"recommendations"`
	Segments        []string        `json:"segments"`
	Visitor         string          `json:"visitor"`
}

// Page answers GET /v1/page.
func (c *Client) Page(ctx context.Context, r PageRequest) (*PageResult, error) {
	q := r.List.query(nil)
	r.Decide.query(q)
	if len(r.Placements) > 0 {
		q.Set("placements", strings.Join(r.Placements, ","))
	}
	if r.Item != "" {
		q.Set("item", r.Item)
	}
	var p PageResult
	if err := c.getJSONUA(ctx, "/v1/page", q, "", r.Decide.UserAgent, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Event is one event of POST /v1/events.
type Event struct {
	Event   string `json:"event"` // view, click, cart, purchase, rating, impression, exposure, conversion, pageview, login
	UserID  string `json:"user_id,omitempty"`
	Visitor string `json:"visitor,omitempty"` // an anonymous visitor; with UserID on a login, merged into the user
	ItemID  string `json:"item_id,omitempty"`
	// TS is Unix seconds; 0: now.
	TS         int64    `json:"ts,omitempty"`
	Value      *float64 `json:"value,omitempty"`
	Basket     string   `json:"basket,omitempty"`
	RecID      string   `json:"rec_id,omitempty"`
	DecisionID string   `json:"decision_id,omitempty"`
	Placement  string   `json:"placement,omitempty"`
	Page       string   `json:"page,omitempty"`
	Goal       string   `json:"goal,omitempty"`
	// EventID makes a retry safe: sent again, it is acknowledged as a
	// repeat and counted once.
	EventID string `json:"event_id,omitempty"`
}

// EventsResult acknowledges a batch once it is durable.
type EventsResult struct {
	Accepted int `json:"accepted"`
	Repeats  int `json:"repeats"` // events whose EventID was stored before
}

// SendEvents stores a batch (at most the server's --max-batch, 1000) as
// a JSON array: all or nothing. With the API key; without it only
// signed beacons are taken.
func (c *Client) SendEvents(ctx context.Context, evs []Event) (*EventsResult, error) {
	var r EventsResult
	if err := c.sendJSON(ctx, "POST", "/v1/events", c.o.APIKey, evs, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// SendEvent stores one event.
func (c *Client) SendEvent(ctx context.Context, ev Event) (*EventsResult, error) {
	var r EventsResult
	if err := c.sendJSON(ctx, "POST", "/v1/events", c.o.APIKey, ev, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ItemUpdate is a live catalog correction: a price, a stock or both.
type ItemUpdate struct {
	ItemID string   `json:"item_id"`
	Price  *float64 `json:"price,omitempty"`
	Stock  *int64   `json:"stock,omitempty"`
}

// UpdateItems applies corrections (PUT /v1/items) and returns how many.
func (c *Client) UpdateItems(ctx context.Context, ups []ItemUpdate) (int, error) {
	var r struct{ Updated int }
	if err := c.sendJSON(ctx, "PUT", "/v1/items", c.o.APIKey, ups, &r); err != nil {
		return 0, err
	}
	return r.Updated, nil
}

// SetAttributes merges attributes into a profile (PUT /v1/users/{user}):
// strings, numbers and booleans; nil deletes a key.
func (c *Client) SetAttributes(ctx context.Context, user string, attrs map[string]any) error {
	if user == "" {
		return errEmptyID
	}
	var r struct{ Updated bool }
	return c.sendJSON(ctx, "PUT", "/v1/users/"+esc(user), c.o.APIKey, attrs, &r)
}

// Profile is a user's or visitor's profile.
type Profile struct {
	User          string           `json:"user"`
	Attributes    map[string]any   `json:"attributes"`
	FirstSeen     int64            `json:"first_seen"`
	LastSeen      int64            `json:"last_seen"`
	Last          map[string]int64 `json:"last"` // per event type, Unix seconds
	Purchases     int64            `json:"purchases"`
	PurchaseValue float64          `json:"purchase_value"`
	// Counts per window (1d, 7d, 30d…), then events, pages, categories.
	Counts   map[string]map[string]map[string]int64 `json:"counts"`
	Segments []string                               `json:"segments"`
}

// Profile answers GET /v1/users/{user} (API key).
func (c *Client) Profile(ctx context.Context, user string) (*Profile, error) {
	if user == "" {
		return nil, errEmptyID
	}
	var p Profile
	if err := c.getJSON(ctx, "/v1/users/"+esc(user), nil, c.o.APIKey, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Segments answers GET /v1/users/{user}/segments.
func (c *Client) Segments(ctx context.Context, user string) ([]string, error) {
	if user == "" {
		return nil, errEmptyID
	}
	var r struct{ Segments []string }
	if err := c.getJSON(ctx, "/v1/users/"+esc(user)+"/segments", nil, "", &r); err != nil {
		return nil, err
	}
	return r.Segments, nil
}

// Arm is the counts of one arm of a comparison.
type Arm struct {
	Exposures   float64  `json:"exposures"`
	Conversions float64  `json:"conversions"`
	Revenue     float64  `json:"revenue"`
	Rate        *float64 `json:"rate"`
}

// Comparison is an arm against the control; nil figures could not be
// computed (Notes say why).
type Comparison struct {
	Lift     *float64 `json:"lift"`
	LiftLow  *float64 `json:"lift_ci95_low"`
	LiftHigh *float64 `json:"lift_ci95_high"`
	SeqLow   *float64 `json:"lift_always_valid_low"`
	SeqHigh  *float64 `json:"lift_always_valid_high"`
	PBeat    *float64 `json:"p_beat_control"`
	Decision string   `json:"decision"`
	Notes    []string `json:"notes"`
}

// VariantResult measures one variant.
type VariantResult struct {
	Variant string  `json:"variant"`
	Weight  float64 `json:"weight"`
	Control bool    `json:"control"`
	Arm
	Comparison
	PBest       *float64 `json:"p_best"`
	Loss        *float64 `json:"expected_loss"`
	Impressions float64  `json:"impressions"`
	Clicks      float64  `json:"clicks"`
	CTR         *float64 `json:"ctr"`
}

// RuleResult measures a rule with a holdback.
type RuleResult struct {
	Rule     string  `json:"rule"`
	Variant  string  `json:"variant"`
	Holdback float64 `json:"holdback"`
	Treated  Arm     `json:"rule_arm"`
	Held     Arm     `json:"holdback_arm"`
	Comparison
}

// Results is an experiment's results.
type Results struct {
	Experiment   string `json:"experiment"`
	Page         string `json:"page"`
	Mode         string `json:"mode"`
	Phase        uint64 `json:"phase"`
	PhaseStart   int64  `json:"phase_started_at"`
	CurrentPhase uint64 `json:"current_phase"`
	Phases       []struct {
		Phase     uint64 `json:"phase"`
		StartedAt int64  `json:"started_at"`
	} `json:"phases"`
	Goal     string          `json:"goal"`
	Goals    []string        `json:"goals"`
	Variants []VariantResult `json:"variants"`
	Rules    []RuleResult    `json:"rules"`
	Shares   []struct {
		Hour   int64              `json:"hour"`
		Shares map[string]float64 `json:"shares"`
	} `json:"traffic_share_by_hour"`
	SRM struct {
		Chi2     float64  `json:"chi2"`
		DF       int      `json:"df"`
		P        *float64 `json:"p"`
		Mismatch bool     `json:"mismatch"`
		Note     string   `json:"note"`
	} `json:"srm"`
}

// Results answers GET /v1/experiments/{id}/results; phase 0 and goal ""
// ask for the current phase and the primary goal.
func (c *Client) Results(ctx context.Context, experiment string, phase int, goal string) (*Results, error) {
	if experiment == "" {
		return nil, errEmptyID
	}
	q := url.Values{}
	if phase > 0 {
		q.Set("phase", strconv.Itoa(phase))
	}
	if goal != "" {
		q.Set("goal", goal)
	}
	var r Results
	if err := c.getJSON(ctx, "/v1/experiments/"+esc(experiment)+"/results", q, "", &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PlacementStats are a placement's counts.
type PlacementStats struct {
	Placement   string  `json:"placement"`
	Served      uint64  `json:"served"`
	Impressions float64 `json:"impressions"`
	Clicks      float64 `json:"clicks"`
	CTR         float64 `json:"ctr"`
	Conversions float64 `json:"conversions"`
	Revenue     float64 `json:"revenue"`
}

// PlacementStats answers GET /v1/placements/{id}/stats.
func (c *Client) PlacementStats(ctx context.Context, placement string) (*PlacementStats, error) {
	if placement == "" {
		return nil, errEmptyID
	}
	var s PlacementStats
	if err := c.getJSON(ctx, "/v1/placements/"+esc(placement)+"/stats", nil, "", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// MembersOptions select a page of a segment's audience.
type MembersOptions struct {
	Channel  string   // consent channel; "": email
	After    string   // the previous page's Next
	Limit    int      // rows; 0: the server's 1000
	Since    int64    // Unix seconds: who joined and who left since
	WithRecs int      // each member's top N recommendations
	Attrs    []string // unused by NDJSON; kept for symmetry with CSV
	// Record makes the call the export job (POST), which records the
	// membership changes it notices; else it only reads (GET).
	Record bool
}

// Member is one row of an audience.
type Member struct {
	UserID          string         `json:"user_id"`
	Status          string         `json:"status"` // member, joined, left
	ChangedAt       int64          `json:"changed_at"`
	Attributes      map[string]any `json:"attributes"`
	Recommendations []struct {
		ID       string   `json:"id"`
		Title    string   `json:"title"`
		Category string   `json:"category"`
		Price    *float64 `json:"price"`
	} `json:"recommendations"`
}

// Members answers a page of /v1/segments/{segment}/members (API key), as
// NDJSON rows, and the cursor of the next page ("" on the last):
//
//	for after := ""; ; {
//		rows, next, err := c.Members(ctx, "cart_abandoner", client.MembersOptions{After: after})
//		…
//		if next == "" { break }
//		after = next
//	}
func (c *Client) Members(ctx context.Context, segment string, o MembersOptions) (rows []Member, next string, err error) {
	if segment == "" {
		return nil, "", errEmptyID
	}
	q := url.Values{"format": {"ndjson"}}
	for _, kv := range [...][2]string{{"channel", o.Channel}, {"after", o.After}, {"attrs", strings.Join(o.Attrs, ",")}} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Since > 0 {
		q.Set("since", strconv.FormatInt(o.Since, 10))
	}
	if o.WithRecs > 0 {
		q.Set("with_recs", strconv.Itoa(o.WithRecs))
	}
	method := "GET"
	if o.Record {
		method = "POST"
	}
	path := "/v1/segments/" + esc(segment) + "/members"
	b, h, err := c.do(ctx, method, path, q, c.o.APIKey, "", nil)
	if err != nil {
		return nil, "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), len(b)+1)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m Member
		if err := decode(path, sc.Bytes(), &m); err != nil {
			return nil, "", err
		}
		rows = append(rows, m)
	}
	if next = h.Get("X-Next-After"); next != "" {
		if next, err = url.QueryUnescape(next); err != nil {
			return nil, "", fmt.Errorf("client: %s: bad X-Next-After: %w", path, err)
		}
	}
	return rows, next, nil
}

// SnapshotLoaded is the answer of LoadSnapshot.
type SnapshotLoaded struct {
	Loaded  uint64    `json:"loaded"`
	Items   int       `json:"items"`
	Created time.Time `json:"created"`
}

// LoadSnapshot loads the server's CURRENT snapshot (admin key).
func (c *Client) LoadSnapshot(ctx context.Context) (*SnapshotLoaded, error) {
	b, _, err := c.do(ctx, "POST", "/v1/admin/snapshots", nil, c.o.AdminKey, "", nil)
	if err != nil {
		return nil, err
	}
	var s SnapshotLoaded
	return &s, decode("/v1/admin/snapshots", b, &s)
}

// ReloadConfig reloads edgerec.yaml (admin key).
func (c *Client) ReloadConfig(ctx context.Context) error {
	_, _, err := c.do(ctx, "POST", "/v1/admin/config", nil, c.o.AdminKey, "", nil)
	return err
}

// Status is the answer of /v1/admin/status.
type Status struct {
	UptimeSeconds  float64 `json:"uptime_seconds"`
	Goroutines     int     `json:"goroutines"`
	Events         int64   `json:"events"`
	CatalogPatches int64   `json:"catalog_patches"`
	Cache          struct {
		Hits        uint64 `json:"hits"`
		Misses      uint64 `json:"misses"`
		CostAdded   uint64 `json:"cost_added"`
		CostEvicted uint64 `json:"cost_evicted"`
	} `json:"cache"`
	// Snapshot is the served snapshot's manifest, as edgerec build wrote it.
	Snapshot json.RawMessage `json:"snapshot"`
}

// Status answers GET /v1/admin/status (admin key).
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.getJSON(ctx, "/v1/admin/status", nil, c.o.AdminKey, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Ready answers /readyz: the served snapshot's version, or an *Error
// (503) saying why the server is not ready.
func (c *Client) Ready(ctx context.Context) (uint64, error) {
	var r struct{ Snapshot uint64 }
	if err := c.getJSON(ctx, "/readyz", nil, "", &r); err != nil {
		return 0, err
	}
	return r.Snapshot, nil
}
