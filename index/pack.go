package index

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Packed snapshots: how a snapshot travels from the builder to edge
// servers (DESIGN.md: "snapshots travel as tar.zst").
//
// A packed snapshot is a zstd-compressed tar holding one directory,
// v<version>/, and the regular files of that version directory (the Pebble
// files and the manifest; not Pebble's LOCK). UnpackSnapshot trusts
// nothing in it: only such entries are taken, within limits, into a
// temporary directory under the root; the snapshot is opened and verified
// there (manifest, checksum, item table) and only then published as Build
// publishes: renamed into place, then CURRENT switched. A refused archive
// leaves the root as it was.

// packWindow is the zstd window of packed snapshots.
const packWindow = 8 << 20

// PackSnapshot writes the snapshot at path (a root, for its CURRENT
// version, or a version directory) to w, packed. It does not verify the
// snapshot: the receiving side does.
func PackSnapshot(w io.Writer, path string) (version string, err error) {
	dir, err := ResolveSnapshot(path)
	if err != nil {
		return "", err
	}
	version = filepath.Base(dir)
	// In use while it is read: no pruner removes it under the pack.
	lock, err := lockDir(dir, false)
	if err != nil {
		return "", fmt.Errorf("%w: cannot pack %q: %v", ErrBadSnapshot, dir, err)
	}
	defer lock.unlock()
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err != nil {
		return "", fmt.Errorf("%w: %q has no %s", ErrBadSnapshot, dir, ManifestFile)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cannot list snapshot %q: %w", dir, err)
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(packWindow))
	if err != nil {
		return "", fmt.Errorf("cannot start zstd: %w", err)
	}
	tw := tar.NewWriter(zw)
	now := time.Now()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: version + "/", Mode: 0o755, ModTime: now}); err != nil {
		return "", err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "LOCK" {
			continue
		}
		if err := packFile(tw, filepath.Join(dir, e.Name()), version+"/"+e.Name()); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("cannot finish the archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("cannot finish the archive: %w", err)
	}
	return version, nil
}

func packFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot pack %q: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot pack %q: %w", path, err)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: st.Size(), ModTime: st.ModTime()}); err != nil {
		return fmt.Errorf("cannot pack %q: %w", path, err)
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("cannot pack %q: %w", path, err)
	}
	return nil
}

// UnpackOptions bound what UnpackSnapshot takes; zero values get defaults.
type UnpackOptions struct {
	// MaxBytes bounds the unpacked files together; default 64 GiB.
	MaxBytes int64
	// MaxFiles bounds their number; default 100,000.
	MaxFiles int
	// AllowOlder publishes a version older than the root's CURRENT (a
	// roll back); without it such an archive is refused.
	AllowOlder bool
	// Keep is how many of the newest versions the root keeps after the
	// publish, as BuildOptions.Keep: default DefaultKeep, negative keeps
	// every version.
	Keep int
	// Log receives what the unpack removed (debris, pruned versions);
	// nil discards it.
	Log func(format string, args ...any)
}

// ErrSnapshotExists is returned by UnpackSnapshot when the root already
// holds the archive's version.
var ErrSnapshotExists = errors.New("index: snapshot version already present")

// ErrSnapshotOlder is returned by UnpackSnapshot for a version older than
// the root's CURRENT, unless UnpackOptions.AllowOlder.
var ErrSnapshotOlder = errors.New("index: snapshot older than the current one")

// UnpackSnapshot reads a packed snapshot from r, verifies it and publishes
// it under root (created if missing) as the CURRENT version, returning its
// directory. An archive that is not a packed snapshot, exceeds the limits,
// or holds a snapshot that fails verification is refused with an error
// wrapping ErrBadSnapshot, and root is left as it was; a version root
// already has is left as it is, and UnpackSnapshot returns its directory
// with an error wrapping ErrSnapshotExists. As Build, it first removes the
// debris of stopped runs, and prunes old versions once published.
func UnpackSnapshot(r io.Reader, root string, o UnpackOptions) (string, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 30
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = 100_000
	}
	if o.Keep == 0 {
		o.Keep = DefaultKeep
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("cannot create snapshot root %q: %w", root, err)
	}
	if _, err := RemoveDebris(root, time.Now(), o.Log); err != nil {
		o.Log("cannot remove debris: %v", err)
	}
	tmp, err := os.MkdirTemp(root, unpackingPrefix)
	if err != nil {
		return "", fmt.Errorf("cannot create a directory in %q: %w", root, err)
	}
	// Locked shared while the unpack runs, as Build's directory is.
	lock, err := lockDir(tmp, false)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("cannot lock the unpack directory: %w", err)
	}
	defer lock.unlock()
	// Readable by a server running as another user, as Build leaves it.
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("cannot make %q readable: %w", tmp, err)
	}
	published := false
	defer func() {
		if !published {
			_ = os.RemoveAll(tmp)
		}
	}()
	version, err := unpackInto(r, tmp, &o)
	if err != nil {
		return "", err
	}
	if dir := filepath.Join(root, version); dirExists(dir) {
		return dir, fmt.Errorf("%w: %q", ErrSnapshotExists, dir)
	}
	s, err := OpenSnapshot(tmp)
	if err != nil {
		return "", err
	}
	v := s.Version()
	if cerr := s.Close(); cerr != nil {
		return "", fmt.Errorf("cannot close the unpacked snapshot: %w", cerr)
	}
	if versionDir(v) != version {
		return "", fmt.Errorf("%w: the archive's directory %q holds version %d", ErrBadSnapshot, version, v)
	}
	if !o.AllowOlder {
		// Archives may arrive out of order: an older one must not roll
		// the root back unless asked to.
		if cur, err := ResolveSnapshot(root); err == nil {
			if cv, ok := parseVersionDir(cur); ok && v < cv {
				return "", fmt.Errorf("%w: version %d is older than the current %d (allow it to roll back)", ErrSnapshotOlder, v, cv)
			}
		}
	}
	_ = os.Remove(filepath.Join(tmp, "LOCK")) // made by the verifying open
	if err := syncDir(tmp); err != nil {
		return "", err
	}
	dir, err := publish(root, tmp, v)
	if err != nil {
		return "", err
	}
	published = true
	lock.unlock()
	if _, err := PruneSnapshots(root, o.Keep, o.Log); err != nil {
		o.Log("cannot prune old snapshots: %v", err)
	}
	return dir, nil
}

