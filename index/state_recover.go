package index

// # Recovery from failed writes
//
// See "Failed writes" in state.go for how a store stops taking writes.
// This file brings it back without a restart. The store's file system is
// wrapped (stateFS): the first write, sync or create that fails marks the
// store failed with the error as the operating system gave it, before
// Pebble's WAL writer keeps it, so later writes are refused before they
// reach Pebble; a full disk (ENOSPC) is told apart from other I/O errors
// (ErrNoSpace). Pebble retries a failed flush at once, in a loop; once
// the store has failed, every further failing write of the wrapper waits
// failedWriteDelay first, which bounds that loop to a few tries a second.
//
// A commit that entered Pebble before the failure and meets the WAL
// writer's error panics with Pebble's locks in disorder (commitWrite,
// rotateWAL; the second kills the process whatever recovers). So a
// failed WAL write is held back from Pebble until no commit is inside its
// commit pipeline (walError, apply), and synced commits wait for the sync
// outside it. A commit that rotates the WAL waits for the WAL writer: a
// full disk's write is retried meanwhile, and a failed sync's error is
// dropped after walErrorWait; a write is acknowledged only when the store
// did not fail during it (synced), so nothing is acknowledged on that.
//
// A background loop (recoverLoop, one per failure) then tries, with a
// backoff from recoverMinInterval to StateOptions.RecoverInterval (and at
// once when Writable is asked): it waits until no write is inside Pebble,
// writes, syncs and removes a probe file of probeFileBytes in the store's
// directory, checks that the disk has room for the WAL's replay, and
// reopens: it takes dbMu exclusively, closes the failed DB (bounded by
// closeTimeout), opens the directory again (Pebble replays the WAL) and
// clears the failure. Reads and writes hold dbMu shared while they use the
// DB, so none ever meets a closed one; a read that finds a reopen under
// way waits for it, at most reopenWait, then fails with ErrNotWritable. A
// failed DB whose Close does not return is abandoned: the store stays
// failed, and a restart is the way back.
//
// What a reopen keeps: every acknowledged write (its batch is in the WAL,
// synced). A batch whose commit failed was not acknowledged; it was
// applied to the failed DB's memtable, and after the reopen it is there as
// a whole, or not at all, as the WAL's bytes on disk have it (a WAL record
// is the whole batch, checksummed; a torn tail is dropped): its events,
// their profiles and its counter deltas together, never a part. A client
// that retries it with the same event_id gets one history entry, as for
// any retry. Event numbers (seq) continue after the highest one handed
// out, so a number a failed batch took is never reused.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrNoSpace is wrapped, beside ErrNotWritable, by the errors of a store
// that failed because its disk is full.
var ErrNoSpace = errors.New("index: no space left for the state store")

const (
	// recoverMinInterval is the first wait of the recovery loop.
	recoverMinInterval = 100 * time.Millisecond
	// defaultRecoverInterval is the longest wait between recovery tries.
	defaultRecoverInterval = 5 * time.Second
	// probeFileBytes is what a recovery probe writes and syncs before the
	// store reopens.
	probeFileBytes = 1 << 20
	// reopenWait bounds how long a read waits for a reopen under way.
	reopenWait = 2 * time.Second
	// closeTimeout bounds the Close of a failed DB during a reopen.
	closeTimeout = 10 * time.Second
	// failedWriteDelay is how long a write of the failed store's file
	// system waits before it returns its error (see above).
	failedWriteDelay = 200 * time.Millisecond
	// probeFile is the recovery probe's name in the store's directory.
	probeFile = "RECOVERY-PROBE"
)

