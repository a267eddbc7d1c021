package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgerec/edgerec/internal/testenv"
)

// bin is the edgerec binary TestMain builds once for every test here.
var bin string

// runTimeout bounds one run of the binary, so that a hung command fails
// its test with the command line instead of the package at go test -timeout.
const runTimeout = 2 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

// testMain builds the binary, runs the tests and removes the binary; it
// returns the exit code so that the deferred removal runs before os.Exit.
func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "edgerec-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot create a directory for the binary: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "edgerec")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot build edgerec: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// run runs the binary and returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("edgerec %s: %v; stderr:\n%s", strings.Join(args, " "), ctx.Err(), errb.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("cannot run edgerec %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	return sha256.Sum256(mustRead(t, path))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// entries returns the names in dir, sorted; nil when dir does not exist.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	return names
}

// genSample writes a small synthetic shop into dir.
func genSample(t *testing.T, dir string, n int, seed int) (events, items string) {
	t.Helper()
	events, items = filepath.Join(dir, "ev.csv.gz"), filepath.Join(dir, "items.csv")
	if code, _, errs := run(t, "gen", "--events", events, "--items", items, "--n", fmt.Sprint(n), "--seed", fmt.Sprint(seed)); code != 0 {
		t.Fatalf("gen: exit %d: %s", code, errs)
	}
	return events, items
}

// badCSV has two bad lines: line 3 (an unknown event type) and line 5 (an
// empty user_id). Line 1 is the header.
const badCSV = `user_id,item_id,event,ts
u1,i1,view,100
u1,i2,teleport,101
u2,i1,view,102
,i2,view,103
u3,i3,purchase,104
`

// The reasons index.EventReader gives for the bad lines of badCSV.
const (
	badLine3 = `bad.csv:3: unknown event type "teleport"`
	badLine5 = `bad.csv:5: empty user_id`
)

func TestUsage(t *testing.T) {
	t.Parallel()
	code, out, errs := run(t)
	if code != 2 || out != "" || !strings.Contains(errs, "Usage:") || !strings.Contains(errs, "edgerec build") {
		t.Fatalf("no args: exit %d, stdout %q, stderr %q; want 2 and the usage on stderr", code, out, errs)
	}
	code, out, errs = run(t, "frobnicate")
	if code != 2 || out != "" || !strings.Contains(errs, `unknown command "frobnicate"`) || !strings.Contains(errs, "Usage:") {
		t.Fatalf("unknown command: exit %d, stdout %q, stderr %q; want 2 naming it, then the usage", code, out, errs)
	}
	if code, out, _ := run(t, "help"); code != 0 || !strings.Contains(out, "Usage:") {
		t.Fatalf("help: exit %d, stdout %q; want 0 and the usage on stdout", code, out)
	}
}

var (
	// genLine is the line gen prints: events, then catalog items.
	genLine = regexp.MustCompile(`^wrote (\d+) events \(.*\) to .* and (\d+) items to `)
	// buildLine is the line build prints once a snapshot is published.
	buildLine = regexp.MustCompile(`^snapshot v(\d+) in (.+): (\d+) items, \d+ users, \d+ categories, (\d+) events \((\d+) bad lines\)`)
)

// build runs a build that must succeed and returns the published version
// and the item count the output line gives.
func build(t *testing.T, args ...string) (version string, items int) {
	t.Helper()
	code, out, errs := run(t, append([]string{"build"}, args...)...)
	m := buildLine.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("build %v: exit %d, stdout %q, stderr:\n%s", args, code, out, errs)
	}
	if !strings.Contains(errs, "published snapshot v"+m[1]) {
		t.Fatalf("build: the log does not say v%s was published:\n%s", m[1], errs)
	}
	items, _ = strconv.Atoi(m[3])
	return m[1], items
}

