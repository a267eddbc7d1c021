package index

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/edgerec/edgerec/model"
)

// The snapshot's value codecs and its manifest: what decodes re-encodes
// to what decodes the same; what does not decode is ErrCorrupt (or
// ErrBadSnapshot), never a panic, and costs memory in proportion to the
// input, whatever the counts in it say.

// FuzzDecodeList: a list value decodes to exactly (len-count)/12 entries
// or is ErrCorrupt; a decoded list re-encodes to a value that decodes to
// the same entries.
func FuzzDecodeList(f *testing.F) {
	f.Fuzz(func(t *testing.T, src []byte) {
		prefix := []model.Neighbour{{Item: 7, Score: 1, Count: 1}}
		got, err := DecodeList(prefix, src)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			if len(got) != 1 || got[0] != prefix[0] {
				t.Fatalf("a failed decode changed dst: %v", got)
			}
			return
		}
		n, w := binary.Uvarint(src)
		if w <= 0 || uint64(len(got)-1) != n || len(src)-w != int(n)*neighbourSize {
			t.Fatalf("%x: decoded %d entries from a count of %d (%d bytes)", src, len(got)-1, n, len(src))
		}
		ns := got[1:]
		enc := AppendList(nil, ns)
		again, err := DecodeList(nil, enc)
		if err != nil || !sameNeighbours(again, ns) {
			t.Fatalf("%x decodes to %v, which encodes to %x, which decodes to %v, %v", src, ns, enc, again, err)
		}
		// The canonical encoding is the input, unless the count came in a
		// longer varint than ours.
		if w == len(binary.AppendUvarint(nil, n)) && !bytes.Equal(enc, src) {
			t.Fatalf("%x re-encodes to %x", src, enc)
		}
	})
}

func sameNeighbours(a, b []model.Neighbour) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Item != b[i].Item || a[i].Count != b[i].Count || math.Float32bits(a[i].Score) != math.Float32bits(b[i].Score) {
			return false
		}
	}
	return true
}

// listSeeds are the seeds of FuzzDecodeList. Like those of the other
// codec targets, they live in testdata/fuzz/<target>/, written by
// TestWriteCodecSeeds.
func listSeeds() map[string][]byte {
	count := func(n uint64, body int) []byte { return append(binary.AppendUvarint(nil, n), make([]byte, body)...) }
	return map[string][]byte{
		"seed-empty-list": AppendList(nil, nil),
		"seed-three": AppendList(nil, []model.Neighbour{{Item: 1, Score: 0.9, Count: 4}, {Item: 2, Score: 0.5},
			{Item: math.MaxUint32, Score: float32(math.Inf(1)), Count: math.MaxUint32}}),
		"seed-nan-score":   AppendList(nil, []model.Neighbour{{Item: 3, Score: float32(math.NaN())}}),
		"seed-short":       count(2, 12),
		"seed-long-varint": {0x81, 0x80, 0x00, 1, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0},
		// A count whose product with the entry size wraps to the length of
		// the rest: 1537228672809129302 × 12 ≡ 8 (mod 2^64). DecodeList
		// took it for a list and read past the value.
		"crash-count-overflow": count(1537228672809129302, 8),
		"seed-huge-count":      count(math.MaxUint64, 0),
		"seed-no-count":        {},
	}
}

// FuzzDecodeItem: an item record decodes or is ErrCorrupt; a decoded
// record re-encodes (AppendItem) to bytes that decode to a record that
// encodes to the same bytes.
func FuzzDecodeItem(f *testing.F) {
	f.Fuzz(func(t *testing.T, src []byte) {
		var it ItemInfo
		if err := DecodeItem(&it, src); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(it.Cats) != len(it.Categories) {
			t.Fatalf("%d categories, %d category numbers", len(it.Categories), len(it.Cats))
		}
		// Each category and attribute takes at least two bytes of the
		// record: counts cannot make the decoder allocate beyond the input.
		if 2*(len(it.Categories)+len(it.Attrs)) > len(src) {
			t.Fatalf("%d categories and %d attributes from %d bytes", len(it.Categories), len(it.Attrs), len(src))
		}
		enc := AppendItem(nil, &it)
		var again ItemInfo
		if err := DecodeItem(&again, enc); err != nil {
			t.Fatalf("%x decodes to %+v, which encodes to %x, which does not decode: %v", src, it, enc, err)
		}
		if enc2 := AppendItem(nil, &again); !bytes.Equal(enc2, enc) {
			t.Fatalf("%x decodes to %+v, encodes to %x, then to %x", src, it, enc, enc2)
		}
		if again.ID != it.ID || again.Title != it.Title || again.Stock != it.Stock || again.Users != it.Users {
			t.Fatalf("round trip changed %+v to %+v", it, again)
		}
	})
}

