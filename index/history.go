package index

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/edgerec/edgerec/model"
)

// # Users' histories in a snapshot
//
// A snapshot carries each user's newest events, so that the server knows
// the build's users without their events being sent again:
//
//	'u' user → uvarint count, then per event, newest first: uvarint item
//	           (dense id), type byte, varint ts, float32 LE value (NaN: none)
//
// A user's events are those the build kept (a positive weight), ordered
// as the state store orders history entries (newest first, then by
// histHash), one per (time, type, item) as the store keeps them, cut at
// MaxUserItems. The server writes them into its state store when it first
// serves the snapshot (State.NewHistoryWriter), where they read as if
// the user's events had been posted.

const prefixHistory = 'u'

// writeHistories writes every user's history record; it returns the
// number of records.
func (b *Builder) writeHistories(w *batchWriter) (int, error) {
	names := make([]string, len(b.userID))
	for name, u := range b.userID {
		names[u] = name
	}
	// The events of each user, by a counting sort: order[ptr[u]:ptr[u+1]].
	ptr := make([]int64, len(names)+1)
	for _, u := range b.evUser {
		ptr[u+1]++
	}
	for u := 1; u <= len(names); u++ {
		ptr[u] += ptr[u-1]
	}
	order := make([]uint32, len(b.evUser))
	next := slices.Clone(ptr[:len(names)])
	for e, u := range b.evUser {
		order[next[u]] = uint32(e)
		next[u]++
	}
	next = nil
	type entry struct {
		e uint32
		h uint64
	}
	var es []entry
	var key, val []byte
	n := 0
	for u := range names {
		evs := order[ptr[u]:ptr[u+1]]
		es = es[:0]
		for _, e := range evs {
			es = append(es, entry{e, histHash(b.evType[e], b.items[b.evItem[e]].ID)})
		}
		// Key order of the state store: ts descending, then ^h ascending;
		// arrival order last, so that of equal keys the newest arrival,
		// which a store write would keep, comes first.
		slices.SortStableFunc(es, func(x, y entry) int {
			if c := cmp.Compare(b.evTS[y.e], b.evTS[x.e]); c != 0 {
				return c
			}
			if c := cmp.Compare(y.h, x.h); c != 0 {
				return c
			}
			return cmp.Compare(y.e, x.e)
		})
		val = val[:0]
		count := 0
		for i, x := range es {
			if i > 0 {
				p := es[i-1]
				if b.evTS[p.e] == b.evTS[x.e] && p.h == x.h && b.evType[p.e] == b.evType[x.e] && b.evItem[p.e] == b.evItem[x.e] {
					continue // one store entry
				}
			}
			if count == b.o.MaxUserItems {
				break
			}
			count++
			val = appendHistoryEntry(val, b.evItem[x.e], b.evType[x.e], b.evTS[x.e], b.evValue[x.e])
		}
		if count == 0 {
			continue
		}
		key = append(append(key[:0], prefixHistory), names[u]...)
		rec := binary.AppendUvarint(make([]byte, 0, len(val)+4), uint64(count))
		if err := w.set(key, append(rec, val...)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// appendHistoryEntry appends one entry of a history record: uvarint
// item (dense id), type byte, varint ts, float32 LE value (NaN: none).
func appendHistoryEntry(dst []byte, item uint32, t model.EventType, ts int64, value float32) []byte {
	dst = binary.AppendUvarint(dst, uint64(item))
	dst = append(dst, byte(t))
	dst = binary.AppendVarint(dst, ts)
	return binary.LittleEndian.AppendUint32(dst, math.Float32bits(value))
}

// ScanHistories calls fn for every user's history in the snapshot, users
// in key order, entries newest first. user and the entries (whose Items
// are the snapshot's item ids) are valid only during fn.
func (s *Snapshot) ScanHistories(fn func(user []byte, entries []HistoryEntry) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHistory}, UpperBound: []byte{prefixHistory + 1}})
	if err != nil {
		return fmt.Errorf("cannot scan the histories of %q: %w", s.dir, err)
	}
	var h History
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("cannot scan the histories of %q: %w", s.dir, err)
		}
		user := it.Key()[1:]
		if err := s.decodeHistory(&h, v); err != nil {
			_ = it.Close()
			return fmt.Errorf("cannot decode the history of %q in %q: %w", user, s.dir, err)
		}
		if err := fn(user, h.entries); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot scan the histories of %q: %w", s.dir, err)
	}
	return nil
}

