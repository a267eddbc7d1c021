package index

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedData returns the path of a file of ../shared/data. Locally a
// missing data set skips the test; in CI (CI set) it fails it, since CI
// always has the data beside the project.
func sharedData(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "data", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared data missing in CI: %v", err)
		}
		t.Skipf("shared data %s not found (%v): skipping", name, err)
	}
	return p
}

// buildSnapshot builds a snapshot of the given event files with o into a
// temporary root and opens it; it is closed when the test ends.
func buildSnapshot(t testing.TB, o BuildOptions, items string, events ...string) *Snapshot {
	t.Helper()
	b, err := NewBuilder(o)
	if err != nil {
		t.Fatal(err)
	}
	if items != "" {
		if err := b.ReadItemsFile(items); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range events {
		if err := b.ReadEventsFile(e); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	if _, err := b.Build(root); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// skipLongUnderShort skips a long test under -short: make test runs such
// tests in its second pass, without the race detector, which has nothing to
// find in single-goroutine maths and slows it tenfold.
func skipLongUnderShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long test: runs without -short (make test's second pass)")
	}
}
