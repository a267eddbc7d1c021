package index

// # Retention
//
// A Sweeper deletes what has outlived its time to live, in the background,
// in passes (Sweep) of small batches with a pause after each, so that the
// requests it runs beside keep their latency. What it deletes:
//
//   - The event log ('e'), by arrival: each pass records a checkpoint,
//     'r' 'l' BE(unix seconds) → BE(last seq handed out). The log up to the
//     seq of the newest checkpoint older than the TTL goes, as range
//     deletions from the log's start, but never its last entry (the next
//     open continues the numbering from it). Events logged before the
//     first checkpoint count as arrived then.
//   - History entries ('h'), by their event time: a user's entries older
//     than the TTL are the tail of their key range (keys sort newest
//     first), deleted as one range.
//   - Profiles ('p') whose last event is older than the TTL, and the
//     profile merge marks ('m' "pm/…") of visitors without a profile. A
//     profile no event touched (attributes set through the API only) has
//     no time and stays.
//   - Metadata records under the prefixes of the MetaRules the caller
//     gives (the engine's experiment records and event-id markers), each
//     judged by its rule.
//
// The store's retention epoch, 'r' 'e' → varint(unix seconds), is the
// time of the first Sweeper opened on it: a rule gives records written
// before retention existed, which hold no time, that time, so they expire
// one TTL after the upgrade.
//
// Deletions commit without waiting for the WAL sync (a crash loses at
// most a pass's last batches, which the next pass deletes again). Pebble
// keeps deleted data on disk until a compaction rewrites its files: when
// a key family's deletions since its last compaction pass
// SweepOptions.CompactBytes, the pass ends with a manual compaction of
// the span it deleted in, which gives the disk space back.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/edgerec/edgerec/model"
)

// stateRetention is the key family of the Sweeper's bookkeeping.
const stateRetention = 'r'

var (
	retEpochKey  = []byte{stateRetention, 'e'}
	retLogPrefix = []byte{stateRetention, 'l'}
)

// Kinds of the data a Sweeper deletes, as SweepStats names them.
const (
	KindEvents    = "events"
	KindHistories = "histories"
	KindProfiles  = "profiles"
)

// SweepOptions configure a Sweeper. A zero TTL keeps that kind forever.
type SweepOptions struct {
	// Events is how long the event log keeps an event after it arrived.
	Events time.Duration
	// Histories is how long history entries are kept after the event's
	// time.
	Histories time.Duration
	// Profiles is how long a profile is kept after its last event.
	Profiles time.Duration
	// Meta are the rules for metadata records.
	Meta []MetaRule
	// BatchKeys is how many keys a batch examines before it commits and
	// pauses; default 1000.
	BatchKeys int
	// Pause is the rest after each batch; default 10 ms, negative none.
	Pause time.Duration
	// CompactBytes is how many bytes of a key family must have been
	// deleted since its last compaction before a pass compacts it;
	// default 16 MiB, negative: after every pass that deleted any.
	CompactBytes int64
}

func (o *SweepOptions) withDefaults() {
	if o.BatchKeys <= 0 {
		o.BatchKeys = 1000
	}
	if o.Pause == 0 {
		o.Pause = 10 * time.Millisecond
	}
	if o.CompactBytes == 0 {
		o.CompactBytes = 16 << 20
	}
}

// MetaRule expires the metadata records whose keys start with Prefix.
type MetaRule struct {
	Prefix string
	// Expired returns the kind a record is deleted as, or "" to keep it.
	// key is the record's key (as PutMeta and ScanMeta name it), now the
	// sweep's time and epoch the store's retention epoch, both Unix
	// seconds. key and value are valid only during the call. It runs in
	// the Sweeper's goroutine and may read the store.
	Expired func(key, value []byte, now, epoch int64) string
	// Lock, when set, locks what guards the records of keys (the writers
	// that renew them) and returns the unlock: the Sweeper re-reads and
	// judges again records it found expired under it, and deletes them
	// before unlocking, so a record renewed meanwhile stays. keys are
	// valid only during the call.
	Lock func(keys [][]byte) (unlock func())
}

