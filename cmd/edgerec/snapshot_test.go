package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSnapshotShip: a builder's snapshot, packed, travels to an edge's
// data directory, is unpacked there and served after POST
// /v1/admin/snapshots; a damaged copy is refused, naming the file, a
// second copy of the same version is a no-op, and the edge keeps serving.
func TestSnapshotShip(t *testing.T) {
	dir := t.TempDir()
	events, items := genSample(t, dir, 20000, 3)
	// The edge serves an older snapshot of its own.
	edge := filepath.Join(dir, "edge")
	v0, _ := build(t, "--events", events, "--out", filepath.Join(edge, "snapshots"))
	builder := filepath.Join(dir, "builder")
	v1, _ := build(t, "--events", events, "--items", items, "--out", builder)
	packed := filepath.Join(dir, "snap.tar.zst")
	if code, out, errs := run(t, "snapshot", "pack", "--root", builder, "--out", packed); code != 0 || out != "" || !strings.Contains(errs, "packed snapshot v"+v1) {
		t.Fatalf("pack: exit %d, %q, %s", code, out, errs)
	}

	s := startServer(t, edge, freeAddr(t))
	defer s.stop(t)
	version := func() string {
		t.Helper()
		code, b := s.do(t, "GET", "/v1/admin/status", s.key, "")
		if code != 200 {
			t.Fatalf("status: %d %s", code, b)
		}
		return string(b)
	}
	if !strings.Contains(version(), v0) {
		t.Fatalf("edge does not serve v%s: %s", v0, version())
	}

	// A damaged copy is refused and changes nothing.
	b, err := os.ReadFile(packed)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	damaged := filepath.Join(dir, "damaged.tar.zst")
	writeFile(t, damaged, string(b))
	if code, _, errs := run(t, "snapshot", "unpack", "--root", filepath.Join(edge, "snapshots"), damaged); code != 1 || !strings.Contains(errs, damaged+": index: bad snapshot") {
		t.Fatalf("damaged unpack: exit %d, %s", code, errs)
	}
	if code, b := s.do(t, "POST", "/v1/admin/snapshots", s.key, ""); code != 200 || !strings.Contains(version(), v0) {
		t.Fatalf("after a refused unpack: %d %s, %s", code, b, version())
	}

	// The real one is published and loaded.
	if code, _, errs := run(t, "snapshot", "unpack", "--root", filepath.Join(edge, "snapshots"), packed); code != 0 || !strings.Contains(errs, "published") {
		t.Fatalf("unpack: exit %d, %s", code, errs)
	}
	if code, body := s.do(t, "POST", "/v1/admin/snapshots", s.key, ""); code != 200 || !strings.Contains(version(), v1) {
		t.Fatalf("load: %d %s, status %s", code, body, version())
	}
	if code, b := s.get(t, "/v1/items/i1/similar?k=3"); code != 200 || !strings.Contains(string(b), `"snapshot":`+v1) {
		t.Fatalf("similar after the swap: %d %s", code, b)
	}
	// The same archive again (a retried deploy) is a no-op: exit 0, one
	// line saying so, and the root as it was.
	edgeRoot := filepath.Join(edge, "snapshots")
	before := entries(t, edgeRoot)
	code, out, errs := run(t, "snapshot", "unpack", "--root", edgeRoot, packed)
	want := packed + ": v" + v1 + " is already in " + edgeRoot + " (CURRENT: v" + v1 + "): nothing to do\n"
	if code != 0 || out != "" || errs != want {
		t.Fatalf("the same version twice: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errs, want)
	}
	if after := entries(t, edgeRoot); !slices.Equal(after, before) {
		t.Fatalf("a no-op unpack changed the root: %q, was %q", after, before)
	}
	// The edge's own older version, packed, is refused unless allowed.
	old := filepath.Join(dir, "old.tar.zst")
	if code, _, errs := run(t, "snapshot", "pack", "--root", filepath.Join(edge, "snapshots", "v"+v0), "--out", old); code != 0 {
		t.Fatalf("pack v%s: %s", v0, errs)
	}
	other := filepath.Join(dir, "other")
	if code, _, errs := run(t, "snapshot", "unpack", "--root", other, packed); code != 0 {
		t.Fatalf("unpack into a new root: %s", errs)
	}
	if code, _, errs := run(t, "snapshot", "unpack", "--root", other, old); code != 1 || !strings.Contains(errs, "older than the current") {
		t.Fatalf("an older version: exit %d, %s", code, errs)
	}
	if code, _, errs := run(t, "snapshot", "unpack", "--allow-older", "--root", other, old); code != 0 {
		t.Fatalf("an older version, allowed: exit %d, %s", code, errs)
	}
	if code, _, errs := run(t, "snapshot", "frob"); code != 2 || !strings.Contains(errs, `edgerec snapshot: unknown command "frob"`) {
		t.Fatalf("unknown subcommand: exit %d, %s", code, errs)
	}
}