// TestGenBuildPublish runs gen → build and checks what the build says
// against what it left on disk.
func TestGenBuildPublish(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events, items := filepath.Join(dir, "ev.csv.gz"), filepath.Join(dir, "items.csv")
	code, out, errs := run(t, "gen", "--events", events, "--items", items, "--n", "20000", "--seed", "1")
	g := genLine.FindStringSubmatch(out)
	if code != 0 || g == nil || g[1] != "20000" {
		t.Fatalf("gen: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	root := filepath.Join(dir, "snapshots")
	code, out, errs = run(t, "build", "--events", events, "--items", items, "--out", root)
	m := buildLine.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("build: exit %d, stdout %q, stderr:\n%s", code, out, errs)
	}
	version, nItems := m[1], m[3]
	// Every event item of gen is in its catalog.
	if m[2] != root || nItems != g[2] || m[4] != "20000" || m[5] != "0" {
		t.Fatalf("build line %q; want %s items and 20000 events from gen's %q, 0 bad lines, in %s", out, g[2], g[0], root)
	}
	if !strings.Contains(errs, "published snapshot v"+version+" in "+root) {
		t.Fatalf("build log does not say v%s was published:\n%s", version, errs)
	}
	if got, want := entries(t, root), []string{"CURRENT", "v" + version}; !slices.Equal(got, want) {
		t.Fatalf("snapshot root holds %q; want %q", got, want)
	}
	if cur := string(mustRead(t, filepath.Join(root, "CURRENT"))); strings.TrimSpace(cur) != "v"+version {
		t.Fatalf("CURRENT = %q; want v%s", cur, version)
	}
	var man struct {
		Version  uint64 `json:"version"`
		Items    int    `json:"items"`
		Events   int64  `json:"events"`
		BadLines int64  `json:"bad_lines"`
	}
	if err := json.Unmarshal(mustRead(t, filepath.Join(root, "v"+version, "edgerec-manifest.json")), &man); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if fmt.Sprint(man.Version) != version || fmt.Sprint(man.Items) != nItems || man.Events != 20000 || man.BadLines != 0 {
		t.Fatalf("manifest %+v; want version %s, %s items, 20000 events, 0 bad lines", man, version, nItems)
	}

	// A second build publishes a newer version and moves CURRENT to it.
	v2, _ := build(t, "--events", events, "--items", items, "--out", root)
	if v2 == version {
		t.Fatalf("rebuild published the same version %s", v2)
	}
	if cur := string(mustRead(t, filepath.Join(root, "CURRENT"))); strings.TrimSpace(cur) != "v"+v2 {
		t.Fatalf("CURRENT after a rebuild = %q; want v%s", cur, v2)
	}
}

// TestGenDeterministic: the same flags write the same bytes, whatever was
// at the paths before; another seed writes other bytes.
func TestGenDeterministic(t *testing.T) {
	t.Parallel()
	gen := func(dir string, seed int) (events, items [32]byte) {
		t.Helper()
		e, i := genSample(t, dir, 20000, seed)
		return sha(t, e), sha(t, i)
	}
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	ea, ia := gen(a, 1)
	eb, ib := gen(b, 1)
	if ea != eb || ia != ib {
		t.Fatal("same seed, different bytes")
	}
	ec, ic := gen(c, 2)
	if ea == ec || ia == ic {
		t.Fatalf("seeds 1 and 2: same events %v, same items %v; want both to differ", ea == ec, ia == ic)
	}
	// Over seed 2's files: the files are rewritten, not patched.
	if ec, ic = gen(c, 1); ea != ec || ia != ic {
		t.Fatal("seed 1 over seed 2's files: not the bytes of seed 1")
	}
}

// TestBuildBadLines: --max-bad N tolerates N bad lines, and every message
// names the file and line of each.
func TestBuildBadLines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	writeFile(t, bad, badCSV)

	// Too many: exit 1 naming the first bad lines, and nothing published.
	f := func(maxBad string, want ...string) {
		t.Helper()
		root := filepath.Join(dir, "snap-max-bad-"+maxBad)
		code, out, errs := run(t, "build", "--events", bad, "--out", root, "--max-bad", maxBad)
		if code != 1 || out != "" {
			t.Fatalf("--max-bad %s: exit %d, stdout %q; want 1 and no output", maxBad, code, out)
		}
		for _, w := range append(want, "too many bad input lines") {
			if !strings.Contains(errs, w) {
				t.Fatalf("--max-bad %s: stderr %q; want it to hold %q", maxBad, errs, w)
			}
		}
		if es := entries(t, root); len(es) != 0 {
			t.Fatalf("--max-bad %s: a failed build left %q in the snapshot root", maxBad, es)
		}
	}
	f("0", badLine3)
	f("1", badLine3, badLine5)

	// Enough: the build publishes and logs every bad line.
	for _, maxBad := range []string{"2", "5"} {
		root := filepath.Join(dir, "snap-max-bad-"+maxBad)
		code, out, errs := run(t, "build", "--events", bad, "--out", root, "--max-bad", maxBad)
		if code != 0 || !strings.Contains(out, "(2 bad lines)") {
			t.Fatalf("--max-bad %s: exit %d, stdout %q, stderr:\n%s", maxBad, code, out, errs)
		}
		for _, w := range []string{"/" + badLine3, "/" + badLine5} { // logged as "bad line: <path as given>:line: reason"
			if !strings.Contains(errs, w) {
				t.Fatalf("--max-bad %s: stderr does not hold %q:\n%s", maxBad, w, errs)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "CURRENT")); err != nil {
			t.Fatalf("--max-bad %s: %v", maxBad, err)
		}
	}
}

