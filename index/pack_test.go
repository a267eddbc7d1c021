package index

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus of FuzzUnpackSnapshot")

// packSmall builds the small snapshot and packs it.
func packSmall(t *testing.T) (root string, m *Manifest, packed []byte) {
	t.Helper()
	root = t.TempDir()
	m, err := smallBuilder(t).Build(root)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	v, err := PackSnapshot(&b, root)
	if err != nil {
		t.Fatal(err)
	}
	if v != versionDir(m.Version) {
		t.Fatalf("packed %q, want %q", v, versionDir(m.Version))
	}
	return root, m, b.Bytes()
}

// TestPackUnpack: a packed snapshot unpacks, verified, into another root
// as its CURRENT version, with the same contents; the same version twice
// is refused.
func TestPackUnpack(t *testing.T) {
	_, m, packed := packSmall(t)
	dst := filepath.Join(t.TempDir(), "edge", "snapshots")
	dir, err := UnpackSnapshot(bytes.NewReader(packed), dst, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(dst, versionDir(m.Version)) {
		t.Fatalf("unpacked into %q", dir)
	}
	s, err := OpenSnapshot(dst)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := s.Lookup([]byte("a"))
	if !ok || s.Manifest().Checksum != m.Checksum || s.Item(a).Title != "A, the first" {
		t.Fatalf("unpacked snapshot: %+v", s.Manifest())
	}
	must(t, s.Close())
	if _, err := UnpackSnapshot(bytes.NewReader(packed), dst, UnpackOptions{}); !errors.Is(err, ErrSnapshotExists) {
		t.Fatalf("the same version again: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dst, ".unpacking-*"))
	if len(leftovers) != 0 {
		t.Fatalf("left behind: %v", leftovers)
	}
}

// tarZst packs entries (name → body; a name ending in / is a directory, a
// body of nil with a name of "link:…" a symlink) into a tar.zst.
func tarZst(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := zstd.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e[1]))}
		switch {
		case e[0][len(e[0])-1] == '/':
			h.Typeflag, h.Size = tar.TypeDir, 0
		case e[1] == "->":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, "/etc/passwd", 0
		}
		must(t, tw.WriteHeader(h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write([]byte(e[1]))
			must(t, err)
		}
	}
	must(t, tw.Close())
	must(t, zw.Close())
	return b.Bytes()
}