// rlock read-locks dbMu for one call that uses s.db, and returns an error
// instead when there is no open DB (a reopen that did not finish in
// reopenWait, a failed one, or after Close). It does not block behind a
// reopen for longer than reopenWait, so a read never waits on a Close that
// hangs.
func (s *State) rlock() error {
	if s.dbMu.TryRLock() {
		if s.db != nil {
			return nil
		}
		s.dbMu.RUnlock()
		return s.noDB()
	}
	deadline := time.Now().Add(reopenWait)
	for time.Now().Before(deadline) {
		// A reopen holds dbMu for a Close and an Open: milliseconds.
		time.Sleep(time.Millisecond)
		if s.dbMu.TryRLock() {
			if s.db != nil {
				return nil
			}
			s.dbMu.RUnlock()
			return s.noDB()
		}
	}
	return fmt.Errorf("%w: the store is being reopened", ErrNotWritable)
}

// noDB is the error of a store with no open DB.
func (s *State) noDB() error {
	if s.closed.Load() {
		return fmt.Errorf("%w: closed", ErrNotWritable)
	}
	if err := s.writable(); err != nil {
		return err
	}
	return fmt.Errorf("%w: the store is being reopened", ErrNotWritable)
}

// wlock is rlock for a write: it refuses the write when the store has
// failed, and counts it while it runs, so a reopen starts only when no
// write is inside Pebble. Release with wunlock.
func (s *State) wlock() error {
	// The first check keeps refused writes off the count, so that a flood
	// of them does not keep a reopen waiting; the second closes the race
	// with a failure between it and the count.
	if err := s.writable(); err != nil {
		s.failedWrites.Add(1)
		return err
	}
	s.writing.Add(1)
	if err := s.writable(); err != nil {
		s.writing.Add(-1)
		s.failedWrites.Add(1)
		return err
	}
	if err := s.rlock(); err != nil {
		s.writing.Add(-1)
		return err
	}
	return nil
}

func (s *State) wunlock() {
	s.dbMu.RUnlock()
	s.writing.Add(-1)
}

// Failure describes the state store's writability, for metrics.
type Failure struct {
	// Err is the error that stopped writes; nil while the store takes them.
	Err error
	// Since is when writes stopped.
	Since time.Time
	// FailedWrites counts the writes refused or failed since the store
	// opened; Failures the times writes stopped, Recoveries the times a
	// reopen brought them back.
	FailedWrites, Failures, Recoveries uint64
}

// Failure returns the store's writability and its counts.
func (s *State) Failure() Failure {
	f := Failure{
		FailedWrites: s.failedWrites.Load(),
		Failures:     s.failures.Load(),
		Recoveries:   s.recoveries.Load(),
	}
	if p := s.failed.Load(); p != nil {
		f.Err = p.err
		f.Since = p.since
	}
	return f
}

// failure is the error that stopped writes, and when.
type failure struct {
	err   error
	since time.Time
}

// wrapFailure wraps err, the error that stopped writes, in ErrNotWritable,
// and in ErrNoSpace when the disk is full.
func wrapFailure(err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: %w: %w", ErrNotWritable, ErrNoSpace, err)
	}
	return fmt.Errorf("%w: %w", ErrNotWritable, err)
}

// isNoSpace reports a full disk. Pebble's fatal commit error carries only
// the text of the WAL writer's error, hence the second test.
func isNoSpace(err error) bool {
	return vfs.IsNoSpaceError(err) || strings.Contains(err.Error(), "no space left on device")
}

// stateLogger is the state store's Pebble logger. A Fatalf of the commit
// path panics, for State.commit to recover (Pebble would otherwise go on
// as if the commit had succeeded). Any other Fatalf comes from a
// background job (a MANIFEST that cannot be written after a flush, on a
// full disk): it stops the store's writes, to be reopened, instead of the
// process; Pebble returns the error to the job after it.
type stateLogger struct {
	pebbleLogger
	s *State
}

func (l stateLogger) Fatalf(format string, args ...any) {
	f := pebbleFatal(fmt.Sprintf("pebble: "+format, args...))
	if strings.Contains(format, "fatal commit error") {
		panic(f)
	}
	l.s.fail(f)
}

// stateFS wraps the store's file system: a failed write, sync or create
// stops the store's writes (see above).
type stateFS struct {
	vfs.FS
	s *State
}

func (fs stateFS) check(err error) error {
	if err != nil {
		fs.s.ioError(err)
	}
	return err
}

