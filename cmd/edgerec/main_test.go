package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// bin is the edgerec binary built once for these tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgerec-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "edgerec")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot build edgerec: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the binary and returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// genSample writes a small synthetic shop into dir.
func genSample(t *testing.T, dir string, n int, seed int) (events, items string) {
	t.Helper()
	events, items = filepath.Join(dir, "ev.csv.gz"), filepath.Join(dir, "items.csv")
	if code, _, errs := run(t, "gen", "--events", events, "--items", items, "--n", fmt.Sprint(n), "--seed", fmt.Sprint(seed)); code != 0 {
		t.Fatalf("gen: %d %s", code, errs)
	}
	return events, items
}

func TestUsage(t *testing.T) {
	if code, _, errs := run(t); code != 2 || !strings.Contains(errs, "Usage") {
		t.Fatalf("no args: %d %q", code, errs)
	}
	if code, _, errs := run(t, "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
}

func TestGenDeterministic(t *testing.T) {
	t.Parallel()
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	ea, _ := genSample(t, a, 5000, 3)
	eb, _ := genSample(t, b, 5000, 3)
	ec, _ := genSample(t, c, 5000, 4)
	if sha(t, ea) != sha(t, eb) {
		t.Fatal("same seed, different bytes")
	}
	if sha(t, ea) == sha(t, ec) {
		t.Fatal("different seeds, same bytes")
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("user_id,item_id,event,ts,value,basket\nu1,i1,view,1,,\nu1,i2,buy,2,,\nu2,i1,view,3,,\n,i2,view,4,,\nu3,i3,view,5,,\n"), 0o644)
	root := filepath.Join(dir, "snap")
	code, _, errs := run(t, "build", "--events", bad, "--out", root, "--max-bad", "0")
	if code != 1 || !strings.Contains(errs, "bad.csv:3:") {
		t.Fatalf("max-bad 0: exit %d, stderr %q; want 1 naming bad.csv:3", code, errs)
	}
	if _, err := os.Stat(filepath.Join(root, "CURRENT")); err == nil {
		t.Fatal("a failed build published a snapshot")
	}
	code, out, errs := run(t, "build", "--events", bad, "--out", root, "--max-bad", "5")
	if code != 0 || !strings.Contains(errs, "bad.csv:3:") || !strings.Contains(errs, "bad.csv:5:") || !strings.Contains(out, "(2 bad lines)") {
		t.Fatalf("max-bad 5: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	cur, _ := os.ReadFile(filepath.Join(root, "CURRENT"))
	// A bad rebuild leaves CURRENT as it was.
	if code, _, _ := run(t, "build", "--events", bad, "--out", root, "--max-bad", "1"); code != 1 {
		t.Fatal("second bad build succeeded")
	}
	if now, _ := os.ReadFile(filepath.Join(root, "CURRENT")); string(now) != string(cur) {
		t.Fatalf("CURRENT changed by a failed build: %q → %q", cur, now)
	}
	f := func(want string, args ...string) {
		t.Helper()
		code, _, errs := run(t, args...)
		if code == 0 || !strings.Contains(errs, want) {
			t.Fatalf("%v: exit %d, stderr %q; want it to name %q", args, code, errs, want)
		}
	}
	f("no-such-file.csv", "build", "--events", filepath.Join(dir, "no-such-file.csv"), "--out", root)
	f("-similarity", "build", "--events", bad, "--out", root, "--similarity", "pearson")
	f("-weights", "build", "--events", bad, "--out", root, "--weights", "view=x")
	f("-half-life", "build", "--events", bad, "--out", root, "--half-life", "3q")
	f("-events and -out are required", "build")
}

func TestEvalJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("long: runs without -short")
	}
	d := filepath.Join("..", "..", "..", "shared", "data")
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared data missing in CI: %v", err)
		}
		t.Skip("shared data not found")
	}
	code, out, errs := run(t, "eval", "--json", "--train", filepath.Join(d, "ml100k_split_by_user_train.csv.gz"),
		"--test", filepath.Join(d, "ml100k_split_by_user_test.csv.gz"),
		"--similarity", "jaccard", "--topk", "-1", "--rating-value", "--half-life", "30d", "--min-support", "1")
	if code != 0 {
		t.Fatalf("eval: %d %s", code, errs)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("eval --json: %v: %q", err, out)
	}
	pop, _ := r["popularity"].(map[string]any)
	for _, k := range []string{"precision", "recall", "map", "ndcg", "coverage"} {
		if _, ok := r[k].(float64); !ok {
			t.Fatalf("eval --json lacks %s: %s", k, out)
		}
		if _, ok := pop[k].(float64); !ok {
			t.Fatalf("popularity lacks %s: %s", k, out)
		}
	}
	if fmt.Sprintf("%.4f %.4f", r["map"], r["ndcg"]) != "0.1070 0.3795" {
		t.Fatalf("SAR through the CLI: map %v ndcg %v", r["map"], r["ndcg"])
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
