// Package testenv holds helpers that tests of several packages share.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// SharedData returns the path of a file of ../shared/data (beside the
// repository). Locally a missing data set skips the test; in CI (CI set)
// it fails it, since CI always has the data beside the project.
func SharedData(tb testing.TB, name string) string {
	tb.Helper()
	_, self, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(self), "..", "..", "..", "shared", "data", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("shared data missing in CI: %v", err)
		}
		tb.Skipf("shared data %s not found (%v): skipping", name, err)
	}
	return p
}
