package index

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

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
// leaves the root as it was and names the directory it already has.
func TestPackUnpack(t *testing.T) {
	_, m, packed := packSmall(t)
	dst := filepath.Join(t.TempDir(), "edge", "snapshots")
	// What a killed unpack left goes; the directory of one still running
	// (locked, as UnpackSnapshot locks its own) stays.
	stale, running := filepath.Join(dst, ".unpacking-1"), filepath.Join(dst, ".unpacking-2")
	must(t, os.MkdirAll(stale, 0o755))
	must(t, os.MkdirAll(running, 0o755))
	must(t, os.Chtimes(stale, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour)))
	must(t, os.Chtimes(running, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour)))
	lock, err := lockDir(running, false)
	must(t, err)
	defer lock.unlock()
	dir, err := UnpackSnapshot(bytes.NewReader(packed), dst, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(dst, versionDir(m.Version)) {
		t.Fatalf("unpacked into %q", dir)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("unpacked directory: %v, %v; want 0755 as a build leaves it (a server may run as another user)", st.Mode(), err)
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
	if again, err := UnpackSnapshot(bytes.NewReader(packed), dst, UnpackOptions{}); !errors.Is(err, ErrSnapshotExists) || again != dir {
		t.Fatalf("the same version again: %q, %v; want %q and ErrSnapshotExists", again, err, dir)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dst, ".unpacking-*"))
	if len(leftovers) != 1 || leftovers[0] != running {
		t.Fatalf("left behind: %v, want only %s", leftovers, running)
	}

	// An archive older than the root's CURRENT would roll it back: refused
	// unless allowed. (tar -C root ./vN names its entries ./vN/….)
	newer := filepath.Join(t.TempDir(), "newer")
	if _, err := smallBuilder(t).Build(newer); err != nil {
		t.Fatal(err)
	}
	older := repack(t, packed, func(h *tar.Header, body []byte) []byte {
		h.Name = "./" + h.Name
		return body
	})
	if _, err := UnpackSnapshot(bytes.NewReader(older), newer, UnpackOptions{}); !errors.Is(err, ErrSnapshotOlder) {
		t.Fatalf("an older version: %v", err)
	}
	if _, err := UnpackSnapshot(bytes.NewReader(older), newer, UnpackOptions{AllowOlder: true}); err != nil {
		t.Fatalf("an older version, allowed: %v", err)
	}
	if s, err := OpenSnapshot(newer); err != nil || s.Version() != m.Version {
		t.Fatalf("after the roll back: %v", err)
	} else {
		must(t, s.Close())
	}
}

// repack rewrites a packed snapshot, edit changing each entry.
func repack(t *testing.T, packed []byte, edit func(h *tar.Header, body []byte) []byte) []byte {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(packed))
	must(t, err)
	defer zr.Close()
	tr := tar.NewReader(zr)
	var b bytes.Buffer
	zw, _ := zstd.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		body, err := io.ReadAll(tr)
		must(t, err)
		body = edit(h, body)
		h.Size = int64(len(body))
		must(t, tw.WriteHeader(h))
		_, err = tw.Write(body)
		must(t, err)
	}
	must(t, tw.Close())
	must(t, zw.Close())
	return b.Bytes()
}

