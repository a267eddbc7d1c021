package index

// # State store
//
// The state store is a mutable Pebble DB beside the snapshots, with its WAL
// on. It holds what changes per request:
//
//	'h' uvarint(len(user)) user BE(^ts) BE(^h) → history entry: type byte,
//	                            value float32 LE (NaN: none), item id bytes
//	'e' BE(seq)               → logged event (appendStateEvent), for the next build
//	'k' key                   → counter: float64 LE, summed by the merge
//	                            operator "edgerec.add.v1" (no read-modify-write)
//	'm' key                   → metadata (catalog patches, sticky assignments …)
//	'p' user                  → profile: attributes and behaviour counts (profile.go)
//	'r' …                     → retention bookkeeping: epoch, event log
//	                            checkpoints (retention.go)
//	'w'                       → the time of the last writability probe (Writable)
//
// History keys sort newest first within a user (^ts), then by ^h, where h
// is xxhash64 of the event type byte and the item id: the order of events
// in one second depends on the events alone, so edgerec eval, reading the
// same store, blends the same newest entries the server does. The newest N
// events are a short forward scan bounded to the user's prefix. The
// length prefix keeps "u1" and "u10" apart: no user's prefix is a prefix
// of another's. Only events with an item get a history entry; every event
// gets a log entry. The key is the event's content, not its arrival: an
// event sent twice (a client's retry, or a user of a snapshot's build
// whose history the server imported, posted again) is one entry.
//
// seq numbers events, from 1, in the order AppendEvents hands them out
// (concurrent batches may commit out of that order). It is never reused: at
// open it continues from the last 'e' key. Whatever trims the event log
// must therefore keep its last entry. A merged history entry keeps the key
// suffix of the visitor's event it copies, which makes a repeated merge
// rewrite the same keys instead of adding duplicates.
//
// # Durability
//
// Every write is one Pebble batch. AppendEvents commits it with Sync: it
// returns after the WAL is on disk, and Pebble's commit pipeline lets
// concurrent callers share one fsync (group commit). The same batch
// carries the profiles of its users, read and applied under per-user
// stripe locks that are released before the sync is awaited (see
// AppendEventsAndCount), so an acknowledged event is in its profile too
// and survives a crash with it. SetMetaAndCount does
// not wait for the sync (see there). Pebble's fatal corruption handler is
// replaced: a corrupt block fails the read that met it, not the server.
//
// # Failed writes
//
// A commit fails when the WAL cannot be written or synced (a full disk, a
// disk remounted read-only, an I/O error). Pebble does not return that
// error from a synced commit: it calls its logger's Fatalf ("fatal commit
// error", db.go applyInternal), after its commit pipeline is done with the
// batch. Its WAL writer keeps the error, and once a block fills a later
// commit panics inside the pipeline, with a lock held (commitWrite). So
// the state store's writes recover that Fatalf (pebbleFatal, and nothing
// else), keep the first such error, and refuse every write after it with
// ErrNotWritable (and ErrNoSpace when the disk is full) without reaching
// Pebble again: reads keep working, and /readyz says not ready. A
// background loop reopens the store once its disk takes writes again, with
// no restart (state_recover.go, "Recovery from failed writes"). The batch
// of the failed commit may be visible to reads until then, though it was
// not acknowledged. Writable adds a probe, for a store nobody writes to.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/edgerec/edgerec/model"
)

// ErrBadEvent is returned for an event the state store cannot keep: no
// user, or an unknown type.
var ErrBadEvent = errors.New("index: bad event")

// ErrNotWritable is returned by State.Writable, and by every write after
// one failed to commit: the state store takes no writes.
var ErrNotWritable = errors.New("index: state store not writable")

// probeInterval is how often Writable may write its probe.
const probeInterval = time.Second

// Key prefixes of the state store; see the layout above.
const (
	stateHistory = 'h'
	stateEvent   = 'e'
	stateCounter = 'k'
	stateMeta    = 'm'
	stateProbe   = 'w'
)

const (
	// histSuffixLen is what follows the user in a history key: ^ts, ^h.
	histSuffixLen = 16
	// histHeadLen is the fixed start of a history value: type, value.
	histHeadLen = 5
	// maxHistoryLen bounds the entries LoadHistory reads: a history is
	// read per request.
	maxHistoryLen = 10000
)

// DefaultStateCacheBytes is the state store's block cache by default.
const DefaultStateCacheBytes = 32 << 20

// StateMemTableBytes is the most the state store's memtables hold: Pebble's
// default 4 MiB memtable, and the one being flushed beside it.
const StateMemTableBytes = 8 << 20

