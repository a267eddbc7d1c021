// Package testenv holds helpers that tests of several packages share.
//
// Tests run on a generated shop (Shop, WriteShop): every test that needs
// realistic data, in every package, and none skips for want of data. Only
// the quality tests, which compare figures with those published for
// MovieLens 100k, read ../shared/data (SharedData). Package bench's own
// tests cannot use Shop: testenv imports bench.
package testenv

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/edgerec/edgerec/bench"
)

// ShopOptions generate the test shop: 20,000 events (views, carts,
// purchases in baskets) of 473 users over 200 items ("i1".."i200", with
// title, price, stock and brand) in 5 categories (electronics, audio,
// phones, computers, cameras), in 60 days from 2026-01-01. Same options,
// same files (on one architecture, one Go release).
var ShopOptions = bench.GenOptions{
	Events: 20000, Items: 200, Users: 500, Categories: 5, Seed: 1, Start: 1767225600, Days: 60,
}

// Shop writes the test shop (ShopOptions) into a temporary directory of
// tb, as gzipped CSV like the files of ../shared/data, and returns the
// paths of its events and items (10 ms on an idle core).
func Shop(tb testing.TB) (events, items string) {
	tb.Helper()
	return WriteShop(tb, tb.TempDir())
}

// WriteShop is Shop into dir, for files that outlive a test (a snapshot
// built once per test binary, say): the caller removes dir.
func WriteShop(tb testing.TB, dir string) (events, items string) {
	tb.Helper()
	events, items = filepath.Join(dir, "events.csv.gz"), filepath.Join(dir, "items.csv.gz")
	if _, err := bench.GenFiles(events, items, ShopOptions); err != nil {
		tb.Fatal(err)
	}
	return events, items
}

// SharedData returns the path of a file of ../shared/data (beside the
// repository), for the quality tests alone: those that compare a figure
// with one published for that data set. Without the file the test fails
// in CI (CI set), which always has the data, and skips elsewhere, naming
// the file: the data sets may not be redistributed, so a clone has them
// only where a developer put them.
func SharedData(tb testing.TB, name string) string {
	tb.Helper()
	_, self, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(self), "..", "..", "..", "shared", "data", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("quality test: shared data missing in CI: %v", err)
		}
		tb.Skipf("quality test: needs ../shared/data beside the repository (CI fails here): %v", err)
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