// TestUnpackRefuses: archives that are not packed snapshots, escape the
// version directory, exceed the limits or hold a damaged snapshot are
// refused with ErrBadSnapshot, and the root keeps its CURRENT.
func TestUnpackRefuses(t *testing.T) {
	_, _, packed := packSmall(t)
	dst, m0, _ := packSmall(t) // a root with a CURRENT of its own
	cur, err := os.ReadFile(filepath.Join(dst, CurrentFile))
	must(t, err)
	flipped := bytes.Clone(packed)
	flipped[len(flipped)/2] ^= 0x40
	f := func(name string, archive []byte, o UnpackOptions) {
		t.Helper()
		_, err := UnpackSnapshot(bytes.NewReader(archive), dst, o)
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: %v, want ErrBadSnapshot", name, err)
		}
		if now, _ := os.ReadFile(filepath.Join(dst, CurrentFile)); !bytes.Equal(now, cur) {
			t.Fatalf("%s: CURRENT changed to %q", name, now)
		}
		if leftovers, _ := filepath.Glob(filepath.Join(dst, ".unpacking-*")); len(leftovers) != 0 {
			t.Fatalf("%s: left behind %v", name, leftovers)
		}
		if s, err := OpenSnapshot(dst); err != nil || s.Version() != m0.Version {
			t.Fatalf("%s: the root no longer serves its snapshot: %v", name, err)
		} else {
			must(t, s.Close())
		}
	}
	f("not zstd", []byte("PK\x03\x04 a zip file"), UnpackOptions{})
	f("empty", tarZst(t), UnpackOptions{})
	f("a flipped byte", flipped, UnpackOptions{})
	f("cut short", packed[:len(packed)*2/3], UnpackOptions{})
	f("too big", packed, UnpackOptions{MaxBytes: 1000})
	f("too many files", packed, UnpackOptions{MaxFiles: 2})
	f("outside the version", tarZst(t, [2]string{"v1/", ""}, [2]string{"v1/../../evil", "x"}), UnpackOptions{})
	f("absolute", tarZst(t, [2]string{"/etc/evil", "x"}), UnpackOptions{})
	f("two versions", tarZst(t, [2]string{"v1/a", "x"}, [2]string{"v2/b", "y"}), UnpackOptions{})
	f("not a version", tarZst(t, [2]string{"data/a", "x"}), UnpackOptions{})
	f("a symlink", tarZst(t, [2]string{"v1/", ""}, [2]string{"v1/MANIFEST", "->"}), UnpackOptions{})
	f("a subdirectory", tarZst(t, [2]string{"v1/sub/", ""}), UnpackOptions{})
	f("a file twice", tarZst(t, [2]string{"v1/a", "x"}, [2]string{"v1/a", "y"}), UnpackOptions{})
	f("no manifest", tarZst(t, [2]string{"v1/000001.sst", "not really"}), UnpackOptions{})
	// The right files under a directory naming another version.
	var renamed bytes.Buffer
	zr, err := zstd.NewReader(bytes.NewReader(packed))
	must(t, err)
	tr := tar.NewReader(zr)
	zw, _ := zstd.NewWriter(&renamed)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		_, file, _ := bytes.Cut([]byte(h.Name), []byte("/"))
		h.Name = "v42/" + string(file)
		must(t, tw.WriteHeader(h))
		var body bytes.Buffer
		_, _ = body.ReadFrom(tr)
		_, err = tw.Write(body.Bytes())
		must(t, err)
	}
	must(t, tw.Close())
	must(t, zw.Close())
	zr.Close()
	f("a renamed version", renamed.Bytes(), UnpackOptions{})
}

// FuzzUnpackSnapshot: whatever the archive, UnpackSnapshot publishes a
// snapshot that opens, or refuses with ErrBadSnapshot; it never panics and
// never writes outside the root.
func FuzzUnpackSnapshot(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, archive []byte) {
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		_, err := UnpackSnapshot(bytes.NewReader(archive), root, UnpackOptions{MaxBytes: 64 << 20, MaxFiles: 100})
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("refused without ErrBadSnapshot: %v", err)
			}
		} else {
			s, err := OpenSnapshot(root)
			if err != nil {
				t.Fatalf("published a snapshot that does not open: %v", err)
			}
			must(t, s.Close())
		}
		if names, _ := os.ReadDir(parent); len(names) != 1 {
			t.Fatalf("wrote beside the root: %v", names)
		}
	})
}

// TestWritePackSeeds writes the seed corpus of FuzzUnpackSnapshot (a real
// packed snapshot and hostile archives) when run with -update-seeds.
func TestWritePackSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("go test -run TestWritePackSeeds ./index -args -update-seeds rewrites testdata/fuzz/FuzzUnpackSnapshot")
	}
	_, _, packed := packSmall(t)
	seeds := map[string][]byte{
		"packed":     packed,
		"traversal":  tarZst(t, [2]string{"v1/", ""}, [2]string{"v1/../../evil", "x"}),
		"symlink":    tarZst(t, [2]string{"v1/", ""}, [2]string{"v1/MANIFEST", "->"}),
		"absolute":   tarZst(t, [2]string{"/tmp/evil", "x"}),
		"twice":      tarZst(t, [2]string{"v1/a", "x"}, [2]string{"v1/a", "y"}),
		"nomanifest": tarZst(t, [2]string{"v1/000001.sst", "not really"}),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzUnpackSnapshot")
	must(t, os.MkdirAll(dir, 0o755))
	for name, b := range seeds {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n"), 0o644))
	}
}
