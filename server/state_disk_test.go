package server

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/testenv"
)

// TestStateDiskFull, over HTTP on loopback: while the state store's disk
// is full, events answer 507 insufficient_storage with Retry-After and
// /readyz 503, reads answer 200, and edgerec_state_writable is 0; once
// space returns the store reopens by itself (no restart), events answer
// 200 again, and every event answered 200 is in the store.
func TestStateDiskFull(t *testing.T) {
	disk := &testenv.FullDisk{}
	ts := newTestStackState(t, engine.Options{Config: sampleConfig(t)}, Options{}, index.StateOptions{
		FS: testenv.InjectFS(vfs.Default, disk), Logger: slog.New(slog.DiscardHandler), RecoverInterval: 50 * time.Millisecond,
	})
	var acked []string
	n := 0
	post := func() (int, []byte, string) {
		t.Helper()
		n++
		id := fmt.Sprintf("ev-%d", n)
		body := fmt.Sprintf(`{"user_id":"u%d","item_id":"i%d","event":"view","event_id":%q}`, n%5, 1+n%50, id)
		code, resp, retry := doHeader(t, ts.c, "POST", "/v1/events", testKey, body)
		if code == 200 {
			acked = append(acked, id)
		}
		return code, resp, retry
	}
	visitors := 0
	reads := func() {
		t.Helper()
		// A new visitor's decision writes an assignment: on a full disk
		// it is answered unrecorded.
		visitors++
		v := strconv.Itoa(visitors)
		for _, uri := range []string{"/v1/users/u1/recommendations?k=5", "/v1/users/u2", "/v1/items/i44/similar?k=5", "/v1/popular?k=3",
			"/v1/decide?page=lp_consulting&visitor=fd" + v, "/v1/page?page=lp_consulting&visitor=fp" + v + "&placements=home"} {
			if code, body := do(t, ts.c, "GET", uri, testKey, ""); code != 200 {
				t.Fatalf("GET %s: %d %s; want 200", uri, code, body)
			}
		}
	}
	metric := func(want string) {
		t.Helper()
		if _, body := do(t, ts.c, "GET", "/metrics", "", ""); !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	for range 50 {
		if code, body, _ := post(); code != 200 {
			t.Fatalf("an event: %d %s", code, body)
		}
	}
	reads()
	metric("edgerec_state_writable 1\n")

	disk.Full.Store(true)
	for range 20 {
		code, body, retry := post()
		if code != 507 || !strings.Contains(string(body), `"code":"insufficient_storage"`) || retry != stateRetryAfter {
			t.Fatalf("an event on a full disk: %d %s, Retry-After %q; want 507 insufficient_storage, Retry-After %s", code, body, retry, stateRetryAfter)
		}
		reads()
	}
	if code, body := do(t, ts.c, "GET", "/readyz", "", ""); code != 503 || !strings.Contains(string(body), "no space") {
		t.Fatalf("/readyz on a full disk: %d %s; want 503 naming the full disk", code, body)
	}
	metric("edgerec_state_writable 0\n")
	metric("edgerec_state_failures_total 1\n")

	disk.Full.Store(false)
	start := time.Now()
	tries := 0
	for {
		tries++
		code, body := do(t, ts.c, "GET", "/readyz", "", "")
		if code == 200 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("/readyz 10 s after space returned: %d %s; want 200", code, body)
		}
		reads()
		time.Sleep(10 * time.Millisecond) // between polls of a condition
	}
	t.Logf("writable again %v after space returned (%d /readyz polls)", time.Since(start).Round(time.Millisecond), tries)
	for range 50 {
		if code, body, _ := post(); code != 200 {
			t.Fatalf("an event after the reopen: %d %s", code, body)
		}
	}
	reads()
	metric("edgerec_state_writable 1\n")
	metric("edgerec_state_recoveries_total 1\n")

	stored := map[string]bool{}
	if _, err := ts.state.ScanEvents(0, func(_ uint64, ev *index.StateEvent) error {
		stored[string(ev.ID)] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if !stored[id] {
			t.Fatalf("event %s was answered 200 and is not in the store", id)
		}
	}
	t.Logf("%d events answered 200 of %d posted; all %d in the store", len(acked), n, len(acked))
}
