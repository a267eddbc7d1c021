// Package testenv holds helpers that tests of several packages share.
package testenv

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
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

// AudienceRow is a row of an audience export's NDJSON form, as the tests
// of engine, server and cmd/edgerec read it back.
type AudienceRow struct {
	UserID          string         `json:"user_id"`
	Status          string         `json:"status"`
	ChangedAt       int64          `json:"changed_at"`
	Attributes      map[string]any `json:"attributes"`
	Recommendations []struct {
		ID, Title, Category string
		Price               *float64
	} `json:"recommendations"`
}

// ParseNDJSON parses an export's NDJSON rows; an unknown field fails
// the test.
func ParseNDJSON(tb testing.TB, b []byte) []AudienceRow {
	tb.Helper()
	var rows []AudienceRow
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r AudienceRow
		d := json.NewDecoder(bytes.NewReader(line))
		d.DisallowUnknownFields()
		if err := d.Decode(&r); err != nil {
			tb.Fatalf("bad NDJSON line %s: %v", line, err)
		}
		rows = append(rows, r)
	}
	return rows
}

// ParseCSV returns CSV rows as maps of column → cell, and the header.
func ParseCSV(tb testing.TB, b []byte) ([]map[string]string, []string) {
	tb.Helper()
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(recs) == 0 {
		tb.Fatalf("bad CSV %v: %s", err, b)
	}
	var rows []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		rows = append(rows, m)
	}
	return rows, recs[0]
}

// TruncateLargestTable cuts the largest table of the snapshot version
// directory dir in half, as a full disk or a copy cut short would.
func TruncateLargestTable(tb testing.TB, dir string) {
	tb.Helper()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	var largest string
	var size int64
	for _, p := range ssts {
		if st, err := os.Stat(p); err == nil && st.Size() > size {
			largest, size = p, st.Size()
		}
	}
	if largest == "" {
		tb.Fatalf("no tables in %s", dir)
	}
	if err := os.Truncate(largest, size/2); err != nil {
		tb.Fatal(err)
	}
}