// TestBuildFailureKeepsCurrent: a build that fails, early or late, leaves
// the published snapshot and the root as they were.
func TestBuildFailureKeepsCurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events, items := genSample(t, dir, 5000, 3)
	root := filepath.Join(dir, "snapshots")
	version, _ := build(t, "--events", events, "--items", items, "--out", root)
	cur := mustRead(t, filepath.Join(root, "CURRENT"))
	before := entries(t, root)

	bad := filepath.Join(dir, "bad.csv")
	writeFile(t, bad, badCSV)
	noEventColumn := filepath.Join(dir, "noevent.csv")
	writeFile(t, noEventColumn, "user_id,item_id,ts\nu1,i1,1\n")
	array := filepath.Join(dir, "array.json")
	writeFile(t, array, `[{"user_id":"u1","item_id":"i1","event":"view"}]`+"\n")
	allBad := filepath.Join(dir, "allbad.csv")
	writeFile(t, allBad, "user_id,item_id,event\nu1,i1,teleport\nu2,i2,teleport\n")
	cut := filepath.Join(dir, "cut.csv.gz")
	gz := mustRead(t, events)
	writeFile(t, cut, string(gz[:len(gz)/2]))

	f := func(want string, args ...string) {
		t.Helper()
		code, out, errs := run(t, append([]string{"build", "--out", root}, args...)...)
		if code != 1 || out != "" || !strings.Contains(errs, want) {
			t.Fatalf("build %v: exit %d, stdout %q, stderr %q; want 1 and %q", args, code, out, errs, want)
		}
		if now := mustRead(t, filepath.Join(root, "CURRENT")); string(now) != string(cur) {
			t.Fatalf("build %v changed CURRENT: %q → %q", args, cur, now)
		}
		if now := entries(t, root); !slices.Equal(now, before) {
			t.Fatalf("build %v changed the snapshot root: %q → %q", args, before, now)
		}
	}
	f(badLine3, "--events", bad, "--max-bad", "0")
	// All the good events read, then one bad line too many.
	f(badLine3, "--events", events+","+bad, "--items", items, "--max-bad", "0")
	f(`has no column "event"`, "--events", noEventColumn)
	f("a JSON array is not supported", "--events", array)
	f("no items and no events", "--events", allBad, "--max-bad", "5")
	f(`cut.csv.gz": unexpected EOF`, "--events", cut)
	f("no-such-items.csv", "--events", events, "--items", filepath.Join(dir, "no-such-items.csv"))
	if strings.TrimSpace(string(cur)) != "v"+version {
		t.Fatalf("CURRENT = %q; want v%s", cur, version)
	}
}