// SweepKind counts what a Sweeper deleted of one kind.
type SweepKind struct {
	Rows, Bytes uint64
}

// SweepStats are a Sweeper's counts since it was made.
type SweepStats struct {
	// Kinds holds the deletions by kind.
	Kinds map[string]SweepKind
	// Passes is the number of passes that ended; Errors of those that
	// failed.
	Passes, Errors uint64
	// LastStart and LastDuration time the last pass that ended.
	LastStart    time.Time
	LastDuration time.Duration
}

// Sweeper deletes expired data from a State; see "Retention". Its
// methods are safe for concurrent use; passes run one at a time.
type Sweeper struct {
	s     *State
	o     SweepOptions
	epoch int64

	mu sync.Mutex // held by a pass
	// locked: the pass holds the store's wlock, which it does from its
	// start to its end but for its pauses, so that a reopen (see
	// state_recover.go) never closes the DB under it and waits for a
	// pause at most.
	locked bool
	// span is the key range deleted in per family since its last
	// compaction, and the bytes.
	span map[byte]*sweptSpan

	statsMu sync.Mutex
	stats   SweepStats
}

type sweptSpan struct {
	lo, hi []byte
	bytes  int64
}

// NewSweeper returns a Sweeper of s, recording the store's retention
// epoch if it has none.
func (s *State) NewSweeper(o SweepOptions) (*Sweeper, error) {
	o.withDefaults()
	w := &Sweeper{s: s, o: o, span: map[byte]*sweptSpan{}, stats: SweepStats{Kinds: map[string]SweepKind{}}}
	if err := s.wlock(); err != nil {
		return nil, fmt.Errorf("cannot read the retention epoch: %w", err)
	}
	defer s.wunlock()
	v, closer, err := s.db.Get(retEpochKey)
	switch {
	case err == nil:
		epoch, n := binary.Varint(v)
		_ = closer.Close()
		if n <= 0 {
			return nil, fmt.Errorf("cannot read the retention epoch: %w", ErrCorrupt)
		}
		w.epoch = epoch
	case errors.Is(err, pebble.ErrNotFound):
		w.epoch = s.o.Now().Unix()
		if err := s.set(retEpochKey, binary.AppendVarint(nil, w.epoch), s.wo); err != nil {
			return nil, fmt.Errorf("cannot record the retention epoch: %w", err)
		}
	default:
		return nil, fmt.Errorf("cannot read the retention epoch: %w", err)
	}
	return w, nil
}

// Epoch returns the store's retention epoch in Unix seconds.
func (w *Sweeper) Epoch() int64 { return w.epoch }

// Stats returns the Sweeper's counts.
func (w *Sweeper) Stats() SweepStats {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	st := w.stats
	st.Kinds = make(map[string]SweepKind, len(w.stats.Kinds))
	for k, v := range w.stats.Kinds {
		st.Kinds[k] = v
	}
	return st
}

// Run sweeps every interval until ctx is done, logging failed passes.
func (w *Sweeper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := w.Sweep(ctx); err != nil && ctx.Err() == nil {
			w.s.o.Logger.Error("retention sweep failed", "err", err)
		}
	}
}

// Sweep runs one pass over everything with a TTL, at the store's clock,
// and compacts what it deleted enough of.
func (w *Sweeper) Sweep(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	start := time.Now()
	err := w.sweep(ctx)
	w.statsMu.Lock()
	w.stats.Passes++
	if err != nil {
		w.stats.Errors++
	}
	w.stats.LastStart, w.stats.LastDuration = start, time.Since(start)
	w.statsMu.Unlock()
	return err
}

