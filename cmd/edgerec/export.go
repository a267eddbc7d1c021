package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
)

// runExportAudience writes a segment's consenting members, from the state
// store when no server holds it, else through a running server's API.
func runExportAudience(c *command, args []string) error {
	fs := c.flagSet()
	segment := fs.String("segment", "", "segment to export, as named in the config; required (env EDGEREC_SEGMENT)")
	data := fs.String("data", "data/run", "data directory: state/ and snapshots/, as for serve; unused with --url (env EDGEREC_DATA)")
	configPath := fs.String("config", "edgerec.yaml", "edgerec.yaml holding the segment; unused with --url (env EDGEREC_CONFIG)")
	withRecs := fs.Int("with-recs", 0, "add each member's top N personal recommendations, 0 to 50 (env EDGEREC_WITH_RECS)")
	format := fs.String("format", "csv", "csv or ndjson (env EDGEREC_FORMAT)")
	compress := fs.String("compress", "", "zstd, gzip or none; default from --out's extension (.zst, .gz), else none (env EDGEREC_COMPRESS)")
	since := fs.String("since", "", "only users who joined or left since: RFC 3339, Unix seconds, or a duration before now such as 24h or 7d (env EDGEREC_SINCE)")
	channel := fs.String("channel", "email", "consent channel: members need the attribute consent_<channel> true (env EDGEREC_CHANNEL)")
	out := fs.String("out", "", "output file; default stdout (env EDGEREC_OUT)")
	serverURL := fs.String("url", "", "export through a running server, http://host:port, paging POST /v1/segments/{id}/members; see also --api-key (env EDGEREC_URL)")
	apiKey := fs.String("api-key", "", "the server's API key, with --url (env EDGEREC_API_KEY)")
	rawCSV := fs.Bool("raw-csv", false, "write CSV text cells as they are; by default a cell a spreadsheet would run as a formula (= + - @ first) gets a leading ' (env EDGEREC_RAW_CSV)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := envTwins(fs); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *segment == "" {
		return fmt.Errorf("--segment is required")
	}
	if *format != "csv" && *format != "ndjson" {
		return fmt.Errorf("--format %q: want csv or ndjson", *format)
	}
	if *withRecs < 0 || *withRecs > engine.MaxAudienceRecs {
		return fmt.Errorf("--with-recs %d: want 0 to %d", *withRecs, engine.MaxAudienceRecs)
	}
	comp := *compress
	if comp == "" {
		switch {
		case strings.HasSuffix(*out, ".zst"):
			comp = "zstd"
		case strings.HasSuffix(*out, ".gz"):
			comp = "gzip"
		default:
			comp = "none"
		}
	}
	if comp != "zstd" && comp != "gzip" && comp != "none" {
		return fmt.Errorf("--compress %q: want zstd, gzip or none", comp)
	}
	// An export job records the membership changes it notices: the next
	// export with --since lists them.
	o := engine.AudienceOptions{Segment: *segment, WithRecs: *withRecs, Format: *format, Channel: *channel, RawCSV: *rawCSV, Record: true}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return err
		}
		o.Since = t
	}
	if *serverURL != "" && *apiKey == "" {
		return fmt.Errorf("--url needs --api-key: member lists are personal data")
	}

	// Local mode opens the stores before the output, so a refused open
	// leaves no empty file behind.
	var export func(w io.Writer) (engine.AudienceStats, error)
	if *serverURL == "" {
		e, closeAll, err := openForExport(ctx, *data, *configPath, *withRecs > 0)
		if err != nil {
			return err
		}
		defer closeAll()
		export = func(w io.Writer) (engine.AudienceStats, error) { return e.ExportAudience(ctx, w, o) }
	} else {
		export = func(w io.Writer) (engine.AudienceStats, error) { return exportFromServer(w, *serverURL, *apiKey, o) }
	}

	var st engine.AudienceStats
	err := writeOut(*out, func(dst io.Writer) error {
		w, finish, err := compressor(dst, comp)
		if err != nil {
			return err
		}
		if st, err = export(w); err != nil {
			return err
		}
		return finish()
	})
	if err != nil {
		return err
	}
	where := *out
	if where == "" {
		where = "stdout"
	}
	if *serverURL != "" {
		fmt.Fprintf(os.Stderr, "exported %d rows of segment %q to %s\n", st.Written, *segment, where)
	} else {
		fmt.Fprintf(os.Stderr, "exported %d rows of segment %q to %s: %d members among %d profiles, %d joined, %d left\n",
			st.Written, *segment, where, st.Members, st.Scanned, st.Joined, st.Left)
		if st.Skipped > 0 {
			fmt.Fprintf(os.Stderr, "skipped %d profiles that could not be decoded (damaged, or written by a newer version); their users' next events rewrite them\n", st.Skipped)
		}
	}
	return nil
}