// TestFlagErrors: bad flag values and missing files fail before any work,
// with a message naming the flag or the path.
func TestFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := filepath.Join(dir, "ev.csv")
	writeFile(t, events, "user_id,item_id,event\nu1,i1,view\nu2,i1,view\n")
	root := filepath.Join(dir, "snapshots")
	missing := filepath.Join(dir, "no-such-file.csv")
	f := func(wantCode int, want string, args ...string) {
		t.Helper()
		code, out, errs := run(t, args...)
		if code != wantCode || out != "" || !strings.Contains(errs, want) {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q; want %d naming %q", args, code, out, errs, wantCode, want)
		}
		if es := entries(t, root); es != nil {
			t.Fatalf("%v: a failed command created the snapshot root: %q", args, es)
		}
	}
	buildArgs := []string{"build", "--events", events, "--out", root}
	f(1, missing, "build", "--events", missing, "--out", root)
	f(1, missing, "build", "--events", events+","+missing, "--out", root)
	f(1, "-similarity", append(buildArgs, "--similarity", "pearson")...)
	f(1, "-bought-together", append(buildArgs, "--bought-together", "pearson")...)
	f(1, "-weights", append(buildArgs, "--weights", "view=x")...)
	f(1, "-weights", append(buildArgs, "--weights", "teleport=1")...)
	f(1, "-half-life", append(buildArgs, "--half-life", "3q")...)
	f(1, "-half-life", append(buildArgs, "--half-life", "NaNd")...)
	f(1, "-weights", append(buildArgs, "--weights", "view=NaN")...)
	f(1, "-weights", append(buildArgs, "--weights", "view=0,click=0,cart=0,purchase=0,rating=0")...)
	f(1, "popular k", append(buildArgs, "--popular-k", "-5")...)
	f(1, "-half-life", append(buildArgs, "--half-life", "-1d")...)
	f(1, "-popular-half-life", append(buildArgs, "--popular-half-life", "soon")...)
	f(1, "-trending-half-life", append(buildArgs, "--trending-half-life", "3x")...)
	f(1, "-events and -out are required", "build", "--events", events)
	f(2, "flag provided but not defined: -nope", append(buildArgs, "--nope")...)
	f(2, `invalid value "many" for flag -max-bad`, append(buildArgs, "--max-bad", "many")...)
	f(1, "-keep -1: must not be negative", append(buildArgs, "--keep", "-1")...)
	f(1, "--keep -1: must not be negative", "snapshot", "unpack", "--root", root, "--keep", "-1", missing)
	f(1, "-test is required, and -train", "eval", "--train", events)
	f(1, "-test is required, and -train", "eval", "--test", events)
	f(1, "-k and -history must be at least 1", "eval", "--train", events, "--test", events, "--history", "0")
	f(1, "-similarity", "eval", "--train", events, "--test", events, "--similarity", "pearson")
	f(1, missing, "eval", "--train", missing, "--test", events)
	f(1, "-events and -items are required", "gen", "--events", filepath.Join(dir, "gen.csv"))
	f(1, `CORS origin "shop.example": want *, null or scheme://host[:port]`, "serve", "--data", filepath.Join(dir, "serve"), "--addr", "127.0.0.1:0", "--cors", "https://ok.example,shop.example")
	f(1, "-memory-mb 183: want 0 (twice the caches' budgets) or at least 184", "serve", "--data", filepath.Join(dir, "serve"), "--addr", "127.0.0.1:0", "--memory-mb", "183")
	f(1, "-memory-mb -1", "serve", "--data", filepath.Join(dir, "serve"), "--addr", "127.0.0.1:0", "--memory-mb", "-1")
}

// TestEvalJSON, a quality test, runs SAR through the CLI on the MovieLens
// 100k user split (../shared/data) and pins its figures, the published ones. SAR blends every training item of a user: the
// history window is opened to all of them.
func TestEvalJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("long: runs without -short")
	}
	t.Parallel()
	train := testenv.SharedData(t, "ml100k_split_by_user_train.csv.gz")
	test := testenv.SharedData(t, "ml100k_split_by_user_test.csv.gz")
	code, out, errs := run(t, "eval", "--json", "--train", train, "--test", test,
		"--similarity", "jaccard", "--topk", "-1", "--rating-value", "--half-life", "30d", "--min-support", "1", "--history", "10000")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, errs)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("eval --json: %v: %q", err, out)
	}
	pop, ok := r["popularity"].(map[string]any)
	if !ok {
		t.Fatalf("eval --json has no popularity object: %s", out)
	}
	for _, k := range []string{"precision", "recall", "map", "ndcg", "coverage"} {
		if _, ok := r[k].(float64); !ok {
			t.Fatalf("eval --json lacks number %q: %s", k, out)
		}
		if _, ok := pop[k].(float64); !ok {
			t.Fatalf("popularity lacks number %q: %s", k, out)
		}
	}
	if got := fmt.Sprintf("map %.4f ndcg %.4f", r["map"], r["ndcg"]); got != "map 0.1070 ndcg 0.3795" {
		t.Fatalf("SAR through the CLI: %s; want map 0.1070 ndcg 0.3795", got)
	}
}

