package engine

import (
	"strings"
	"testing"
)

func TestDecideConfigErrors(t *testing.T) {
	f := func(y, want string) {
		t.Helper()
		_, err := ParseConfig([]byte(y), "lp.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v; want %q", err, want)
		}
	}
	base := "pages:\n  lp:\n    experiment: e1\n    variants:\n      - id: a\n        weight: 1\n"
	f(base+"    rules:\n      - if: 'keyword contains'\n        variant: a\n", "lp.yaml:8:")
	f(base+"    rules:\n      - if: 'keyword == \"x\"'\n        variant: zz\n", "lp.yaml:9:")
	f(base+"    traffic: 2\n", "lp.yaml:7:")
	f("holdout: 0.9\n"+base, "lp.yaml:1:")
	f("pages:\n  lp:\n    experiment: 'bad id'\n", "lp.yaml:3:")
}
