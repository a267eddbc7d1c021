package index

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/edgerec/edgerec/model"
)

// Snapshot files and formats.
const (
	// CurrentFile in a snapshot root names the published version directory.
	CurrentFile = "CURRENT"
	// ManifestFile in a version directory describes and checksums it. It is
	// written last: a directory without it is incomplete.
	ManifestFile = "edgerec-manifest.json"
	// FormatVersion changes when the key layout or a value encoding does.
	FormatVersion = 1
)

// ErrBadSnapshot is returned when a snapshot is incomplete, corrupt or of an
// unknown format. The server refuses such a snapshot and keeps the old one.
var ErrBadSnapshot = errors.New("index: bad snapshot")

// Manifest describes one snapshot version.
type Manifest struct {
	Format  int       `json:"format"`
	Version uint64    `json:"version"`
	Created time.Time `json:"created"`
	// Items and Categories are the numbers of dense ids in use.
	Items      int `json:"items"`
	Categories int `json:"categories"`
	Users      int `json:"users"`
	// Inputs counts what the build read.
	Events   int64    `json:"events"`
	Baskets  int      `json:"baskets"`
	BadLines int64    `json:"bad_lines"`
	Files    []string `json:"files"`
	// Newest is the time of the newest event (Unix seconds), the reference
	// of every decay in the build.
	Newest int64 `json:"newest"`
	// Lists counts the lists written per family.
	Lists map[string]int `json:"lists"`
	// Histories counts the users whose newest events the snapshot carries
	// for the server's state store (history.go).
	Histories  int         `json:"histories"`
	Parameters BuildParams `json:"parameters"`
	// Keys and Checksum cover every key and value of the Pebble store in
	// key order: xxhash64 over (uvarint len, key, uvarint len, value)….
	Keys     int64  `json:"keys"`
	Checksum string `json:"checksum"`
	// HistoriesChecksum is the same sum over the histories' keys alone:
	// the same histories give the same sum whatever else the build
	// changed, and a server imports the histories of a sum once
	// (engine/import.go). Empty in snapshots built before it.
	HistoriesChecksum string `json:"histories_checksum,omitempty"`
	// BuildSeconds and PeakRSS describe the build run.
	BuildSeconds float64 `json:"build_seconds"`
}

// BuildParams are the parameters a snapshot was built with.
type BuildParams struct {
	K                int           `json:"k"`
	PopularK         int           `json:"popular_k"`
	Similarity       string        `json:"similarity"`
	EASELambda       float64       `json:"ease_lambda,omitempty"`
	BoughtTogether   string        `json:"bought_together"`
	MinSupport       int           `json:"min_support"`
	MaxUserItems     int           `json:"max_user_items"`
	Weights          model.Weights `json:"weights"`
	PopularHalfLife  float64       `json:"popular_half_life"`
	TrendingHalfLife float64       `json:"trending_half_life"`
}

