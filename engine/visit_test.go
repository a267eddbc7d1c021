package engine

import "testing"

func TestNormalizeKeyword(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := string(normalizeKeyword(nil, []byte(in))); got != want {
			t.Fatalf("normalizeKeyword(%q) = %q; want %q", in, got, want)
		}
	}
	f("営業　成約率改善", "営業 成約率改善")
	f("  ＳＥＯ　対策  ", "seo 対策")
	f("ｴｲｷﾞｮｳ", "エイギョウ")
	f("Sales  Close\tRate", "sales close rate")
	f("", "")
	// Lower case then NFKC: "İ" and a combining acute lower to "i" and
	// the acute, which compose to "í" (U+00ED), as "í" itself folds.
	f("\u0130\u0301", "\u00ed")
	f("  \u0130\u0301  X\u0301 ", "\u00ed x\u0301")
	f("\u00ed", "\u00ed")
}
