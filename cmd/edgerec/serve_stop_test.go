package main

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/server"
)

// hungDisk makes every sync of the state store's files block, once on,
// until released: a disk that stops answering.
type hungDisk struct {
	on      atomic.Bool
	entered chan struct{} // a sync blocked (buffered, best effort)
	release chan struct{}
	once    sync.Once
}

func (d *hungDisk) String() string { return "hung disk" }

func (d *hungDisk) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		if d.on.Load() {
			select {
			case d.entered <- struct{}{}:
			default:
			}
			<-d.release
		}
	}
	return nil
}

func (d *hungDisk) let() { d.once.Do(func() { close(d.release) }) }

// hungStack is a state store on a hungDisk, an engine and a server
// listening on loopback.
type hungStack struct {
	disk  *hungDisk
	state *index.State
	e     *engine.Engine
	srv   *server.Server
	url   string
}

func newHungStack(t *testing.T) *hungStack {
	t.Helper()
	d := &hungDisk{entered: make(chan struct{}, 1), release: make(chan struct{})}
	// Let the blocked syncs go at the end, so the goroutines the test
	// abandons finish (after the test's own cleanups, registered later).
	t.Cleanup(d.let)
	state, err := index.OpenState(t.TempDir(), index.StateOptions{FS: errorfs.Wrap(vfs.Default, d), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{}, state)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(e, server.Options{APIKey: "k3y", SnapshotRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	return &hungStack{disk: d, state: state, e: e, srv: srv, url: "http://" + ln.Addr().String()}
}

func (h *hungStack) postEvent(t *testing.T, client *http.Client) (int, error) {
	req, _ := http.NewRequest("POST", h.url+"/v1/events", strings.NewReader(`{"user_id":"u1","item_id":"i1","event":"view"}`))
	req.Header.Set("Authorization", "Bearer k3y")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestStopServingHungDisk: on SIGTERM, serve stops within its drain
// timeout whatever the state store's disk does: with a write hung in a
// sync that never returns, and with no request in flight but a store
// whose Close hangs in its last WAL sync.
func TestStopServingHungDisk(t *testing.T) {
	const drain = 500 * time.Millisecond
	for _, inFlight := range []bool{true, false} {
		name := "close hangs"
		if inFlight {
			name = "write hangs"
		}
		t.Run(name, func(t *testing.T) {
			h := newHungStack(t)
			client := &http.Client{Timeout: 30 * time.Second}
			if code, err := h.postEvent(t, client); err != nil || code != 200 {
				t.Fatalf("an event before the disk hangs: %d %v; want 200", code, err)
			}
			h.disk.on.Store(true)
			if inFlight {
				go func() { _, _ = h.postEvent(t, client) }()
				<-h.disk.entered // the event's WAL sync blocks
			}
			var log bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&log, nil))
			start := time.Now()
			err := stopServing(logger, drain, h.srv, h.e, h.state)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if took > drain+5*time.Second {
				t.Fatalf("stopServing with a hung disk took %v; want about the drain timeout, %v", took, drain)
			}
			if !inFlight {
				select {
				case <-h.disk.entered: // Close's sync blocked
				default:
					t.Fatal("Close did not sync the WAL: the test tests nothing")
				}
			}
			want := "did not close within the drain timeout"
			if inFlight {
				want = "requests still in flight"
			}
			if !strings.Contains(log.String(), want) {
				t.Fatalf("log: %s; want %q", log.String(), want)
			}
			t.Logf("stopped in %v with a drain timeout of %v", took.Round(time.Millisecond), drain)
		})
	}
}