func (w *Sweeper) sweep(ctx context.Context) error {
	if err := w.s.wlock(); err != nil {
		return err
	}
	w.locked = true
	defer func() {
		if w.locked {
			w.s.wunlock()
			w.locked = false
		}
	}()
	now := w.s.o.Now().Unix()
	if w.o.Events > 0 {
		if err := w.sweepEvents(ctx, now); err != nil {
			return err
		}
	}
	if w.o.Histories > 0 {
		if err := w.sweepHistories(ctx, now-int64(w.o.Histories/time.Second)); err != nil {
			return err
		}
	}
	if w.o.Profiles > 0 {
		if err := w.sweepProfiles(ctx, now-int64(w.o.Profiles/time.Second)); err != nil {
			return err
		}
		if err := w.sweepMeta(ctx, now, MetaRule{Prefix: "pm/", Expired: w.mergeMarkExpired}); err != nil {
			return err
		}
	}
	for _, r := range w.o.Meta {
		if err := w.sweepMeta(ctx, now, r); err != nil {
			return err
		}
	}
	return w.compact(ctx)
}

// pause rests between batches; false when ctx is done.
func (w *Sweeper) pause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.o.Pause < 0 {
		return nil
	}
	if w.locked {
		w.s.wunlock()
		w.locked = false
	}
	t := time.NewTimer(w.o.Pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if err := w.s.wlock(); err != nil {
		return err
	}
	w.locked = true
	return nil
}

// deleted records what a committed batch deleted: rows of kind, bytes of
// keys and values, in [lo, hi) of family fam.
func (w *Sweeper) deleted(kind string, rows, n int, lo, hi []byte) {
	if rows == 0 {
		return
	}
	w.statsMu.Lock()
	k := w.stats.Kinds[kind]
	k.Rows += uint64(rows)
	k.Bytes += uint64(n)
	w.stats.Kinds[kind] = k
	w.statsMu.Unlock()
	sp := w.span[lo[0]]
	if sp == nil {
		sp = &sweptSpan{}
		w.span[lo[0]] = sp
	}
	if sp.lo == nil || bytes.Compare(lo, sp.lo) < 0 {
		sp.lo = append(sp.lo[:0], lo...)
	}
	if sp.hi == nil || bytes.Compare(hi, sp.hi) > 0 {
		sp.hi = append(sp.hi[:0], hi...)
	}
	sp.bytes += int64(n)
}

// compact compacts the spans of the families that crossed CompactBytes.
func (w *Sweeper) compact(ctx context.Context) error {
	if err := w.s.writable(); err != nil {
		return err
	}
	for fam, sp := range w.span {
		if sp.bytes == 0 || (w.o.CompactBytes > 0 && sp.bytes < w.o.CompactBytes) {
			continue
		}
		if err := w.s.db.Compact(ctx, sp.lo, sp.hi, false); err != nil {
			return fmt.Errorf("cannot compact the swept keys of family %q: %w", fam, err)
		}
		delete(w.span, fam)
	}
	return nil
}

// commit commits a batch of deletions without waiting for the sync. The
// pass holds wlock.
func (w *Sweeper) commit(b *pebble.Batch) error {
	if b.Empty() {
		return nil
	}
	return w.s.commit(b, pebble.NoSync)
}

// deleteRange deletes [lo, hi) through the store's commit (see "Failed
// writes" in state.go).
func (w *Sweeper) deleteRange(lo, hi []byte) error {
	b := w.s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	return w.commit(b)
}

