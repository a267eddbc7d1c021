package index

// # State store
//
// The state store is a mutable Pebble DB beside the snapshots. It holds
// what changes per request:
//
//	'h' uvarint(len(user)) user BE(^ts) BE(seq) → history entry: type byte,
//	                              value float32 LE (NaN: none), item id
//	'e' BE(seq)                 → logged event (appendStateEvent), for the next build
//	'k' key                     → float64 LE counter, summed by the merge operator
//	'm' key                     → metadata (catalog patches …)
//	'S'                         → highest seq used by history merges
//
// History keys sort newest first within a user (^ts), so the newest N
// events are a short forward scan. The length prefix keeps "u1" and "u10"
// apart. seq is unique per process lifetime and recovered at open from the
// last 'e' key and 'S'.
//
// Writes go through one Pebble batch per call, committed with Sync: the call
// returns after the WAL is on disk, and Pebble's commit pipeline lets
// concurrent callers share one fsync (group commit).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/edgerec/edgerec/model"
)

// ErrBadEvent is returned for an event the state store cannot keep.
var ErrBadEvent = errors.New("index: bad event")

// StateOptions configure a State. The zero value works.
type StateOptions struct {
	// HistoryLen is how many of a user's newest events LoadHistory returns;
	// default 50.
	HistoryLen int
	// NoSync acknowledges writes before the WAL is synced: for tests and
	// benchmarks only.
	NoSync bool
	// CacheBytes is Pebble's block cache; default 32 MiB.
	CacheBytes int64
}

func (o *StateOptions) withDefaults() {
	if o.HistoryLen <= 0 {
		o.HistoryLen = 50
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = 32 << 20
	}
}

// State is the mutable state store. It is safe for concurrent use.
type State struct {
	o       StateOptions
	db      *pebble.DB
	cache   *pebble.Cache
	seq     atomic.Uint64
	mergeMu sync.Mutex
	wo      *pebble.WriteOptions
}

// StateEvent is one event to store. Its byte slices are borrowed for the
// call only.
type StateEvent struct {
	User, Item                     []byte
	Type                           model.EventType
	TS                             int64
	Value                          float64
	HasValue                       bool
	Basket, RecID, Placement, Page []byte
}

// Counter is a delta to add to a durable counter.
type Counter struct {
	Key   []byte
	Delta float64
}

// OpenState opens (creating if needed) the state store in dir.
func OpenState(dir string, o StateOptions) (*State, error) {
	o.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create state dir %q: %w", dir, err)
	}
	s := &State{o: o, cache: pebble.NewCache(o.CacheBytes), wo: pebble.Sync}
	if o.NoSync {
		s.wo = pebble.NoSync
	}
	opts := &pebble.Options{
		Cache:  s.cache,
		Logger: quietLogger{},
		Merger: &pebble.Merger{Name: "edgerec.add.v1", Merge: newSumMerger},
		EventListener: &pebble.EventListener{
			DataCorruption: func(pebble.DataCorruptionInfo) {},
		},
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		s.cache.Unref()
		return nil, fmt.Errorf("cannot open state store at %q: %w", dir, err)
	}
	s.db = db
	if err := s.recoverSeq(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *State) recoverSeq() error {
	var last uint64
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'e'}, UpperBound: []byte{'f'}})
	if err != nil {
		return fmt.Errorf("cannot read the event log: %w", err)
	}
	if it.Last() && len(it.Key()) == 9 {
		last = binary.BigEndian.Uint64(it.Key()[1:])
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot read the event log: %w", err)
	}
	v, closer, err := s.db.Get([]byte{'S'})
	if err == nil {
		if len(v) == 8 {
			last = max(last, binary.BigEndian.Uint64(v))
		}
		_ = closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("cannot read the sequence: %w", err)
	}
	s.seq.Store(last)
	return nil
}

// Close flushes and closes the store.
func (s *State) Close() error {
	err := s.db.Close()
	s.cache.Unref()
	return err
}

// AppendEvents stores evs; see AppendEventsAndCount.
func (s *State) AppendEvents(evs []StateEvent) error { return s.AppendEventsAndCount(evs, nil) }