// TestUnpackHostile: archives built to exhaust the receiving edge (a size
// that overflows the running total, a zstd window of 512 MiB, a manifest
// claiming 2^50 items) are refused before they cost what they ask.
func TestUnpackHostile(t *testing.T) {
	// A PAX header gives v1/b the size MaxInt64 after a 1-byte v1/a; 64
	// MiB follow (a zstd bomb would give far more); MaxBytes is 1 MiB.
	var b bytes.Buffer
	zw, _ := zstd.NewWriter(&b)
	tw := tar.NewWriter(zw)
	must(t, tw.WriteHeader(&tar.Header{Name: "v1/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}))
	_, _ = tw.Write([]byte("x"))
	must(t, tw.Flush())
	rec := paxRecord("size", "9223372036854775807") + paxRecord("path", "v1/b")
	_, _ = zw.Write(rawHeader("PaxHeaders/b", 'x', int64(len(rec))))
	_, _ = zw.Write(pad([]byte(rec)))
	_, _ = zw.Write(rawHeader("v1/b", '0', 0))
	_, _ = zw.Write(make([]byte, 64<<20))
	must(t, zw.Close())
	root := t.TempDir()
	if _, err := UnpackSnapshot(bytes.NewReader(b.Bytes()), root, UnpackOptions{MaxBytes: 1 << 20}); !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("a size past MaxBytes by overflow: %v", err)
	}

	// A 1 KiB frame declaring a 512 MiB window (its first byte after the
	// magic: no checksum, window descriptor 19<<3).
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 19 << 3}
	bh := uint32(1) | uint32(1024)<<3 // last raw block of 1024 bytes
	frame = append(frame, byte(bh), byte(bh>>8), byte(bh>>16))
	frame = append(frame, make([]byte, 1024)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := UnpackSnapshot(bytes.NewReader(frame), t.TempDir(), UnpackOptions{})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrBadSnapshot) || after.TotalAlloc-before.TotalAlloc > 64<<20 {
		t.Fatalf("a 512 MiB window: %v, %d MiB allocated", err, (after.TotalAlloc-before.TotalAlloc)>>20)
	}

	// A manifest claiming 2^50 items (the checksum does not cover it).
	_, _, packed := packSmall(t)
	for _, counts := range []map[string]any{{"items": 1 << 50}, {"categories": 1 << 50}, {"items": -1}, {"items": 2}, {"categories": 7}} {
		bad := repack(t, packed, func(h *tar.Header, body []byte) []byte {
			if strings.HasSuffix(h.Name, "/"+ManifestFile) {
				var m map[string]any
				must(t, json.Unmarshal(body, &m))
				for k, v := range counts {
					m[k] = v
				}
				body, _ = json.Marshal(m)
			}
			return body
		})
		if _, err := UnpackSnapshot(bytes.NewReader(bad), t.TempDir(), UnpackOptions{}); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("manifest %v: %v", counts, err)
		}
	}
}

// paxRecord is one "len key=value\n" record of a PAX header.
func paxRecord(k, v string) string {
	s := " " + k + "=" + v + "\n"
	n := len(s)
	for {
		if l := len(strconv.Itoa(n)) + len(s); l != n {
			n = l
			continue
		}
		return strconv.Itoa(n) + s
	}
}

// pad pads b to whole 512-byte tar blocks.
func pad(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// rawHeader is a USTAR header block, written by hand so that a test can
// put what archive/tar would refuse to write after it.
func rawHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	oct := func(v int64, n int) []byte {
		b := make([]byte, n)
		for i := n - 2; i >= 0; i-- {
			b[i] = byte('0' + v%8)
			v /= 8
		}
		return b
	}
	copy(h[124:136], oct(size, 12))
	copy(h[136:148], "00000000000\x00")
	h[156] = typ
	copy(h[257:263], "ustar\x00")
	copy(h[263:265], "00")
	for i := 148; i < 156; i++ {
		h[i] = ' '
	}
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:156], oct(sum, 7))
	h[155] = ' '
	return h
}

// tarZst packs entries (name, body) into a tar.zst: a name ending in / is
// a directory, a body of "->" a symlink and one of "=>" a hard link to
// /etc/passwd, anything else a regular file.
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
		case e[1] == "=>":
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, "/etc/passwd", 0
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
	f("a name too long", tarZst(t, [2]string{"v1/" + strings.Repeat("a", 300), "x"}), UnpackOptions{})
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

// dotSlash repacks a packed snapshot with its entries named as
// tar -C root ./v123 names them: "./v123/…".
func dotSlash(t *testing.T, packed []byte) []byte {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(packed))
	must(t, err)
	defer zr.Close()
	tr := tar.NewReader(zr)
	var b bytes.Buffer
	zw, _ := zstd.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		h.Name = "./" + h.Name
		must(t, tw.WriteHeader(h))
		_, err = io.Copy(tw, tr)
		must(t, err)
	}
	must(t, tw.Close())
	must(t, zw.Close())
	return b.Bytes()
}

