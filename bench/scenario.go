package bench

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Scenarios are mixes of requests a shop's pages send, drawn with Zipf
// skew over item and user ids, as real traffic is.
var Scenarios = map[string][]Step{
	"product-page": {{Kind: "product_page", Weight: 1}},
	"home":         {{Kind: "home", Weight: 1}},
	"cart":         {{Kind: "cart", Weight: 1}},
	"similar":      {{Kind: "similar", Weight: 1}},
	"events":       {{Kind: "events", Weight: 1}},
	"landing-page": {{Kind: "landing_page", Weight: 1}},
	"mixed": {
		{Kind: "product_page", Weight: 50}, {Kind: "home", Weight: 12}, {Kind: "cart", Weight: 8},
		{Kind: "similar", Weight: 5}, {Kind: "landing_page", Weight: 10}, {Kind: "events", Weight: 15},
	},
	"page": {{Kind: "page", Weight: 1}},
	// site is every kind of answer a shop's pages ask for, the one-call
	// page view (/v1/page) included: what make soak runs.
	"site": {
		{Kind: "product_page", Weight: 40}, {Kind: "home", Weight: 10}, {Kind: "cart", Weight: 8},
		{Kind: "similar", Weight: 5}, {Kind: "landing_page", Weight: 10}, {Kind: "page", Weight: 12},
		{Kind: "events", Weight: 15},
	},
}

// Step is one kind of request and its share of a scenario.
type Step struct {
	Kind   string
	Weight int
}

// ScenarioNames lists the built-in scenarios.
func ScenarioNames() []string {
	return []string{"product-page", "home", "cart", "similar", "events", "landing-page", "page", "mixed", "site"}
}

// Scenario draws the requests of one mix.
type Scenario struct {
	Steps []Step
	Items []string // item ids, most popular first
	Users int      // user ids u1…uN (visitors of the attack)
	// Page is the landing page of landing_page steps; default lp_consulting
	// (the sample config's).
	Page  string
	total int
}

// NewScenario returns the named built-in scenario over items.
func NewScenario(name string, items []string, users int) (*Scenario, error) {
	steps, ok := Scenarios[name]
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q: want %s, or a targets file", name, strings.Join(ScenarioNames(), ", "))
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("scenario %q needs item ids", name)
	}
	s := &Scenario{Steps: steps, Items: items, Users: max(users, 1), Page: "lp_consulting"}
	for _, st := range steps {
		s.total += st.Weight
	}
	return s, nil
}

// Targeter returns a worker's targeter with its own random source.
func (s *Scenario) Targeter(seed uint64) Targeter {
	rng := rand.New(rand.NewSource(int64(seed)))
	items := rand.NewZipf(rng, 1.1, 1, uint64(len(s.Items)-1))
	users := rand.NewZipf(rng, 1.05, 1, uint64(s.Users-1))
	var path, body []byte
	return func(t *Target) {
		n := rng.Intn(s.total)
		step := s.Steps[len(s.Steps)-1]
		for _, st := range s.Steps {
			if n < st.Weight {
				step = st
				break
			}
			n -= st.Weight
		}
		item := s.Items[items.Uint64()]
		user := users.Uint64() + 1
		t.Kind, t.Method, t.Body = step.Kind, "GET", nil
		path = path[:0]
		switch step.Kind {
		case "product_page":
			path = append(path, "/v1/recommend?placement=product_page&item="...)
			path = append(path, url.QueryEscape(item)...)
			path = append(path, "&visitor=u"...)
			path = strconv.AppendUint(path, user, 10)
		case "home":
			path = append(path, "/v1/recommend?placement=home&user=u"...)
			path = strconv.AppendUint(path, user, 10)
		case "cart":
			path = append(path, "/v1/recommend?placement=cart&cart="...)
			path = append(path, url.QueryEscape(item)...)
			path = append(path, ',')
			path = append(path, url.QueryEscape(s.Items[items.Uint64()])...)
		case "similar":
			path = append(path, "/v1/items/"...)
			path = append(path, url.PathEscape(item)...)
			path = append(path, "/similar?k=10"...)
		case "landing_page":
			// One visit in five comes from a search with a keyword the
			// sample's rules know.
			path = append(path, "/v1/decide?page="...)
			path = append(path, url.QueryEscape(s.Page)...)
			path = append(path, "&visitor=u"...)
			path = strconv.AppendUint(path, user, 10)
			if user%5 == 0 {
				path = append(path, "&q=%E5%96%B6%E6%A5%AD+%E6%88%90%E7%B4%84%E7%8E%87"...)
			}
		case "page":
			// One page view in one call: the landing-page decision, two
			// placements and the visitor's segments.
			path = append(path, "/v1/page?page="...)
			path = append(path, url.QueryEscape(s.Page)...)
			path = append(path, "&visitor=u"...)
			path = strconv.AppendUint(path, user, 10)
			path = append(path, "&placements=home,product_page&k=4&item="...)
			path = append(path, url.QueryEscape(item)...)
		case "events":
			t.Method = "POST"
			path = append(path, "/v1/events"...)
			body = append(body[:0], `{"user_id":"u`...)
			body = strconv.AppendUint(body, user, 10)
			body = append(body, `","item_id":`...)
			body = strconv.AppendQuote(body, item)
			body = append(body, `,"event":"view"}`...)
			t.Body = body
		}
		t.Path = string(path)
	}
}

// TargetsFile reads a targets file, one request a line: "GET /path" or
// "POST /path {json body}"; blank lines and # comments are skipped.
func TargetsFile(path string) ([]Target, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open targets %q: %w", path, err)
	}
	defer f.Close()
	var ts []Target
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		method, rest, _ := strings.Cut(l, " ")
		p, body, _ := strings.Cut(strings.TrimSpace(rest), " ")
		if (method != "GET" && method != "POST" && method != "PUT") || !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("%s:%d: want METHOD /path [body]", path, line)
		}
		ts = append(ts, Target{Method: method, Path: p, Body: []byte(body), Kind: method + " " + strings.SplitN(p, "?", 2)[0]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read targets %q: %w", path, err)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%s: no targets", path)
	}
	return ts, nil
}

// RoundRobin returns targeters that together cycle through ts in order,
// as vegeta does: every worker takes the next target of one shared
// cursor, so a run of N requests sends min(N, len(ts)) distinct targets.
// (Each worker cycling from its own offset sent every target once per
// worker, and a file of distinct requests mostly hit the server's cache.)
func RoundRobin(ts []Target) func(seed uint64) Targeter {
	var next atomic.Uint64
	return func(uint64) Targeter {
		return func(t *Target) {
			*t = ts[(next.Add(1)-1)%uint64(len(ts))]
		}
	}
}

// ReadItemIDs reads the first column of a catalog CSV (with header).
func ReadItemIDs(r io.Reader) ([]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil {
		return nil, fmt.Errorf("cannot read catalog header: %w", err)
	}
	var ids []string
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read catalog: %w", err)
		}
		if len(rec) > 0 && rec[0] != "" {
			ids = append(ids, rec[0])
		}
	}
}
