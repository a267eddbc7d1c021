package engine

import (
	"sync"
	"testing"
)

// TestSlotCache: a value comes back under its key only, a colliding key
// replaces it, and readers racing with writers never see a value of
// another key or a torn one.
func TestSlotCache(t *testing.T) {
	c := newSlotCache(2, 4<<10) // 4 KiB: 128 slots of 4 words
	if c.mask != 127 {
		t.Fatalf("%d slots; want 128", c.mask+1)
	}
	var got [2]uint64
	if c.get(5, got[:]) {
		t.Fatal("a value in an empty cache")
	}
	c.set(5, []uint64{50, 51})
	if !c.get(5, got[:]) || got != [2]uint64{50, 51} {
		t.Fatalf("get(5) = %v", got)
	}
	c.set(5+128, []uint64{60, 61}) // the same slot
	if c.get(5, got[:]) {
		t.Fatal("a replaced value is still there")
	}
	if !c.get(5+128, got[:]) || got != [2]uint64{60, 61} {
		t.Fatalf("get(133) = %v", got)
	}

	// Both words of a value are the key's: written as key, key+1 by
	// writers of 16 keys on 4 slots, read by as many readers.
	c = newSlotCache(2, 4*4*8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v [2]uint64
			for i := range 20000 {
				k := uint64((g*7 + i) % 16)
				if g%2 == 0 {
					c.set(k, []uint64{k * 10, k*10 + 1})
				} else if c.get(k, v[:]) && (v[0] != k*10 || v[1] != k*10+1) {
					t.Errorf("key %d read %v", k, v)
					return
				}
			}
		}()
	}
	wg.Wait()
}
