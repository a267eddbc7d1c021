package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerec/edgerec/index"
)

// TestServeFullDisk fills the state store's disk for real: a 16 MiB tmpfs
// mounted as data/state, filled with a ballast file while events arrive
// over HTTP. Events then answer 507 with Retry-After, reads 200 and
// /readyz 503; once the ballast is deleted the server takes events again
// without a restart. After a kill -9 and a restart, every event answered
// 200 is in the store. It needs root (mount) and runs without -short.
func TestServeFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a tmpfs with events: not with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	dir := t.TempDir()
	events, items := genSample(t, dir, 3000, 1)
	data := filepath.Join(dir, "data")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots")); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	stateDir := filepath.Join(data, "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", stateDir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs at %s (%v: %s): skipped", stateDir, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", stateDir).Run() })

	s := startServer(t, data, freeAddr(t), "--drain", "5s")
	defer func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
	}()
	var (
		mu     sync.Mutex
		acked  = map[string]bool{}
		status = map[int]int{}
		next   int
	)
	// post sends a batch of 20 events, each with its own event_id, and
	// returns the status and the Retry-After header.
	client := &http.Client{Timeout: 30 * time.Second}
	post := func() (int, string) {
		mu.Lock()
		ids := make([]string, 20)
		var b strings.Builder
		b.WriteByte('[')
		for i := range ids {
			next++
			ids[i] = fmt.Sprintf("e%d", next)
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"user_id":"u%d","item_id":"i%d","event":"view","event_id":%q}`, next%100, 1+next%50, ids[i])
		}
		b.WriteByte(']')
		mu.Unlock()
		req, _ := http.NewRequest("POST", "http://"+s.addr+"/v1/events", strings.NewReader(b.String()))
		req.Header.Set("Authorization", "Bearer "+s.key)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("POST /v1/events: %v", err)
			return 0, ""
		}
		resp.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		status[resp.StatusCode]++
		if resp.StatusCode == 200 {
			for _, id := range ids {
				acked[id] = true
			}
		}
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	reads := func() {
		t.Helper()
		for _, p := range []string{"/v1/users/u1/recommendations?k=5", "/v1/items/i1/similar?k=5", "/v1/popular?k=5"} {
			if code, body := s.get(t, p); code != 200 {
				t.Fatalf("GET %s: %d %s; want 200", p, code, body)
			}
		}
	}
	for range 50 {
		if code, _ := post(); code != 200 {
			t.Fatalf("an event before the disk filled: %d", code)
		}
	}

	// The ballast takes what is left of the tmpfs.
	ballast := filepath.Join(stateDir, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	// Writers go on until the store refuses: events may still fit in the
	// WAL's preallocated space and its page; then 507.
	var full507 int
	var retry string
	for i := 0; full507 == 0; i++ {
		if i == 5000 {
			t.Fatalf("5000 batches on a full disk, none refused: %v", status)
		}
		var wg sync.WaitGroup
		codes := make([]int, 4)
		retries := make([]string, 4)
		for w := range 4 {
			wg.Go(func() { codes[w], retries[w] = post() })
		}
		wg.Wait()
		for w, c := range codes {
			switch c {
			case 200:
			case 507:
				full507++
				retry = retries[w]
			default:
				t.Fatalf("an event on a filling disk: %d; want 200 or 507", c)
			}
		}
	}
	if retry == "" {
		t.Fatal("507 without Retry-After")
	}
	reads()
	if code, body := s.get(t, "/readyz"); code != 503 || !strings.Contains(string(body), "state_not_writable") {
		t.Fatalf("/readyz on a full disk: %d %s; want 503 state_not_writable", code, body)
	}
	if _, body := s.get(t, "/metrics"); !strings.Contains(string(body), "edgerec_state_writable 0\n") {
		t.Fatal("/metrics on a full disk: edgerec_state_writable is not 0")
	}
	for range 10 {
		if code, _ := post(); code != 507 {
			t.Fatalf("an event on a full disk: %d; want 507", code)
		}
	}

	// Space returns: the server takes writes again, no restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		code, _ := s.get(t, "/readyz")
		if code == 200 {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("/readyz 30 s after the ballast was deleted: %d; want 200", code)
		}
		reads()
		time.Sleep(20 * time.Millisecond) // between polls of a condition
	}
	recovered := time.Since(start)
	for range 50 {
		if code, _ := post(); code != 200 {
			t.Fatalf("an event after space returned: %d", code)
		}
	}
	reads()
	if _, body := s.get(t, "/metrics"); !strings.Contains(string(body), "edgerec_state_writable 1\n") || !strings.Contains(string(body), "edgerec_state_recoveries_total 1\n") {
		t.Fatal("/metrics after space returned: edgerec_state_writable is not 1, or not 1 recovery")
	}

	// kill -9, a restart, and a count.
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = s.cmd.Wait()
	s2 := startServer(t, data, freeAddr(t))
	reads2 := s2.get
	if code, body := reads2(t, "/v1/users/u1/recommendations?k=5"); code != 200 {
		t.Fatalf("after the restart: %d %s", code, body)
	}
	s2.stop(t)
	st, err := index.OpenState(stateDir, index.StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	found := map[string]int{}
	if _, err := st.ScanEvents(0, func(_ uint64, ev *index.StateEvent) error {
		found[string(ev.ID)]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for id := range acked {
		if found[id] == 0 {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d events answered 200 are not in the store after kill -9", lost, len(acked))
	}
	t.Logf("statuses %v; %d events answered 200, all found after kill -9 and a restart (%d events in the store); writable again %v after the ballast was deleted",
		status, len(acked), len(found), recovered.Round(time.Millisecond))
}
