package index

import (
	"sync"
	"sync/atomic"
)

// Live holds the snapshot being served and swaps in new ones atomically.
// Readers Acquire a reference for the length of one request; a replaced
// snapshot is closed when its last reader releases it, so a swap drops no
// request. The zero value holds no snapshot.
type Live struct {
	cur atomic.Pointer[SnapshotRef]
	mu  sync.Mutex // serialises Swap
}

// SnapshotRef is a counted reference to a served snapshot.
type SnapshotRef struct {
	*Snapshot
	refs    atomic.Int64 // readers, plus one while current
	onClose func(*Snapshot)
}

// Acquire returns a reference to the current snapshot, or nil when none is
// loaded. The caller must Release it, and must not use the snapshot after.
func (l *Live) Acquire() *SnapshotRef {
	for {
		r := l.cur.Load()
		if r == nil {
			return nil
		}
		// A count of 0 means r was retired and closed after we loaded it:
		// load again. Otherwise the reference is good even if a swap
		// happens now: the request finishes on the snapshot it started on.
		n := r.refs.Load()
		if n > 0 && r.refs.CompareAndSwap(n, n+1) {
			return r
		}
	}
}

// Version returns the current snapshot's version, 0 when none is loaded,
// without taking a reference.
func (l *Live) Version() uint64 {
	if r := l.cur.Load(); r != nil {
		return r.Version()
	}
	return 0
}

// Release gives a reference back.
func (r *SnapshotRef) Release() {
	if r.refs.Add(-1) == 0 {
		_ = r.Snapshot.Close()
		if r.onClose != nil {
			r.onClose(r.Snapshot)
		}
	}
}

// Swap makes s current and returns the version it replaced (0 if none).
// The old snapshot closes once its readers are done. onClose, if set, is
// called after a snapshot closes (tests use it).
func (l *Live) Swap(s *Snapshot, onClose func(*Snapshot)) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &SnapshotRef{Snapshot: s, onClose: onClose}
	r.refs.Store(1)
	old := l.cur.Swap(r)
	if old == nil {
		return 0
	}
	v := old.Version()
	old.Release() // drop the "current" reference
	return v
}

// Close retires the current snapshot; it closes when its readers are done.
func (l *Live) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.cur.Swap(nil); old != nil {
		old.Release()
	}
}