// proc is a running edgerec serve.
type proc struct {
	cmd  *exec.Cmd
	addr string
	key  string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startServer(t *testing.T, data, addr string, extra ...string) *proc {
	t.Helper()
	s := &proc{addr: addr, key: "k3y"}
	s.cmd = exec.Command(bin, append([]string{"serve", "--data", data, "--addr", addr, "--api-key", s.key}, extra...)...)
	stderr, _ := s.cmd.StderrPipe()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, bufio.NewReader(stderr))
	for i := 0; i < 200; i++ {
		if code, _ := s.get(t, "/readyz"); code == 200 {
			return s
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.cmd.Process.Kill()
	t.Fatal("server not ready")
	return nil
}

func (s *proc) do(t *testing.T, method, path, key, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.addr+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (s *proc) get(t *testing.T, path string) (int, []byte) { return s.do(t, "GET", path, "", "") }

func (s *proc) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		t.Fatal("serve did not stop on SIGTERM")
	}
}

// TestServeEndToEnd runs gen → build → serve and drives the API over
// loopback: every endpoint, bad inputs, a snapshot swap under load, a
// graceful stop, and a kill -9 after acknowledged events.
func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	events, items := genSample(t, dir, 30000, 1)
	data := filepath.Join(dir, "data")
	snaps := filepath.Join(data, "snapshots")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", snaps); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	addr := freeAddr(t)
	s := startServer(t, data, addr)

	for _, p := range []string{
		"/v1/items/i1/similar?k=5", "/v1/items/i1/bought-together?k=5", "/v1/items/i1/bought-together?cart=i2,i3&k=5",
		"/v1/popular?k=5", "/v1/users/u1/recommendations?k=5", "/v1/recommend?placement=product_page&item=i1&visitor=v1",
		"/v1/recommend?placement=cart&cart=i1,i2", "/v1/recommend?placement=home&user=u1&price_max=1000",
		"/v1/placements/home/stats", "/healthz", "/readyz", "/metrics",
	} {
		code, body := s.get(t, p)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		if strings.HasPrefix(p, "/v1/items") || strings.HasPrefix(p, "/v1/popular") || strings.HasPrefix(p, "/v1/users") || strings.HasPrefix(p, "/v1/recommend") {
			var l struct {
				RecID string `json:"rec_id"`
				Items []struct{ ID, Reason string }
			}
			if err := json.Unmarshal(body, &l); err != nil || l.RecID == "" || len(l.Items) == 0 {
				t.Fatalf("GET %s: %s", p, body)
			}
		}
	}
	if code, body := s.do(t, "GET", "/v1/admin/status", s.key, ""); code != 200 || !strings.Contains(string(body), `"snapshot"`) {
		t.Fatalf("status: %d %s", code, body)
	}
	for _, c := range []struct {
		method, path, key, body string
		want                    int
	}{
		{"POST", "/v1/events", "", `{"user_id":"a","item_id":"i1","event":"view"}`, 401},
		{"POST", "/v1/events", "nope", `{"user_id":"a","item_id":"i1","event":"view"}`, 401},
		{"POST", "/v1/events", "k3y", `{"user_id":"a",`, 400},
		{"POST", "/v1/events", "k3y", "{\"user_id\":\"a\xff\",\"item_id\":\"i1\",\"event\":\"view\"}", 400},
		{"GET", "/v1/items/nope/similar", "", "", 404},
		{"GET", "/v1/items/i1/similar?k=-1", "", "", 400},
		{"GET", "/v1/items/i1/similar?k=1000000000", "", "", 400},
		{"GET", "/v1/items/%FF/similar", "", "", 400},
		{"GET", "/v1/recommend?placement=nowhere", "", "", 400},
		{"POST", "/v1/admin/snapshots", "", "", 401},
	} {
		if code, body := s.do(t, c.method, c.path, c.key, c.body); code != c.want || !strings.Contains(string(body), `"error"`) {
			t.Fatalf("%s %s: %d %s; want %d", c.method, c.path, code, body, c.want)
		}
	}

	// Snapshot swap under load: no failed request.
	var failed, okCount atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code, _ := s.get(t, "/v1/items/i1/similar?k=10"); code != 200 {
					failed.Add(1)
				} else {
					okCount.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", snaps); code != 0 {
			t.Fatalf("rebuild: %s", errs)
		}
		if code, body := s.do(t, "POST", "/v1/admin/snapshots", s.key, ""); code != 200 {
			t.Fatalf("load snapshot: %d %s", code, body)
		}
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || okCount.Load() == 0 {
		t.Fatalf("swap under load: %d failed, %d ok", failed.Load(), okCount.Load())
	}
	t.Logf("3 snapshot swaps under load: %d requests, none failed", okCount.Load())

	// Graceful stop, then restart on the same data.
	s.stop(t)
	s = startServer(t, data, addr)

	// Acknowledged events survive kill -9: 200 clicks on placement "email".
	for i := 0; i < 20; i++ {
		var b strings.Builder
		for j := 0; j < 10; j++ {
			fmt.Fprintf(&b, `{"user_id":"d%d","item_id":"i%d","event":"click","placement":"email"}`+"\n", i, j+1)
			fmt.Fprintf(&b, `{"user_id":"d%d","event":"pageview","page":"/pricing"}`+"\n", i)
		}
		if code, body := s.do(t, "POST", "/v1/events", s.key, b.String()); code != 200 {
			t.Fatalf("events: %d %s", code, body)
		}
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	s = startServer(t, data, addr)
	defer s.stop(t)
	_, body := s.get(t, "/v1/placements/email/stats")
	var st struct{ Clicks float64 }
	if err := json.Unmarshal(body, &st); err != nil || st.Clicks != 200 {
		t.Fatalf("after kill -9: %s; want 200 clicks", body)
	}
	// And the visitors' histories personalise their next answer.
	if _, body := s.get(t, "/v1/users/d3/recommendations?k=5"); !strings.Contains(string(body), `"reason":"history"`) {
		t.Fatalf("history after kill -9: %s", body)
	}
	// Their profiles kept every acknowledged event: 10 clicks and 10
	// pricing pageviews each.
	for _, u := range []string{"d0", "d7", "d19"} {
		_, body := s.do(t, "GET", "/v1/users/"+u, s.key, "")
		var p struct {
			Counts map[string]map[string]map[string]int
		}
		if err := json.Unmarshal(body, &p); err != nil || p.Counts["1d"]["events"]["click"] != 10 || p.Counts["1d"]["pages"]["/pricing"] != 10 {
			t.Fatalf("profile of %s after kill -9: %s", u, body)
		}
	}
}

// TestConfigReload: SIGHUP and POST /v1/admin/config load a changed file;
// a bad file is refused and the old configuration keeps serving.
func TestConfigReload(t *testing.T) {
	dir := t.TempDir()
	events, items := genSample(t, dir, 5000, 2)
	data := filepath.Join(dir, "data")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots")); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	cfg := filepath.Join(dir, "edgerec.yaml")
	os.WriteFile(cfg, []byte("placements:\n  pdp:\n    strategy: similar\n"), 0o644)
	if code, out, _ := run(t, "check", "--config", cfg); code != 0 || !strings.Contains(out, "pdp") {
		t.Fatalf("check: %d %s", code, out)
	}
	s := startServer(t, data, freeAddr(t), "--config", cfg)
	defer s.stop(t)
	if code, _ := s.get(t, "/v1/recommend?placement=sidebar"); code != 400 {
		t.Fatalf("sidebar before reload: %d", code)
	}
	os.WriteFile(cfg, []byte("placements:\n  sidebar:\n    strategy: trending\n"), 0o644)
	s.cmd.Process.Signal(syscall.SIGHUP)
	ok := false
	for i := 0; i < 100 && !ok; i++ {
		code, _ := s.get(t, "/v1/recommend?placement=sidebar")
		ok = code == 200
		time.Sleep(20 * time.Millisecond)
	}
	if !ok {
		t.Fatal("SIGHUP did not load the new placement")
	}
	os.WriteFile(cfg, []byte("placements:\n  sidebar:\n    strategy: nope\n"), 0o644)
	code, body := s.do(t, "POST", "/v1/admin/config", s.key, "")
	if code != 400 || !strings.Contains(string(body), "edgerec.yaml:3") {
		t.Fatalf("bad config reload: %d %s", code, body)
	}
	if code, _ := s.get(t, "/v1/recommend?placement=sidebar"); code != 200 {
		t.Fatalf("old config lost after a bad reload: %d", code)
	}
	if code, _, errs := run(t, "check", "--config", cfg); code != 1 || !strings.Contains(errs, "edgerec.yaml:3:") {
		t.Fatalf("check of a bad file: %d %s", code, errs)
	}
}