// StateOptions configure a State. The zero value works.
type StateOptions struct {
	// NoSync acknowledges writes before the WAL is synced: for tests and
	// benchmarks only. By default AppendEvents returns once its events are
	// on disk.
	NoSync bool
	// CacheBytes is the size of Pebble's block cache; default
	// DefaultStateCacheBytes.
	CacheBytes int64
	// FS is the file system the store lives on; default the operating
	// system's. Tests pass vfs.NewCrashableMem() to simulate power loss.
	FS vfs.FS
	// ProfileRetention is how long profiles keep behaviour counts; default
	// DefaultProfileRetention (90 days).
	ProfileRetention time.Duration
	// Now returns the time profiles are compacted at, and Writable's
	// clock; default time.Now.
	Now func() time.Time
	// Logger receives Pebble's errors; default slog.Default().
	Logger *slog.Logger
	// RecoverInterval is the longest wait between two tries to reopen a
	// store whose writes failed (see "Failed writes"); default 5s. A
	// Writable call while the store has failed tries at once.
	RecoverInterval time.Duration
}

func (o *StateOptions) withDefaults() {
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultStateCacheBytes
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.ProfileRetention == 0 {
		o.ProfileRetention = DefaultProfileRetention
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RecoverInterval == 0 {
		o.RecoverInterval = defaultRecoverInterval
	}
}

// Validate reports options that cannot work.
func (o *StateOptions) Validate() error {
	if o.CacheBytes < 0 {
		return fmt.Errorf("cannot use cache size %d: negative", o.CacheBytes)
	}
	if o.RecoverInterval < 0 {
		return fmt.Errorf("cannot wait %v between reopens: negative", o.RecoverInterval)
	}
	if o.ProfileRetention < time.Hour {
		return fmt.Errorf("cannot keep profiles for %v: want an hour or more", o.ProfileRetention)
	}
	return nil
}

// State is the mutable state store: users' recent events, the event log,
// counters and metadata. It is safe for concurrent use. After Close,
// every method returns an error wrapping ErrNotWritable.
type State struct {
	o     StateOptions
	dir   string
	cache *pebble.Cache
	wo    *pebble.WriteOptions
	// dbMu guards db: every call that uses db holds it shared (rlock,
	// wlock), a reopen and Close exclusively. db is nil after Close, and
	// while a reopen has not managed to open the directory again.
	dbMu sync.RWMutex
	db   *pebble.DB
	// writing counts the writes between wlock and wunlock, inPebble the
	// commits inside Pebble's commit pipeline (apply).
	writing, inPebble atomic.Int64
	// seq is the last event number handed out.
	seq atomic.Uint64
	// profMu serialises the read-modify-write of profiles, by user hash.
	profMu          [profileStripes]sync.Mutex
	corruptProfiles atomic.Uint64
	// failed is the first commit or I/O error (see "Failed writes"):
	// while set, every write is refused. recMu guards its setting and
	// clearing, and recovering, true while recoverLoop runs.
	failed                             atomic.Pointer[failure]
	recMu                              sync.Mutex
	recovering                         bool
	reopenMu                           sync.Mutex // one tryReopen at a time
	closed                             atomic.Bool
	stop                               chan struct{}
	kickCh                             chan struct{}
	recWG                              sync.WaitGroup
	failedWrites, failures, recoveries atomic.Uint64
	// probeStart is when Writable's last probe began (Unix ns); probing
	// is set while it runs. probeMu guards both.
	probeMu    sync.Mutex
	probeStart int64
	probing    bool
}

// StateEvent is one event to store. Its byte slices are borrowed for the
// call only: the store copies what it keeps.
type StateEvent struct {
	// User is the user or visitor id; required.
	User []byte
	// Item is the external item id; empty for events about no item
	// (pageview, exposure, conversion …), which get no history entry.
	Item []byte
	Type model.EventType
	// TS is the event time in Unix seconds; callers fill in "now" when the
	// client gave none.
	TS       int64
	Value    float64
	HasValue bool
	// Basket, RecID, Placement and Page are optional attribution and
	// context fields, kept in the event log; a pageview's Page (its path)
	// is counted in the user's profile too.
	Basket, RecID, Placement, Page []byte
	// Category is the item's category and Path a pageview's path (Page
	// reduced), counted in the profile; neither is logged.
	Category, Path []byte
	// Goal names the experiment goal a conversion counts for; logged.
	Goal []byte
	// ID is the client's event_id, which makes a retry idempotent; logged.
	ID []byte
}

// KV is a metadata record to set in the same batch as events: Key and
// Value are borrowed for the call only.
type KV struct {
	Key, Value []byte
}

// Counter is a delta to add to the durable float64 counter named Key.
// Key is borrowed for the call only.
type Counter struct {
	Key   []byte
	Delta float64
}

// OpenState opens the state store in dir, creating it if needed.
func OpenState(dir string, o StateOptions) (*State, error) {
	o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := o.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create state dir %q: %w", dir, err)
	}
	s := &State{
		o: o, dir: dir, cache: pebble.NewCache(o.CacheBytes), wo: pebble.Sync,
		stop: make(chan struct{}), kickCh: make(chan struct{}, 1),
	}
	if o.NoSync {
		s.wo = pebble.NoSync
	}
	db, err := pebble.Open(dir, s.pebbleOptions())
	if err != nil {
		// A failed write during Open may have started the recovery loop.
		_ = s.Close()
		return nil, fmt.Errorf("cannot open state store at %q: %w", dir, err)
	}
	s.db = db
	if err := s.recoverSeq(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("cannot open state store at %q: %w", dir, err)
	}
	return s, nil
}

