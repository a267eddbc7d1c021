package engine

import (
	"slices"
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
	// Filters (server's TestPlacementFilters serves them).
	f("placements:\n  home:\n    strategy: popular\n    exclude:\n      - factor: 2\n", "edgerec.yaml:5")
	f("placements:\n  home:\n    strategy: popular\n    only:\n      - category: x\n        factor: 2\n", "an only rule needs one of category or item, and no factor")
	f("placements:\n  home:\n    strategy: popular\n    exclude:\n      - item: x\n        segment: nope\n", `unknown segment "nope"`)
	// Every error names a line (FuzzParseConfig): names holding a dot or
	// a quote, a field left out (the line of its entry), an alias.
	f("placements:\n  home.v2:\n    strategy: magic\n", `edgerec.yaml:3: placement "home.v2": unknown strategy`)
	f("placements:\n  \"it's[0]\":\n    k: 1\n    strategy: magic\n", `edgerec.yaml:4: placement "it's[0]": unknown strategy`)
	f("pages:\n  lp:\n    variants: [{id: a}]\n", `edgerec.yaml:3: page "lp": experiment id ""`)
	f("placements:\n  z: &x\n    strategy: similar\n    exclude_seen: bad\n  a:\n    <<: *x\n    k: 2\n", `edgerec.yaml:4: placement "a": exclude_seen "bad"`)
	f("placements:\n  a:\n    strategy: similar\n  b: *x\n", "edgerec.yaml:4:")
	// go-yaml panics on a tagged scalar where a list is expected: an
	// error, so that a reload cannot bring the server down.
	f("profiles:\n  windows: !x 1d\n", "edgerec.yaml:2: cannot decode a tagged value")
	// A rule left empty, before the page's fingerprint reads it.
	f("pages:\n  lp:\n    experiment: e\n    variants: [{id: a, weight: 1}]\n    rules:\n      -\n", `edgerec.yaml:6: page "lp": empty rule`)
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
      - category: cameras
        factor: 1000
  buried:
    strategy: popular
    bury:
      - category: electronics
  pinned:
    strategy: popular
    pin:
      - item: "i1"
        position: 2
  keepseen:
    strategy: personal
    exclude_seen: none
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := testEngine(t, Options{Config: cfg})
	ref := e.live.Acquire()
	defer ref.Release()
	firstCat := func(id string) string {
		n, _ := ref.Lookup([]byte(id))
		return ref.Item(n).Categories[0]
	}
	hasCat := func(id, cat string) bool {
		n, _ := ref.Lookup([]byte(id))
		return slices.Contains(ref.Item(n).Categories, cat)
	}
	rec := func(placement, item string, k int, user string) []pick {
		t.Helper()
		req := RecRequest{Placement: []byte(placement), K: k}
		if item != "" {
			req.Item = []byte(item)
		}
		if user != "" {
			req.User = []byte(user)
		}
		return recommend(t, e, req)
	}
	l := rec("capped", "i44", 10, "")
	per := map[string]int{}
	for _, it := range l {
		per[firstCat(it.ID)]++
		if per[firstCat(it.ID)] > 2 {
			t.Fatalf("capped: more than 2 of %s: %+v", firstCat(it.ID), l)
		}
	}
	l = rec("boosted", "", 5, "")
	for _, it := range l {
		if !hasCat(it.ID, "cameras") {
			t.Fatalf("boosted: %s is not in cameras", it.ID)
		}
	}
	l = rec("buried", "", 10, "")
	for _, it := range l {
		if hasCat(it.ID, "electronics") {
			t.Fatalf("buried: electronics item %s in the top 10", it.ID)
		}
	}
	l = rec("pinned", "", 5, "")
	if len(l) != 5 || l[1].ID != "i1" || l[1].Reason != "pinned" {
		t.Fatalf("pinned: %+v", l)
	}
	// exclude_seen: none lets a viewed item come back; the default drops it.
	var evs []ev
	for _, id := range []string{"i90", "i157", "i55", "i79", "i7"} {
		evs = append(evs, view("seer", id))
	}
	post(t, e, evs...)
	seen := func(l []pick) int {
		n := 0
		for _, it := range l {
			switch it.ID {
			case "i90", "i157", "i55", "i79", "i7":
				n++
			}
		}
		return n
	}
	if n := seen(rec("home", "", 30, "seer")); n != 0 {
		t.Fatalf("home shows %d seen items", n)
	}
	if n := seen(rec("keepseen", "", 30, "seer")); n == 0 {
		t.Fatal("exclude_seen none dropped every seen item")
	}
}