// dirExists reports whether path is a directory.
func dirExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// unpackInto extracts the archive's files into dir and returns the name of
// the version directory they came from.
func unpackInto(r io.Reader, dir string, o *UnpackOptions) (string, error) {
	// A frame may ask for a window of up to 512 MiB, allocated up front:
	// a 1 KiB archive must not cost that. Packs use packWindow.
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(4*packWindow), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return "", fmt.Errorf("%w: not zstd: %v", ErrBadSnapshot, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	version := ""
	var total int64
	files := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w: cannot read the archive: %v", ErrBadSnapshot, err)
		}
		// tar -C root ./v123 writes "./v123/…".
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if len(name) > 512 {
			return "", fmt.Errorf("%w: entry name of %d bytes", ErrBadSnapshot, len(name))
		}
		top, file, nested := strings.Cut(name, "/")
		if !strings.HasPrefix(top, "v") || strings.ContainsAny(top, `\`) || top == "v" || (version != "" && top != version) {
			return "", fmt.Errorf("%w: entry %q is not in one v<version>/ directory", ErrBadSnapshot, h.Name)
		}
		version = top
		switch h.Typeflag {
		case tar.TypeDir:
			if nested {
				return "", fmt.Errorf("%w: entry %q: no subdirectories in a snapshot", ErrBadSnapshot, h.Name)
			}
			continue
		case tar.TypeReg:
		default:
			return "", fmt.Errorf("%w: entry %q is not a regular file", ErrBadSnapshot, h.Name)
		}
		if !nested || file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`) || file == "LOCK" || len(file) > 255 {
			return "", fmt.Errorf("%w: entry %q is not a file of the version directory", ErrBadSnapshot, h.Name)
		}
		if files++; files > o.MaxFiles {
			return "", fmt.Errorf("%w: more than %d files", ErrBadSnapshot, o.MaxFiles)
		}
		if h.Size < 0 || h.Size > o.MaxBytes-total {
			return "", fmt.Errorf("%w: more than %d bytes unpacked", ErrBadSnapshot, o.MaxBytes)
		}
		total += h.Size
		if err := unpackFile(tr, filepath.Join(dir, file), h.Size); err != nil {
			return "", err
		}
	}
	if version == "" {
		return "", fmt.Errorf("%w: an empty archive", ErrBadSnapshot)
	}
	return version, nil
}

// unpackFile copies size bytes of r into a new file at path. A short or
// unreadable archive is ErrBadSnapshot; a failing disk is not.
func unpackFile(r io.Reader, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %q twice in the archive", ErrBadSnapshot, filepath.Base(path))
		}
		return fmt.Errorf("cannot create %q: %w", path, err)
	}
	n, err := io.Copy(f, readErrors{io.LimitReader(r, size)})
	var re readError
	switch {
	case errors.As(err, &re):
		err = fmt.Errorf("%w: cannot read %q from the archive: %v", ErrBadSnapshot, filepath.Base(path), re.err)
	case err != nil:
		err = fmt.Errorf("cannot write %q: %w", path, err)
	case n != size:
		err = fmt.Errorf("%w: %q is cut short", ErrBadSnapshot, filepath.Base(path))
	default:
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("cannot sync %q: %w", path, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cannot close %q: %w", path, cerr)
	}
	return err
}

// readErrors marks the errors of its reader, so that a copy tells them
// from the writer's.
type readErrors struct{ r io.Reader }

type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }

func (r readErrors) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}
