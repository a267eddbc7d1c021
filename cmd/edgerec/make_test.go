package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestMakeHelp: make (make help) lists every target of the Makefile with
// its description; a target without a "## description" fails the test.
func TestMakeHelp(t *testing.T) {
	t.Parallel()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not installed")
	}
	out, err := exec.CommandContext(t.Context(), mk, "-s", "-C", repoFile(""), "help").Output()
	if err != nil {
		t.Fatalf("make help: %v", err)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(l, "  ") {
			listed[f[0]] = true
		}
	}
	// Targets are the rules' names; file targets ($(SAMPLE)/…) and
	// special targets (.PHONY) are not commands to list.
	rule := regexp.MustCompile(`(?m)^([a-zA-Z0-9_-]+):`)
	n := 0
	for _, m := range rule.FindAllStringSubmatch(string(mustRead(t, repoFile("Makefile"))), -1) {
		n++
		if !listed[m[1]] {
			t.Errorf("make help does not list the target %q: give its rule a '## description'", m[1])
		}
	}
	if n < 10 {
		t.Fatalf("found %d targets in the Makefile; the pattern is wrong", n)
	}
}