func itemSeeds() map[string][]byte {
	full := AppendItem(nil, &ItemInfo{
		Item: model.Item{ID: "85123A", Title: "WHITE HANGING HEART T-LIGHT HOLDER", Brand: "acme", Price: 2.55, HasPrice: true,
			Stock: -3, HasStock: true, Categories: []string{"home", "deco|lights"}, Attrs: []model.Attr{{Key: "color", Value: "white"}}},
		Cats: []uint32{1, 2}, Users: 100, Baskets: 20, Events: 400,
	})
	bare := AppendItem(nil, &ItemInfo{Item: model.Item{ID: "i"}})
	// A category count far beyond what the record holds.
	huge := append(bytes.Clone(bare[:len(bare)-2]), 0xff, 0xff, 0xff, 0xff, 0x0f, 0)
	return map[string][]byte{
		"seed-full":           full,
		"seed-bare":           bare,
		"seed-truncated":      full[:len(full)-3],
		"seed-trailing":       append(bytes.Clone(bare), 0),
		"seed-huge-count":     huge,
		"seed-utf8-mangled":   AppendItem(nil, &ItemInfo{Item: model.Item{ID: "\xff\xfe", Title: "caf\xc3"}}),
		"seed-nan-price":      AppendItem(nil, &ItemInfo{Item: model.Item{ID: "n", Price: math.NaN(), HasPrice: true}}),
		"seed-empty":          {},
		"seed-flags-only-set": {0xff},
	}
}

// FuzzDecodeHistory: a user's history record of a snapshot decodes to
// entries whose items are the snapshot's, or fails with ErrCorrupt; a
// decoded history re-encodes to a record that decodes to the same.
func FuzzDecodeHistory(f *testing.F) {
	s := &Snapshot{items: []ItemInfo{{Item: model.Item{ID: "a"}}, {Item: model.Item{ID: "b"}}, {Item: model.Item{ID: "85123A"}}}}
	number := map[string]uint32{}
	for i := range s.items {
		number[s.items[i].ID] = uint32(i)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		var h History
		if err := s.decodeHistory(&h, v); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		es := h.Entries()
		n, _ := binary.Uvarint(v)
		if uint64(len(es)) != n {
			t.Fatalf("%x: %d entries for a count of %d", v, len(es), n)
		}
		rec := binary.AppendUvarint(nil, uint64(len(es)))
		for _, e := range es {
			item, ok := number[string(e.Item)]
			if !ok {
				t.Fatalf("%x: entry of unknown item %q", v, e.Item)
			}
			rec = appendHistoryEntry(rec, item, e.Type, e.TS, e.Value)
		}
		var again History
		if err := s.decodeHistory(&again, rec); err != nil {
			t.Fatalf("%x re-encodes to %x, which does not decode: %v", v, rec, err)
		}
		for i, e := range again.Entries() {
			w := es[i]
			if !bytes.Equal(e.Item, w.Item) || e.Type != w.Type || e.TS != w.TS || math.Float32bits(e.Value) != math.Float32bits(w.Value) {
				t.Fatalf("%x: entry %d decodes to %+v, then to %+v", v, i, w, e)
			}
		}
	})
}

func historySeeds() map[string][]byte {
	rec := func(entries ...[]byte) []byte {
		b := binary.AppendUvarint(nil, uint64(len(entries)))
		for _, e := range entries {
			b = append(b, e...)
		}
		return b
	}
	nan := float32(math.NaN())
	return map[string][]byte{
		"seed-two": rec(appendHistoryEntry(nil, 2, model.EventPurchase, 1_700_000_000, 19.9),
			appendHistoryEntry(nil, 0, model.EventView, 1_699_999_000, nan)),
		"seed-empty":         rec(),
		"seed-unknown-item":  rec(appendHistoryEntry(nil, 3, model.EventView, 1, nan)),
		"seed-negative-ts":   rec(appendHistoryEntry(nil, 1, model.EventRating, math.MinInt64, 5)),
		"seed-count-too-big": append(binary.AppendUvarint(nil, 1<<40), appendHistoryEntry(nil, 0, model.EventView, 1, nan)...),
		"seed-cut":           rec(appendHistoryEntry(nil, 1, model.EventCart, 5, 1))[:6],
	}
}