// AppendEventsAndCount stores evs (history and event log) and adds the
// counter deltas, in one batch, and returns once it is durable.
func (s *State) AppendEventsAndCount(evs []StateEvent, counters []Counter) error {
	for i := range evs {
		if len(evs[i].User) == 0 || evs[i].Type == model.EventUnknown {
			return fmt.Errorf("%w: event %d has no user or type", ErrBadEvent, i+1)
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	first := s.seq.Add(uint64(len(evs))) - uint64(len(evs))
	var key, val []byte
	for i := range evs {
		ev := &evs[i]
		seq := first + uint64(i) + 1
		key = appendHistKey(key[:0], ev.User, ev.TS, seq)
		val = appendHistValue(val[:0], ev.Type, ev.Value, ev.HasValue, ev.Item)
		if err := b.Set(key, val, nil); err != nil {
			return err
		}
		key = append(key[:0], 'e')
		key = binary.BigEndian.AppendUint64(key, seq)
		val = appendStateEvent(val[:0], ev)
		if err := b.Set(key, val, nil); err != nil {
			return err
		}
	}
	for _, c := range counters {
		key = append(append(key[:0], 'k'), c.Key...)
		val = binary.LittleEndian.AppendUint64(val[:0], math.Float64bits(c.Delta))
		if err := b.Merge(key, val, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(s.wo); err != nil {
		return fmt.Errorf("cannot commit events: %w", err)
	}
	return nil
}

func appendHistPrefix(dst, user []byte) []byte {
	dst = append(dst, 'h')
	dst = binary.AppendUvarint(dst, uint64(len(user)))
	return append(dst, user...)
}

func appendHistKey(dst, user []byte, ts int64, seq uint64) []byte {
	dst = appendHistPrefix(dst, user)
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(ts))
	return binary.BigEndian.AppendUint64(dst, seq)
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

// appendStateEvent encodes a logged event: type, ts, value flag and value,
// then the byte fields, each uvarint-length-prefixed.
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
	return dst
}

func decodeStateEvent(ev *StateEvent, src []byte) error {
	d := decoder{b: src}
	*ev = StateEvent{Type: model.EventType(d.byte())}
	ev.TS = d.varint()
	if d.byte() == 1 {
		ev.Value, ev.HasValue = math.Float64frombits(d.uint64()), true
	}
	for _, f := range [...]*[]byte{&ev.User, &ev.Item, &ev.Basket, &ev.RecID, &ev.Placement, &ev.Page} {
		n := d.count()
		if d.err {
			break
		}
		*f = d.b[:n:n]
		d.b = d.b[n:]
	}
	if d.err || len(d.b) != 0 {
		return ErrCorrupt
	}
	return nil
}

// histKeyEnd follows a history prefix to bound it: longer than the 16
// bytes of ^ts and seq, all 0xff.
var histKeyEnd = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// History is a reusable buffer of a user's newest events.
type History struct {
	entries []HistoryEntry
	offs    [][2]int
	buf     []byte
	lo, hi  []byte
	opts    pebble.IterOptions
}

// HistoryEntry is one stored event, newest first. Item aliases the
// History's buffer: valid until its next load.
type HistoryEntry struct {
	Item  []byte
	Type  model.EventType
	TS    int64
	Value float32 // NaN when none
}

// Entries returns the loaded events, newest first; valid until the next
// LoadHistory on h.
func (h *History) Entries() []HistoryEntry { return h.entries }

// Reset empties h, keeping its memory.
func (h *History) Reset() {
	h.entries, h.offs, h.buf = h.entries[:0], h.offs[:0], h.buf[:0]
}

// LoadHistory fills h with user's newest events, at most HistoryLen,
// newest first. It does not allocate once h has grown to size.
func (s *State) LoadHistory(h *History, user []byte) error {
	h.Reset()
	h.lo = appendHistPrefix(h.lo[:0], user)
	h.hi = append(h.hi[:0], h.lo...)
	h.hi = append(h.hi, histKeyEnd...) // past every ^ts and seq
	h.opts = pebble.IterOptions{LowerBound: h.lo, UpperBound: h.hi}
	it, err := s.db.NewIter(&h.opts)
	if err != nil {
		return fmt.Errorf("cannot read history: %w", err)
	}
	for ok := it.First(); ok && len(h.offs) < s.o.HistoryLen; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("cannot read history: %w", err)
		}
		if len(k) != len(h.lo)+16 || len(v) < 5 {
			continue
		}
		start := len(h.buf)
		h.buf = append(h.buf, v[5:]...)
		h.offs = append(h.offs, [2]int{start, len(h.buf)})
		h.entries = append(h.entries, HistoryEntry{
			Type:  model.EventType(v[0]),
			TS:    int64(^binary.BigEndian.Uint64(k[len(h.lo):])),
			Value: math.Float32frombits(binary.LittleEndian.Uint32(v[1:])),
		})
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot read history: %w", err)
	}
	for i, o := range h.offs {
		h.entries[i].Item = h.buf[o[0]:o[1]:o[1]]
	}
	return nil
}

// MergeHistory copies visitor's newest events under user, so an anonymous
// visitor's behaviour follows them after login. Durable on return.
func (s *State) MergeHistory(visitor, user []byte, now int64) error {
	if len(visitor) == 0 || len(user) == 0 {
		return fmt.Errorf("%w: merge needs a visitor and a user", ErrBadEvent)
	}
	var h History
	if err := s.LoadHistory(&h, visitor); err != nil {
		return err
	}
	if len(h.entries) == 0 {
		return nil
	}
	s.mergeMu.Lock()
	defer s.mergeMu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	var key, val []byte
	var seq uint64
	for _, e := range h.entries {
		seq = s.seq.Add(1)
		key = appendHistKey(key[:0], user, e.TS, seq)
		val = append(val[:0], byte(e.Type))
		val = binary.LittleEndian.AppendUint32(val, math.Float32bits(e.Value))
		val = append(val, e.Item...)
		if err := b.Set(key, val, nil); err != nil {
			return err
		}
	}
	if err := b.Set([]byte{'S'}, binary.BigEndian.AppendUint64(nil, seq), nil); err != nil {
		return err
	}
	if err := b.Commit(s.wo); err != nil {
		return fmt.Errorf("cannot commit history merge: %w", err)
	}
	return nil
}

// ScanEvents calls fn for every logged event with seq > after, in order;
// ev's slices are valid only during fn. It returns the last seq seen.
func (s *State) ScanEvents(after uint64, fn func(seq uint64, ev *StateEvent) error) (uint64, error) {
	lo := binary.BigEndian.AppendUint64([]byte{'e'}, after+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{'f'}})
	if err != nil {
		return after, err
	}
	defer it.Close()
	last := after
	var ev StateEvent
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return last, err
		}
		if err := decodeStateEvent(&ev, v); err != nil {
			return last, fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(it.Key()[1:]), err)
		}
		last = binary.BigEndian.Uint64(it.Key()[1:])
		if err := fn(last, &ev); err != nil {
			return last, err
		}
	}
	return last, it.Error()
}