// openForExport opens the state store, the config and, for
// recommendations, the current snapshot under data, in an engine.
func openForExport(ctx context.Context, data, configPath string, snapshot bool) (*engine.Engine, func(), error) {
	cfg, err := engine.LoadConfig(configPath)
	if err != nil {
		return nil, nil, fmt.Errorf("--config: %w", err)
	}
	dir := filepath.Join(data, "state")
	if _, err := os.Stat(dir); err != nil {
		return nil, nil, fmt.Errorf("--data: no state store at %q: %w", dir, err)
	}
	logger := newLogger()
	state, err := index.OpenState(dir, index.StateOptions{Logger: logger})
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) || strings.Contains(err.Error(), "lock") {
			return nil, nil, fmt.Errorf("the state store %q is in use, probably by a running edgerec serve: "+
				"export through it instead with --url http://host:port --api-key K (%w)", dir, err)
		}
		return nil, nil, err
	}
	e, err := engine.New(engine.Options{Config: cfg, Logger: logger}, state)
	if err != nil {
		_ = state.Close()
		return nil, nil, err
	}
	closeAll := func() {
		e.Close()
		_ = state.Close()
	}
	if err := e.LoadPatches(); err != nil {
		closeAll()
		return nil, nil, err
	}
	if snapshot {
		if _, err := e.LoadSnapshot(ctx, filepath.Join(data, "snapshots")); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("--with-recs needs a snapshot: %w", err)
		}
	}
	return e, closeAll, nil
}

// writeOut runs write on the file path, created for it, or on stdout when
// path is empty. The file is synced and closed once write succeeds; on any
// error it is removed, so that no half-written output is left behind.
func writeOut(path string, write func(w io.Writer) error) error {
	if path == "" {
		return write(os.Stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// compressor wraps w; finish flushes and closes the compressed stream
// (not w).
func compressor(w io.Writer, kind string) (io.Writer, func() error, error) {
	switch kind {
	case "zstd":
		zw, err := zstd.NewWriter(w)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot start zstd: %w", err)
		}
		return zw, zw.Close, nil
	case "gzip":
		gw := gzip.NewWriter(w)
		return gw, gw.Close, nil
	}
	return w, func() error { return nil }, nil
}

// parseSince reads --since: RFC 3339, Unix seconds, or a duration before
// now (24h, 90m, 7d).
func parseSince(v string, now time.Time) (int64, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.Unix(), nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		// A small bare number is a duration without its unit, not a
		// time in the first days of 1970.
		if n < 100_000_000 {
			return 0, fmt.Errorf("--since %q: a bare number is Unix seconds; for a duration add its unit (%sh, %sd)", v, v, v)
		}
		return n, nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--since %q: want RFC 3339 (2025-01-02T15:04:05Z), Unix seconds, or a duration before now (24h, 7d)", v)
	}
	return now.Add(-d).Unix(), nil
}

// exportFromServer pages through POST /v1/segments/{id}/members as NDJSON
// and writes what ExportAudience would: the NDJSON as is, or CSV with one
// header, converted from a spooled copy of the pages once their attribute
// columns are known.
func exportFromServer(w io.Writer, base, key string, o engine.AudienceOptions) (engine.AudienceStats, error) {
	var st engine.AudienceStats
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return st, fmt.Errorf("--url %q: want http://host:port", base)
	}
	dst := w
	var spool *os.File
	if o.Format == "csv" {
		if spool, err = os.CreateTemp("", "edgerec-export-*.ndjson"); err != nil {
			return st, fmt.Errorf("cannot spool the pages: %w", err)
		}
		defer os.Remove(spool.Name())
		defer spool.Close()
		dst = spool
	}
	client := &http.Client{Timeout: 5 * time.Minute}
	after := ""
	for {
		q := url.Values{"format": {"ndjson"}, "limit": {"10000"}, "channel": {o.Channel}}
		if o.WithRecs > 0 {
			q.Set("with_recs", strconv.Itoa(o.WithRecs))
		}
		if o.Since > 0 {
			q.Set("since", strconv.FormatInt(o.Since, 10))
		}
		if after != "" {
			q.Set("after", after)
		}
		page := strings.TrimRight(base, "/") + "/v1/segments/" + url.PathEscape(o.Segment) + "/members?" + q.Encode()
		// POST: an export job records the membership changes it notices
		// (a GET only reads).
		req, err := http.NewRequest("POST", page, nil)
		if err != nil {
			return st, fmt.Errorf("--url: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			return st, fmt.Errorf("cannot reach the server: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			var e struct{ Error struct{ Message string } }
			msg := strings.TrimSpace(string(body))
			if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
				msg = e.Error.Message
			}
			return st, fmt.Errorf("GET %s: %s: %s", u.Host, resp.Status, msg)
		}
		n, err := countingCopy(dst, resp.Body)
		resp.Body.Close()
		if err != nil {
			return st, fmt.Errorf("cannot read a page from the server: %w", err)
		}
		st.Written += n
		if after, err = url.QueryUnescape(resp.Header.Get("X-Next-After")); err != nil {
			return st, fmt.Errorf("GET %s: bad X-Next-After: %w", u.Host, err)
		}
		if after == "" {
			break
		}
	}
	if spool != nil {
		if _, err := engine.WriteAudienceCSV(w, spool, o.WithRecs, nil, o.RawCSV); err != nil {
			return st, fmt.Errorf("cannot convert the pages to CSV: %w", err)
		}
	}
	return st, nil
}

// countingCopy copies r to w and counts the lines.
func countingCopy(w io.Writer, r io.Reader) (int, error) {
	buf := make([]byte, 64<<10)
	lines := 0
	for {
		n, err := r.Read(buf)
		if n > 0 {
			for _, c := range buf[:n] {
				if c == '\n' {
					lines++
				}
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return lines, werr
			}
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
}
