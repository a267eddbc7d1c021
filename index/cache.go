package index

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/ristretto/v2"

	"github.com/edgerec/edgerec/model"
)

// ListCache is the cached reader of snapshot lists: every caller (the
// server's answers, eval, audience exports) reads lists through one, so
// they share its memory and a list is decoded once, not once per use.
//
// Values are decoded lists with the version of the snapshot they came
// from, keyed by (list kind, id): a new snapshot's list replaces the old
// one's under the same key, so the cache holds one version of each list
// and the lists of snapshots no longer served are not kept until evicted
// (with a snapshot loaded every minute, they filled the cache's budget
// over half an hour: the server's heap grew by 1.2 MB a swap). Two
// versions served at once (during a swap) take turns. A list the
// snapshot lacks is cached too, as an empty list, so an item
// without neighbours costs no Pebble read either. Cached lists are shared
// and immutable: callers must not modify them. Ristretto's Set is
// asynchronous and may drop an entry, so a read right after a miss may
// miss again; callers that read one list twice per request keep it
// themselves.
type ListCache struct {
	c            *ristretto.Cache[uint64, cachedList]
	hits, misses atomic.Uint64
}

// cachedList is a list and the version of the snapshot it was read from.
type cachedList struct {
	version uint64
	l       []model.Neighbour
}

// listEntryOverhead is the cost charged per cached list besides its
// entries: the version, the slice header and Ristretto's item.
const listEntryOverhead = 72

// NewListCache returns a cache holding about maxBytes of decoded lists.
func NewListCache(maxBytes int64) (*ListCache, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("cannot create a list cache of %d bytes: want a positive size", maxBytes)
	}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, cachedList]{
		// About 10 counters per cached list of ~1 KiB.
		NumCounters: max(maxBytes/100, 1000),
		MaxCost:     maxBytes,
		BufferItems: 64,
		Metrics:     true, // cost added and evicted, for /v1/admin/status
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create the list cache: %w", err)
	}
	return &ListCache{c: c}, nil
}

// Close stops the cache's goroutines; no method may be called after.
func (c *ListCache) Close() { c.c.Close() }

func listCacheKey(kind ListKind, id uint32) uint64 {
	var k [5]byte
	k[0] = byte(kind)
	binary.LittleEndian.PutUint32(k[1:], id)
	return xxhash.Sum64(k[:])
}

// List returns list kind of id (an item, or a category for popular and
// trending lists) of snapshot s, best first; empty when s has none. The
// list is shared: valid as long as the caller holds s, and never to be
// modified. A miss reads Pebble and allocates the list once.
func (c *ListCache) List(s *Snapshot, kind ListKind, id uint32) ([]model.Neighbour, error) {
	key := listCacheKey(kind, id)
	if e, ok := c.c.Get(key); ok && e.version == s.Version() {
		c.hits.Add(1)
		return e.l, nil
	}
	c.misses.Add(1)
	l := []model.Neighbour{}
	err := s.get(kind, id, func(v []byte) (err error) {
		if n, w := binary.Uvarint(v); w > 0 && n <= uint64(len(v))/neighbourSize {
			l = make([]model.Neighbour, 0, n)
		}
		l, err = DecodeList(l, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.c.Set(key, cachedList{s.Version(), l}, int64(len(l)*neighbourSize+listEntryOverhead))
	return l, nil
}

// CacheStats say how a cache did since it was made.
type CacheStats struct {
	Hits, Misses, CostAdded, CostEvicted uint64
}

// Stats returns the cache's counts.
func (c *ListCache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(),
		CostAdded: c.c.Metrics.CostAdded(), CostEvicted: c.c.Metrics.CostEvicted()}
}

// Wait waits until the cache has applied the Sets it was given: for
// tests and benchmarks.
func (c *ListCache) Wait() { c.c.Wait() }