// UnmarshalJSON reads the parameters of a manifest. Manifests written
// before the weights' keys were snake_case name them by their Go fields
// ("RatingValue", "HalfLife"); those are read too, so older snapshots keep
// their weights.
func (p *BuildParams) UnmarshalJSON(b []byte) error {
	type plain BuildParams // without this method
	var v struct {
		plain
		Weights struct {
			model.Weights           // view, …, rating_value, half_life; View, … match them too
			OldRatingValue *bool    `json:"RatingValue"`
			OldHalfLife    *float64 `json:"HalfLife"`
		} `json:"weights"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = BuildParams(v.plain)
	p.Weights = v.Weights.Weights
	if v.Weights.OldRatingValue != nil {
		p.Weights.RatingValue = *v.Weights.OldRatingValue
	}
	if v.Weights.OldHalfLife != nil {
		p.Weights.HalfLife = *v.Weights.OldHalfLife
	}
	return nil
}

// contentHash checksums a store's contents in key order.
type contentHash struct {
	h    *xxhash.Digest
	keys int64
	buf  [binary.MaxVarintLen64]byte
}

func newContentHash() *contentHash { return &contentHash{h: xxhash.New()} }

func (c *contentHash) add(k, v []byte) {
	c.keys++
	n := binary.PutUvarint(c.buf[:], uint64(len(k)))
	_, _ = c.h.Write(c.buf[:n])
	_, _ = c.h.Write(k)
	n = binary.PutUvarint(c.buf[:], uint64(len(v)))
	_, _ = c.h.Write(c.buf[:n])
	_, _ = c.h.Write(v)
}

func (c *contentHash) sum() string { return strconv.FormatUint(c.h.Sum64(), 16) }

// storeHash is a store's two checksums: every key and value
// (Manifest.Checksum), and the histories' alone (HistoriesChecksum).
type storeHash struct{ all, histories *contentHash }

func newStoreHash() storeHash { return storeHash{newContentHash(), newContentHash()} }

func (h storeHash) add(k, v []byte) {
	h.all.add(k, v)
	if len(k) > 0 && k[0] == prefixHistory {
		h.histories.add(k, v)
	}
}

// hashStore checksums every key and value of db, and the histories'
// alone (Manifest.HistoriesChecksum).
func hashStore(db *pebble.DB) (keys int64, sum, histories string, err error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, "", "", err
	}
	h := newStoreHash()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return 0, "", "", err
		}
		h.add(it.Key(), v)
	}
	if err := it.Close(); err != nil {
		return 0, "", "", err
	}
	return h.all.keys, h.all.sum(), h.histories.sum(), nil
}

func versionDir(version uint64) string { return "v" + strconv.FormatUint(version, 10) }

// parseVersionDir is versionDir's inverse: the version a directory name
// (or path) holds.
func parseVersionDir(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(filepath.Base(name), "v")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return v, err == nil
}

// publish makes the finished version directory tmp current under root:
// rename it to its final name, then replace CURRENT through a temp file and
// rename, syncing the directory between steps.
func publish(root, tmp string, version uint64) (string, error) {
	final := filepath.Join(root, versionDir(version))
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("cannot move snapshot %q to %q: %w", tmp, final, err)
	}
	if err := syncDir(root); err != nil {
		return "", err
	}
	cur := filepath.Join(root, CurrentFile)
	if err := writeFileAtomic(cur, []byte(versionDir(version)+"\n")); err != nil {
		return "", err
	}
	return final, nil
}

func writeFileAtomic(path string, data []byte) error {
	// A temp name of its own: two publishers in one root (a build and an
	// unpack) must not write into one file.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("cannot create a temp file beside %q: %w", path, err)
	}
	tmp := f.Name()
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot chmod %q: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot write %q: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot sync %q: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot close %q: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot rename %q to %q: %w", tmp, path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot open dir %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot sync dir %q: %w", dir, err)
	}
	return nil
}

// ResolveSnapshot returns the version directory path names: path itself
// when it holds a manifest, else the version named by path/CURRENT.
func ResolveSnapshot(path string) (string, error) {
	if _, err := os.Stat(filepath.Join(path, ManifestFile)); err == nil {
		return path, nil
	}
	b, err := os.ReadFile(filepath.Join(path, CurrentFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, ok := parseVersionDir(path); ok {
				return "", fmt.Errorf("%w: %q has no %s (incomplete or damaged version)", ErrBadSnapshot, path, ManifestFile)
			}
			return "", fmt.Errorf("%w: %q holds neither %s nor %s", ErrBadSnapshot, path, ManifestFile, CurrentFile)
		}
		return "", fmt.Errorf("cannot read %q: %w", filepath.Join(path, CurrentFile), err)
	}
	name := strings.TrimSpace(string(b))
	if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return "", fmt.Errorf("%w: %q names %q", ErrBadSnapshot, filepath.Join(path, CurrentFile), name)
	}
	return filepath.Join(path, name), nil
}

// Snapshot is an open, verified, read-only index snapshot. It is safe for
// concurrent use. The item table and id map are held in memory; lists are
// read from Pebble.
type Snapshot struct {
	dir string
	// lock is held shared while the snapshot is open: its version is in
	// use and no pruner removes it (dirlock.go).
	lock  *dirLock
	m     Manifest
	db    *pebble.DB
	ids   map[string]uint32
	items []ItemInfo
	cats  []string // cats[0] is "" (all)
	catID map[string]uint32
}

// OpenSnapshot opens the snapshot at path (a root with CURRENT or a version
// directory), verifies its manifest and checksum, and loads its item table.
// An incomplete or corrupt snapshot, or one being removed, is refused with
// an error wrapping ErrBadSnapshot. The version directory stays locked as
// in use until Close (dirlock.go).
func OpenSnapshot(path string) (*Snapshot, error) {
	dir, err := ResolveSnapshot(path)
	if err != nil {
		return nil, err
	}
	lock, err := lockDir(dir, false)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%w: %q does not exist", ErrBadSnapshot, dir)
	case errors.Is(err, errDirBusy):
		return nil, fmt.Errorf("%w: %q is being removed", ErrBadSnapshot, dir)
	case err != nil:
		return nil, err
	}
	s, err := openSnapshot(dir)
	if err != nil {
		lock.unlock()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func openSnapshot(dir string) (*Snapshot, error) {
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %q has no %s (incomplete build?)", ErrBadSnapshot, dir, ManifestFile)
		}
		return nil, fmt.Errorf("cannot read manifest of %q: %w", dir, err)
	}
	s := &Snapshot{dir: dir}
	if err := json.Unmarshal(mb, &s.m); err != nil {
		return nil, fmt.Errorf("%w: cannot parse %q: %v", ErrBadSnapshot, filepath.Join(dir, ManifestFile), err)
	}
	if s.m.Format != FormatVersion {
		return nil, fmt.Errorf("%w: %q has format %d; this server reads format %d", ErrBadSnapshot, dir, s.m.Format, FormatVersion)
	}
	db, err := pebble.Open(dir, snapshotOptions(true))
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open pebble at %q: %v", ErrBadSnapshot, dir, err)
	}
	s.db = db
	if err := s.verifyAndLoad(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// verifyAndLoad scans the whole store once: it recomputes the checksum and
// loads item and category records on the way.
func (s *Snapshot) verifyAndLoad() error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("%w: cannot iterate %q: %v", ErrBadSnapshot, s.dir, err)
	}
	// The manifest's counts are not covered by the checksum: the tables
	// grow as records come (in id order, dense), and only a small
	// capacity is trusted up front.
	if s.m.Items < 0 || s.m.Categories < 0 {
		return fmt.Errorf("%w: %q: manifest counts %d items and %d categories", ErrBadSnapshot, s.dir, s.m.Items, s.m.Categories)
	}
	s.items = make([]ItemInfo, 0, min(s.m.Items, 1<<16))
	s.ids = make(map[string]uint32, min(s.m.Items, 1<<16))
	s.cats = make([]string, 1, min(s.m.Categories, 1<<10)+1)
	s.catID = make(map[string]uint32, min(s.m.Categories, 1<<10))
	h := newStoreHash()
	c, hist := h.all, h.histories
	var bad error
	for it.First(); it.Valid() && bad == nil; it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			bad = err
			break
		}
		h.add(k, v)
		if len(k) != 5 {
			continue
		}
		id := binary.BigEndian.Uint32(k[1:])
		switch k[0] {
		case prefixItem:
			if int64(id) >= int64(s.m.Items) || int(id) != len(s.items) {
				bad = fmt.Errorf("item %d out of order or range (%d items)", id, s.m.Items)
				break
			}
			s.items = append(s.items, ItemInfo{})
			if err := DecodeItem(&s.items[id], v); err != nil {
				bad = fmt.Errorf("item %d: %w", id, err)
				break
			}
			s.ids[s.items[id].ID] = id
		case prefixCategory:
			if id == 0 || int64(id) > int64(s.m.Categories) || int(id) != len(s.cats) {
				bad = fmt.Errorf("category %d out of order or range (%d categories)", id, s.m.Categories)
				break
			}
			s.cats = append(s.cats, string(v))
			s.catID[s.cats[id]] = id
		}
	}
	if err := it.Close(); err != nil && bad == nil {
		bad = err
	}
	if bad != nil {
		return fmt.Errorf("%w: %q: %v", ErrBadSnapshot, s.dir, bad)
	}
	if c.keys != s.m.Keys || c.sum() != s.m.Checksum {
		return fmt.Errorf("%w: %q fails its checksum: %d keys, sum %s; manifest says %d keys, sum %s",
			ErrBadSnapshot, s.dir, c.keys, c.sum(), s.m.Keys, s.m.Checksum)
	}
	if s.m.HistoriesChecksum != "" && hist.sum() != s.m.HistoriesChecksum {
		return fmt.Errorf("%w: %q fails its histories' checksum: sum %s; manifest says %s",
			ErrBadSnapshot, s.dir, hist.sum(), s.m.HistoriesChecksum)
	}
	if len(s.ids) != len(s.items) || len(s.items) != s.m.Items || len(s.cats) != s.m.Categories+1 {
		return fmt.Errorf("%w: %q has %d item records (%d ids) and %d categories; manifest says %d and %d",
			ErrBadSnapshot, s.dir, len(s.items), len(s.ids), len(s.cats)-1, s.m.Items, s.m.Categories)
	}
	return nil
}

// Close releases the store and its version's lock. No method may be
// called after Close.
func (s *Snapshot) Close() error {
	err := s.db.Close()
	s.lock.unlock()
	return err
}

// Dir returns the version directory.
func (s *Snapshot) Dir() string { return s.dir }

// Manifest returns the snapshot's manifest.
func (s *Snapshot) Manifest() *Manifest { return &s.m }

// Version returns the snapshot version.
func (s *Snapshot) Version() uint64 { return s.m.Version }

// NumItems returns the number of dense item ids.
func (s *Snapshot) NumItems() int { return len(s.items) }

// Lookup returns the dense id of the external item id. It does not allocate.
func (s *Snapshot) Lookup(id []byte) (uint32, bool) {
	n, ok := s.ids[string(id)]
	return n, ok
}

// Item returns the record of item n, which must be below NumItems. The
// record is shared: callers must not modify it.
func (s *Snapshot) Item(n uint32) *ItemInfo { return &s.items[n] }

// Category returns the number of a category name; 0 and false if unknown.
func (s *Snapshot) Category(name []byte) (uint32, bool) {
	n, ok := s.catID[string(name)]
	return n, ok
}

// CategoryName returns the name of category n ("" for 0, all).
func (s *Snapshot) CategoryName(n uint32) string {
	if int(n) < len(s.cats) {
		return s.cats[n]
	}
	return ""
}

// NumCategories returns the number of categories (ids 1..NumCategories).
func (s *Snapshot) NumCategories() int { return len(s.cats) - 1 }

// AppendList appends list kind of id (an item, or a category for popular
// and trending lists) to dst. A missing list appends nothing. The Pebble
// value is decoded before it is released.
func (s *Snapshot) AppendList(dst []model.Neighbour, kind ListKind, id uint32) ([]model.Neighbour, error) {
	err := s.get(kind, id, func(v []byte) (err error) {
		dst, err = DecodeList(dst, v)
		return err
	})
	return dst, err
}

// AppendListBytes appends the encoded list kind of id (see AppendList) to
// dst; a missing list appends nothing. Callers cache the bytes and decode
// them with DecodeList.
func (s *Snapshot) AppendListBytes(dst []byte, kind ListKind, id uint32) ([]byte, error) {
	err := s.get(kind, id, func(v []byte) error {
		dst = append(dst, v...)
		return nil
	})
	return dst, err
}

// get calls use with the value of list kind of id, valid only during the
// call; a missing list is no error and no call.
func (s *Snapshot) get(kind ListKind, id uint32, use func(v []byte) error) error {
	k := makeKey(byte(kind), id)
	v, closer, err := s.db.Get(k[:])
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("cannot read %s list %d: %w", kind, id, err)
	}
	err = use(v)
	_ = closer.Close()
	if err != nil {
		return fmt.Errorf("cannot decode %s list %d: %w", kind, id, err)
	}
	return nil
}

// SnapshotCacheBytes is the block cache of each open snapshot version
// (Pebble's default, made explicit: the server's memory budget counts it).
const SnapshotCacheBytes = 8 << 20

// snapshotOptions are the Pebble options of snapshot stores. A published
// version is never written again, so its read-only opens skip Pebble's
// directory lock (sharedFS): a served snapshot may be opened by edgerec eval
// or export in another process, or a second time in this one. Removal is
// kept apart by the version's own lock (dirlock.go), not Pebble's.
func snapshotOptions(readOnly bool) *pebble.Options {
	o := &pebble.Options{
		ReadOnly:      readOnly,
		DisableWAL:    !readOnly,
		MemTableSize:  64 << 20,
		CacheSize:     SnapshotCacheBytes,
		Logger:        pebbleLogger{slog.Default()},
		EventListener: eventListener(slog.Default()),
	}
	if readOnly {
		o.FS = sharedFS{vfs.Default}
	}
	return o
}

// sharedFS is the operating system's file system with a directory lock
// that every opener gets: Pebble's own lock is exclusive, also between two
// read-only opens.
type sharedFS struct{ vfs.FS }

func (sharedFS) Lock(string) (io.Closer, error) { return noLock{}, nil }

type noLock struct{}

func (noLock) Close() error { return nil }

// pebbleLogger passes Pebble's errors to a structured logger and drops its
// informational lines.
type pebbleLogger struct{ l *slog.Logger }

func (pebbleLogger) Infof(string, ...any) {}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (pebbleLogger) Fatalf(format string, args ...any) {
	panic(pebbleFatal(fmt.Sprintf("pebble: "+format, args...)))
}

// pebbleFatal is what pebbleLogger.Fatalf panics with: Pebble never
// returns after a Fatalf. The state store recovers it where Pebble's state
// allows (State.commit).
type pebbleFatal string

func (e pebbleFatal) Error() string { return string(e) }

// eventListener logs Pebble's background errors and data corruption.
// Pebble's default turns on-disk corruption into a fatal log; here the
// read that met it returns an error, which is enough: the snapshot is
// refused, or the request fails, and the server lives.
func eventListener(l *slog.Logger) *pebble.EventListener {
	return &pebble.EventListener{
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			l.Error("pebble: data corruption", "path", info.Path, "err", info.Details)
		},
		BackgroundError: func(err error) { l.Error("pebble: background error", "err", err) },
	}
}
