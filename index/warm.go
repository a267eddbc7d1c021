package index

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// HistoryUsers calls fn for every user with a history in the state store,
// in key order, with the number of their history entries, until fn
// returns false. user is valid only during fn. The scan reads keys only,
// and brings the history blocks into Pebble's block cache as it goes: a
// server warming up (engine.Warm) reads the histories it will be asked
// for next.
func (s *State) HistoryUsers(fn func(user []byte, entries int) bool) error {
	lo := []byte{stateHistory}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: appendPrefixEnd(nil, lo)})
	if err != nil {
		return fmt.Errorf("cannot scan the histories: %w", err)
	}
	var cur []byte
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[1:]
		l, w := binary.Uvarint(k)
		if w <= 0 || uint64(len(k)-w) < l+histSuffixLen {
			_ = it.Close()
			return fmt.Errorf("cannot scan the histories: key %q: %w", it.Key(), ErrCorrupt)
		}
		user := k[w : w+int(l)]
		if n > 0 && string(user) == string(cur) {
			n++
			continue
		}
		if n > 0 && !fn(cur, n) {
			return it.Close()
		}
		cur, n = append(cur[:0], user...), 1
	}
	if n > 0 {
		fn(cur, n)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot scan the histories: %w", err)
	}
	return nil
}