// sweepEvents records this pass's checkpoint and deletes the log up to
// the newest checkpoint older than the TTL, but its last entry.
func (w *Sweeper) sweepEvents(ctx context.Context, now int64) error {
	ck := binary.BigEndian.AppendUint64(append([]byte(nil), retLogPrefix...), uint64(now))
	if err := w.s.set(ck, binary.BigEndian.AppendUint64(nil, w.s.seq.Load()), pebble.NoSync); err != nil {
		return fmt.Errorf("cannot record an event log checkpoint: %w", err)
	}
	cutoff := now - int64(w.o.Events/time.Second)
	hi := binary.BigEndian.AppendUint64(append([]byte(nil), retLogPrefix...), uint64(cutoff)+1)
	cut, cutKey, ok, err := w.lastValue(retLogPrefix, hi)
	if err != nil || !ok {
		return err
	}
	if len(cut) != 8 || len(cutKey) != len(retLogPrefix)+8 {
		return fmt.Errorf("cannot read the event log checkpoint %q: %w", cutKey, ErrCorrupt)
	}
	_, lastKey, ok, err := w.lastValue([]byte{stateEvent}, []byte{stateEvent + 1})
	if err != nil || !ok {
		return err
	}
	// Up to the checkpoint's seq, but never the last entry.
	end := appendEventKey(nil, binary.BigEndian.Uint64(cut)+1)
	if bytes.Compare(end, lastKey) > 0 {
		end = append(end[:0], lastKey...)
	}
	lo := []byte{stateEvent}
	for bytes.Compare(lo, end) < 0 {
		it, err := w.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: end})
		if err != nil {
			return fmt.Errorf("cannot read the event log: %w", err)
		}
		rows, n := 0, 0
		var next []byte
		for ok := it.First(); ok; ok = it.Next() {
			if rows == w.o.BatchKeys {
				next = append(next, it.Key()...)
				break
			}
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return fmt.Errorf("cannot read the event log: %w", err)
			}
			rows++
			n += len(it.Key()) + len(v)
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("cannot read the event log: %w", err)
		}
		if next == nil {
			next = end
		}
		if rows > 0 {
			if err := w.deleteRange(lo, next); err != nil {
				return fmt.Errorf("cannot delete events: %w", err)
			}
			w.deleted(KindEvents, rows, n, lo, next)
		}
		lo = next
		if err := w.pause(ctx); err != nil {
			return err
		}
	}
	// The checkpoints before the one used go too.
	if bytes.Compare(retLogPrefix, cutKey) < 0 {
		if err := w.deleteRange(retLogPrefix, cutKey); err != nil {
			return fmt.Errorf("cannot delete event log checkpoints: %w", err)
		}
	}
	return nil
}

// lastValue returns a copy of the value and key of the last key in [lo, hi).
func (w *Sweeper) lastValue(lo, hi []byte) (v, k []byte, ok bool, err error) {
	it, err := w.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, nil, false, fmt.Errorf("cannot read %q: %w", lo, err)
	}
	if it.Last() {
		var val []byte
		if val, err = it.ValueAndErr(); err == nil {
			v, k, ok = slices.Clone(val), slices.Clone(it.Key()), true
		}
	}
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("cannot read %q: %w", lo, err)
	}
	return v, k, ok, nil
}