// decodeHistory decodes a history record into h.
func (s *Snapshot) decodeHistory(h *History, v []byte) error {
	h.Reset()
	d := decoder{b: v}
	n := d.count()
	for i := 0; i < n && !d.err; i++ {
		item := d.uvarint()
		t := model.EventType(d.byte())
		ts := d.varint()
		if len(d.b) < 4 {
			d.err = true
			break
		}
		value := math.Float32frombits(binary.LittleEndian.Uint32(d.b))
		d.b = d.b[4:]
		if item >= uint64(len(s.items)) {
			return fmt.Errorf("item %d out of range: %w", item, ErrCorrupt)
		}
		h.buf = append(h.buf, s.items[item].ID...)
		h.ends = append(h.ends, len(h.buf))
		h.entries = append(h.entries, HistoryEntry{Type: t, TS: ts, Value: value})
	}
	if d.err || len(d.b) != 0 {
		return ErrCorrupt
	}
	h.pointItems()
	return nil
}

// HistoryWriter writes history entries into the state store in large
// batches, without waiting for each to sync: for imports, which Close
// makes durable at once. It is not safe for concurrent use.
type HistoryWriter struct {
	s   *State
	db  *pebble.DB
	b   *pebble.Batch
	buf []byte
	n   int
}

// NewHistoryWriter returns a writer of history entries.
func (s *State) NewHistoryWriter() *HistoryWriter {
	db, b := s.newBatch()
	return &HistoryWriter{s: s, db: db, b: b}
}

// Add writes one entry of user's history, keyed as AppendEvents keys it:
// an entry already there (the same time, type and item) is overwritten.
// user and item are not retained.
func (w *HistoryWriter) Add(user []byte, e *HistoryEntry) error {
	if w.b == nil {
		return fmt.Errorf("cannot write histories: %w", w.s.noDB())
	}
	w.buf = appendHistKey(w.buf[:0], user, e.TS, e.Type, e.Item)
	k := len(w.buf)
	has := !math.IsNaN(float64(e.Value))
	w.buf = appendHistValue(w.buf, e.Type, float64(e.Value), has, e.Item)
	if err := w.b.Set(w.buf[:k], w.buf[k:], nil); err != nil {
		return fmt.Errorf("cannot batch the history of %q: %w", user, err)
	}
	w.n++
	// Well under half the memtable as Pebble counts it (its skiplist's
	// nodes included: about twice the batch's bytes for entries this
	// small). Pebble flushes a larger batch as a memtable of its own, and
	// every read allocates an iterator over it until that flush is done.
	if w.b.Len() > 256<<10 {
		if err := w.s.commitOn(w.db, w.b, pebble.NoSync); err != nil {
			return fmt.Errorf("cannot write histories: %w", err)
		}
		// The next batch reuses the buffer: a new batch for each commit,
		// grown from nothing, made an import of 50,000 entries allocate
		// 6.9 MB instead of 0.5 (BenchmarkHistoryImport), and a swap under
		// load raised the heap's peak.
		w.b.Reset()
	}
	return nil
}

// Close commits what is left and syncs the store: every entry added is
// durable when it returns nil.
func (w *HistoryWriter) Close() error {
	if w.b == nil {
		return fmt.Errorf("cannot write histories: %w", w.s.noDB())
	}
	defer w.b.Close()
	if err := w.s.commitOn(w.db, w.b, pebble.Sync); err != nil {
		return fmt.Errorf("cannot write histories: %w", err)
	}
	return nil
}

// Entries returns the number of entries added.
func (w *HistoryWriter) Entries() int { return w.n }
