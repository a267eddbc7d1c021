package index

import "encoding/binary"

// ListKind names a family of precomputed lists in a snapshot. Its value is
// the key prefix byte of that family (see doc.go).
type ListKind byte

// List families.
const (
	ListSimilar  ListKind = 's' // per item: items that interest in it predicts
	ListBought   ListKind = 'b' // per item: items bought in the same baskets
	ListPopular  ListKind = 'p' // per category (0 = all): popular items, long half-life
	ListTrending ListKind = 't' // per category (0 = all): popular items, short half-life
)

// String returns a name for k.
func (k ListKind) String() string {
	switch k {
	case ListSimilar:
		return "similar"
	case ListBought:
		return "bought_together"
	case ListPopular:
		return "popular"
	case ListTrending:
		return "trending"
	}
	return "unknown"
}

// Key prefixes besides the list families.
const (
	prefixItem     = 'i' // 'i' + uint32 item → item record
	prefixCategory = 'c' // 'c' + uint32 category → category name
)

// listKey is the fixed-size key of one list; it lives on the stack.
type listKey [5]byte

func makeKey(prefix byte, id uint32) listKey {
	var k listKey
	k[0] = prefix
	binary.BigEndian.PutUint32(k[1:], id)
	return k
}