// sweepHistories deletes every user's history entries with a time before
// cutoff: the tail of the user's key range.
func (w *Sweeper) sweepHistories(ctx context.Context, cutoff int64) error {
	cursor := []byte{stateHistory}
	var prefix, cut, first, end []byte
	for cursor != nil {
		it, err := w.s.db.NewIter(&pebble.IterOptions{LowerBound: cursor, UpperBound: []byte{stateHistory + 1}})
		if err != nil {
			return fmt.Errorf("cannot read histories: %w", err)
		}
		b := w.s.db.NewBatch()
		examined, rows, n := 0, 0, 0
		var lo, hi []byte
		ok := it.First()
		for ok && examined < w.o.BatchKeys {
			k := it.Key()
			l, m := binary.Uvarint(k[1:])
			plen := 1 + m + int(l)
			if m <= 0 || len(k) != plen+histSuffixLen {
				// Not a history key: step over it.
				examined++
				ok = it.Next()
				continue
			}
			prefix = append(prefix[:0], k[:plen]...)
			cut = binary.BigEndian.AppendUint64(append(cut[:0], prefix...), ^uint64(cutoff-1))
			if bytes.Compare(k, cut) < 0 {
				ok = it.SeekGE(cut)
			}
			urows := 0
			for ; ok && bytes.HasPrefix(it.Key(), prefix); ok = it.Next() {
				if urows == 0 {
					first = append(first[:0], it.Key()...)
				}
				v, err := it.ValueAndErr()
				if err != nil {
					_ = it.Close()
					b.Close()
					return fmt.Errorf("cannot read histories: %w", err)
				}
				urows++
				n += len(it.Key()) + len(v)
			}
			examined += 1 + urows
			if urows == 0 {
				continue
			}
			end = appendPrefixEnd(end[:0], prefix)
			if urows == 1 {
				err = b.Delete(first, nil)
			} else {
				err = b.DeleteRange(first, end, nil)
			}
			if err != nil {
				_ = it.Close()
				b.Close()
				return fmt.Errorf("cannot batch the deletion of history entries: %w", err)
			}
			if lo == nil {
				lo = slices.Clone(first)
			}
			hi = append(hi[:0], end...)
			rows += urows
		}
		cursor = nil
		if ok {
			cursor = slices.Clone(it.Key())
		}
		err = it.Close()
		if err == nil {
			err = w.commit(b)
		}
		b.Close()
		if err != nil {
			return fmt.Errorf("cannot delete history entries: %w", err)
		}
		w.deleted(KindHistories, rows, n, lo, hi)
		if err := w.pause(ctx); err != nil {
			return err
		}
	}
	return nil
}

// profileLastSeen returns the time of a profile's last event from its
// encoding (model.Profile.Append), 0 when it has none or is unreadable.
func profileLastSeen(v []byte) int64 {
	d := decoder{b: v}
	d.byte() // version; Decode judges it
	for n := d.count(); n > 0 && !d.err; n-- {
		d.b = d.b[d.count():] // key
		if model.AttrType(d.byte()) == model.AttrString {
			d.b = d.b[d.count():]
		} else {
			d.uint64()
		}
	}
	d.varint() // first seen
	last := d.varint()
	if d.err {
		return 0
	}
	return last
}

// sweepProfiles deletes the profiles whose last event is before cutoff.
func (w *Sweeper) sweepProfiles(ctx context.Context, cutoff int64) error {
	expired := func(_, v []byte) bool {
		t := profileLastSeen(v)
		return t != 0 && t < cutoff
	}
	lock := func(keys [][]byte) func() {
		ps := &profileScratch{}
		for _, k := range keys {
			ps.stripes = append(ps.stripes, stripe(k[1:]))
		}
		w.s.lockStripes(ps)
		return func() { w.s.unlockProfiles(ps) }
	}
	return w.sweepKeys(ctx, []byte{stateProfile}, KindProfiles, expired, lock)
}

// mergeMarkExpired expires the merge mark of a visitor who has no
// profile any more (swept, or never had one): a later merge finds
// nothing to take twice.
func (w *Sweeper) mergeMarkExpired(key, _ []byte, _, _ int64) string {
	rest := key[len("pm/"):]
	l, n := binary.Uvarint(rest)
	if n <= 0 || uint64(len(rest)-n) < l {
		return ""
	}
	if ok, err := w.s.HasProfile(rest[n : n+int(l)]); err != nil || ok {
		return ""
	}
	return KindProfiles
}

// sweepMeta deletes the records of rule r that it finds expired.
func (w *Sweeper) sweepMeta(ctx context.Context, now int64, r MetaRule) error {
	var kind string
	expired := func(k, v []byte) bool {
		kind = r.Expired(k[1:], v, now, w.epoch)
		return kind != ""
	}
	var lock func([][]byte) func()
	if r.Lock != nil {
		lock = func(keys [][]byte) func() {
			mk := make([][]byte, len(keys))
			for i, k := range keys {
				mk[i] = k[1:]
			}
			return r.Lock(mk)
		}
	}
	lo := append([]byte{stateMeta}, r.Prefix...)
	return w.sweepKeysKinds(ctx, lo, expired, func() string { return kind }, lock)
}