// pebbleOptions are the options the store opens, and reopens, with.
func (s *State) pebbleOptions() *pebble.Options {
	// As for snapshots (see eventListener): a corrupt block fails the
	// read that met it instead of killing the server. A failed store's
	// flush, retried by Pebble, logs once (when the store fails).
	el := eventListener(s.o.Logger)
	el.BackgroundError = func(err error) {
		if s.failed.Load() == nil {
			s.o.Logger.Error("pebble: background error", "err", err)
		}
	}
	return &pebble.Options{
		FS:            stateFS{s.o.FS, s},
		Cache:         s.cache,
		Logger:        stateLogger{pebbleLogger{s.o.Logger}, s},
		Merger:        &pebble.Merger{Name: "edgerec.add.v1", Merge: newSumMerger},
		EventListener: el,
	}
}

// recoverSeq continues the event numbering after the last logged event.
func (s *State) recoverSeq() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{stateEvent}, UpperBound: []byte{stateEvent + 1}})
	if err != nil {
		return fmt.Errorf("cannot read the event log: %w", err)
	}
	var last uint64
	if it.Last() {
		k := it.Key()
		if len(k) != 9 {
			_ = it.Close()
			return fmt.Errorf("cannot read the event log: key %q: %w", k, ErrCorrupt)
		}
		last = binary.BigEndian.Uint64(k[1:])
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot read the event log: %w", err)
	}
	s.seq.Store(last)
	return nil
}

// Close closes the store. Acknowledged writes are in the WAL already;
// Pebble replays it at the next open. It waits for the calls in flight;
// on a disk that does not answer it may not return (the server abandons
// it after its drain timeout).
func (s *State) Close() error {
	s.recMu.Lock()
	if s.closed.Swap(true) {
		s.recMu.Unlock()
		return nil
	}
	close(s.stop)
	s.recMu.Unlock()
	s.dbMu.Lock()
	var err error
	if s.db != nil {
		err = closeDB(s.db)
		s.db = nil
	}
	s.dbMu.Unlock()
	s.recWG.Wait()
	s.cache.Unref()
	if err != nil {
		return fmt.Errorf("cannot close state store: %w", err)
	}
	return nil
}

// AppendEvents stores evs; it is AppendEventsAndCount(evs, nil).
func (s *State) AppendEvents(evs []StateEvent) error { return s.AppendEventsAndCount(evs, nil) }

// AppendEventsAndCount stores evs (history entries and the event log) and
// adds the counter deltas, all in one batch: all or nothing. It returns
// once the batch is durable, unless StateOptions.NoSync. It checks only
// what the store needs, and returns an error wrapping ErrBadEvent, storing
// nothing, when an event has no user or an unknown type: callers validate
// first. evs and counters are not retained.
func (s *State) AppendEventsAndCount(evs []StateEvent, counters []Counter) error {
	return s.Write(evs, counters, nil)
}