// create is Create or ReuseForWrite of name. A WAL that cannot be created
// is a failed WAL write (walError): Pebble creates one in a commit that
// rotates the memtable, and panics with its locks in disorder when that
// fails.
func (fs stateFS) create(name string, open func() (vfs.File, error)) (vfs.File, error) {
	f, err := open()
	if err != nil {
		if !isWAL(name) {
			return nil, fs.check(err)
		}
		if err = fs.s.walError(err, false, func() error { f, err = open(); return err }); err != nil {
			return nil, err
		}
	}
	return stateFile{f, fs.s, isWAL(name)}, nil
}

func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs stateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.create(name, func() (vfs.File, error) { return fs.FS.Create(name, c) })
}

func (fs stateFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.create(newname, func() (vfs.File, error) { return fs.FS.ReuseForWrite(oldname, newname, c) })
}

func (fs stateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	if err != nil {
		return nil, err // as Open: a missing file is no disk failure
	}
	return stateFile{f, fs.s, isWAL(name)}, nil
}

func (fs stateFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return stateFile{f, fs.s, false}, nil
}

func (fs stateFS) Unwrap() vfs.FS { return fs.FS }

type stateFile struct {
	vfs.File
	s   *State
	wal bool
}

func (f stateFile) check(err error) error { return f.checkOp(err, false) }

func (f stateFile) checkOp(err error, sync bool) error {
	if err != nil {
		if f.wal {
			return f.s.walError(err, sync, nil)
		}
		f.s.ioError(err)
	}
	return err
}

func (f stateFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if err == nil || !f.wal {
		return n, f.check(err)
	}
	// The rest of p is written again while walError waits (a full disk).
	err = f.s.walError(err, false, func() error {
		m, err := f.File.Write(p[n:])
		n += m
		return err
	})
	return n, err
}

func (f stateFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.check(err)
}

func (f stateFile) Sync() error { return f.checkOp(f.File.Sync(), true) }

func (f stateFile) SyncData() error { return f.checkOp(f.File.SyncData(), true) }

func (f stateFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	return full, f.checkOp(err, true)
}

// walErrorWait bounds how long walError holds back an error.
const walErrorWait = time.Second

// walError stops writes on a failed write, sync or create of the WAL, and
// returns the error to Pebble only once no commit is inside Pebble's
// commit pipeline (inPebble): Pebble's WAL writer keeps the error, and a
// commit that meets it panics, holding the pipeline's lock (commitWrite)
// or with its DB.mu released (rotateWAL, which then dies of an unlock of
// an unlocked mutex, which no recover catches). Commits inside finish in
// microseconds, unless one rotates the WAL and waits for this very write:
// for a full disk, retry (not nil) is called meanwhile, every
// walRetryInterval, until it succeeds (the error is then none, and the
// rotating commit goes on) or no commit is inside. A failed sync cannot
// be retried (a second fsync may succeed with the data gone): when a
// commit is still inside after walErrorWait, its error is dropped (nil)
// so that the rotation goes on. No write is acknowledged on that nil: a
// write that finds the store failed after its sync reports the failure
// (synced), and the store cannot reopen, so clear the failure, while the
// write runs.
func (s *State) walError(err error, sync bool, retry func() error) error {
	if s.failed.Load() != nil {
		time.Sleep(failedWriteDelay)
		return err
	}
	s.fail(err) // before inPebble is read: see apply
	deadline := time.Now().Add(walErrorWait)
	for s.inPebble.Load() > 0 {
		if retry != nil && isNoSpace(err) {
			time.Sleep(walRetryInterval)
			if err = retry(); err == nil {
				return nil
			}
			continue
		}
		if time.Now().After(deadline) {
			if sync {
				return nil
			}
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	return err
}

// walRetryInterval is how often walError retries a write on a full disk.
const walRetryInterval = 10 * time.Millisecond

// synced checks, after a write's sync returned nil, that the store did
// not fail meanwhile (see walError): a write is acknowledged only then.
// The caller holds wlock, so no reopen has cleared a failure since the
// write began.
func (s *State) synced() error {
	if p := s.failed.Load(); p != nil {
		s.failedWrites.Add(1)
		return fmt.Errorf("the store failed during the write: %w", wrapFailure(p.err))
	}
	return nil
}

// ioError stops writes on a failed write of the store's files. When they
// had stopped already, it waits failedWriteDelay (see above).
func (s *State) ioError(err error) {
	if s.failed.Load() != nil {
		time.Sleep(failedWriteDelay)
		return
	}
	s.fail(err)
}

// kick asks the recovery loop, if one runs, to try now.
func (s *State) kick() {
	select {
	case s.kickCh <- struct{}{}:
	default:
	}
}

// recoverLoop tries to reopen the failed store until it takes writes
// again or the store is closed.
func (s *State) recoverLoop() {
	defer s.recWG.Done()
	wait := recoverMinInterval
	var waitingSince time.Time
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kickCh:
			if !t.Stop() {
				<-t.C
			}
		}
		err := s.tryReopen()
		if err == nil {
			return
		}
		if errors.Is(err, errWritesInside) {
			if waitingSince.IsZero() {
				waitingSince = time.Now()
			} else if time.Since(waitingSince) > time.Minute {
				s.o.Logger.Error("state store: writes have been stuck in the failed store for a minute; it cannot reopen until they return (a restart brings it back)", "writes", s.writing.Load())
				waitingSince = time.Now()
			}
		} else {
			waitingSince = time.Time{}
		}
		if errors.Is(err, errAbandoned) {
			return
		}
		wait = min(wait*2, s.o.RecoverInterval)
		t.Reset(wait)
	}
}

