package index

import (
	"testing"

	"github.com/edgerec/edgerec/internal/testenv"
)

// sharedData returns the path of a file of ../shared/data; see
// testenv.SharedData.
func sharedData(t testing.TB, name string) string {
	t.Helper()
	return testenv.SharedData(t, name)
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
