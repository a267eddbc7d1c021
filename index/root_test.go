package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// names lists root's entries, sorted.
func names(t *testing.T, root string) []string {
	t.Helper()
	es, err := os.ReadDir(root)
	must(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// logLines collects what a Log func receives.
type logLines []string

func (l *logLines) logf(format string, args ...any) { *l = append(*l, fmt.Sprintf(format, args...)) }

func (l *logLines) has(sub string) bool {
	return slices.ContainsFunc(*l, func(s string) bool { return strings.Contains(s, sub) })
}

// buildVersions builds n versions of the small snapshot into root, keeping
// every one, and returns their directory names, oldest first.
func buildVersions(t *testing.T, root string, n int) []string {
	t.Helper()
	var vs []string
	for range n {
		b := smallBuilder(t)
		b.o.Keep = -1
		m, err := b.Build(root)
		must(t, err)
		vs = append(vs, versionDir(m.Version))
	}
	return vs
}

// TestPruneSnapshots: a publish keeps the newest Keep versions, the one
// CURRENT names and the ones in use (open), and removes the rest.
func TestPruneSnapshots(t *testing.T) {
	if !dirLocks {
		t.Skip("no directory locks on this platform: nothing is pruned")
	}
	root := t.TempDir()
	v := buildVersions(t, root, 5)
	if got := names(t, root); !slices.Equal(got, append([]string{CurrentFile}, v...)) {
		t.Fatalf("with Keep -1 the root holds %q; want CURRENT and the 5 versions", got)
	}

	// A server serves v[0]: open, it is in use.
	served, err := OpenSnapshot(filepath.Join(root, v[0]))
	must(t, err)
	var log logLines
	removed, err := PruneSnapshots(root, 2, log.logf)
	must(t, err)
	if want := []string{v[2], v[1]}; !slices.Equal(removed, want) {
		t.Fatalf("keep 2 removed %q; want %q (newest first), not the served %s", removed, want, v[0])
	}
	if got, want := names(t, root), []string{CurrentFile, v[0], v[3], v[4]}; !slices.Equal(got, want) {
		t.Fatalf("after keep 2 the root holds %q; want %q", got, want)
	}
	if !log.has("kept snapshot "+v[0]+" beyond the newest 2: in use") || !log.has("removed snapshot "+v[1]) {
		t.Fatalf("log %q: want the served version kept as in use and each removal", log)
	}
	if served.NumItems() != 3 {
		t.Fatal("the served snapshot broke")
	}
	must(t, served.Close())

	// CURRENT names an old version (a roll back): it stays, beyond keep.
	must(t, writeFileAtomic(filepath.Join(root, CurrentFile), []byte(v[0]+"\n")))
	removed, err = PruneSnapshots(root, 1, nil)
	must(t, err)
	if !slices.Equal(removed, []string{v[3]}) {
		t.Fatalf("keep 1 with CURRENT at %s removed %q; want only %s", v[0], removed, v[3])
	}
	if got, want := names(t, root), []string{CurrentFile, v[0], v[4]}; !slices.Equal(got, want) {
		t.Fatalf("after keep 1 the root holds %q; want %q", got, want)
	}
	// Keep 0 (or less) keeps everything.
	if removed, err := PruneSnapshots(root, 0, nil); err != nil || removed != nil {
		t.Fatalf("keep 0: removed %q, %v", removed, err)
	}

	// A version being removed (its exclusive lock held) is refused on
	// open, as a bad snapshot.
	lock, err := lockDir(filepath.Join(root, v[4]), true)
	must(t, err)
	if s, err := OpenSnapshot(filepath.Join(root, v[4])); !errors.Is(err, ErrBadSnapshot) || !strings.Contains(fmt.Sprint(err), "being removed") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("opening a version being removed: %v; want ErrBadSnapshot", err)
	}
	lock.unlock()

	// Build prunes after its publish with its Keep (default 3).
	for range 3 {
		if _, err := smallBuilder(t).Build(root); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := versions(root)
	must(t, err)
	cur, err := readCurrent(root)
	must(t, err)
	if len(vs) != 3 || cur != versionDir(vs[0]) {
		t.Fatalf("after 3 builds with the default keep: versions %v, CURRENT %s; want the 3 newest, CURRENT the newest", vs, cur)
	}
}

// TestRemoveDebris: what stopped builds, unpacks and prunes left goes;
// what runs (locked), what started after the cut, and everything else stay.
func TestRemoveDebris(t *testing.T) {
	if !dirLocks {
		t.Skip("no directory locks on this platform: no debris is removed")
	}
	root := t.TempDir()
	now := time.Now()
	mkdir := func(name string, mtime time.Time) string {
		t.Helper()
		p := filepath.Join(root, name)
		must(t, os.MkdirAll(p, 0o755))
		must(t, os.WriteFile(filepath.Join(p, "000001.sst"), []byte("half a table"), 0o644))
		must(t, os.Chtimes(p, mtime, mtime))
		return p
	}
	mkfile := func(name string, mtime time.Time) {
		t.Helper()
		p := filepath.Join(root, name)
		must(t, os.WriteFile(p, []byte("v1\n"), 0o644))
		must(t, os.Chtimes(p, mtime, mtime))
	}
	hourAgo := now.Add(-time.Hour)
	mkdir(".building-crashed", hourAgo)
	mkdir(".unpacking-killed", hourAgo)
	mkdir(".removing-v7-1", hourAgo)
	running := mkdir(".building-running", hourAgo)
	mkdir(".building-later", now.Add(time.Hour)) // began after the cut
	mkdir("v7", hourAgo)
	mkdir("notes", hourAgo)
	mkfile("CURRENT.123.tmp", hourAgo)
	mkfile("CURRENT.456.tmp", now.Add(-10*time.Second)) // a publish under way
	mkfile(CurrentFile, hourAgo)
	lock, err := lockDir(running, false)
	must(t, err)
	defer lock.unlock()

	var log logLines
	removed, err := RemoveDebris(root, now, log.logf)
	must(t, err)
	slices.Sort(removed)
	if want := []string{".building-crashed", ".removing-v7-1", ".unpacking-killed", "CURRENT.123.tmp"}; !slices.Equal(removed, want) {
		t.Fatalf("removed %q; want %q", removed, want)
	}
	if want := []string{".building-later", ".building-running", CurrentFile, "CURRENT.456.tmp", "notes", "v7"}; !slices.Equal(names(t, root), want) {
		t.Fatalf("root holds %q; want %q", names(t, root), want)
	}
	if len(log) != 4 || !log.has("removed .building-crashed from "+root) {
		t.Fatalf("log %q: want one line per removal", log)
	}

	// A build removes the debris of one that crashed before it began, and
	// logs it.
	lock.unlock()
	mkdir(".building-crashed", hourAgo)
	b := smallBuilder(t)
	log = nil
	b.o.Log = log.logf
	if _, err := b.Build(root); err != nil {
		t.Fatal(err)
	}
	for _, name := range names(t, root) {
		if name == ".building-crashed" || name == ".building-running" {
			t.Fatalf("build left %s in place", name)
		}
	}
	if !log.has("removed .building-crashed") || !log.has("removed .building-running") {
		t.Fatalf("build log %q: want both removals", log)
	}
}

// TestFallbackSnapshots: the order a server starting up tries versions in
// when CURRENT's cannot be served.
func TestFallbackSnapshots(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"v10", "v20", "v30", "v40", "v040", "vx", ".building-1"} {
		must(t, os.Mkdir(filepath.Join(root, n), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "v50"), nil, 0o644)) // not a directory
	f := func(current string, want ...string) {
		t.Helper()
		if current != "" {
			must(t, os.WriteFile(filepath.Join(root, CurrentFile), []byte(current), 0o644))
		}
		got, err := FallbackSnapshots(root)
		must(t, err)
		for i := range got {
			got[i] = filepath.Base(got[i])
		}
		if !slices.Equal(got, want) {
			t.Fatalf("CURRENT %q: %q; want %q", current, got, want)
		}
	}
	f("", "v40", "v30", "v20", "v10") // no CURRENT
	f("v30\n", "v20", "v10", "v40")   // older first, then a newer one
	f("v99\n", "v40", "v30", "v20", "v10")
	f("../v30", "v40", "v30", "v20", "v10") // CURRENT names nothing usable
}