// FuzzUnpackSnapshot: whatever the archive, UnpackSnapshot publishes a
// snapshot that opens, or refuses with ErrBadSnapshot and leaves the root
// empty; it never panics, never writes outside the root (the root sits
// three directories down, so that an entry climbing out of it by any
// number of ../ shows), never makes a link, and publishes only regular
// entries of the archive's one version directory, each with the size its
// header gave.
//
// The directories down to the root are made once: a worker runs its
// inputs one at a time, each with no root yet (checked) and the root
// removed after it, so each input starts as on a fresh tree.
func FuzzUnpackSnapshot(f *testing.F) {
	f.Add([]byte{})
	parent := f.TempDir()
	root := filepath.Join(parent, "a", "b", "root")
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, archive []byte) {
		if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the root of the previous input is still there (%v)", err)
		}
		defer func() {
			if err := os.RemoveAll(root); err != nil {
				t.Fatal(err)
			}
		}()
		dir, err := UnpackSnapshot(bytes.NewReader(archive), root, UnpackOptions{MaxBytes: 4 << 20, MaxFiles: 100})
		// Everything under parent: the directories down to root, and
		// what root holds.
		var inRoot []string
		walkErr := filepath.WalkDir(parent, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(parent, path)
			switch {
			case rel == "." || rel == "a" || rel == filepath.Join("a", "b") || rel == filepath.Join("a", "b", "root"):
				if !d.IsDir() {
					t.Fatalf("%s is not a directory", rel)
				}
			case strings.HasPrefix(rel, filepath.Join("a", "b", "root")+string(filepath.Separator)):
				inRoot = append(inRoot, path)
			default:
				t.Fatalf("wrote %s outside the root", rel)
			}
			if d.Type()&os.ModeSymlink != 0 || !(d.Type().IsRegular() || d.IsDir()) {
				t.Fatalf("%s is neither a regular file nor a directory (%v)", rel, d.Type())
			}
			return nil
		})
		if walkErr != nil {
			t.Fatal(walkErr)
		}
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("refused without ErrBadSnapshot: %v", err)
			}
			if len(inRoot) != 0 {
				t.Fatalf("a refused archive left %v", inRoot)
			}
			return
		}
		s, err := OpenSnapshot(root)
		if err != nil {
			t.Fatalf("published a snapshot that does not open: %v", err)
		}
		must(t, s.Close())
		// The published files are regular entries of the archive, read
		// here on their own, with the sizes their headers gave.
		want := archiveFiles(t, archive, filepath.Base(dir))
		for _, path := range inRoot {
			rel, _ := filepath.Rel(root, path)
			st, err := os.Lstat(path)
			must(t, err)
			switch {
			case rel == CurrentFile || rel == filepath.Base(dir) || st.IsDir():
			case filepath.Dir(rel) != filepath.Base(dir):
				t.Fatalf("published %s, outside %s", rel, filepath.Base(dir))
			default:
				size, ok := want[filepath.Base(rel)]
				if !ok && filepath.Base(rel) != "LOCK" {
					t.Fatalf("published %s, which the archive does not hold", rel)
				}
				if ok && size != st.Size() {
					t.Fatalf("%s: %d bytes published, %d in the archive", rel, st.Size(), size)
				}
			}
		}
	})
}

// archiveFiles reads a packed archive that UnpackSnapshot took and
// returns the sizes of the regular entries of its version directory by
// file name.
func archiveFiles(t *testing.T, archive []byte, version string) map[string]int64 {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(archive), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
	must(t, err)
	defer zr.Close()
	tr := tar.NewReader(zr)
	files := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("an archive UnpackSnapshot took does not read: %v", err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if h.Typeflag != tar.TypeReg {
			continue
		}
		top, file, _ := strings.Cut(name, "/")
		if top != version {
			t.Fatalf("took an archive with entry %q beside %s", h.Name, version)
		}
		files[file] = h.Size
	}
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
		"hardlink":   tarZst(t, [2]string{"v1/", ""}, [2]string{"v1/MANIFEST", "=>"}),
		"deep":       tarZst(t, [2]string{"v1/../../../../../../tmp/evil", "x"}),
		"dotdot":     tarZst(t, [2]string{"v1/..", "x"}),
		"backslash":  tarZst(t, [2]string{`v1/..\evil`, "x"}),
		"subdir":     tarZst(t, [2]string{"v1/sub/", ""}, [2]string{"v1/sub/x", "x"}),
		"dotslash":   dotSlash(t, packed),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzUnpackSnapshot")
	must(t, os.MkdirAll(dir, 0o755))
	for name, b := range seeds {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n"), 0o644))
	}
}
