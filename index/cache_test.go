package index

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/edgerec/edgerec/model"
)

var listKinds = [...]ListKind{ListSimilar, ListBought, ListPopular, ListTrending}

// randomBuilder returns a builder of a small random shop: users viewing,
// carting and buying (in baskets) items of a few categories over a few
// days. seed picks the data.
func randomBuilder(t testing.TB, seed uint64, o BuildOptions) *Builder {
	t.Helper()
	b, err := NewBuilder(o)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	const items, users = 60, 80
	for i := range items {
		b.AddItem(&model.Item{ID: "i" + strconv.Itoa(i), Title: "item " + strconv.Itoa(i), Categories: []string{"c" + strconv.Itoa(i%4)}})
	}
	for u := range users {
		user := []byte("u" + strconv.Itoa(u))
		basket := []byte("o" + strconv.Itoa(u))
		for range 5 + r.IntN(25) {
			// Items near the user's taste, so that lists have support.
			item := []byte("i" + strconv.Itoa((u+r.IntN(10))%items))
			ts := 1_700_000_000 + int64(r.IntN(5*86400))
			typ := [...]model.EventType{model.EventView, model.EventView, model.EventCart, model.EventPurchase}[r.IntN(4)]
			ev := model.Event{User: user, Item: item, Type: typ, TS: ts}
			if typ == model.EventPurchase {
				ev.Basket, ev.Value, ev.HasValue = basket, float64(1+r.IntN(20)), true
			}
			b.AddEvent(&ev)
		}
	}
	return b
}

