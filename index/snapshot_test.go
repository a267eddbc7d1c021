package index

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/model"
)

func smallBuilder(t testing.TB) *Builder {
	t.Helper()
	return smallBuilderWith(t, BuildOptions{})
}

func smallBuilderWith(t testing.TB, o BuildOptions) *Builder {
	t.Helper()
	b, err := NewBuilder(o)
	if err != nil {
		t.Fatal(err)
	}
	b.AddItem(&model.Item{ID: "a", Title: "A, the first", Categories: []string{"x", "y"}, Price: 9.5, HasPrice: true, Stock: 3, HasStock: true,
		Attrs: []model.Attr{{Key: "color", Value: "red"}}})
	add := func(user, item string, typ model.EventType, ts int64, basket string) {
		b.AddEvent(&model.Event{User: []byte(user), Item: []byte(item), Type: typ, TS: ts, Basket: []byte(basket)})
	}
	for u := 0; u < 20; u++ {
		user := string(rune('A' + u))
		add(user, "a", model.EventView, int64(100+u), "")
		add(user, "b", model.EventView, int64(101+u), "")
		add(user, "a", model.EventPurchase, int64(102+u), "o"+user)
		add(user, "b", model.EventPurchase, int64(102+u), "o"+user)
		if u%2 == 0 {
			add(user, "c", model.EventView, int64(103+u), "")
		}
	}
	return b
}

func TestSnapshotRoundTrip(t *testing.T) {
	root := t.TempDir()
	m, err := smallBuilder(t).Build(root)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Version() != m.Version || s.NumItems() != 3 || m.Users != 20 || m.Baskets != 20 {
		t.Fatalf("manifest %+v", m)
	}
	a, ok := s.Lookup([]byte("a"))
	if !ok {
		t.Fatal("item a not found")
	}
	it := s.Item(a)
	if it.Title != "A, the first" || it.Price != 9.5 || !it.HasPrice || it.Stock != 3 || len(it.Cats) != 2 ||
		s.CategoryName(it.Cats[1]) != "y" || it.Attrs[0] != (model.Attr{Key: "color", Value: "red"}) ||
		it.Users != 20 || it.Baskets != 20 || it.Events != 40 {
		t.Fatalf("item a: %+v", it)
	}
	if _, ok := s.Lookup([]byte("zz")); ok {
		t.Fatal("unknown item found")
	}
	b, _ := s.Lookup([]byte("b"))
	sim, err := s.AppendList(nil, ListSimilar, a)
	if err != nil || len(sim) == 0 || sim[0].Item != b {
		t.Fatalf("similar to a: %v, %v", sim, err)
	}
	pop, err := s.AppendList(nil, ListPopular, 0)
	if err != nil || len(pop) != 3 || pop[2].Item != 2 {
		t.Fatalf("popular: %v, %v", pop, err)
	}
	if cx, ok := s.Category([]byte("x")); !ok {
		t.Fatal("category x not found")
	} else if l, _ := s.AppendList(nil, ListPopular, cx); len(l) != 1 || l[0].Item != a {
		t.Fatalf("popular in x: %v", l)
	}
}

