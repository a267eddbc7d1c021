package engine

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/testenv"
)

// TestLoadNewestSnapshot: a server starting up on a root whose CURRENT
// version is damaged serves the newest version that verifies, logging
// each one skipped and why; the admin load keeps to CURRENT and refuses
// it; with no good version nothing is served and Ready says so.
func TestLoadNewestSnapshot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "snapshots")
	events, items := shopFile(t, shopEventsFile), shopFile(t, shopItemsFile)
	var v [3]*index.Manifest
	for i := range v {
		v[i] = buildRoot(t, root, index.BuildOptions{}, items, events)
	}
	dir := func(m *index.Manifest) string { return filepath.Join(root, "v"+strconv.FormatUint(m.Version, 10)) }
	testenv.TruncateLargestTable(t, dir(v[2])) // CURRENT's
	if err := os.Remove(filepath.Join(dir(v[1]), index.ManifestFile)); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	st := openState(t, t.TempDir(), index.StateOptions{})
	e := newEngine(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, st, "")
	if _, err := e.Ready(); err != ErrNoSnapshot {
		t.Fatalf("Ready before any load: %v; want ErrNoSnapshot", err)
	}
	m, err := e.LoadNewestSnapshot(context.Background(), root)
	if err != nil {
		t.Fatalf("%v; log:\n%s", err, logs.String())
	}
	if m.Version != v[0].Version {
		t.Fatalf("serving version %d; want the oldest, %d, the only good one", m.Version, v[0].Version)
	}
	log := logs.String()
	for _, want := range []string{
		`msg="skipped snapshot: the version CURRENT names cannot be served"`, dir(v[2]),
		`msg="skipped snapshot" dir=` + dir(v[1]), "has no edgerec-manifest.json",
		`msg="serving a fallback snapshot: the version CURRENT names cannot be served" dir=` + dir(v[0]),
	} {
		if !strings.Contains(log, want) {
			t.Fatalf("the log lacks %q:\n%s", want, log)
		}
	}
	if got, err := e.Ready(); err != nil || got != v[0].Version {
		t.Fatalf("Ready: %d, %v; want %d, nil", got, err, v[0].Version)
	}
	// The admin load keeps to CURRENT: refused, the fallback keeps serving.
	if _, err := e.LoadSnapshot(context.Background(), root); KindOf(err) != Conflict {
		t.Fatalf("loading the damaged CURRENT: %v; want a Conflict", err)
	}
	if got := e.SnapshotVersion(); got != v[0].Version {
		t.Fatalf("after a refused load: serving %d; want %d", got, v[0].Version)
	}
	e.Close()

	// No good version: nothing served, not ready; a good build then loads.
	testenv.TruncateLargestTable(t, dir(v[0]))
	e = newEngine(t, Options{}, st, "")
	if _, err := e.LoadNewestSnapshot(context.Background(), root); err == nil {
		t.Fatal("loaded a snapshot from a root of damaged versions")
	}
	if _, err := e.Ready(); err != ErrNoSnapshot {
		t.Fatalf("Ready with no good version: %v; want ErrNoSnapshot", err)
	}
	good := buildRoot(t, root, index.BuildOptions{}, items, events)
	if _, err := e.LoadSnapshot(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	if got, err := e.Ready(); err != nil || got != good.Version {
		t.Fatalf("Ready after loading a good build: %d, %v; want %d", got, err, good.Version)
	}
}
