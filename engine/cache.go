package engine

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/ristretto/v2"
)

// # What the engine remembers between requests
//
// Besides the decoded lists (index.ListCache), the engine keeps answers
// and the pieces of decisions in Ristretto, each under a key that names
// everything the value depends on, so that nothing stale is ever served:
//
//   - answers (Recs picks): the snapshot version, the catalog-patch and
//     config generations, the request's parameters and, for a visitor,
//     their write generation (below), the minute (segments and affinity
//     decay move with time; another server's writes are not seen sooner),
//     and the segments placement rules read;
//   - segments: the visitor, their write generation, the config
//     generation and the minute;
//   - a visitor's stored assignment, and decision-id signatures, which
//     never change once made.
//
// A visitor's write generation counts the writes to their history or
// profile on this engine (Ingest, SetAttributes, logins), by a hash of the
// visitor: a write makes every cached answer and segment set of theirs
// unreachable at once. Visitors sharing a slot only cost each other
// misses.

// userGens is the number of write-generation slots.
const userGens = 1 << 16

// userGen returns user's write generation.
func (e *Engine) userGen(user []byte) uint64 {
	return e.gens[xxhash.Sum64(user)&(userGens-1)].Load()
}

// touchUser makes the cached answers and segments of user stale: call it
// once their write is visible to readers.
func (e *Engine) touchUser(user []byte) {
	e.gens[xxhash.Sum64(user)&(userGens-1)].Add(1)
}

// caches are the engine's answer and decision caches: answers in
// Ristretto (values of any size, cost-bounded), the small values every
// decision reads in slot caches (slots.go).
type caches struct {
	answers *ristretto.Cache[uint64, []Pick]
	words   *slotCache // assignments and signatures: one word
	segs    *slotCache // segment sets
}

func newCaches(answerBytes, smallBytes int64) (caches, error) {
	var c caches
	var err error
	c.answers, err = ristretto.NewCache(&ristretto.Config[uint64, []Pick]{
		NumCounters: max(answerBytes/30, 1000), // ~10 counters per answer of ~300 bytes
		MaxCost:     answerBytes,
		BufferItems: 64,
	})
	if err != nil {
		return c, fmt.Errorf("cannot create the answer cache: %w", err)
	}
	c.words = newSlotCache(1, smallBytes/2)
	c.segs = newSlotCache(len(SegSet{}), smallBytes/2)
	return c, nil
}

func (c *caches) close() {
	if c.answers != nil {
		c.answers.Close()
	}
}

// word and setWord read and write the one-word cache, when there is one.
func (c *caches) word(key uint64) (uint64, bool) {
	if c.words == nil {
		return 0, false
	}
	var v [1]uint64
	ok := c.words.get(key, v[:])
	return v[0], ok
}

func (c *caches) setWord(key, v uint64) {
	if c.words != nil {
		c.words.set(key, []uint64{v})
	}
}

func (c *caches) wait() {
	if c.answers != nil {
		c.answers.Wait()
	}
}

// Key families, mixed into every key so that they never meet.
const (
	keyAnswer   = 'a'
	keySegments = 's'
	keySticky   = 't'
	keySig      = 'g'
	keyRuleX    = 'r'
)

// keyHash builds a cache key. The zero value is ready; it is a
// View's scratch.
type keyHash struct {
	d   xxhash.Digest
	buf [8]byte
}

func (k *keyHash) start(family byte) {
	k.d.Reset()
	k.buf[0] = family
	_, _ = k.d.Write(k.buf[:1])
}

func (k *keyHash) u64(x uint64) {
	binary.LittleEndian.PutUint64(k.buf[:], x)
	_, _ = k.d.Write(k.buf[:])
}

// bytes writes b with its length, so that ("ab","c") and ("a","bc")
// differ.
func (k *keyHash) bytes(b []byte) {
	k.u64(uint64(len(b)))
	_, _ = k.d.Write(b)
}

func (k *keyHash) str(s string) {
	k.u64(uint64(len(s)))
	_, _ = k.d.WriteString(s)
}

func (k *keyHash) sum() uint64 { return k.d.Sum64() }

// minute is the time bucket of answers and segments that depend on time.
const minute = 60

// answerKey keys the answer to the call's request: kind names the
// question (a placement, or a direct list), the rest is what the answer
// depends on (see the head of this file). begin must have run.
func (v *View) answerKey(kind string, req *RecRequest, segs SegSet) uint64 {
	k := &v.key
	c := &v.call
	k.start(keyAnswer)
	k.str(kind)
	version, patches := v.Epoch()
	k.u64(version)
	k.u64(patches)
	k.u64(v.cfg.gen)
	k.u64(uint64(c.k))
	k.u64(uint64(c.cat))
	if c.hasMin {
		k.u64(1)
		k.u64(math.Float64bits(c.priceMin))
	}
	if c.hasMax {
		k.u64(2)
		k.u64(math.Float64bits(c.priceMax))
	}
	k.bytes(req.Item)
	k.u64(uint64(len(req.Cart)))
	for _, id := range req.Cart {
		k.bytes(id)
	}
	k.u64(uint64(len(req.Exclude)))
	for _, id := range req.Exclude {
		k.bytes(id)
	}
	if c.user != nil {
		k.bytes(c.user)
		k.u64(v.e.userGen(c.user))
		k.u64(uint64(v.now / minute))
	} else {
		k.u64(0)
	}
	for _, w := range segs {
		k.u64(w)
	}
	return k.sum()
}

// cachedAnswer copies the answer cached under key into out.
func (v *View) cachedAnswer(key uint64, out *Recs) bool {
	if v.e.cache.answers == nil {
		return false
	}
	picks, ok := v.e.cache.answers.Get(key)
	if !ok {
		return false
	}
	out.Picks = append(out.Picks[:0], picks...)
	return true
}

// keepAnswer caches out's picks under key (a copy: out is the caller's).
func (v *View) keepAnswer(key uint64, out *Recs) {
	if v.e.cache.answers == nil {
		return
	}
	picks := append([]Pick(nil), out.Picks...)
	v.e.cache.answers.Set(key, picks, int64(len(picks))*pickSize+64)
}

// pickSize is the memory of one Pick.
const pickSize = 24

// segmentsKey keys user's segments for this minute.
func (v *View) segmentsKey(user []byte) uint64 {
	k := &v.key
	k.start(keySegments)
	k.bytes(user)
	k.u64(v.e.userGen(user))
	k.u64(v.cfg.gen)
	k.u64(uint64(v.now / minute))
	return k.sum()
}