// Write is AppendEventsAndCount that also sets metadata records in the
// same batch: the records an experiment's accounting keeps (who was
// exposed, who converted) are durable with the events they count.
func (s *State) Write(evs []StateEvent, counters []Counter, metas []KV) error {
	for i := range evs {
		if len(evs[i].User) == 0 {
			return fmt.Errorf("%w: event %d has no user", ErrBadEvent, i+1)
		}
		// String names every known type; "unknown" is EventUnknown and
		// anything past the last type.
		if evs[i].Type.String() == "unknown" {
			return fmt.Errorf("%w: event %d has unknown type %d", ErrBadEvent, i+1, evs[i].Type)
		}
	}
	if len(evs) == 0 && len(counters) == 0 && len(metas) == 0 {
		return nil
	}
	if err := s.wlock(); err != nil {
		return err
	}
	defer s.wunlock()
	b := s.db.NewBatch()
	defer b.Close()
	// Batch.Set copies key and value: one scratch buffer serves all.
	var scratch [256]byte
	buf := scratch[:0]
	for i := range metas {
		buf = append(append(buf[:0], stateMeta), metas[i].Key...)
		if err := b.Set(buf, metas[i].Value, nil); err != nil {
			return fmt.Errorf("cannot batch %q: %w", metas[i].Key, err)
		}
	}
	first := s.seq.Add(uint64(len(evs))) - uint64(len(evs)) + 1
	for i := range evs {
		ev := &evs[i]
		seq := first + uint64(i)
		if len(ev.Item) > 0 {
			buf = appendHistKey(buf[:0], ev.User, ev.TS, ev.Type, ev.Item)
			n := len(buf)
			buf = appendHistValue(buf, ev.Type, ev.Value, ev.HasValue, ev.Item)
			if err := b.Set(buf[:n], buf[n:], nil); err != nil {
				return fmt.Errorf("cannot batch event %d: %w", i+1, err)
			}
		}
		buf = appendEventKey(buf[:0], seq)
		buf = appendStateEvent(buf, ev)
		if err := b.Set(buf[:9], buf[9:], nil); err != nil {
			return fmt.Errorf("cannot batch event %d: %w", i+1, err)
		}
	}
	for i := range counters {
		c := &counters[i]
		buf = append(append(buf[:0], stateCounter), c.Key...)
		n := len(buf)
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(c.Delta))
		if err := b.Merge(buf[:n], buf[n:], nil); err != nil {
			return fmt.Errorf("cannot batch counter %q: %w", c.Key, err)
		}
	}
	if len(evs) == 0 {
		if err := s.commit(b, s.wo); err != nil {
			return fmt.Errorf("cannot commit %d counters: %w", len(counters), err)
		}
		return nil
	}
	if err := s.writable(); err != nil {
		return err
	}
	// The users' profiles are read and the batch applied under their
	// stripe locks; the WAL sync is awaited after the locks are released
	// (Pebble's ApplyNoSyncWait: the batch is applied, so visible and
	// ordered, before the sync). Concurrent batches of other users, and
	// of the same users, so keep sharing one fsync. A batch that syncs
	// after one it read from cannot outlive it: the WAL is written in
	// order.
	ps := profileScratches.Get().(*profileScratch)
	defer profileScratches.Put(ps)
	ps.stripes = ps.stripes[:0]
	for i := range evs {
		ps.stripes = append(ps.stripes, stripe(evs[i].User))
	}
	s.lockStripes(ps)
	if err := s.addProfiles(b, ps, evs); err != nil {
		s.unlockProfiles(ps)
		return err
	}
	if !s.wo.Sync {
		err := s.commit(b, s.wo)
		s.unlockProfiles(ps)
		if err != nil {
			return fmt.Errorf("cannot commit %d events and %d counters: %w", len(evs), len(counters), err)
		}
		return nil
	}
	err := s.applyNoSyncWait(b)
	s.unlockProfiles(ps)
	if err != nil {
		return fmt.Errorf("cannot commit %d events and %d counters: %w", len(evs), len(counters), err)
	}
	if err := b.SyncWait(); err != nil {
		s.failedWrites.Add(1)
		return fmt.Errorf("cannot commit %d events and %d counters: %w", len(evs), len(counters), s.fail(err))
	}
	if err := s.synced(); err != nil {
		return fmt.Errorf("cannot commit %d events and %d counters: %w", len(evs), len(counters), err)
	}
	return nil
}

// commit commits b unless the store has failed, and keeps the error of a
// commit that fails (see "Failed writes"). A synced commit waits for the
// sync outside Pebble's commit pipeline (apply). The caller holds wlock.
func (s *State) commit(b *pebble.Batch, wo *pebble.WriteOptions) error {
	if !wo.Sync {
		return s.apply(b, wo, false)
	}
	if err := s.apply(b, wo, true); err != nil {
		return err
	}
	if err := b.SyncWait(); err != nil {
		s.failedWrites.Add(1)
		return s.fail(err)
	}
	return s.synced()
}

// set is commit for one key. The caller holds wlock.
func (s *State) set(key, value []byte, wo *pebble.WriteOptions) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(key, value, nil); err != nil {
		return fmt.Errorf("cannot batch %q: %w", key, err)
	}
	return s.commit(b, wo)
}

// applyNoSyncWait is commit with s.wo, returning before the WAL sync that
// the caller awaits with b.SyncWait.
func (s *State) applyNoSyncWait(b *pebble.Batch) error { return s.apply(b, s.wo, true) }

// apply passes b through Pebble's commit pipeline (ApplyNoSyncWait when
// noSyncWait, else Commit with wo, not synced), counted in inPebble: a
// failed WAL write is held back from Pebble until no commit is inside
// (walError). The count comes before the check of the store's failure,
// and walError marks the failure before it reads the count, so a commit
// either is waited for or sees the failure.
func (s *State) apply(b *pebble.Batch, wo *pebble.WriteOptions, noSyncWait bool) (err error) {
	s.inPebble.Add(1)
	defer s.inPebble.Add(-1)
	if err := s.writable(); err != nil {
		// Failed since wlock's check: refused, and counted as wlock does.
		s.failedWrites.Add(1)
		return err
	}
	defer s.recoverFatal(&err)
	if noSyncWait {
		err = s.db.ApplyNoSyncWait(b, wo)
	} else {
		err = b.Commit(wo)
	}
	if err != nil {
		s.failedWrites.Add(1)
		return s.fail(err)
	}
	return nil
}

