package server

import (
	"encoding/json"
	"regexp"
	"slices"
	"testing"

	"github.com/edgerec/edgerec/engine"
)

// snakeKey is the form of every key edgerec's JSON answers hold.
var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// jsonKeys returns the paths of every object key in v ("snapshot.items").
func jsonKeys(at string, v any) (paths, keys []string) {
	switch x := v.(type) {
	case map[string]any:
		for k, y := range x {
			p := k
			if at != "" {
				p = at + "." + k
			}
			paths, keys = append(paths, p), append(keys, k)
			ps, ks := jsonKeys(p, y)
			paths, keys = append(paths, ps...), append(keys, ks...)
		}
	case []any:
		for _, y := range x {
			ps, ks := jsonKeys(at+"[]", y)
			paths, keys = append(paths, ps...), append(keys, ks...)
		}
	}
	return paths, keys
}

// TestAdminJSONKeys: /v1/admin/status and POST /v1/admin/snapshots answer
// with snake_case keys, as every other answer does, the snapshot's
// weights included (they were Go field names).
func TestAdminJSONKeys(t *testing.T) {
	_, c := testServer(t, engine.Options{}, Options{})
	for _, r := range []struct {
		method, uri string
		want        []string
	}{
		{"GET", "/v1/admin/status", []string{"uptime_seconds", "goroutines", "events", "catalog_patches",
			"cache.hits", "cache.misses", "cache.cost_added", "cache.cost_evicted",
			"snapshot.version", "snapshot.bad_lines", "snapshot.build_seconds", "snapshot.parameters.popular_k",
			"snapshot.parameters.weights.view", "snapshot.parameters.weights.purchase",
			"snapshot.parameters.weights.rating_value", "snapshot.parameters.weights.half_life"}},
		{"POST", "/v1/admin/snapshots", []string{"loaded", "items", "created"}},
	} {
		code, body := do(t, c, r.method, r.uri, testKey, "")
		if code != 200 {
			t.Fatalf("%s %s: %d %s", r.method, r.uri, code, body)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s %s: %v: %s", r.method, r.uri, err, body)
		}
		paths, keys := jsonKeys("", v)
		for i, k := range keys {
			if !snakeKey.MatchString(k) {
				t.Errorf("%s %s: key %s is not snake_case", r.method, r.uri, paths[i])
			}
		}
		for _, w := range r.want {
			if !slices.Contains(paths, w) {
				t.Errorf("%s %s: no key %s in %s", r.method, r.uri, w, body)
			}
		}
	}
}