// openBuilt builds b into root and opens the snapshot; it is closed when
// the test ends.
func openBuilt(t testing.TB, b *Builder, root string) *Snapshot {
	t.Helper()
	if _, err := b.Build(root); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newListCache(t testing.TB, maxBytes int64) *ListCache {
	t.Helper()
	c, err := NewListCache(maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// listIDs are the ids every kind is asked for: every item and category,
// and some beyond both.
func listIDs(s *Snapshot) []uint32 {
	n := max(s.NumItems(), s.NumCategories()+1) + 3
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(i)
	}
	return append(ids, 1<<31, ^uint32(0))
}

// TestListCache: the cache returns the lists AppendList reads, for every
// kind, on a miss and on a hit.
func TestListCache(t *testing.T) {
	s := openBuilt(t, randomBuilder(t, 1, BuildOptions{}), t.TempDir())
	c := newListCache(t, 1<<20)
	check := func(pass string) (reads, nonEmpty int) {
		t.Helper()
		for _, kind := range listKinds {
			for _, id := range listIDs(s) {
				want, err := s.AppendList(nil, kind, id)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.List(s, kind, id)
				if err != nil {
					t.Fatalf("%s: %s list %d: %v", pass, kind, id, err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%s: %s list %d: cache %v; snapshot %v", pass, kind, id, got, want)
				}
				reads++
				if len(want) > 0 {
					nonEmpty++
				}
			}
		}
		return reads, nonEmpty
	}
	n, nonEmpty := check("misses")
	for _, kind := range listKinds {
		if l, _ := s.AppendList(nil, kind, 0); kind != ListSimilar && kind != ListBought && len(l) == 0 {
			t.Fatalf("no %s list of category 0: the test shows little", kind)
		}
	}
	if nonEmpty < n/4 {
		t.Fatalf("%d of %d lists are empty: the test shows little", n-nonEmpty, n)
	}
	if st := c.Stats(); st.Misses != uint64(n) || st.Hits != 0 {
		t.Fatalf("after %d first reads: %+v", n, st)
	}
	c.c.Wait() // tests only: make the Sets visible
	check("hits")
	if st := c.Stats(); st.Misses != uint64(n) || st.Hits != uint64(n) {
		t.Fatalf("after %d second reads: %+v", n, st)
	}
}

// TestListCacheEmpty: a list the snapshot lacks reads as empty, and is
// cached too: the second read costs no Pebble read.
func TestListCacheEmpty(t *testing.T) {
	root := t.TempDir()
	if _, err := smallBuilder(t).Build(root); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// c was never in a basket: it has no bought-together list.
	item, ok := s.Lookup([]byte("c"))
	if !ok {
		t.Fatal("no item c")
	}
	if l, err := s.AppendList(nil, ListBought, item); err != nil || len(l) != 0 {
		t.Fatalf("bought together with c: %v, %v; the test needs none", l, err)
	}
	c := newListCache(t, 1<<20)
	for i, id := range []uint32{item, 1000} { // and an id beyond the catalog
		l, err := c.List(s, ListBought, id)
		if err != nil || len(l) != 0 {
			t.Fatalf("list %d: %v, %v", id, l, err)
		}
		c.c.Wait()
		if l, err = c.List(s, ListBought, id); err != nil || len(l) != 0 {
			t.Fatalf("list %d again: %v, %v", id, l, err)
		}
		if st := c.Stats(); st.Misses != uint64(i+1) || st.Hits != uint64(i+1) {
			t.Fatalf("list %d read twice: %+v; want a miss, then a hit", id, st)
		}
	}
}

// TestListCacheReplacesVersions: the lists of a newer snapshot replace
// the older one's in the cache instead of being added beside them, so a
// cache read by a server that loads snapshot after snapshot holds one
// version of each list; the newer lists are the newer snapshot's.
func TestListCacheReplacesVersions(t *testing.T) {
	root := t.TempDir()
	snaps := []*Snapshot{
		openBuilt(t, randomBuilder(t, 1, BuildOptions{}), root),
		openBuilt(t, randomBuilder(t, 2, BuildOptions{}), root),
		openBuilt(t, randomBuilder(t, 3, BuildOptions{}), root),
	}
	c := newListCache(t, 4<<20) // room for every version's lists
	var keys uint64
	for v, s := range snaps {
		n := 0
		for _, kind := range listKinds {
			for _, id := range listIDs(snaps[0]) {
				want, err := s.AppendList(nil, kind, id)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.List(s, kind, id)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("version %d, %s list %d: cache %v, %v; snapshot %v", v+1, kind, id, got, err, want)
				}
				n++
			}
		}
		c.c.Wait()
		if v == 0 {
			keys = c.c.Metrics.KeysAdded()
			if keys < uint64(n)*9/10 {
				t.Fatalf("%d of %d lists cached: the test shows little", keys, n)
			}
			continue
		}
		if added := c.c.Metrics.KeysAdded(); added != keys {
			t.Fatalf("version %d added %d keys to the %d of the first: the older lists stay beside the newer", v+1, added-keys, keys)
		}
		// The next reads of this version hit.
		st := c.Stats()
		for _, kind := range listKinds {
			if _, err := c.List(s, kind, 0); err != nil {
				t.Fatal(err)
			}
		}
		if hits := c.Stats().Hits - st.Hits; hits != uint64(len(listKinds)) {
			t.Fatalf("version %d read again: %d hits of %d", v+1, hits, len(listKinds))
		}
	}
}

// TestListCacheVersions: two snapshot versions read through one cache
// keep their own lists.
func TestListCacheVersions(t *testing.T) {
	root := t.TempDir()
	s1 := openBuilt(t, randomBuilder(t, 1, BuildOptions{}), root)
	s2 := openBuilt(t, randomBuilder(t, 2, BuildOptions{}), root)
	if s1.Version() == s2.Version() {
		t.Fatalf("both snapshots are version %d", s1.Version())
	}
	c := newListCache(t, 1<<20)
	differ := 0
	for pass := range 3 {
		for _, kind := range listKinds {
			for _, id := range listIDs(s1) {
				want1, err1 := s1.AppendList(nil, kind, id)
				want2, err2 := s2.AppendList(nil, kind, id)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				// s1's list first: s2's read must not get it from the cache.
				got1, err1 := c.List(s1, kind, id)
				got2, err2 := c.List(s2, kind, id)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				if !slices.Equal(got1, want1) || !slices.Equal(got2, want2) {
					t.Fatalf("pass %d, %s list %d: cache %v and %v; snapshots %v and %v", pass, kind, id, got1, got2, want1, want2)
				}
				if pass == 0 && !slices.Equal(want1, want2) {
					differ++
				}
			}
		}
		c.c.Wait()
	}
	if differ == 0 {
		t.Fatal("the two snapshots have the same lists: the test shows nothing")
	}
	if st := c.Stats(); st.Hits == 0 {
		t.Fatalf("no hit in three passes: %+v", st)
	}
}