// recoverFatal turns the panic of Pebble's Fatalf during a commit into the
// commit's error (see "Failed writes"), and so the panic of Pebble's WAL
// writer, with its error, in a commit that raced with the failure; any
// other panic goes on.
func (s *State) recoverFatal(err *error) {
	if r := recover(); r != nil {
		var cause error
		switch v := r.(type) {
		case pebbleFatal:
			cause = v
		case error:
			if s.failed.Load() == nil {
				panic(r)
			}
			cause = fmt.Errorf("pebble: commit: %w", v)
		default:
			panic(r)
		}
		s.failedWrites.Add(1)
		*err = s.fail(cause)
	}
}

// writable returns the kept error, wrapping ErrNotWritable, or nil.
func (s *State) writable() error {
	if p := s.failed.Load(); p != nil {
		return fmt.Errorf("a write failed: %w", wrapFailure(p.err))
	}
	return nil
}

// fail keeps err, the error of a commit or of the store's disk, when it is
// the first since the store last took writes, starts the recovery loop,
// and returns err wrapping ErrNotWritable (and ErrNoSpace for a full disk).
func (s *State) fail(err error) error {
	s.recMu.Lock()
	p := s.failed.Load()
	if p == nil {
		p = &failure{err: err, since: time.Now()}
		s.failed.Store(p)
		s.failures.Add(1)
		s.o.Logger.Error("state store: a write failed; writes are refused until the disk takes them again", "err", err, "no_space", isNoSpace(err))
		if !s.closed.Load() && !s.recovering {
			s.recovering = true
			s.recWG.Add(1)
			go s.recoverLoop()
		}
	}
	s.recMu.Unlock()
	if !isNoSpace(err) && isNoSpace(p.err) {
		return fmt.Errorf("%w: %w: %w", ErrNotWritable, ErrNoSpace, err)
	}
	return wrapFailure(err)
}

// Writable returns nil when the store takes writes, else an error wrapping
// ErrNotWritable: after a write failed (see "Failed writes"), when a probe
// fails, or when the last probe has not finished after a second (a disk
// that stalls). The probe is a synced write of one small key, done at most
// once a second and one at a time whatever the number of callers, so a
// readiness check per request costs a clock read: it catches a store
// nobody writes to (a disk full or read-only before the next event).
func (s *State) Writable() error {
	if err := s.writable(); err != nil {
		s.kick()
		return err
	}
	now := s.o.Now().UnixNano()
	s.probeMu.Lock()
	last, probing := s.probeStart, s.probing
	due := !probing && (last == 0 || now-last >= int64(probeInterval) || now < last)
	if due {
		s.probeStart, s.probing = now, true
	}
	s.probeMu.Unlock()
	switch {
	case probing && now-last > int64(probeInterval):
		return fmt.Errorf("%w: a probe write has not finished in %v", ErrNotWritable, time.Duration(now-last).Round(time.Millisecond))
	case !due:
		return nil // the last probe, or the one running, answers
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(now))
	err := s.wlock()
	if err == nil {
		err = s.set([]byte{stateProbe}, v[:], pebble.Sync)
		s.wunlock()
	}
	s.probeMu.Lock()
	s.probing = false
	s.probeMu.Unlock()
	return err
}

// appendHistPrefix appends the prefix of user's history keys.
func appendHistPrefix(dst, user []byte) []byte {
	dst = append(dst, stateHistory)
	dst = binary.AppendUvarint(dst, uint64(len(user)))
	return append(dst, user...)
}

func appendHistKey[T string | []byte](dst, user []byte, ts int64, t model.EventType, item T) []byte {
	dst = appendHistPrefix(dst, user)
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(ts))
	return binary.BigEndian.AppendUint64(dst, ^histHash(t, item))
}

// histHash orders the history entries of one second: xxhash64 of the
// event type byte and the item id.
func histHash[T string | []byte](t model.EventType, item T) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write([]byte{byte(t)})
	_, _ = d.WriteString(string(item))
	return d.Sum64()
}

func appendHistValue(dst []byte, t model.EventType, v float64, has bool, item []byte) []byte {
	f := float32(math.NaN())
	if has {
		f = float32(v)
	}
	dst = append(dst, byte(t))
	dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(f))
	return append(dst, item...)
}

func appendEventKey(dst []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, stateEvent), seq)
}

