package server

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseConfigErrors(t *testing.T) {
	f := func(yaml, want string) {
		t.Helper()
		_, err := ParseConfig([]byte(yaml), "edgerec.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("config %q: error %v; want it to contain %q", yaml, err, want)
		}
	}
	f("placements:\n  pdp:\n    strategy: magic\n", "edgerec.yaml:3: placement \"pdp\": unknown strategy \"magic\"")
	f("placements:\n  pdp:\n    strategy: similar\n    exclude_seen: some\n", "edgerec.yaml:4:")
	f("placements:\n  pdp:\n    strategy: similar\n    boost:\n      - factor: 2\n", "edgerec.yaml:5:")
	f("placements:\n  pdp:\n    strategy: similar\n    pin:\n      - item: x\n        position: 0\n", "edgerec.yaml:5:")
	f("placements:\n  pdp:\n    strategy: similar\n    colour: red\n", "edgerec.yaml:4:5: unknown field \"colour\"")
	f("placements:\n  pdp: [1, 2\n", "edgerec.yaml:2:8: sequence end token")
	f("placements:\n  pdp:\n    strategy: similar\n    history_weight: -1\n", "edgerec.yaml:4:")
	// Filters (TestPlacementFilters serves them).
	f("placements:\n  home:\n    strategy: popular\n    exclude:\n      - factor: 2\n", "edgerec.yaml:5")
	f("placements:\n  home:\n    strategy: popular\n    only:\n      - category: x\n        factor: 2\n", "an only rule needs one of category or item, and no factor")
	f("placements:\n  home:\n    strategy: popular\n    exclude:\n      - item: x\n        segment: nope\n", `unknown segment "nope"`)
}

func TestParseConfigMerge(t *testing.T) {
	c, err := ParseConfig([]byte("placements:\n  sidebar:\n    strategy: trending\n    k: 4\n  home:\n    strategy: popular\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Placements["sidebar"].strategy != strategyTrending || c.Placements["home"].strategy != strategyPopular ||
		c.Placements["cart"].strategy != strategyBought {
		t.Fatalf("placements: %s", c.names())
	}
}

// Placement rules over a real snapshot: boost, bury, pin, diversity cap,
// and the seen-items policies.
func TestPlacementRules(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
placements:
  capped:
    strategy: similar
    max_per_category: 2
  boosted:
    strategy: popular
    boost:
      - category: Horror
        factor: 1000
  buried:
    strategy: popular
    bury:
      - category: Drama
  pinned:
    strategy: popular
    pin:
      - item: "1682"
        position: 2
  keepseen:
    strategy: personal
    exclude_seen: none
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, c := testServer(t, Options{Config: cfg})
	ref := s.live.Acquire()
	defer ref.Release()
	firstCat := func(id string) string {
		n, _ := ref.Lookup([]byte(id))
		return ref.Item(n).Categories[0]
	}
	hasCat := func(id, cat string) bool {
		n, _ := ref.Lookup([]byte(id))
		for _, c := range ref.Item(n).Categories {
			if c == cat {
				return true
			}
		}
		return false
	}
	l := getList(t, c, "/v1/recommend?placement=capped&item=1&k=10")
	per := map[string]int{}
	for _, it := range l.Items {
		per[firstCat(it.ID)]++
		if per[firstCat(it.ID)] > 2 {
			t.Fatalf("capped: more than 2 of %s: %+v", firstCat(it.ID), l.Items)
		}
	}
	l = getList(t, c, "/v1/recommend?placement=boosted&k=5")
	for _, it := range l.Items {
		if !hasCat(it.ID, "Horror") {
			t.Fatalf("boosted: %s is not horror", it.ID)
		}
	}
	l = getList(t, c, "/v1/recommend?placement=buried&k=10")
	for _, it := range l.Items {
		if hasCat(it.ID, "Drama") {
			t.Fatalf("buried: drama %s in the top 10", it.ID)
		}
	}
	l = getList(t, c, "/v1/recommend?placement=pinned&k=5")
	if len(l.Items) != 5 || l.Items[1].ID != "1682" || l.Items[1].Reason != "pinned" {
		t.Fatalf("pinned: %+v", l.Items)
	}
	// exclude_seen: none lets a viewed item come back; the default drops it.
	body := ""
	for _, id := range []string{"50", "181", "100", "258", "7"} {
		body += fmt.Sprintf(`{"user_id":"seer","item_id":%q,"event":"view"}`+"\n", id)
	}
	if code, resp := do(t, c, "POST", "/v1/events", testKey, body); code != 200 {
		t.Fatalf("events: %d %s", code, resp)
	}
	seen := func(l apiList) int {
		n := 0
		for _, it := range l.Items {
			switch it.ID {
			case "50", "181", "100", "258", "7":
				n++
			}
		}
		return n
	}
	if n := seen(getList(t, c, "/v1/recommend?placement=home&user=seer&k=30")); n != 0 {
		t.Fatalf("home shows %d seen items", n)
	}
	if n := seen(getList(t, c, "/v1/recommend?placement=keepseen&user=seer&k=30")); n == 0 {
		t.Fatal("exclude_seen none dropped every seen item")
	}
}