var (
	errWritesInside = errors.New("writes are still inside the failed store")
	errAbandoned    = errors.New("the failed store did not close")
)

// tryReopen reopens the failed store when its disk takes writes again:
// nil when it did, or when the store has not failed.
func (s *State) tryReopen() error {
	if s.failed.Load() == nil {
		return nil
	}
	s.reopenMu.Lock()
	defer s.reopenMu.Unlock()
	if s.failed.Load() == nil {
		return nil
	}
	if n := s.writing.Load(); n > 0 {
		return errWritesInside
	}
	if err := s.probeDisk(); err != nil {
		return err
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.closed.Load() {
		return fmt.Errorf("%w: closed", ErrNotWritable)
	}
	p := s.failed.Load()
	if p == nil {
		return nil
	}
	if s.db != nil {
		old := s.db
		done := make(chan error, 1)
		go func() { done <- closeDB(old) }()
		select {
		case err := <-done:
			if err != nil {
				s.o.Logger.Warn("state store: the failed store closed with an error", "err", err)
			}
		case <-time.After(closeTimeout):
			// A DB in the middle of Close may panic on a read: reads
			// fail from now on (ErrNotWritable), until a restart.
			s.db = nil
			s.o.Logger.Error("state store: the failed store did not close; it takes no reads or writes until a restart", "timeout", closeTimeout.String())
			return errAbandoned
		}
		s.db = nil
	}
	db, err := pebble.Open(s.dir, s.pebbleOptions())
	if err != nil {
		s.o.Logger.Warn("state store: cannot reopen yet", "err", err)
		return err
	}
	s.db = db
	last := s.seq.Load()
	if err := s.recoverSeq(); err != nil {
		s.o.Logger.Error("state store: reopened, but cannot read its event log", "err", err)
	}
	if s.seq.Load() < last {
		s.seq.Store(last)
	}
	s.recMu.Lock()
	s.failed.Store(nil)
	s.recovering = false
	s.recMu.Unlock()
	s.recoveries.Add(1)
	s.o.Logger.Info("state store: writes resumed after a reopen", "down", time.Since(p.since).Round(time.Millisecond).String(), "err", p.err)
	return nil
}

// closeDB closes a DB, turning Pebble's panic on a DB whose commit
// pipeline failed into an error.
func closeDB(db *pebble.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot close: %v", r)
		}
	}()
	return db.Close()
}

