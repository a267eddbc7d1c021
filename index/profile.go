package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/edgerec/edgerec/model"
)

// Profiles: 'p' user → model.Profile encoding (attributes and behaviour
// counters). A profile is read, changed and written back under one of
// profileStripes locks chosen by the user's hash, in the same batch as the
// events that changed it: a profile never misses an acknowledged event,
// and two batches never lose each other's counts.

const (
	// maxClockSkew is how far in the future an event may be and still
	// count in its profile.
	maxClockSkew   = 3600
	stateProfile   = 'p'
	profileStripes = 256
	// DefaultProfileRetention is how long behaviour counts are kept.
	DefaultProfileRetention = 90 * 24 * time.Hour
)

// profileKey appends the key of user's profile.
func profileKey(dst, user []byte) []byte { return append(append(dst, stateProfile), user...) }

func stripe(user []byte) int { return int(xxhash.Sum64(user) % profileStripes) }

// profileScratch is the pooled memory of one profile update.
type profileScratch struct {
	p        model.Profile
	stripes  []int
	key, val []byte
	enc      []byte
}

var profileScratches = sync.Pool{New: func() any { return new(profileScratch) }}

// lockProfiles locks the stripes of users' profiles, in stripe order so
// that concurrent batches cannot deadlock; unlockProfiles releases them.
func (s *State) lockProfiles(ps *profileScratch, users ...[]byte) {
	ps.stripes = ps.stripes[:0]
	for _, u := range users {
		ps.stripes = append(ps.stripes, stripe(u))
	}
	s.lockStripes(ps)
}

func (s *State) lockStripes(ps *profileScratch) {
	slices.Sort(ps.stripes)
	ps.stripes = slices.Compact(ps.stripes)
	for _, i := range ps.stripes {
		s.profMu[i].Lock()
	}
}

func (s *State) unlockProfiles(ps *profileScratch) {
	for _, i := range ps.stripes {
		s.profMu[i].Unlock()
	}
}

// readProfile decodes user's stored profile into p (an empty one when it
// has none). p aliases *val, a copy of the stored bytes. The caller holds
// rlock or wlock.
func (s *State) readProfile(p *model.Profile, key, val *[]byte, user []byte) error {
	*key = profileKey((*key)[:0], user)
	v, closer, err := s.db.Get(*key)
	if errors.Is(err, pebble.ErrNotFound) {
		p.Reset()
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read the profile of %q: %w", user, err)
	}
	*val = append((*val)[:0], v...)
	_ = closer.Close()
	if err := p.Decode(*val); err != nil {
		// An unreadable profile (damage, or a newer format after a
		// rollback) must not block its user's events: it starts anew.
		s.corruptProfiles.Add(1)
		p.Reset()
	}
	return nil
}

// CorruptProfiles is how many unreadable profiles were started anew.
func (s *State) CorruptProfiles() uint64 { return s.corruptProfiles.Load() }

// addProfiles adds evs to their users' profiles in b. The caller holds
// the users' stripe locks.
func (s *State) addProfiles(b *pebble.Batch, ps *profileScratch, evs []StateEvent) error {
	now := s.o.Now().Unix()
	retention := int64(s.o.ProfileRetention / time.Second)
	var done map[string]bool // for long batches; short ones look back
	if len(evs) > 16 {
		done = make(map[string]bool)
	}
	p := &ps.p
	for i := range evs {
		user := evs[i].User
		if done != nil {
			if done[string(user)] {
				continue
			}
			done[string(user)] = true
		} else if seenBefore(evs, i) {
			continue
		}
		if err := s.readProfile(p, &ps.key, &ps.val, user); err != nil {
			return err
		}
		for j := i; j < len(evs); j++ {
			ev := &evs[j]
			if string(ev.User) != string(user) {
				continue
			}
			if ev.TS > now+maxClockSkew {
				continue // the log keeps it; a future bucket would never age
			}
			var page []byte
			if ev.Type == model.EventPageview {
				page = ev.Path
				if page == nil {
					page = ev.Page
				}
			}
			p.Add(ev.Type, ev.TS, ev.Value, page, ev.Category)
		}
		p.Compact(now, retention)
		ps.enc = p.Append(ps.enc[:0])
		if err := b.Set(ps.key, ps.enc, nil); err != nil {
			return fmt.Errorf("cannot batch the profile of %q: %w", user, err)
		}
	}
	return nil
}

// seenBefore reports whether an event before i has evs[i]'s user.
func seenBefore(evs []StateEvent, i int) bool {
	for j := range i {
		if string(evs[j].User) == string(evs[i].User) {
			return true
		}
	}
	return false
}

// AppendProfile appends the stored profile of user to dst; ok is false
// when there is none. It does not allocate once dst has room.
func (s *State) AppendProfile(dst, user []byte) ([]byte, bool, error) {
	kp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(kp)
	k := profileKey((*kp)[:0], user)
	*kp = k
	if err := s.rlock(); err != nil {
		return dst, false, fmt.Errorf("cannot read the profile of %q: %w", user, err)
	}
	defer s.dbMu.RUnlock()
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return dst, false, nil
	}
	if err != nil {
		return dst, false, fmt.Errorf("cannot read the profile of %q: %w", user, err)
	}
	dst = append(dst, v...)
	_ = closer.Close()
	return dst, true, nil
}

