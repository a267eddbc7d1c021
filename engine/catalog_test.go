package engine

import (
	"testing"

	"github.com/edgerec/edgerec/index"
)

// Patches of one item in two requests, price then stock, both outlive a
// restart: the store keeps the merged patch, not the last update.
func TestPatchItemsMerged(t *testing.T) {
	dir := t.TempDir()
	st, err := index.OpenState(dir, index.StateOptions{})
	must(t, err)
	e := newEngine(t, Options{}, st, "")
	must(t, e.PatchItems([]ItemUpdate{{ID: "i1", ItemPatch: ItemPatch{Price: 9.5, HasPrice: true}}, {ID: "i2", ItemPatch: ItemPatch{Stock: 0, HasStock: true}}}))
	must(t, e.PatchItems([]ItemUpdate{{ID: "i1", ItemPatch: ItemPatch{Stock: 3, HasStock: true}}}))
	e.Close()
	must(t, st.Close())

	st, err = index.OpenState(dir, index.StateOptions{})
	must(t, err)
	defer st.Close()
	e = newEngine(t, Options{}, st, "")
	must(t, e.LoadPatches())
	m := e.patches.Load().m
	if p := m["i1"]; !p.HasPrice || p.Price != 9.5 || !p.HasStock || p.Stock != 3 {
		t.Fatalf("i1 after a restart: %+v", p)
	}
	if p := m["i2"]; p.HasPrice || !p.HasStock || p.Stock != 0 {
		t.Fatalf("i2 after a restart: %+v", p)
	}
}
