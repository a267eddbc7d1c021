package server

import "testing"

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
		eval, err := compileSegment(src)
		if err != nil {
			return
		}
		sc := &segCtx{now: 1_700_000_000}
		_ = eval(sc)
	})
}
