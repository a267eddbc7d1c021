package index

import "testing"

// Seed corpora live in testdata/fuzz/<FuzzName>/; crashers found by fuzzing
// stay there as regression cases.

// FuzzCSVScanner checks the hand-rolled CSV splitter against encoding/csv.
func FuzzCSVScanner(f *testing.F) {
	f.Add([]byte("a,\"b,\"\"c\"\"\nd\"\r\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkCSVScanner(t, data)
	})
}
