package server

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/engine"
)

// The replay bar, over HTTP: 40 visitors each replay their conversion
// beacon 1,000 times (100 keyless requests of 10); the results stay 200
// with conversions ≤ exposures, rates in [0, 1] and finite numbers; a
// value of 1e300 is refused with 400 naming the field.
func TestReplayedBeaconsHTTP(t *testing.T) {
	s, _ := testServer(t, engine.Options{Config: splitConfig(t, [2]int{50, 50}, 1, 0)}, Options{})
	for i := range 40 {
		d := decide(t, s, fmt.Sprintf("page=lp&visitor=r%d", i), "Mozilla/5.0")
		one := fmt.Sprintf(`{"visitor":%q,"event":"conversion","decision_id":%q,"value":120}`, d.Visitor, d.DecisionID)
		body := strings.TrimSuffix(strings.Repeat(one+"\n", engine.MaxKeylessEvents), "\n")
		for r := 0; r < 1000/engine.MaxKeylessEvents; r++ {
			if code, b := do(t, s.testClient, "POST", "/v1/events", "", body); code != 200 {
				t.Fatalf("replay %d of %s: %d %s", r, d.Visitor, code, b)
			}
		}
		if i == 0 {
			eleven := strings.TrimSuffix(strings.Repeat(one+"\n", engine.MaxKeylessEvents+1), "\n")
			if code, b := do(t, s.testClient, "POST", "/v1/events", "", eleven); code != 413 || !strings.Contains(string(b), "at most 10 events") {
				t.Fatalf("11 keyless events: %d %s", code, b)
			}
			huge := fmt.Sprintf(`{"visitor":%q,"event":"conversion","decision_id":%q,"value":1e300}`, d.Visitor, d.DecisionID)
			if code, b := do(t, s.testClient, "POST", "/v1/events", "", huge); code != 400 || !strings.Contains(string(b), "value: 1e+300 is outside 0 to max_value") {
				t.Fatalf("value 1e300: %d %s", code, b)
			}
		}
	}
	code, raw := do(t, s.testClient, "GET", "/v1/experiments/cta/results", "", "")
	var r engine.ExperimentResult
	if err := json.Unmarshal(raw, &r); code != 200 || err != nil {
		t.Fatalf("results: %d %v %s", code, err, raw)
	}
	total := 0.0
	for _, v := range r.Variants {
		if v.Conversions > v.Exposures || v.Rate == nil || *v.Rate < 0 || *v.Rate > 1 || v.Revenue != 120*v.Conversions {
			t.Fatalf("variant %+v", v)
		}
		for _, p := range []*float64{v.Lift, v.LiftLow, v.LiftHigh, v.SeqLow, v.SeqHigh, v.PBeat, v.PBest, v.Loss} {
			if p != nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
				t.Fatalf("variant %+v", v)
			}
		}
		total += v.Conversions
	}
	if total != 40 {
		t.Fatalf("converters %v; want 40: %s", total, raw)
	}
}

// Keyless decisions and beacons are limited per address: a burst, then
// 429 with Retry-After; requests with the API key are not; a proxy on
// loopback passes the client's address in X-Forwarded-For.
func TestKeylessRateLimit(t *testing.T) {
	s, _ := testServer(t, engine.Options{Config: splitConfig(t, [2]int{50, 50}, 1, 0)}, Options{KeylessRate: 0.001, KeylessBurst: 3})
	get := func(key string, header ...string) int {
		code, _ := do(t, s.testClient, "GET", "/v1/decide?page=lp&visitor=rl", key, "", header...)
		return code
	}
	for i := range 3 {
		if code := get(""); code != 200 {
			t.Fatalf("request %d of the burst: %d", i+1, code)
		}
	}
	code, body := do(t, s.testClient, "POST", "/v1/events", "", `{"visitor":"rl","event":"conversion","decision_id":"cta.a.s0000"}`)
	if code != 429 || !strings.Contains(string(body), `"code":"rate_limited"`) {
		t.Fatalf("a beacon over the limit: %d %s", code, body)
	}
	if code := get(""); code != 429 {
		t.Fatalf("over the limit: %d", code)
	}
	if code := get(testKey); code != 200 {
		t.Fatalf("with the API key: %d", code)
	}
	if code := get("", "X-Forwarded-For", "203.0.113.9, 198.51.100.7"); code != 200 {
		t.Fatalf("another client behind a proxy: %d", code)
	}
}

// A client's retry with the same event_id is acknowledged, and said to be
// a repeat.
func TestEventIDRetry(t *testing.T) {
	s, _ := testServer(t, engine.Options{}, Options{})
	body := `{"user_id":"r1","item_id":"i90","event":"view","event_id":"c7f3-1"}`
	for i, want := range []string{`{"accepted":1}`, `{"accepted":1,"repeats":1}`} {
		if code, b := do(t, s.testClient, "POST", "/v1/events", testKey, body); code != 200 || strings.TrimSpace(string(b)) != want {
			t.Fatalf("post %d: %d %s; want %s", i+1, code, b, want)
		}
	}
	if code, b := do(t, s.testClient, "POST", "/v1/events", testKey, `{"user_id":"r1","event":"view","item_id":"i90","event_id":""}`); code != 200 {
		t.Fatalf("empty event_id: %d %s", code, b)
	}
	if code, b := do(t, s.testClient, "POST", "/v1/events", testKey, `{"user_id":"r1","event":"view","item_id":"i90","event_id":"`+strings.Repeat("x", 300)+`"}`); code != 400 || !strings.Contains(string(b), "event_id") {
		t.Fatalf("a 300-byte event_id: %d %s", code, b)
	}
}
