package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/edgerec/edgerec/internal/testenv"
)

// decompressed reads a .zst, .gz or plain file.
func decompressed(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	switch filepath.Ext(path) {
	case ".zst":
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case ".gz":
		gr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = gr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// csvRows parses CSV into maps of column → cell.
func csvRows(t *testing.T, b []byte) []map[string]string {
	t.Helper()
	rows, _ := testenv.ParseCSV(t, b)
	return rows
}

// TestExportAudience: gen → build → serve, profiles through the API, then
// exports through the server (--url) while it holds the store, and from
// the store once it stopped: the same bytes; consent respected; --since.
func TestExportAudience(t *testing.T) {
	dir := t.TempDir()
	events, items := genSample(t, dir, 5000, 3)
	data := filepath.Join(dir, "data")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots")); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	cfg := filepath.Join(dir, "edgerec.yaml")
	writeFile(t, cfg, "segments:\n  pricing:\n    if: 'views(\"/pricing\", \"30d\") >= 1'\n")
	s := startServer(t, data, freeAddr(t), "--config", cfg)
	stopped := false
	defer func() {
		if !stopped {
			s.stop(t)
		}
	}()
	evs := `{"user_id":"u1","event":"pageview","page":"/pricing"}
{"user_id":"u1","item_id":"i1","event":"view"}
{"user_id":"u2","event":"pageview","page":"/pricing"}
{"user_id":"u3","event":"pageview","page":"/about"}
{"user_id":"u4","event":"pageview","page":"/pricing"}
{"user_id":"u4","item_id":"i2","event":"cart"}`
	if code, body := s.do(t, "POST", "/v1/events", s.key, evs); code != 200 {
		t.Fatalf("events: %d %s", code, body)
	}
	for user, attrs := range map[string]string{
		"u1": `{"email":"one@x.jp","company":"ACME","consent_email":true}`,
		"u2": `{"email":"two@x.jp","company":"Secret Co","consent_email":false}`,
		"u3": `{"email":"three@x.jp","consent_email":true}`,
		"u4": `{"email":"four@x.jp","plan":"pro","consent_email":true}`,
	} {
		if code, body := s.do(t, "PUT", "/v1/users/"+user, s.key, attrs); code != 200 {
			t.Fatalf("PUT %s: %d %s", user, code, body)
		}
	}
	local := []string{"export", "audience", "--data", data, "--config", cfg, "--segment", "pricing", "--with-recs", "3"}
	remote := []string{"export", "audience", "--url", "http://" + s.addr, "--api-key", s.key, "--segment", "pricing", "--with-recs", "3"}

	// The server holds the store: a clear error pointing at --url.
	code, _, errs := run(t, append(local, "--out", filepath.Join(dir, "x.csv"))...)
	if code != 1 || !strings.Contains(errs, "in use") || !strings.Contains(errs, "--url http://host:port --api-key") {
		t.Fatalf("export while serving: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.csv")); err == nil {
		t.Fatal("a refused export left its output file")
	}

	viaURL := filepath.Join(dir, "url.csv.zst")
	if code, _, errs := run(t, append(remote, "--out", viaURL)...); code != 0 || !strings.Contains(errs, "exported 2 rows") {
		t.Fatalf("export --url: exit %d: %s", code, errs)
	}
	b := decompressed(t, viaURL)
	rows := csvRows(t, b)
	if len(rows) != 2 || rows[0]["user_id"] != "u1" || rows[0]["email"] != "one@x.jp" || rows[0]["company"] != "ACME" ||
		rows[1]["user_id"] != "u4" || rows[1]["plan"] != "pro" || rows[1]["company"] != "" || rows[0]["status"] != "member" {
		t.Fatalf("CSV via --url:\n%s", b)
	}
	for _, r := range rows {
		if r["rec_3_id"] == "" || r["rec_3_title"] == "" || r["rec_1_id"] == "i1" || r["rec_1_id"] == "i2" {
			t.Fatalf("recommendations of %s: %v", r["user_id"], r)
		}
	}
	if bytes.Contains(b, []byte("two@x.jp")) || bytes.Contains(b, []byte("Secret")) {
		t.Fatalf("u2 has not consented:\n%s", b)
	}
	ndURL := filepath.Join(dir, "url.ndjson.gz")
	if code, _, errs := run(t, append(remote, "--format", "ndjson", "--out", ndURL)...); code != 0 {
		t.Fatalf("export --url ndjson: exit %d: %s", code, errs)
	}

	// Consent withdrawn: a left row with the id only, under --since.
	time.Sleep(1100 * time.Millisecond)
	since := strconv.FormatInt(time.Now().Unix(), 10)
	if code, body := s.do(t, "PUT", "/v1/users/u1", s.key, `{"consent_email":false}`); code != 200 {
		t.Fatalf("PUT u1: %d %s", code, body)
	}
	code, out, errs := run(t, append(remote, "--format", "ndjson", "--since", since)...)
	var left struct {
		UserID     string `json:"user_id"`
		Status     string
		ChangedAt  int64 `json:"changed_at"`
		Attributes map[string]any
	}
	if err := json.Unmarshal([]byte(out), &left); code != 0 || err != nil || strings.Count(out, "\n") != 1 ||
		left.UserID != "u1" || left.Status != "left" || left.Attributes != nil || strings.Contains(out, "one@x.jp") {
		t.Fatalf("--since after consent withdrawn: exit %d %s: %q", code, errs, out)
	}
	if code, _, errs := run(t, "export", "audience", "--url", "http://"+s.addr, "--api-key", s.key, "--segment", "nope"); code != 1 ||
		!strings.Contains(errs, `400 Bad Request: segment: unknown segment "nope"; configured: pricing`) {
		t.Fatalf("--url, unknown segment: exit %d %q", code, errs)
	}
	s.stop(t)
	stopped = true

	// From the store: the same rows (u1 gone) as through the server.
	viaStore := filepath.Join(dir, "store.ndjson.zst")
	if code, _, errs := run(t, append(local, "--format", "ndjson", "--out", viaStore)...); code != 0 || !strings.Contains(errs, "exported 1 rows") {
		t.Fatalf("export from the store: exit %d: %s", code, errs)
	}
	want := bytes.SplitAfter(decompressed(t, ndURL), []byte("\n"))[1] // u4
	if got := decompressed(t, viaStore); !bytes.Equal(got, want) {
		t.Fatalf("from the store:\n%s\nthrough the server before:\n%s", got, want)
	}
	code, out, errs = run(t, append(local, "--compress", "none", "--since", "1h")...)
	if code != 0 || !strings.HasPrefix(out, "user_id,status,changed_at,") || !strings.Contains(out, "\nu1,left,"+strconv.FormatInt(left.ChangedAt, 10)+",") {
		t.Fatalf("CSV --since 1h: exit %d %s:\n%s", code, errs, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--segment", "nope"}, `unknown segment "nope"`},
		{[]string{"--segment", "pricing", "--format", "xml"}, "--format"},
		{[]string{"--segment", "pricing", "--with-recs", "99"}, "--with-recs"},
		{[]string{"--segment", "pricing", "--compress", "lz4"}, "--compress"},
		{[]string{"--segment", "pricing", "--since", "last week"}, "--since"},
		{[]string{"--segment", "pricing", "--config", filepath.Join(dir, "none.yaml")}, "--config"},
		{[]string{"--segment", "pricing", "--data", filepath.Join(dir, "none")}, "--data"},
		{[]string{"--segment", "pricing", "--url", "http://" + s.addr}, "--api-key"},
		{[]string{"--config", cfg}, "--segment is required"},
	} {
		args := append([]string{"export", "audience", "--data", data, "--config", cfg}, c.args...)
		if code, _, errs := run(t, args...); code != 1 || !strings.Contains(errs, c.want) {
			t.Fatalf("%v: exit %d %q; want 1 and %q", c.args, code, errs, c.want)
		}
	}
	if code, _, errs := run(t, "export", "people"); code != 2 || !strings.Contains(errs, `edgerec export: unknown command "people"`) || !strings.Contains(errs, "edgerec export audience") {
		t.Fatalf("export people: exit %d %q", code, errs)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f := func(in string, want int64, ok bool) {
		t.Helper()
		got, err := parseSince(in, now)
		if (err == nil) != ok || ok && got != want {
			t.Fatalf("parseSince(%q) = %d, %v; want %d (ok %v)", in, got, err, want, ok)
		}
	}
	f("2023-11-14T22:13:20Z", 1_700_000_000, true)
	f("2023-11-15T07:13:20+09:00", 1_700_000_000, true)
	f("1699990000", 1_699_990_000, true)
	f("0", 0, false)  // would mean no --since at all
	f("24", 0, false) // 24 hours, not 24 seconds after 1970
	f("-5", 0, false)
	f("24h", 1_700_000_000-86400, true)
	f("90m", 1_700_000_000-5400, true)
	f("7d", 1_700_000_000-7*86400, true)
	f("-1h", 0, false)
	f("0h", 0, false)
	f("xd", 0, false)
	f("yesterday", 0, false)
	f("", 0, false)
}