// appendStateEvent appends the log encoding of ev: type byte, varint ts,
// a byte 1 and the float64 LE value or a byte 0, then user, item, basket,
// rec_id, placement and page, each a uvarint length and the bytes, then
// the goal and the event id in the same form, when there are (the goal,
// perhaps empty, when there is an id). New fields may only be added at
// the end.
func appendStateEvent(dst []byte, ev *StateEvent) []byte {
	dst = append(dst, byte(ev.Type))
	dst = binary.AppendVarint(dst, ev.TS)
	if ev.HasValue {
		dst = append(dst, 1)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(ev.Value))
	} else {
		dst = append(dst, 0)
	}
	for _, f := range [...][]byte{ev.User, ev.Item, ev.Basket, ev.RecID, ev.Placement, ev.Page} {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	if len(ev.Goal) > 0 || len(ev.ID) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(ev.Goal)))
		dst = append(dst, ev.Goal...)
	}
	if len(ev.ID) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(ev.ID)))
		dst = append(dst, ev.ID...)
	}
	return dst
}

// decodeStateEvent decodes a logged event. ev's slices alias src, capped
// so that appending to one cannot overwrite the next.
func decodeStateEvent(ev *StateEvent, src []byte) error {
	d := decoder{b: src}
	*ev = StateEvent{Type: model.EventType(d.byte())}
	ev.TS = d.varint()
	switch d.byte() {
	case 0:
	case 1:
		ev.Value, ev.HasValue = math.Float64frombits(d.uint64()), true
	default:
		return ErrCorrupt
	}
	for _, f := range [...]*[]byte{&ev.User, &ev.Item, &ev.Basket, &ev.RecID, &ev.Placement, &ev.Page} {
		n := d.count()
		if d.err {
			break
		}
		if n > 0 {
			*f = d.b[:n:n]
		}
		d.b = d.b[n:]
	}
	// The goal and the id, added later: older entries end before them.
	for _, f := range [...]*[]byte{&ev.Goal, &ev.ID} {
		if d.err || len(d.b) == 0 {
			break
		}
		if n := d.count(); !d.err {
			if n > 0 {
				*f = d.b[:n:n]
			}
			d.b = d.b[n:]
		}
	}
	if d.err || len(d.b) != 0 {
		return ErrCorrupt
	}
	return nil
}

// History is a reusable buffer for one user's newest events. The zero
// value is ready; keep one per worker (or pool it) and LoadHistory does
// not allocate once it has grown to size. It is not safe for concurrent
// use.
type History struct {
	entries []HistoryEntry
	ends    []int // entries[i].Item is buf[ends[i-1]:ends[i]]
	buf     []byte
	lo, hi  []byte // the iterator bounds
	opts    pebble.IterOptions
}

// HistoryEntry is one stored event of a user.
type HistoryEntry struct {
	// Item is the external item id. It aliases the History's buffer: valid
	// until the next LoadHistory or Reset on that History; callers must
	// not modify it.
	Item  []byte
	Type  model.EventType
	TS    int64
	Value float32 // NaN when the event had none
}

// Entries returns the loaded events, newest first (by time, then by
// arrival). The slice and its Items are valid until the next LoadHistory or
// Reset on h.
func (h *History) Entries() []HistoryEntry { return h.entries }

// Reset empties h, keeping its memory.
func (h *History) Reset() {
	h.entries, h.ends, h.buf = h.entries[:0], h.ends[:0], h.buf[:0]
}

// LoadHistory fills h with user's newest events, at most max (up to
// 10,000), newest first. It reads what is committed when it starts. It
// does not allocate once h has grown to size. user is not retained.
func (s *State) LoadHistory(h *History, user []byte, max int) error {
	max = min(max, maxHistoryLen)
	h.Reset()
	h.lo = appendHistPrefix(h.lo[:0], user)
	h.hi = appendPrefixEnd(h.hi[:0], h.lo)
	h.opts = pebble.IterOptions{LowerBound: h.lo, UpperBound: h.hi}
	if err := s.rlock(); err != nil {
		return fmt.Errorf("cannot read the history of %q: %w", user, err)
	}
	defer s.dbMu.RUnlock()
	it, err := s.db.NewIter(&h.opts)
	if err != nil {
		return fmt.Errorf("cannot read the history of %q: %w", user, err)
	}
	for ok := it.First(); ok && len(h.entries) < max; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err == nil && (len(k) != len(h.lo)+histSuffixLen || len(v) < histHeadLen) {
			err = ErrCorrupt
		}
		if err != nil {
			_ = it.Close()
			h.Reset()
			return fmt.Errorf("cannot read the history of %q: %w", user, err)
		}
		h.buf = append(h.buf, v[histHeadLen:]...)
		h.ends = append(h.ends, len(h.buf))
		h.entries = append(h.entries, HistoryEntry{
			Type:  model.EventType(v[0]),
			TS:    int64(^binary.BigEndian.Uint64(k[len(h.lo):])),
			Value: math.Float32frombits(binary.LittleEndian.Uint32(v[1:])),
		})
	}
	if err := it.Close(); err != nil {
		h.Reset()
		return fmt.Errorf("cannot read the history of %q: %w", user, err)
	}
	h.pointItems()
	return nil
}

// pointItems points the entries' Items into buf, which may have moved
// while it grew.
func (h *History) pointItems() {
	start := 0
	for i, end := range h.ends {
		h.entries[i].Item = h.buf[start:end:end]
		start = end
	}
}