// probeDisk writes, syncs and removes probeFileBytes in the store's
// directory, and checks the disk has room for what a reopen replays.
func (s *State) probeDisk() error {
	fs := s.o.FS
	name := fs.PathJoin(s.dir, probeFile)
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for n := 0; n < probeFileBytes && err == nil; n += len(buf) {
		_, err = f.Write(buf)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := fs.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	// Pebble replays the WAL into a memtable and may flush it at open.
	var logs uint64
	names, err := fs.List(s.dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			if fi, err := fs.Stat(fs.PathJoin(s.dir, n)); err == nil {
				logs += uint64(fi.Size())
			}
		}
	}
	if u, err := fs.GetDiskUsage(s.dir); err == nil && u.AvailBytes < logs+probeFileBytes {
		return fmt.Errorf("%d bytes free, want %d to replay the WAL", u.AvailBytes, logs+probeFileBytes)
	}
	return nil
}

// newBatch returns the open DB and a batch of it, for a writer whose
// batches outlive one call; nil, nil when there is no open DB.
func (s *State) newBatch() (*pebble.DB, *pebble.Batch) {
	if err := s.rlock(); err != nil {
		return nil, nil
	}
	defer s.dbMu.RUnlock()
	return s.db, s.db.NewBatch()
}

// commitOn commits b, a batch of db, when db is still the store's DB: a
// batch begun before a reopen is refused (Pebble takes a batch only on the
// DB that made it).
func (s *State) commitOn(db *pebble.DB, b *pebble.Batch, wo *pebble.WriteOptions) error {
	if err := s.wlock(); err != nil {
		return err
	}
	defer s.wunlock()
	if s.db != db {
		s.failedWrites.Add(1)
		return fmt.Errorf("%w: the store was reopened after the batch began", ErrNotWritable)
	}
	return s.commit(b, wo)
}

// StoreMetrics are Pebble's figures of the state store, for /metrics.
// The counts run since the store opened: a reopen after a failed write
// starts them again (Prometheus' rate and increase take that as a reset).
type StoreMetrics struct {
	// Compactions and Flushes completed; CompactionSeconds their time.
	Compactions, Flushes int64
	CompactionSeconds    float64
	// CompactionsRunning now, and CompactionDebtBytes: what Pebble
	// estimates it must still compact to reach its level shape.
	CompactionsRunning  int64
	CompactionDebtBytes uint64
	// L0Tables and L0Sublevels: a growing L0 slows reads, and Pebble
	// stalls writes past its thresholds.
	L0Tables, L0Sublevels int64
	// DiskBytes the store's files take; MemTableBytes its memtables.
	DiskBytes, MemTableBytes uint64
	// BlockCacheBytes in use, and its hits and misses.
	BlockCacheBytes, BlockCacheHits, BlockCacheMisses int64
}

// StoreMetrics returns the store's Pebble figures; false while it is
// closed or reopening.
func (s *State) StoreMetrics() (StoreMetrics, bool) {
	if !s.dbMu.TryRLock() {
		return StoreMetrics{}, false
	}
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return StoreMetrics{}, false
	}
	m := s.db.Metrics()
	return StoreMetrics{
		Compactions:         m.Compact.Count,
		Flushes:             m.Flush.Count,
		CompactionSeconds:   m.Compact.Duration.Seconds(),
		CompactionsRunning:  m.Compact.NumInProgress,
		CompactionDebtBytes: m.Compact.EstimatedDebt,
		L0Tables:            m.Levels[0].TablesCount,
		L0Sublevels:         int64(m.Levels[0].Sublevels),
		DiskBytes:           m.DiskSpaceUsage(),
		MemTableBytes:       m.MemTable.Size,
		BlockCacheBytes:     m.BlockCache.Size,
		BlockCacheHits:      m.BlockCache.Hits,
		BlockCacheMisses:    m.BlockCache.Misses,
	}, true
}