// Counter returns the value of a counter; 0 when never counted.
func (s *State) Counter(key []byte) (float64, error) {
	k := append([]byte{'k'}, key...)
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read counter %q: %w", key, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("counter %q: %w", key, ErrCorrupt)
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(v)), nil
}

// ScanCounters calls fn for every counter whose key has the prefix; key
// is valid only during fn.
func (s *State) ScanCounters(prefix []byte, fn func(key []byte, v float64) error) error {
	lo := append([]byte{'k'}, prefix...)
	hi := append(append([]byte(nil), lo...), 0xff)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) != 8 {
			return fmt.Errorf("counter %q: %w", it.Key()[1:], ErrCorrupt)
		}
		if err := fn(it.Key()[1:], math.Float64frombits(binary.LittleEndian.Uint64(v))); err != nil {
			return err
		}
	}
	return it.Error()
}

// PutMeta stores a metadata value durably.
func (s *State) PutMeta(key, value []byte) error {
	k := append([]byte{'m'}, key...)
	if err := s.db.Set(k, value, s.wo); err != nil {
		return fmt.Errorf("cannot store %q: %w", key, err)
	}
	return nil
}

// ScanMeta calls fn for every metadata key with the prefix (key without
// the store's own prefix byte); slices are valid only during fn.
func (s *State) ScanMeta(prefix []byte, fn func(key, value []byte) error) error {
	lo := append([]byte{'m'}, prefix...)
	hi := append(append([]byte(nil), lo...), 0xff)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(it.Key()[1:], v); err != nil {
			return err
		}
	}
	return it.Error()
}

// sumMerger adds float64 counters, so increments need no read.
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
	return binary.LittleEndian.AppendUint64(nil, math.Float64bits(m.sum)), nil, nil
}

// keyBufs holds key buffers for point reads: Pebble's Get lets its key
// escape, so a stack buffer would be moved to the heap on every call.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// AppendMeta appends the metadata value of key to dst; ok is false when
// there is none. It does not allocate once dst has room.
func (s *State) AppendMeta(dst, key []byte) ([]byte, bool, error) {
	kp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(kp)
	k := append(append((*kp)[:0], 'm'), key...)
	*kp = k
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

// SetMetaAndCount stores a metadata value and adds counter deltas in one
// batch without waiting for the WAL sync: for records a crash may lose the
// last milliseconds of (experiment assignments, exposure counts), where a
// sync per page view would cost more than it saves.
func (s *State) SetMetaAndCount(key, value []byte, counters []Counter) error {
	b := s.db.NewBatch()
	defer b.Close()
	var kb [128]byte
	if key != nil {
		if err := b.Set(append(append(kb[:0], 'm'), key...), value, nil); err != nil {
			return err
		}
	}
	var vb [8]byte
	for _, c := range counters {
		binary.LittleEndian.PutUint64(vb[:], math.Float64bits(c.Delta))
		if err := b.Merge(append(append(kb[:0], 'k'), c.Key...), vb[:], nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("cannot commit: %w", err)
	}
	return nil
}
