package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logProc is a running edgerec serve whose log is kept.
type logProc struct {
	*proc
	mu  sync.Mutex
	log strings.Builder
}

// startServerLog starts edgerec serve on data and returns once it logs
// that it listens, whatever /readyz says.
func startServerLog(t *testing.T, data string) *logProc {
	t.Helper()
	s := &logProc{proc: &proc{addr: freeAddr(t), key: "k3y"}}
	s.cmd = exec.Command(bin, "serve", "--data", data, "--addr", s.addr, "--api-key", s.key)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil { // not stopped: the test failed
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
	})
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if !seen && strings.Contains(sc.Text(), "msg=listening") {
				seen = true
				close(listening)
			}
		}
		if !seen {
			close(listening) // exited: the checks below fail with the log
		}
	}()
	select {
	case <-listening:
	case <-time.After(runTimeout):
		_ = s.cmd.Process.Kill()
		t.Fatalf("serve did not listen in %v; log:\n%s", runTimeout, s.logged())
	}
	return s
}

func (s *logProc) logged() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// ready asks /readyz and checks its status and body.
func (s *logProc) ready(t *testing.T, want int, wantBody string) {
	t.Helper()
	if code, body := s.get(t, "/readyz"); code != want || !strings.Contains(string(body), wantBody) {
		t.Fatalf("/readyz: %d %s; want %d holding %q; log:\n%s", code, body, want, wantBody, s.logged())
	}
	if code, body := s.get(t, "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s; want 200 while the process serves", code, body)
	}
}

// truncateTable cuts the largest table of a version directory in half.
func truncateTable(t *testing.T, dir string) {
	t.Helper()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	var largest string
	var size int64
	for _, p := range ssts {
		if st, err := os.Stat(p); err == nil && st.Size() > size {
			largest, size = p, st.Size()
		}
	}
	if largest == "" {
		t.Fatalf("no tables in %s", dir)
	}
	if err := os.Truncate(largest, size/2); err != nil {
		t.Fatal(err)
	}
}

// TestServeSnapshotRoot: edgerec serve starts on the newest version that
// verifies when CURRENT's is damaged, and on none (503, not ready) when
// none does; builds prune to --keep but never the version a server
// serves nor CURRENT's, and remove what a crashed build left.
func TestServeSnapshotRoot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events, items := genSample(t, dir, 5000, 5)
	data := filepath.Join(dir, "data")
	root := filepath.Join(data, "snapshots")
	v1, _ := build(t, "--events", events, "--items", items, "--out", root)
	v2, _ := build(t, "--events", events, "--items", items, "--out", root)
	truncateTable(t, filepath.Join(root, "v"+v2)) // CURRENT's

	// Start-up: CURRENT's v2 is skipped, v1 served.
	s := startServerLog(t, data)
	s.ready(t, 200, `"snapshot":`+v1)
	log := s.logged()
	for _, want := range []string{`msg="skipped snapshot: the version CURRENT names cannot be served"`, "v" + v2 + `\"`,
		`msg="serving a fallback snapshot: the version CURRENT names cannot be served" dir=` + filepath.Join(root, "v"+v1)} {
		if !strings.Contains(log, want) {
			t.Fatalf("serve's log lacks %q:\n%s", want, log)
		}
	}
	// The admin load keeps to CURRENT: refused, v1 keeps serving.
	if code, body := s.do(t, "POST", "/v1/admin/snapshots", s.key, ""); code != 409 || !strings.Contains(string(body), "bad_snapshot") {
		t.Fatalf("loading the damaged CURRENT: %d %s; want 409 bad_snapshot", code, body)
	}
	s.ready(t, 200, `"snapshot":`+v1)

	// A crashed build's directory, and two builds keeping 2: the served
	// v1 stays beyond the 2 newest, v2 goes, the debris goes.
	crashed := filepath.Join(root, ".building-crashed")
	if err := os.MkdirAll(crashed, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(crashed, "000002.log"), "half a build")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(crashed, old, old); err != nil {
		t.Fatal(err)
	}
	buildLog := func(keep string) (version, stderr string) {
		t.Helper()
		code, out, errs := run(t, "build", "--events", events, "--items", items, "--out", root, "--keep", keep)
		m := buildLine.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("build --keep %s: exit %d, stdout %q, stderr:\n%s", keep, code, out, errs)
		}
		return m[1], errs
	}
	v3, errs := buildLog("2")
	for _, want := range []string{"removed .building-crashed from " + root, "kept snapshot v" + v1 + " beyond the newest 2: in use"} {
		if !strings.Contains(errs, want) {
			t.Fatalf("build's log lacks %q:\n%s", want, errs)
		}
	}
	v4, errs := buildLog("2")
	if !strings.Contains(errs, "removed snapshot v"+v2+": beyond the newest 2") {
		t.Fatalf("build's log does not say v%s was removed:\n%s", v2, errs)
	}
	if got, want := entries(t, root), []string{"CURRENT", "v" + v1, "v" + v3, "v" + v4}; !slices.Equal(got, want) {
		t.Fatalf("root after 2 builds keeping 2, v%s served: %q; want %q", v1, got, want)
	}
	// Once the server serves v4, v1 is free to go.
	if code, body := s.do(t, "POST", "/v1/admin/snapshots", s.key, ""); code != 200 {
		t.Fatalf("loading v%s: %d %s", v4, code, body)
	}
	s.ready(t, 200, `"snapshot":`+v4)
	v5, _ := buildLog("2")
	if got, want := entries(t, root), []string{"CURRENT", "v" + v4, "v" + v5}; !slices.Equal(got, want) {
		t.Fatalf("root after a build keeping 2, v%s served: %q; want %q", v4, got, want)
	}
	s.stop(t)

	// No version verifies: serve starts, not ready, alive; a good build
	// loaded by the admin call makes it ready.
	truncateTable(t, filepath.Join(root, "v"+v4))
	truncateTable(t, filepath.Join(root, "v"+v5))
	s = startServerLog(t, data)
	defer s.stop(t)
	s.ready(t, 503, `"code":"no_snapshot"`)
	log = s.logged()
	for _, want := range []string{`msg="skipped snapshot" dir=` + filepath.Join(root, "v"+v4), `msg="no snapshot loaded`} {
		if !strings.Contains(log, want) {
			t.Fatalf("serve's log lacks %q:\n%s", want, log)
		}
	}
	if code, body := s.do(t, "POST", "/v1/admin/snapshots", s.key, ""); code != 409 {
		t.Fatalf("loading a damaged CURRENT with none served: %d %s; want 409", code, body)
	}
	s.ready(t, 503, `"code":"no_snapshot"`)
	v6, _ := buildLog("2")
	if code, body := s.do(t, "POST", "/v1/admin/snapshots", s.key, ""); code != 200 {
		t.Fatalf("loading v%s: %d %s", v6, code, body)
	}
	s.ready(t, 200, `"snapshot":`+v6)
}
