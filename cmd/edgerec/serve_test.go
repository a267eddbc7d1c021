package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/internal/testenv"
)

// TestServeConnectionFlags: serve's connection flags and their
// environment twins reach the server, bad values are refused, and a
// generated key stays out of the log.
func TestServeConnectionFlags(t *testing.T) {
	f := serveFlagsOf(t, []string{"--max-conns", "50", "--read-timeout", "2s"}, map[string]string{
		"EDGEREC_MAX_CONNS_PER_IP": "1", "EDGEREC_CONCURRENCY": "7", "EDGEREC_MAX_HEADER_BYTES": "4096", "EDGEREC_IDLE_TIMEOUT": "9s",
	})
	if f.maxConns != 50 || f.maxConnsPerIP != 1 || f.concurrency != 7 || f.maxHead != 4096 ||
		f.readTimeout != 2*time.Second || f.writeTimeout != 5*time.Second || f.idleTimeout != 9*time.Second {
		t.Fatalf("flags %+v", f)
	}
	dir := t.TempDir()
	for _, c := range []struct{ flag, value, want string }{
		{"--max-conns", "-1", "-max-conns -1"},
		{"--max-conns-per-ip", "-2", "-max-conns-per-ip -2"},
		{"--read-timeout", "0s", "-read-timeout 0s"},
		{"--idle-timeout", "-1s", "-idle-timeout -1s"},
		{"--max-header-bytes", "100", "header limit 100"},
	} {
		if code, _, errs := run(t, "serve", "--data", dir, "--addr", "127.0.0.1:0", c.flag, c.value); code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("serve %s %s: exit %d, %s; want 1 naming %q", c.flag, c.value, code, errs, c.want)
		}
	}

	// A server with one connection per address: a second connection
	// while the first is inside a request is refused.
	events, items := genSample(t, dir, 3000, 3)
	data := filepath.Join(dir, "data")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots")); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--data", data, "--addr", addr, "--max-conns-per-ip", "1")
	var logs lockedBuilder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &proc{cmd: cmd, addr: addr}
	defer s.stop(t)
	var busy net.Conn
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			busy = c
			break
		}
		if i == 200 {
			t.Fatalf("server not listening: %v", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	defer busy.Close()
	if _, err := io.WriteString(busy, "GET /healthz HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	// Once the server has read busy's first bytes it counts it as inside
	// a request (until then a second connection would take its place):
	// ask /metrics from another address, 127.0.0.2, until it counts two
	// connections open (busy and the asking one) and none waiting.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	for i := 0; ; i++ {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Skipf("cannot ask from 127.0.0.2: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "\nedgerec_connections_idle 0\n") && strings.Contains(string(b), "\nedgerec_connections_open 2\n") {
			break
		}
		if i == 200 {
			t.Fatalf("the server never counted the first connection busy:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(second), nil)
	if err != nil || resp.StatusCode != 429 {
		t.Fatalf("second connection from the address: %v %v; want 429", resp, err)
	}
	if strings.Contains(logs.String(), "api_key") || !strings.Contains(logs.String(), "no -api-key given") {
		t.Fatalf("serve's log without -api-key:\n%s", logs.String())
	}
}

// lockedBuilder is a strings.Builder that a process's output can be
// copied into while the test reads it.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logProc is a running edgerec serve whose log is kept.
type logProc struct {
	*proc
	mu  sync.Mutex
	log strings.Builder
}

// startServerLog starts edgerec serve on data and returns once it logs
// that it listens and, when it loaded a snapshot, that it warmed its
// caches (and so released /readyz), whatever /readyz says.
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
	settled := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		listening, cold, done := false, false, false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			cold = cold || strings.Contains(line, `msg="no snapshot loaded`)
			listening = listening || strings.Contains(line, "msg=listening")
			warmed := strings.Contains(line, `msg="warmed the caches`) || strings.Contains(line, `msg="warming failed`)
			if !done && listening && (cold || warmed) {
				done = true
				close(settled)
			}
		}
		if !done {
			close(settled) // exited: the checks below fail with the log
		}
	}()
	select {
	case <-settled:
	case <-time.After(runTimeout):
		_ = s.cmd.Process.Kill()
		t.Fatalf("serve did not listen and warm up in %v; log:\n%s", runTimeout, s.logged())
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
	testenv.TruncateLargestTable(t, filepath.Join(root, "v"+v2)) // CURRENT's

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
	testenv.TruncateLargestTable(t, filepath.Join(root, "v"+v4))
	testenv.TruncateLargestTable(t, filepath.Join(root, "v"+v5))
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

// TestServeRetentionFlags: the retention flags have their defaults, take
// their environment twins, and refuse a TTL under a minute.
func TestServeRetentionFlags(t *testing.T) {
	f := serveFlagsOf(t, []string{"--retention-events", "0", "--retention-anonymous", "48h"}, map[string]string{
		"EDGEREC_RETENTION_EVENT_IDS": "1h", "EDGEREC_RETENTION_SWEEP": "1m",
	})
	r := f.ret
	if r.Events != 0 || r.Anonymous != 48*time.Hour || r.EventIDs != time.Hour || r.Interval != time.Minute ||
		r.Histories != engine.DefaultRetentionHistories || r.Profiles != engine.DefaultRetentionProfiles ||
		r.Assignments != engine.DefaultRetentionAssignments {
		t.Fatalf("retention %+v", r)
	}
	dir := t.TempDir()
	for _, c := range []struct{ flag, value, want string }{
		{"--retention-histories", "-1h", "-retention-histories -1h0m0s"},
		{"--retention-event-ids", "30s", "-retention-event-ids 30s"},
		{"--retention-sweep", "0s", "-retention-sweep 0s"},
	} {
		if code, _, errs := run(t, "serve", "--data", dir, "--addr", "127.0.0.1:0", c.flag, c.value); code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("serve %s %s: exit %d, %s; want 1 naming %q", c.flag, c.value, code, errs, c.want)
		}
	}
}