// FuzzOpenManifest: a version directory whose manifest is any bytes
// opens only when the manifest is the snapshot's own in what is checked
// (format, keys, checksum, item and category counts), and then with the
// item table intact; any other manifest is refused with ErrBadSnapshot.
// The counts in it never size an allocation beyond a small bound.
func FuzzOpenManifest(f *testing.F) {
	root := f.TempDir()
	real, err := smallBuilder(f).Build(root)
	if err != nil {
		f.Fatal(err)
	}
	dir, err := ResolveSnapshot(root)
	if err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := OpenSnapshot(dir)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("refused without ErrBadSnapshot: %v", err)
			}
			return
		}
		defer s.Close()
		m := s.Manifest()
		if m.Format != FormatVersion || m.Keys != real.Keys || m.Checksum != real.Checksum || m.Items != real.Items || m.Categories != real.Categories {
			t.Fatalf("opened with manifest %+v; the snapshot's is %+v", m, real)
		}
		for _, id := range []string{"a", "b", "c"} {
			if n, ok := s.Lookup([]byte(id)); !ok || s.Item(n).ID != id {
				t.Fatalf("item %q not in the table", id)
			}
		}
		// What was read writes back as JSON that reads the same.
		b1, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("cannot marshal %+v: %v", m, err)
		}
		var m2 Manifest
		if err := json.Unmarshal(b1, &m2); err != nil {
			t.Fatalf("%s does not read back: %v", b1, err)
		}
		if b2, _ := json.Marshal(&m2); !bytes.Equal(b1, b2) {
			t.Fatalf("manifest JSON changed on a round trip:\n%s\n%s", b1, b2)
		}
	})
}

func manifestSeeds(t *testing.T) map[string][]byte {
	root := t.TempDir()
	m, err := smallBuilder(t).Build(root)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := ResolveSnapshot(root)
	good, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(fn func(m map[string]any)) []byte {
		var x map[string]any
		if err := json.Unmarshal(good, &x); err != nil {
			t.Fatal(err)
		}
		fn(x)
		b, _ := json.Marshal(x)
		return b
	}
	return map[string][]byte{
		"seed-good":           good,
		"seed-format-2":       edit(func(x map[string]any) { x["format"] = 2 }),
		"seed-huge-items":     edit(func(x map[string]any) { x["items"] = 1 << 60; x["categories"] = 1 << 40 }),
		"seed-negative-items": edit(func(x map[string]any) { x["items"] = -1 }),
		"seed-bad-checksum":   edit(func(x map[string]any) { x["checksum"] = "0" }),
		"seed-keys-off":       edit(func(x map[string]any) { x["keys"] = m.Keys + 1 }),
		"seed-items-string":   edit(func(x map[string]any) { x["items"] = strconv.Itoa(m.Items) }),
		"seed-truncated":      good[:len(good)/2],
		"seed-null":           []byte("null"),
		"seed-array":          []byte("[]"),
	}
}

// TestWriteCodecSeeds writes the seed corpora of the codec fuzz targets
// when run with -update-seeds.
func TestWriteCodecSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("go test -run TestWriteCodecSeeds ./index -args -update-seeds rewrites testdata/fuzz/Fuzz{DecodeList,DecodeItem,DecodeHistory,OpenManifest}")
	}
	for name, seeds := range map[string]map[string][]byte{
		"FuzzDecodeList":    listSeeds(),
		"FuzzDecodeItem":    itemSeeds(),
		"FuzzDecodeHistory": historySeeds(),
		"FuzzOpenManifest":  manifestSeeds(t),
	} {
		writeSeeds(t, name, seeds)
	}
}

// writeSeeds writes each seed as a file of testdata/fuzz/<target>/ in
// the corpus format of go test.
func writeSeeds(t *testing.T, target string, seeds map[string][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	must(t, os.MkdirAll(dir, 0o755))
	for name, b := range seeds {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n"), 0o644))
	}
}
