package engine

import (
	"strings"
	"testing"

	"github.com/edgerec/edgerec/engine/rule"
	"github.com/edgerec/edgerec/model"
)

func TestSegmentConfigErrors(t *testing.T) {
	f := func(yaml, want string) {
		t.Helper()
		_, err := ParseConfig([]byte(yaml), "edgerec.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("config %q: error %v; want it to contain %q", yaml, err, want)
		}
	}
	seg := func(expr string) string { return "segments:\n  s1:\n    if: '" + expr + "'\n" }
	f(seg(`visits("/x", "30d") > 1`), `edgerec.yaml:3: segment "s1": unknown name visits`)
	f(seg(`views("/x", "30 days") > 1`), `edgerec.yaml:3: segment "s1": views: window "30 days"`)
	f(seg(`views("/x", "30d") == "a"`), `edgerec.yaml:3: segment "s1": invalid operation`)
	f(seg(`attr("a") matches "b"`), `operator "matches" is not supported`)
	f(seg(`views(attr("p"), "1d") > 0`), `views: column`)
	f(seg(`events("visit", "1d") > 0`), `unknown event type "visit"`)
	f(seg(`hours_since("lunch") < 3`), `hours_since: "lunch"`)
	f(seg(`views("/x", "1d")`), `expected bool`)
	f("segments:\n  s1:\n    description: no rule\n", `edgerec.yaml:3: segment "s1": needs an`)
	f("segments:\n  bad/name:\n    if: 'true'\n", `segment name "bad/name"`)
	f(seg(`true`)+"placements:\n  p:\n    strategy: popular\n    boost:\n      - category: x\n        factor: 2\n        segment: s2\n",
		`edgerec.yaml:10: placement "p": unknown segment "s2"`)
	f(seg(`true`)+"pages:\n  lp:\n    experiment: e\n    variants:\n      - id: a\n        weight: 1\n    rules:\n      - if: '\"s9\" in segments'\n        variant: a\n",
		`rule 1: unknown segment "s9"`)
	page := func(rule string) string {
		return seg(`true`) + "pages:\n  lp:\n    experiment: e\n    variants:\n      - id: a\n        weight: 1\n    rules:\n      - if: '" + rule + "'\n        variant: a\n"
	}
	f(page(`"s9" not in segments`), `rule 1: unknown segment "s9"`)
	f(page(`not ("s9" in segments)`), `rule 1: unknown segment "s9"`)
	f(page(`segments[0] == "s1"`), `use segments only as "name" in segments`)
	f(page(`any(segments, # == "s1")`), `use segments only as "name" in segments`)
	if _, err := ParseConfig([]byte(page(`"s1" not in segments && keyword == "segments"`)), "x.yaml"); err != nil {
		t.Fatalf("a valid segment rule: %v", err)
	}
	f("profiles:\n  windows: [1d, 1y]\n", `edgerec.yaml:2: window "1y"`)
}

// profileAt builds a profile from (event, page, seconds ago) triples.
func profileAt(now int64, evs ...any) *rule.Ctx {
	c := &rule.Ctx{Now: now}
	for i := 0; i+2 < len(evs); i += 3 {
		t, _ := model.ParseEventType([]byte(evs[i].(string)))
		c.P.Add(t, now-int64(evs[i+2].(int)), 100, []byte(evs[i+1].(string)), nil)
	}
	c.P.Compact(now, 90*86400)
	return c
}

// The sample config's templates on the visitors they are written for.
func TestSegmentTemplates(t *testing.T) {
	cfg := sampleConfig(t)
	e := newEngine(t, Options{Config: cfg}, nil, "")
	now := int64(1_750_000_000)
	const h, d = 3600, 86400
	for _, c := range []struct {
		name string
		sc   *rule.Ctx
		want string
	}{
		{"gathering", profileAt(now, "pageview", "/pricing", 3*d, "pageview", "/pricing", 2*h, "pageview", "/", 2*h), "info_gathering"},
		{"once", profileAt(now, "pageview", "/pricing", 3*d), ""},
		{"contacted", profileAt(now, "pageview", "/pricing", 3*d, "pageview", "/pricing", 2*h, "pageview", "/contact", h), "high_intent"},
		{"old interest", profileAt(now, "pageview", "/pricing", 40*d, "pageview", "/pricing", 35*d), ""},
		{"case studies", profileAt(now, "pageview", "/case-studies/acme", d, "pageview", "/pricing", h, "pageview", "/demo", 10*d), "high_intent"},
		{"abandoner", profileAt(now, "cart", "", 5*h), "cart_abandoner"},
		{"bought after cart", profileAt(now, "cart", "", 5*h, "purchase", "", 4*h), ""},
		{"cart too old", profileAt(now, "cart", "", 30*h), ""},
		{"bought again later", profileAt(now, "purchase", "", 200*d, "cart", "", h), "cart_abandoner lapsed_customer"},
		{"lapsed", profileAt(now, "purchase", "", 120*d), "lapsed_customer"},
		{"repeat", profileAt(now, "purchase", "", 20*d, "purchase", "", 2*d), "repeat_buyer"},
		{"lapsed repeat", profileAt(now, "purchase", "", 200*d, "purchase", "", 100*d), "lapsed_customer repeat_buyer"},
		{"nobody", profileAt(now), ""},
	} {
		set := e.evalSegments(c.sc, cfg.segments)
		var got []string
		for i, seg := range cfg.segments {
			if set.has(i) {
				got = append(got, seg.name)
			}
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: segments %v, want %q", c.name, got, c.want)
		}
	}
}