// A served version may be opened again (edgerec eval --snapshot, export)
// while it is open: published versions are read-only.
func TestSnapshotOpenTwice(t *testing.T) {
	root := t.TempDir()
	if _, err := smallBuilder(t).Build(root); err != nil {
		t.Fatal(err)
	}
	s1, err := OpenSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := OpenSnapshot(root)
	if err != nil {
		t.Fatalf("second open of a served version: %v", err)
	}
	a, ok := s2.Lookup([]byte("a"))
	if !ok {
		t.Fatal("item a not found through the second open")
	}
	l, err := s2.AppendList(nil, ListSimilar, a)
	if err != nil || len(l) == 0 {
		t.Fatalf("similar to a through the second open: %v, %v", l, err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err := s1.AppendList(nil, ListSimilar, a); err != nil || len(l) == 0 {
		t.Fatalf("first open after the second closed: %v, %v", l, err)
	}
}

func TestSnapshotRefusesDamage(t *testing.T) {
	f := func(name string, damage func(dir string)) {
		t.Helper()
		root := t.TempDir()
		if _, err := smallBuilder(t).Build(root); err != nil {
			t.Fatal(err)
		}
		dir, err := ResolveSnapshot(root)
		if err != nil {
			t.Fatal(err)
		}
		damage(dir)
		s, err := OpenSnapshot(root)
		if err == nil {
			s.Close()
			t.Fatalf("%s: damaged snapshot opened", name)
		}
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: error %v does not wrap ErrBadSnapshot", name, err)
		}
	}
	f("no manifest", func(dir string) { must(t, os.Remove(filepath.Join(dir, ManifestFile))) })
	f("bad manifest", func(dir string) { must(t, os.WriteFile(filepath.Join(dir, ManifestFile), []byte("{"), 0o644)) })
	f("wrong checksum", func(dir string) {
		p := filepath.Join(dir, ManifestFile)
		b, err := os.ReadFile(p)
		must(t, err)
		b = []byte(strings.Replace(string(b), `"checksum": "`, `"checksum": "0`, 1))
		must(t, os.WriteFile(p, b, 0o644))
	})
	f("wrong histories' checksum", func(dir string) {
		p := filepath.Join(dir, ManifestFile)
		b, err := os.ReadFile(p)
		must(t, err)
		if !strings.Contains(string(b), `"histories_checksum": "`) {
			t.Fatalf("no histories' checksum in %s", b)
		}
		b = []byte(strings.Replace(string(b), `"histories_checksum": "`, `"histories_checksum": "0`, 1))
		must(t, os.WriteFile(p, b, 0o644))
	})
	f("format", func(dir string) {
		p := filepath.Join(dir, ManifestFile)
		b, err := os.ReadFile(p)
		must(t, err)
		b = []byte(strings.Replace(string(b), `"format": 1`, `"format": 99`, 1))
		must(t, os.WriteFile(p, b, 0o644))
	})
	f("flipped byte in a table", func(dir string) {
		ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
		if len(ssts) == 0 {
			t.Fatal("no sstables")
		}
		b, err := os.ReadFile(ssts[0])
		must(t, err)
		b[len(b)/3] ^= 0xff
		must(t, os.WriteFile(ssts[0], b, 0o644))
	})
	f("missing table", func(dir string) {
		ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
		must(t, os.Remove(ssts[0]))
	})
	f("CURRENT names nothing", func(dir string) {
		must(t, os.WriteFile(filepath.Join(filepath.Dir(dir), CurrentFile), []byte("v1\n"), 0o644))
	})
}

// A failed build publishes nothing: the previous version stays current and
// no build directory is left behind.
func TestBuildFailureKeepsCurrent(t *testing.T) {
	root := t.TempDir()
	m, err := smallBuilder(t).Build(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBuilder(BuildOptions{MaxBad: 2})
	if err != nil {
		t.Fatal(err)
	}
	in := "user_id,item_id,event,ts,value,basket\nu1,i1,view,1,,\nu1,,view,2,,\nu2,i2,buy,3,,\nu3,i3,view,x,,\n"
	err = b.ReadEvents(strings.NewReader(in), "bad.csv")
	if !errors.Is(err, ErrTooManyBadLines) || !strings.Contains(err.Error(), "bad.csv:3:") {
		t.Fatalf("want too many bad lines naming bad.csv:3; got %v", err)
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".building") {
			t.Fatalf("left behind %s", e.Name())
		}
	}
	s, err := OpenSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Version() != m.Version {
		t.Fatalf("current version %d; want %d", s.Version(), m.Version)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestManifestKeys: a manifest's keys are snake_case, the weights' too;
// a manifest of an older build, whose weights carry their Go field names,
// still opens with the same weights.
func TestManifestKeys(t *testing.T) {
	root := t.TempDir()
	w := model.Weights{View: 2, Click: 1.5, Cart: 3, Purchase: 7, Rating: 0.5, RatingValue: true, HalfLife: 86400}
	m, err := smallBuilderWith(t, BuildOptions{Weights: w}).Build(root)
	if err != nil {
		t.Fatal(err)
	}
	if m.Parameters.Weights != w {
		t.Fatalf("built with weights %+v; want %+v", m.Parameters.Weights, w)
	}
	path := filepath.Join(root, versionDir(m.Version), ManifestFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	var walk func(at string, v any)
	walk = func(at string, v any) {
		if o, ok := v.(map[string]any); ok {
			for k, x := range o {
				if !snake.MatchString(k) {
					t.Errorf("manifest key %s.%s is not snake_case", at, k)
				}
				walk(at+"."+k, x)
			}
		}
	}
	walk("", doc)
	weights := doc["parameters"].(map[string]any)["weights"].(map[string]any)
	var keys []string
	for k := range weights {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"cart", "click", "half_life", "purchase", "rating", "rating_value", "view"}; !slices.Equal(keys, want) {
		t.Fatalf("weights keys %q; want %q", keys, want)
	}

	// The manifest as an older build wrote it.
	old, _ := json.Marshal(map[string]any{"View": 2, "Click": 1.5, "Cart": 3, "Purchase": 7, "Rating": 0.5, "RatingValue": true, "HalfLife": 86400})
	doc["parameters"].(map[string]any)["weights"] = json.RawMessage(old)
	rewritten, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rewritten), `"RatingValue":true`) {
		t.Fatalf("the rewritten manifest lacks the old keys: %s", rewritten)
	}
	must(t, os.WriteFile(path, rewritten, 0o644))
	s, err := OpenSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Manifest().Parameters; got.Weights != w || got.K != m.Parameters.K || got.Similarity != m.Parameters.Similarity ||
		got.PopularHalfLife != m.Parameters.PopularHalfLife {
		t.Fatalf("an older manifest read as %+v; want %+v", got, m.Parameters)
	}
}
