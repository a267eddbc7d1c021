package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashTrialsEnv sets the number of crash trials of each kind (single
// events, batches); make crash (scripts/crash.sh) runs 10 of each.
const crashTrialsEnv = "EDGEREC_CRASH_TRIALS"

// Crash trials: clients and batch size.
const (
	crashClients = 4
	crashBatch   = 100
)

// TestCrashTrials kills serve with SIGKILL while several clients post
// events, single ones or batches of crashBatch, each with its own
// event_id, at a random moment (after a random number of acknowledged
// requests); restarts it on the same data directory and checks that
// every event a client got a 200 for is there: the users' profiles count
// at least as many events as were acknowledged, and every acknowledged
// event, sent again with its event_id, is answered as a repeat (the
// event_id's record is written in the same batch as the event). Without
// -short it runs one trial of each kind; EDGEREC_CRASH_TRIALS=N runs N of
// each.
func TestCrashTrials(t *testing.T) {
	trials := 1
	if v := os.Getenv(crashTrialsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", crashTrialsEnv, v)
		}
		trials = n
	} else if testing.Short() {
		t.Skip("kill -9 trials: without -short, or " + crashTrialsEnv + "=N")
	}
	dir := t.TempDir()
	events, items := genSample(t, dir, 5000, 3)
	data := filepath.Join(dir, "data")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots")); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	addr := freeAddr(t)
	var lost int
	for i := range 2 * trials {
		batch := 1
		if i%2 == 1 {
			batch = crashBatch
		}
		// Kill after 100-600 acknowledged single posts, or 5-30 batches.
		killAfter := 100 + rng.Intn(500)
		if batch > 1 {
			killAfter = 5 + rng.Intn(25)
		}
		r := crashTrial(t, data, addr, i+1, batch, killAfter)
		lost += r.acked - r.found
		kind := "single events"
		if batch > 1 {
			kind = fmt.Sprintf("batches of %d", batch)
		}
		t.Logf("trial %2d, %s: killed after %d acknowledged requests (%d in flight); %d events acknowledged, %d found, %d lost; %d stored (profiles)",
			i+1, kind, r.ackedRequests, r.inFlight, r.acked, r.found, r.acked-r.found, r.stored)
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged events lost", lost)
	}
}

type crashResult struct {
	ackedRequests, inFlight int
	acked, found, stored    int
}

// crashTrial starts serve on data, lets crashClients clients post events
// in batches of batch until killAfter requests are acknowledged, kills the
// server with SIGKILL, restarts it and counts the acknowledged events it
// finds. Trial n's clients are users c<n>-<client>.
func crashTrial(t *testing.T, data, addr string, n, batch, killAfter int) crashResult {
	t.Helper()
	s := startCrashServer(t, data, addr)
	var (
		mu       sync.Mutex
		acked    = make([][]string, crashClients) // per client, the acknowledged event ids
		requests int
		kill     = make(chan struct{})
		wg       sync.WaitGroup
	)
	inFlight := 0
	for c := range crashClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			user := fmt.Sprintf("c%d-%d", n, c)
			var body strings.Builder
			ids := make([]string, batch)
			for seq := 0; ; {
				body.Reset()
				for j := range ids {
					ids[j] = fmt.Sprintf("t%d-c%d-%d", n, c, seq)
					seq++
					fmt.Fprintf(&body, `{"user_id":%q,"item_id":"i%d","event":"view","event_id":%q}`+"\n", user, 1+seq%50, ids[j])
				}
				mu.Lock()
				inFlight++
				mu.Unlock()
				code, _, err := postEvents(client, s, body.String())
				mu.Lock()
				inFlight--
				if err != nil || code != http.StatusOK {
					mu.Unlock()
					if err == nil {
						t.Errorf("client %d: status %d before the kill", c, code)
					}
					return // the server is gone
				}
				acked[c] = append(acked[c], ids...)
				requests++
				if requests == killAfter {
					close(kill)
				}
				mu.Unlock()
			}
		}()
	}
	<-kill
	mu.Lock()
	r := crashResult{ackedRequests: killAfter, inFlight: inFlight}
	mu.Unlock()
	// The acknowledgements that arrive between here and the kill count
	// too: the clients record them under mu until their posts fail.
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	wg.Wait()

	s = startCrashServer(t, data, addr)
	defer s.stop(t)
	client := &http.Client{Timeout: 30 * time.Second}
	for c, ids := range acked {
		r.acked += len(ids)
		// The profile counts what was stored: at least what was
		// acknowledged.
		user := fmt.Sprintf("c%d-%d", n, c)
		code, body := s.do(t, "GET", "/v1/users/"+user, s.key, "")
		var p struct {
			Counts map[string]map[string]map[string]int
		}
		switch {
		case code == http.StatusNotFound && len(ids) == 0:
			// Nothing stored for a client killed before its first
			// acknowledgement: no profile.
		case code != http.StatusOK || json.Unmarshal(body, &p) != nil:
			t.Fatalf("profile of %s: %d %s", user, code, body)
		}
		stored := p.Counts["1d"]["events"]["view"]
		r.stored += stored
		if stored < len(ids) {
			t.Errorf("trial %d: %s's profile counts %d views; %d were acknowledged", n, user, stored, len(ids))
		}
		// Each acknowledged event, sent again, is a repeat.
		for len(ids) > 0 {
			part := ids[:min(len(ids), 1000)]
			ids = ids[len(part):]
			var b strings.Builder
			for _, id := range part {
				fmt.Fprintf(&b, `{"user_id":%q,"item_id":"i1","event":"view","event_id":%q}`+"\n", user, id)
			}
			code, ack, err := postEvents(client, s, b.String())
			if err != nil || code != http.StatusOK {
				t.Fatalf("trial %d: events sent again: %d %s %v", n, code, ack, err)
			}
			var a struct{ Accepted, Repeats int }
			if err := json.Unmarshal(ack, &a); err != nil || a.Accepted != len(part) {
				t.Fatalf("trial %d: events sent again: %s", n, ack)
			}
			r.found += a.Repeats
		}
	}
	if r.found != r.acked {
		t.Errorf("trial %d: %d of %d acknowledged events lost", n, r.acked-r.found, r.acked)
	}
	return r
}

// startCrashServer is startServer with a longer wait for /readyz (30 s):
// a restart replays the WAL the kill left, on 2 cores shared with other
// tests.
func startCrashServer(t *testing.T, data, addr string) *proc {
	t.Helper()
	s := &proc{addr: addr, key: "k3y"}
	s.cmd = exec.Command(bin, "serve", "--data", data, "--addr", addr, "--api-key", s.key)
	s.cmd.Stderr = io.Discard
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := s.get(t, "/readyz"); code == 200 {
			return s
		}
		time.Sleep(25 * time.Millisecond)
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	t.Fatal("server not ready after 30 s")
	return nil
}

// postEvents posts an NDJSON body of events with the server's key.
func postEvents(c *http.Client, s *proc, body string) (int, []byte, error) {
	req, err := http.NewRequest("POST", "http://"+s.addr+"/v1/events", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