// UpdateProfile applies fn to user's profile and stores the result
// durably, unless fn fails. p is valid only during fn.
func (s *State) UpdateProfile(user []byte, fn func(p *model.Profile) error) error {
	if len(user) == 0 {
		return fmt.Errorf("%w: a profile needs a user", ErrBadEvent)
	}
	ps := profileScratches.Get().(*profileScratch)
	defer profileScratches.Put(ps)
	s.lockProfiles(ps, user)
	defer s.unlockProfiles(ps)
	if err := s.wlock(); err != nil {
		return fmt.Errorf("cannot store the profile of %q: %w", user, err)
	}
	defer s.wunlock()
	if err := s.readProfile(&ps.p, &ps.key, &ps.val, user); err != nil {
		return err
	}
	if err := fn(&ps.p); err != nil {
		return err
	}
	ps.enc = ps.p.Append(ps.enc[:0])
	if err := s.set(ps.key, ps.enc, s.wo); err != nil {
		return fmt.Errorf("cannot store the profile of %q: %w", user, err)
	}
	return nil
}

// MergeProfile adds visitor's behaviour to user's profile, with the
// visitor's attributes that user lacks (at login). The visitor's profile
// stays. A merge sums counts, so it must not take the same events twice:
// the mark 'm' "pm/" uvarint(len(visitor)) visitor user, written in the
// same batch, records how far the last merge of the pair went, and a
// later login merges only what the visitor did since (to the hour).
func (s *State) MergeProfile(visitor, user []byte) error {
	if len(visitor) == 0 || len(user) == 0 || string(visitor) == string(user) {
		return nil
	}
	var ps profileScratch
	s.lockProfiles(&ps, visitor, user)
	defer s.unlockProfiles(&ps)
	if err := s.wlock(); err != nil {
		return fmt.Errorf("cannot store the profile of %q: %w", user, err)
	}
	defer s.wunlock()
	markKey := append([]byte{stateMeta}, "pm/"...)
	markKey = binary.AppendUvarint(markKey, uint64(len(visitor)))
	markKey = append(append(markKey, visitor...), user...)
	var mark model.MergeMark
	if v, closer, err := s.db.Get(markKey); err == nil {
		r := bytes.NewReader(v)
		mark.LastSeen, _ = binary.ReadVarint(r)
		mark.Purchases, _ = binary.ReadVarint(r)
		var bits uint64
		_ = binary.Read(r, binary.LittleEndian, &bits)
		mark.PurchaseValue = math.Float64frombits(bits)
		_ = closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("cannot read the merge mark of %q: %w", visitor, err)
	}
	var v model.Profile
	var vkey, vval []byte
	if err := s.readProfile(&v, &vkey, &vval, visitor); err != nil {
		return err
	}
	if v.LastSeen <= mark.LastSeen && len(v.Attrs) == 0 {
		return nil
	}
	u := &ps.p
	if err := s.readProfile(u, &ps.key, &ps.val, user); err != nil {
		return err
	}
	u.MergeSince(&v, mark)
	u.Compact(s.o.Now().Unix(), int64(s.o.ProfileRetention/time.Second))
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(ps.key, u.Append(nil), nil); err != nil {
		return fmt.Errorf("cannot batch the profile of %q: %w", user, err)
	}
	m := v.Mark()
	mv := binary.AppendVarint(nil, m.LastSeen)
	mv = binary.AppendVarint(mv, m.Purchases)
	mv = binary.LittleEndian.AppendUint64(mv, math.Float64bits(m.PurchaseValue))
	if err := b.Set(markKey, mv, nil); err != nil {
		return fmt.Errorf("cannot batch the merge mark of %q: %w", visitor, err)
	}
	if err := s.commit(b, s.wo); err != nil {
		return fmt.Errorf("cannot store the profile of %q: %w", user, err)
	}
	return nil
}

// ScanProfiles calls fn for every stored profile in user order, starting
// after the user after (from the first when empty). user and value are
// valid only during fn. An error from fn stops the scan and is returned
// as is.
func (s *State) ScanProfiles(after []byte, fn func(user, value []byte) error) error {
	lo := []byte{stateProfile}
	if len(after) > 0 {
		lo = append(profileKey(nil, after), 0)
	}
	if err := s.rlock(); err != nil {
		return fmt.Errorf("cannot scan profiles: %w", err)
	}
	defer s.dbMu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{stateProfile + 1}})
	if err != nil {
		return fmt.Errorf("cannot scan profiles: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("cannot scan profiles: %w", err)
		}
		if err := fn(it.Key()[1:], v); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot scan profiles: %w", err)
	}
	return nil
}

// MetaWriter stores many metadata values in batches that do not wait for
// the WAL sync, and syncs once at Close: for bulk records a crash may
// lose (segment membership noted by an export).
type MetaWriter struct {
	s  *State
	db *pebble.DB
	b  *pebble.Batch
}

// NewMetaWriter starts a bulk metadata write.
func (s *State) NewMetaWriter() *MetaWriter {
	db, b := s.newBatch()
	return &MetaWriter{s: s, db: db, b: b}
}

// Set stores key → value; neither is retained.
func (w *MetaWriter) Set(key, value []byte) error {
	if w.b == nil {
		return fmt.Errorf("cannot batch %q: %w", key, w.s.noDB())
	}
	var kb [128]byte
	if err := w.b.Set(append(append(kb[:0], stateMeta), key...), value, nil); err != nil {
		return fmt.Errorf("cannot batch %q: %w", key, err)
	}
	if w.b.Len() > 1<<20 {
		if err := w.s.commitOn(w.db, w.b, pebble.NoSync); err != nil {
			return fmt.Errorf("cannot commit metadata: %w", err)
		}
		w.b.Reset()
	}
	return nil
}

// Close commits what is left and syncs.
func (w *MetaWriter) Close() error {
	if w.b == nil {
		return fmt.Errorf("cannot commit metadata: %w", w.s.noDB())
	}
	defer w.b.Close()
	if err := w.s.commitOn(w.db, w.b, pebble.Sync); err != nil {
		return fmt.Errorf("cannot commit metadata: %w", err)
	}
	return nil
}