// sweepKeys deletes the keys under prefix that expired says have expired,
// as kind.
func (w *Sweeper) sweepKeys(ctx context.Context, prefix []byte, kind string, expired func(k, v []byte) bool, lock func([][]byte) func()) error {
	return w.sweepKeysKinds(ctx, prefix, expired, func() string { return kind }, lock)
}

// candidate is a key found expired, to judge again under its lock.
type candidate struct {
	key  []byte
	kind string
	n    int // bytes of key and value
}

// lockChunk bounds the keys judged under one hold of their locks: the
// writers they guard wait meanwhile.
const lockChunk = 8

// sweepKeysKinds deletes the keys under prefix that expired says have
// expired, as the kind kind returns after each call, in batches: a scan
// finds candidates, then each chunk of them is judged again under its
// locks and deleted before they are released.
func (w *Sweeper) sweepKeysKinds(ctx context.Context, prefix []byte, expired func(k, v []byte) bool, kind func() string, lock func([][]byte) func()) error {
	hi := appendPrefixEnd(nil, prefix)
	cursor := slices.Clone(prefix)
	var cands []candidate
	for cursor != nil {
		it, err := w.s.db.NewIter(&pebble.IterOptions{LowerBound: cursor, UpperBound: hi})
		if err != nil {
			return fmt.Errorf("cannot read %q: %w", prefix, err)
		}
		cands = cands[:0]
		examined := 0
		ok := it.First()
		for ; ok && examined < w.o.BatchKeys; ok = it.Next() {
			examined++
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return fmt.Errorf("cannot read %q: %w", it.Key(), err)
			}
			if expired(it.Key(), v) {
				cands = append(cands, candidate{key: slices.Clone(it.Key()), kind: kind(), n: len(it.Key()) + len(v)})
			}
		}
		cursor = nil
		if ok {
			cursor = slices.Clone(it.Key())
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("cannot read %q: %w", prefix, err)
		}
		for len(cands) > 0 {
			n := len(cands)
			if lock != nil {
				n = min(n, lockChunk)
			}
			if err := w.deleteCandidates(cands[:n], expired, kind, lock); err != nil {
				return err
			}
			cands = cands[n:]
		}
		if err := w.pause(ctx); err != nil {
			return err
		}
	}
	return nil
}

// deleteCandidates deletes cands, judged again under their locks when
// there are.
func (w *Sweeper) deleteCandidates(cands []candidate, expired func(k, v []byte) bool, kind func() string, lock func([][]byte) func()) error {
	b := w.s.db.NewBatch()
	defer b.Close()
	if lock != nil {
		keys := make([][]byte, len(cands))
		for i := range cands {
			keys[i] = cands[i].key
		}
		defer lock(keys)()
	}
	dels := cands[:0]
	for _, c := range cands {
		if lock != nil {
			v, closer, err := w.s.db.Get(c.key)
			if errors.Is(err, pebble.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("cannot read %q: %w", c.key, err)
			}
			still := expired(c.key, v)
			c.n = len(c.key) + len(v)
			_ = closer.Close()
			if !still {
				continue
			}
			c.kind = kind()
		}
		if err := b.Delete(c.key, nil); err != nil {
			return fmt.Errorf("cannot batch the deletion of %q: %w", c.key, err)
		}
		dels = append(dels, c)
	}
	if err := w.commit(b); err != nil {
		return fmt.Errorf("cannot delete expired records: %w", err)
	}
	for _, c := range dels {
		w.deleted(c.kind, 1, c.n, c.key, append(slices.Clip(c.key), 0))
	}
	return nil
}

// HasProfile reports whether user has a stored profile.
func (s *State) HasProfile(user []byte) (bool, error) {
	kp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(kp)
	k := profileKey((*kp)[:0], user)
	*kp = k
	if err := s.rlock(); err != nil {
		return false, err
	}
	defer s.dbMu.RUnlock()
	_, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read the profile of %q: %w", user, err)
	}
	_ = closer.Close()
	return true, nil
}