// MergeHistory copies visitor's newest history entries (at most max)
// under user, durably in one batch, so an anonymous visitor's behaviour
// follows them after login. The copies keep their keys' times and order,
// so they interleave with the user's own events by time and a repeated
// merge changes nothing. The visitor's entries stay.
// TODO(index): record visitor→user links for identity stitching in the build.
func (s *State) MergeHistory(visitor, user []byte, max int) error {
	if len(visitor) == 0 || len(user) == 0 {
		return fmt.Errorf("%w: a merge needs a visitor and a user", ErrBadEvent)
	}
	if string(visitor) == string(user) {
		return nil
	}
	lo := appendHistPrefix(nil, visitor)
	if err := s.wlock(); err != nil {
		return fmt.Errorf("cannot merge the history of %q into %q: %w", visitor, user, err)
	}
	defer s.wunlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: appendPrefixEnd(nil, lo)})
	if err != nil {
		return fmt.Errorf("cannot read the history of %q: %w", visitor, err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	key := appendHistPrefix(nil, user)
	n := len(key)
	for ok, i := it.First(), 0; ok && i < min(max, maxHistoryLen); ok, i = it.Next(), i+1 {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err == nil && (len(k) != len(lo)+histSuffixLen || len(v) < histHeadLen) {
			err = ErrCorrupt
		}
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("cannot read the history of %q: %w", visitor, err)
		}
		key = append(key[:n], k[len(lo):]...)
		if err := b.Set(key, v, nil); err != nil {
			_ = it.Close()
			return fmt.Errorf("cannot batch the history merge of %q into %q: %w", visitor, user, err)
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot read the history of %q: %w", visitor, err)
	}
	if b.Empty() {
		return nil
	}
	if err := s.commit(b, s.wo); err != nil {
		return fmt.Errorf("cannot commit the history merge of %q into %q: %w", visitor, user, err)
	}
	return nil
}

// ScanEvents calls fn for every logged event with seq > after, in seq
// order, and returns the last seq fn accepted (after when none), the one to
// resume after. ev and its slices are valid only during fn; fn must not
// modify them. An error from fn stops the scan and is returned as is.
//
// Events are numbered when AppendEvents is called but become visible when
// their batch commits, so a scan that runs beside writers may see seq n+1
// before n is committed. An exporter that resumes from the returned seq
// should scan a quiet store, or stay some seqs behind the tail.
func (s *State) ScanEvents(after uint64, fn func(seq uint64, ev *StateEvent) error) (uint64, error) {
	if after == math.MaxUint64 {
		return after, nil
	}
	lo := appendEventKey(make([]byte, 0, 9), after+1)
	if err := s.rlock(); err != nil {
		return after, fmt.Errorf("cannot scan the event log: %w", err)
	}
	defer s.dbMu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{stateEvent + 1}})
	if err != nil {
		return after, fmt.Errorf("cannot scan the event log: %w", err)
	}
	last := after
	var ev StateEvent
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err == nil && len(k) != 9 {
			err = ErrCorrupt
		}
		if err == nil {
			err = decodeStateEvent(&ev, v)
		}
		if err != nil {
			_ = it.Close()
			return last, fmt.Errorf("cannot scan the event log at key %q: %w", k, err)
		}
		seq := binary.BigEndian.Uint64(k[1:])
		if err := fn(seq, &ev); err != nil {
			_ = it.Close()
			return last, err
		}
		last = seq
	}
	if err := it.Close(); err != nil {
		return last, fmt.Errorf("cannot scan the event log: %w", err)
	}
	return last, nil
}

// Counter returns the value of counter key; 0 when never counted.
func (s *State) Counter(key []byte) (float64, error) {
	kp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(kp)
	k := append(append((*kp)[:0], stateCounter), key...)
	*kp = k
	if err := s.rlock(); err != nil {
		return 0, fmt.Errorf("cannot read counter %q: %w", key, err)
	}
	defer s.dbMu.RUnlock()
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read counter %q: %w", key, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("cannot read counter %q: %w", key, ErrCorrupt)
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(v)), nil
}

// ScanCounters calls fn for every counter whose key starts with prefix, in
// key order. key is valid only during fn. An error from fn stops the scan
// and is returned as is.
func (s *State) ScanCounters(prefix []byte, fn func(key []byte, v float64) error) error {
	return s.scan(stateCounter, prefix, func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("cannot read counter %q: %w", k, ErrCorrupt)
		}
		return fn(k, math.Float64frombits(binary.LittleEndian.Uint64(v)))
	})
}

// PutMeta stores a metadata value durably. key and value are not retained.
func (s *State) PutMeta(key, value []byte) error {
	k := append([]byte{stateMeta}, key...)
	if err := s.wlock(); err != nil {
		return fmt.Errorf("cannot store %q: %w", key, err)
	}
	defer s.wunlock()
	if err := s.set(k, value, s.wo); err != nil {
		return fmt.Errorf("cannot store %q: %w", key, err)
	}
	return nil
}

