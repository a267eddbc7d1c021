package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Snapshot root housekeeping: which versions a server starting up may fall
// back to, pruning old versions after a publish, and removing what
// crashed builds and unpacks left behind. Whether a directory is in use is
// told by its lock (dirlock.go).

// DefaultKeep is how many of the newest versions a publish keeps in its
// root (BuildOptions.Keep, UnpackOptions.Keep).
const DefaultKeep = 3

// debrisAge is how old a CURRENT temp file must be to be taken for
// debris: it lives for the milliseconds of one publish, and holds no lock.
const debrisAge = time.Minute

// Prefixes of the root's temporary directories.
const (
	buildingPrefix  = ".building-"
	unpackingPrefix = ".unpacking-"
	removingPrefix  = ".removing-"
)

// versions returns the versions of root's version directories, newest
// first.
func versions(root string) ([]uint64, error) {
	es, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("cannot list snapshot root %q: %w", root, err)
	}
	var vs []uint64
	for _, e := range es {
		if v, ok := parseVersionDir(e.Name()); ok && e.IsDir() && versionDir(v) == e.Name() {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	slices.Reverse(vs)
	return vs, nil
}

// readCurrent returns the version directory name root's CURRENT holds,
// checked as ResolveSnapshot checks it.
func readCurrent(root string) (string, error) {
	dir, err := ResolveSnapshot(root)
	if err != nil {
		return "", err
	}
	if filepath.Clean(dir) == filepath.Clean(root) {
		return "", fmt.Errorf("%w: %q is a version directory, not a root", ErrBadSnapshot, root)
	}
	return filepath.Base(dir), nil
}

// FallbackSnapshots returns the version directories of root other than
// the one CURRENT names, in the order a server starting up tries them when
// CURRENT's cannot be served: the versions older than CURRENT's, newest
// first, then the newer ones, newest first (a newer one was rolled back
// from, or its publish stopped before CURRENT switched). When CURRENT
// names no version, every version is older.
func FallbackSnapshots(root string) ([]string, error) {
	vs, err := versions(root)
	if err != nil {
		return nil, err
	}
	cur, curOK := uint64(0), false
	if name, err := readCurrent(root); err == nil {
		cur, curOK = parseVersionDir(name)
	}
	var older, newer []string
	for _, v := range vs {
		switch {
		case curOK && v == cur:
		case curOK && v > cur:
			newer = append(newer, filepath.Join(root, versionDir(v)))
		default:
			older = append(older, filepath.Join(root, versionDir(v)))
		}
	}
	return append(older, newer...), nil
}

// PruneSnapshots removes root's version directories beyond the newest
// keep, except the one CURRENT names and those in use (an open Snapshot
// holds its version's lock: a server serving an older version keeps it).
// keep <= 0 keeps every version. A version is renamed to a .removing-
// directory before it is removed, so a removal cut short leaves debris
// for RemoveDebris, not a damaged version. It returns the removed
// versions' names and logs each removal and each version kept for being
// in use through logf (nil: no log). With CURRENT unreadable it removes
// nothing.
func PruneSnapshots(root string, keep int, logf func(format string, args ...any)) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cur, err := readCurrent(root)
	if err != nil {
		return nil, fmt.Errorf("cannot prune %q: %w", root, err)
	}
	vs, err := versions(root)
	if err != nil {
		return nil, err
	}
	var removed []string
	for i, v := range vs {
		name := versionDir(v)
		if i < keep || name == cur {
			continue
		}
		dir := filepath.Join(root, name)
		lock, err := lockDir(dir, true)
		if errors.Is(err, errDirBusy) {
			logf("kept snapshot %s beyond the newest %d: in use", name, keep)
			continue
		}
		if err != nil {
			return removed, err
		}
		err = removeLocked(dir, filepath.Join(root, removingPrefix+name+"-"+strconv.FormatInt(time.Now().UnixNano(), 10)))
		lock.unlock()
		if err != nil {
			return removed, err
		}
		removed = append(removed, name)
		logf("removed snapshot %s: beyond the newest %d", name, keep)
	}
	return removed, nil
}

// removeLocked moves the locked directory dir aside to tmp and removes it.
func removeLocked(dir, tmp string) error {
	if err := os.Rename(dir, tmp); err != nil {
		return fmt.Errorf("cannot move %q aside: %w", dir, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("cannot remove %q: %w", tmp, err)
	}
	return syncDir(filepath.Dir(dir))
}

// RemoveDebris removes what builds, unpacks and prunes that stopped midway
// (a crash, a kill -9, a power loss) left in root: their .building-,
// .unpacking- and .removing- directories last modified before the time
// before and not locked (a running one holds its directory's lock, and
// one started after before is younger), and CURRENT temp files older than
// a minute before it. Builds and unpacks call it with their own start. It
// returns the removed names and logs each through logf (nil: no log).
func RemoveDebris(root string, before time.Time, logf func(format string, args ...any)) ([]string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	es, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("cannot list snapshot root %q: %w", root, err)
	}
	var removed []string
	for _, e := range es {
		name := e.Name()
		path := filepath.Join(root, name)
		tmpDir := e.IsDir() && (strings.HasPrefix(name, buildingPrefix) || strings.HasPrefix(name, unpackingPrefix) ||
			strings.HasPrefix(name, removingPrefix))
		tmpFile := e.Type().IsRegular() && strings.HasPrefix(name, CurrentFile+".") && strings.HasSuffix(name, ".tmp")
		if !tmpDir && !tmpFile {
			continue
		}
		st, err := os.Lstat(path)
		if err != nil {
			continue // gone meanwhile
		}
		age := before.Sub(st.ModTime())
		if age <= 0 || tmpFile && age <= debrisAge {
			continue
		}
		if tmpFile {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return removed, fmt.Errorf("cannot remove %q: %w", path, err)
			}
		} else {
			lock, err := lockDir(path, true)
			if errors.Is(err, errDirBusy) || errors.Is(err, os.ErrNotExist) {
				continue // a build or unpack still running; or gone
			}
			if err != nil {
				return removed, err
			}
			err = os.RemoveAll(path)
			lock.unlock()
			if err != nil {
				return removed, fmt.Errorf("cannot remove %q: %w", path, err)
			}
		}
		removed = append(removed, name)
		logf("removed %s from %s: left by a run that stopped midway (last modified %s)", name, root, st.ModTime().UTC().Format(time.RFC3339))
	}
	return removed, nil
}
