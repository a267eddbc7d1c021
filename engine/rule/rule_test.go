package rule

import (
	"strings"
	"testing"

	"github.com/edgerec/edgerec/model"
)

// profileAt builds a profile from (event, page, seconds ago) triples.
func profileAt(now int64, evs ...any) *Ctx {
	c := &Ctx{Now: now}
	for i := 0; i+2 < len(evs); i += 3 {
		t, _ := model.ParseEventType([]byte(evs[i].(string)))
		c.P.Add(t, now-int64(evs[i+2].(int)), 100, []byte(evs[i+1].(string)), nil)
	}
	c.P.Compact(now, 90*86400)
	return c
}

// Operators, attributes and run-time type mismatches.
func TestExpressions(t *testing.T) {
	now := int64(1_750_000_000)
	c := profileAt(now, "pageview", "/blog/a", 3600, "pageview", "/blog/b", 7200, "view", "", 60)
	c.P.SetAttr([]byte("industry"), model.AttrString, []byte("manufacturing"), 0)
	c.P.SetAttr([]byte("employees"), model.AttrNumber, nil, 250)
	c.P.SetAttr([]byte("consent_email"), model.AttrBool, nil, 1)
	c.P.SetAttr([]byte("consent_ads"), model.AttrString, []byte("no"), 0)
	failed := 0
	for src, want := range map[string]bool{
		`views("/blog/*", "1d") == 2`:                                 true,
		`views("/blog/a", "1d") == 1 and not has("role")`:             true,
		`events("view", "1h") == 1 && events("cart", "7d") == 0`:      true,
		`attr("industry") in ["manufacturing", "logistics"]`:          true,
		`attr("industry") startsWith "manu" || false`:                 true,
		`num("employees") / 5 >= 50 && -num("employees") < 0`:         true,
		`num("revenue") > 0 || num("revenue") <= 0`:                   false, // NaN: absent
		`consent("email") && !consent("ads")`:                         true,
		`hours_since("view") < 0.02 && days_since("purchase") > 1000`: true,
		`days_since("first_seen") * 24 >= 1.99`:                       true,
		`purchases == 0 && purchase_value == 0`:                       true,
		`attr("employees") == "250"`:                                  false, // type mismatch
		`num("industry") > 0 || true`:                                 false, // mismatch poisons the rule
		`attr("missing") == ""`:                                       true,
		`attr("industry") not in ["retail"]`:                          true,
		`num("employees") in [100, 250]`:                              true,
	} {
		f, err := Compile(src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		c.Err = nil
		got := f(c) && c.Err == nil
		if c.Err != nil {
			failed++
		}
		if got != want {
			t.Errorf("%s = %v, want %v", src, got, want)
		}
	}
	if failed != 2 {
		t.Errorf("%d run-time errors, want 2", failed)
	}
}

func TestCompileErrors(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		_, err := Compile(src)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%q): %v; want an error containing %q", src, err, want)
		}
	}
	f(`visits("/x", "30d") > 1`, `unknown name visits`)
	f(`views("/x", "30 days") > 1`, `views: window "30 days"`)
	f(`attr("a") matches "b"`, `operator "matches" is not supported`)
	f(`views(attr("p"), "1d") > 0`, `views: column`)
	f(`events("visit", "1d") > 0`, `unknown event type "visit"`)
	f(`hours_since("lunch") < 3`, `hours_since: "lunch"`)
	f(`views("/x", "1d")`, `expected bool`)
}

func TestPath(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := Path(in); got != want {
			t.Errorf("Path(%q) = %q, want %q", in, got, want)
		}
	}
	f("/pricing", "/pricing")
	f("/pricing/", "/pricing")
	f("/pricing?x=1", "/pricing")
	f("/case-studies/*", "/case-studies/*")
	f("/料金", "/%E6%96%99%E9%87%91")
	f("/%E6%96%99%E9%87%91/", "/%E6%96%99%E9%87%91")
	f("/ブログ/*", "/%E3%83%96%E3%83%AD%E3%82%B0/*")
	f("/a b", "/a%20b")
	f("/sale(2024)", "/sale(2024)")
	f("/men's/*", "/men's/*")
	f("/a[1]!", "/a[1]!")
	f("/{x}", "/%7Bx%7D")
	// The rule counts what a browser's URL stores.
	ev := string(model.PagePath([]byte("https://example.jp/%E6%96%99%E9%87%91/?utm_source=x")))
	if Path("/料金/") != ev {
		t.Errorf("rule %q, event path %q", Path("/料金/"), ev)
	}
}

// FuzzCompileSegment: any rule text compiles or fails with an error; a
// compiled rule evaluates without panicking on an empty profile.
func FuzzCompileSegment(f *testing.F) {
	for _, s := range []string{
		`views("/pricing", "30d") >= 2 && views("/contact", "30d") == 0`,
		`hours_since("cart") <= 24 && hours_since("purchase") > hours_since("cart")`,
		`attr("industry") in ["a", "b"] || num("employees") / 2 > 10`,
		`!(purchases >= 2) and not consent("email")`,
		`attr("x") startsWith "y"`,
		`views(attr("p"), "1d")`,
		`1 +`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		eval, err := Compile(src)
		if err != nil {
			return
		}
		_ = eval(&Ctx{Now: 1_700_000_000})
	})
}
