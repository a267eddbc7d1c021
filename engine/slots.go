package engine

import "sync/atomic"

// slotCache is a lock-free, direct-mapped cache of small values (n
// 64-bit words) under 64-bit keys, for what a hot path reads on every
// request (a visitor's assignment, a decision id's signature, a segment
// set): a lookup is a few atomic loads, where a Ristretto lookup costs
// about ten times more. A key lands in one slot; a later key on the same
// slot replaces it; a write that meets another in flight is dropped.
// Like Ristretto, it may forget anything at any time: callers can always
// compute again.
//
// Each slot is a sequence word, the key (complemented: an empty slot is
// no key's but the last one's) and the value. A writer makes the
// sequence odd (by compare-and-swap: one writer a slot), writes, then
// makes it even again; a reader takes the value only when the sequence
// was even and the same before and after, and the key is its own.
type slotCache struct {
	n     int // value words
	mask  uint64
	words []atomic.Uint64 // per slot: sequence, key, n value words
}

// newSlotCache returns a cache of n-word values in about maxBytes.
func newSlotCache(n int, maxBytes int64) *slotCache {
	stride := int64(2+n) * 8
	slots := uint64(1)
	for int64(slots*2)*stride <= maxBytes {
		slots *= 2
	}
	return &slotCache{n: n, mask: slots - 1, words: make([]atomic.Uint64, slots*uint64(2+n))}
}

func (c *slotCache) slot(key uint64) []atomic.Uint64 {
	i := int(key&c.mask) * (2 + c.n)
	return c.words[i : i+2+c.n]
}

// get copies the value of key into dst (n words) and reports whether it
// was there.
func (c *slotCache) get(key uint64, dst []uint64) bool {
	s := c.slot(key)
	seq := s[0].Load()
	if seq&1 != 0 || s[1].Load() != ^key {
		return false
	}
	for i := range dst[:c.n] {
		dst[i] = s[2+i].Load()
	}
	return s[0].Load() == seq
}

// set stores val (n words) under key, unless another write holds the
// slot.
func (c *slotCache) set(key uint64, val []uint64) {
	s := c.slot(key)
	seq := s[0].Load()
	if seq&1 != 0 || !s[0].CompareAndSwap(seq, seq+1) {
		return
	}
	s[1].Store(^key)
	for i, w := range val[:c.n] {
		s[2+i].Store(w)
	}
	s[0].Store(seq + 2)
}