// ScanMeta calls fn for every metadata key starting with prefix, in key
// order; key (without the store's prefix byte) and value are valid only
// during fn. An error from fn stops the scan and is returned as is.
func (s *State) ScanMeta(prefix []byte, fn func(key, value []byte) error) error {
	return s.scan(stateMeta, prefix, fn)
}

// scan calls fn for every key of family p that starts with prefix, with
// the key's family byte cut off.
func (s *State) scan(p byte, prefix []byte, fn func(key, value []byte) error) error {
	lo := append([]byte{p}, prefix...)
	if err := s.rlock(); err != nil {
		return fmt.Errorf("cannot scan %q: %w", lo, err)
	}
	defer s.dbMu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: appendPrefixEnd(nil, lo)})
	if err != nil {
		return fmt.Errorf("cannot scan %q: %w", lo, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("cannot scan %q: %w", lo, err)
		}
		if err := fn(it.Key()[1:], v); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot scan %q: %w", lo, err)
	}
	return nil
}

// appendPrefixEnd appends the smallest key above every key starting with
// p: p with its trailing 0xff bytes dropped and its last byte incremented.
// p must hold a byte below 0xff (every store key starts with a family
// letter).
func appendPrefixEnd(dst, p []byte) []byte {
	n := len(p)
	for n > 0 && p[n-1] == 0xff {
		n--
	}
	if n == 0 {
		panic("BUG: appendPrefixEnd of a prefix with no byte below 0xff")
	}
	dst = append(dst, p[:n]...)
	dst[len(dst)-1]++
	return dst
}

// keyBufs holds key buffers for point reads: Pebble's Get lets its key
// escape, so a stack buffer would be moved to the heap on every call.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// AppendMeta appends the metadata value of key to dst; ok is false when
// there is none. It does not allocate once dst has room.
func (s *State) AppendMeta(dst, key []byte) ([]byte, bool, error) {
	kp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(kp)
	k := append(append((*kp)[:0], stateMeta), key...)
	*kp = k
	if err := s.rlock(); err != nil {
		return dst, false, fmt.Errorf("cannot read %q: %w", key, err)
	}
	defer s.dbMu.RUnlock()
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return dst, false, nil
	}
	if err != nil {
		return dst, false, fmt.Errorf("cannot read %q: %w", key, err)
	}
	dst = append(dst, v...)
	_ = closer.Close()
	return dst, true, nil
}

// SetMetaAndCount stores a metadata value (none when key is nil) and adds
// counter deltas in one batch without waiting for the WAL sync: for
// records a crash may lose the last milliseconds of (experiment
// assignments, exposure counts), where a sync per page view would cost
// more than it saves. Nothing is retained.
func (s *State) SetMetaAndCount(key, value []byte, counters []Counter) error {
	if err := s.wlock(); err != nil {
		return fmt.Errorf("cannot commit %q and %d counters: %w", key, len(counters), err)
	}
	defer s.wunlock()
	b := s.db.NewBatch()
	defer b.Close()
	var kb [128]byte
	if key != nil {
		if err := b.Set(append(append(kb[:0], stateMeta), key...), value, nil); err != nil {
			return fmt.Errorf("cannot batch %q: %w", key, err)
		}
	}
	var vb [8]byte
	for i := range counters {
		c := &counters[i]
		binary.LittleEndian.PutUint64(vb[:], math.Float64bits(c.Delta))
		if err := b.Merge(append(append(kb[:0], stateCounter), c.Key...), vb[:], nil); err != nil {
			return fmt.Errorf("cannot batch counter %q: %w", c.Key, err)
		}
	}
	if b.Empty() {
		return nil
	}
	if err := s.commit(b, pebble.NoSync); err != nil {
		return fmt.Errorf("cannot commit %q and %d counters: %w", key, len(counters), err)
	}
	return nil
}

// sumMerger is the "edgerec.add.v1" merge operator: counter operands are
// float64 LE deltas and merge to their sum, so an increment needs no read.
type sumMerger struct{ sum float64 }

func newSumMerger(_, value []byte) (pebble.ValueMerger, error) {
	m := &sumMerger{}
	return m, m.MergeNewer(value)
}

func (m *sumMerger) MergeNewer(v []byte) error {
	if len(v) != 8 {
		return ErrCorrupt
	}
	m.sum += math.Float64frombits(binary.LittleEndian.Uint64(v))
	return nil
}

func (m *sumMerger) MergeOlder(v []byte) error { return m.MergeNewer(v) }

func (m *sumMerger) Finish(bool) ([]byte, io.Closer, error) {
	return binary.LittleEndian.AppendUint64(make([]byte, 0, 8), math.Float64bits(m.sum)), nil, nil
}
