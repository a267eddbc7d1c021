package bench

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// genBytes runs Gen into memory.
func genBytes(t *testing.T, o GenOptions) (events, items []byte, st GenStats) {
	t.Helper()
	var ev, it bytes.Buffer
	st, err := Gen(&ev, &it, o)
	if err != nil {
		t.Fatalf("Gen(%+v): %s", o, err)
	}
	return ev.Bytes(), it.Bytes(), st
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(b))
	r.ReuseRecord = false
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("cannot parse CSV: %s", err)
	}
	return rows
}

func TestDefaultStart(t *testing.T) {
	if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix(); defaultStart != want {
		t.Fatalf("defaultStart = %d, want %d", defaultStart, want)
	}
}

func TestGenOptionsWithDefaults(t *testing.T) {
	t.Parallel()
	f := func(in, want GenOptions) {
		t.Helper()
		if got := in.withDefaults(); got != want {
			t.Fatalf("withDefaults(%+v)\ngot  %+v\nwant %+v", in, got, want)
		}
	}
	f(GenOptions{}, GenOptions{Events: 100_000, Items: 500, Users: 2500, Categories: 10, Seed: 1, Start: defaultStart, Days: 60})
	f(GenOptions{Events: 1000}, GenOptions{Events: 1000, Items: 200, Users: 50, Categories: 5, Seed: 1, Start: defaultStart, Days: 60})
	f(GenOptions{Events: 100_000_000}, GenOptions{Events: 100_000_000, Items: 200_000, Users: 2_500_000, Categories: 500, Seed: 1, Start: defaultStart, Days: 60})
	f(GenOptions{Events: 10, Items: 3, Users: 7, Seed: 9, Start: 5, Days: 1}, GenOptions{Events: 10, Items: 3, Users: 7, Categories: 3, Seed: 9, Start: 5, Days: 1})
}

func TestGenOptionsValidate(t *testing.T) {
	t.Parallel()
	f := func(o GenOptions, wantErr bool) {
		t.Helper()
		err := o.Validate()
		if (err != nil) != wantErr {
			t.Fatalf("Validate(%+v) = %v, want error: %v", o, err, wantErr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "cannot ") {
			t.Fatalf("error %q does not start with \"cannot \"", err)
		}
	}
	f(GenOptions{}, false)
	f(GenOptions{Events: 1, Items: 2, Users: 1, Categories: 2}, false)
	f(GenOptions{Events: -1}, true)
	f(GenOptions{Items: -1}, true)
	f(GenOptions{Users: -1}, true)
	f(GenOptions{Categories: -1}, true)
	f(GenOptions{Days: -1}, true)
	f(GenOptions{Start: -1}, true)
	f(GenOptions{Items: 1}, true)                  // one category: no complements
	f(GenOptions{Items: 10, Categories: 1}, true)  // same
	f(GenOptions{Items: 10, Categories: 11}, true) // an empty category
	f(GenOptions{Items: MaxGenItems + 1}, true)
	f(GenOptions{Users: MaxGenUsers + 1}, true)
	f(GenOptions{Items: MaxGenCategories + 1, Categories: MaxGenCategories + 1}, true)
	f(GenOptions{Days: MaxGenDays + 1}, true)

	// Gen and GenFiles refuse invalid options before writing anything.
	var ev, it bytes.Buffer
	if _, err := Gen(&ev, &it, GenOptions{Items: 1}); err == nil || ev.Len() != 0 || it.Len() != 0 {
		t.Fatalf("Gen with invalid options: err=%v, wrote %d+%d bytes", err, ev.Len(), it.Len())
	}
	dir := t.TempDir()
	if _, err := GenFiles(filepath.Join(dir, "e.csv"), filepath.Join(dir, "i.csv"), GenOptions{Days: -1}); err == nil {
		t.Fatalf("GenFiles with invalid options: no error")
	}
	assertDirNames(t, dir)
}

func TestGenDeterministic(t *testing.T) {
	t.Parallel()
	f := func(o GenOptions) {
		t.Helper()
		ev1, it1, st1 := genBytes(t, o)
		ev2, it2, st2 := genBytes(t, o)
		if !bytes.Equal(ev1, ev2) || !bytes.Equal(it1, it2) || st1 != st2 {
			t.Fatalf("two runs of %+v differ", o)
		}
		o2 := o
		o2.Seed = o.withDefaults().Seed + 1
		ev3, it3, _ := genBytes(t, o2)
		if bytes.Equal(ev1, ev3) || bytes.Equal(it1, it3) {
			t.Fatalf("seeds %d and %d give the same output", o.withDefaults().Seed, o2.Seed)
		}
	}
	f(GenOptions{Events: 1000})
	f(GenOptions{Events: 20_000, Seed: 42})
	f(GenOptions{Events: 5000, Items: 50, Users: 10, Categories: 3, Days: 1})
}

func TestGenEventCount(t *testing.T) {
	t.Parallel()
	f := func(o GenOptions) {
		t.Helper()
		ev, it, st := genBytes(t, o)
		d := o.withDefaults()
		if n := int64(bytes.Count(ev, []byte("\n"))) - 1; n != d.Events || st.Events != d.Events {
			t.Fatalf("%+v: %d event rows, stats %d, want %d", o, n, st.Events, d.Events)
		}
		if n := int64(bytes.Count(it, []byte("\n"))); st.Items != int64(d.Items) || n < int64(d.Items)+1 {
			t.Fatalf("%+v: stats %d items, %d lines, want %d", o, st.Items, n, d.Items)
		}
	}
	f(GenOptions{Events: 1})
	f(GenOptions{Events: 2, Items: 2, Users: 1})
	f(GenOptions{Events: 7})
	f(GenOptions{Events: 999})
	f(GenOptions{Events: 12_345})
}

// TestGenFormat parses both files with encoding/csv and checks every row and
// the stats against the rows.
func TestGenFormat(t *testing.T) {
	t.Parallel()
	o := GenOptions{Events: 30_000, Seed: 7}
	d := o.withDefaults()
	evB, itB, st := genBytes(t, o)

	items := readCSV(t, itB)
	if got := strings.Join(items[0], ","); got != ItemsHeader {
		t.Fatalf("items header %q, want %q", got, ItemsHeader)
	}
	items = items[1:]
	if len(items) != d.Items {
		t.Fatalf("%d items, want %d", len(items), d.Items)
	}
	itemCat := make(map[string]string, len(items))
	var multi, outOfStock, comma, brandInTitle int
	for _, row := range items {
		if len(row) != 6 {
			t.Fatalf("item row %q has %d fields", row, len(row))
		}
		id, title, cat, price, stock, brand := row[0], row[1], row[2], row[3], row[4], row[5]
		if !isID(id, 'i') {
			t.Fatalf("bad item id %q", id)
		}
		if _, ok := itemCat[id]; ok {
			t.Fatalf("duplicate item id %q", id)
		}
		cats := strings.Split(cat, "|")
		if len(cats) > 2 || slices.Contains(cats, "") || (len(cats) == 2 && cats[0] == cats[1]) {
			t.Fatalf("bad category %q", cat)
		}
		itemCat[id] = cats[0]
		if len(cats) == 2 {
			multi++
		}
		if i := strings.IndexByte(price, '.'); i < 1 || len(price)-i != 3 {
			t.Fatalf("price %q does not have 2 decimals", price)
		}
		if p, err := strconv.ParseFloat(price, 64); err != nil || p <= 0 {
			t.Fatalf("bad price %q", price)
		}
		n, err := strconv.Atoi(stock)
		if err != nil || n < 0 {
			t.Fatalf("bad stock %q", stock)
		}
		if n == 0 {
			outOfStock++
		}
		if strings.Contains(title, ",") {
			comma++
		}
		if strings.HasPrefix(title, brand+" ") && brand != "" {
			brandInTitle++
		}
	}
	if f := float64(multi) / float64(len(items)); f < 0.1 || f > 0.3 {
		t.Fatalf("%.2f of items have two categories, want about 0.2", f)
	}
	if outOfStock == 0 || float64(outOfStock)/float64(len(items)) > 0.1 {
		t.Fatalf("%d of %d items out of stock, want about 3%%", outOfStock, len(items))
	}
	if comma == 0 {
		t.Fatalf("no title holds a comma")
	}
	if brandInTitle != len(items) {
		t.Fatalf("%d of %d titles start with the brand", brandInTitle, len(items))
	}

	rows := readCSV(t, evB)
	if got := strings.Join(rows[0], ","); got != EventsHeader {
		t.Fatalf("events header %q, want %q", got, EventsHeader)
	}
	rows = rows[1:]
	if int64(len(rows)) != d.Events {
		t.Fatalf("%d event rows, want %d", len(rows), d.Events)
	}
	users := map[string]bool{}
	basketUser := map[string]string{}
	basketTS := map[string]string{}
	purchases := 0
	lo, hi := d.Start, d.Start+int64(d.Days)*86400+86400
	for _, row := range rows {
		if len(row) != 6 {
			t.Fatalf("event row %q has %d fields", row, len(row))
		}
		user, item, ev, ts, value, basket := row[0], row[1], row[2], row[3], row[4], row[5]
		if !isID(user, 'u') {
			t.Fatalf("bad user id %q", user)
		}
		users[user] = true
		if _, ok := itemCat[item]; !ok {
			t.Fatalf("event item %q is not in the catalog", item)
		}
		if n, err := strconv.ParseInt(ts, 10, 64); err != nil || n < lo || n > hi {
			t.Fatalf("ts %q outside [%d, %d]", ts, lo, hi)
		}
		switch ev {
		case "view", "cart":
			if value != "" || basket != "" {
				t.Fatalf("%s row %q has a value or basket", ev, row)
			}
		case "purchase":
			if q, err := strconv.Atoi(value); err != nil || q < 1 || q > 3 {
				t.Fatalf("purchase row %q: quantity %q, want 1..3", row, value)
			}
			if !isID(basket, 'o') {
				t.Fatalf("purchase row %q: basket %q", row, basket)
			}
			if u, ok := basketUser[basket]; ok && (u != user || basketTS[basket] != ts) {
				t.Fatalf("basket %q shared by %q@%s and %q@%s", basket, u, basketTS[basket], user, ts)
			}
			basketUser[basket], basketTS[basket] = user, ts
			purchases++
		default:
			t.Fatalf("bad event %q", ev)
		}
	}
	if int64(len(users)) != st.Users || int64(len(basketUser)) != st.Baskets {
		t.Fatalf("stats %+v, rows have %d users and %d baskets", st, len(users), len(basketUser))
	}
	if st.Sessions < st.Users || st.Sessions > st.Events {
		t.Fatalf("stats %+v: sessions out of range", st)
	}
	if purchases == 0 || float64(purchases) > 0.2*float64(len(rows)) {
		t.Fatalf("%d purchases in %d events", purchases, len(rows))
	}
}

// isID reports whether s is prefix followed by a positive decimal number.
func isID(s string, prefix byte) bool {
	if len(s) < 2 || s[0] != prefix || s[1] == '0' {
		return false
	}
	n, err := strconv.ParseUint(s[1:], 10, 64)
	return err == nil && n > 0
}

func TestGenEventMix(t *testing.T) {
	t.Parallel()
	ev, _, st := genBytes(t, GenOptions{Events: 50_000})
	views := bytes.Count(ev, []byte(",view,"))
	carts := bytes.Count(ev, []byte(",cart,"))
	purchases := bytes.Count(ev, []byte(",purchase,"))
	if views+carts+purchases != 50_000 {
		t.Fatalf("%d+%d+%d events", views, carts, purchases)
	}
	if r := float64(carts) / float64(views); r < 0.08 || r > 0.16 {
		t.Fatalf("cart/view = %.3f, want 0.10..0.15", r)
	}
	// Each checkout is one session with carts; about 30-50% of them check out.
	if r := float64(st.Baskets) / float64(carts); r < 0.15 || r > 0.5 {
		t.Fatalf("baskets/carts = %.3f", r)
	}
}

// TestGenLearnable checks that the signals a recommender should find are
// there: co-views stay in a category far more than chance, consecutive views
// often hit related (nearby) items, and baskets often hold complements.
func TestGenLearnable(t *testing.T) {
	t.Parallel()
	o := GenOptions{Events: 50_000, Items: 2000, Categories: 40, Seed: 3}
	evB, itB, _ := genBytes(t, o)
	itemCat := map[string]string{}
	for _, row := range readCSV(t, itB)[1:] {
		itemCat[row[0]] = strings.Split(row[2], "|")[0]
	}
	rows := readCSV(t, evB)[1:]

	viewsPerCat := map[string]int{}
	var views, pairs, sameCat int
	prev := []string{"", "", ""}
	for _, row := range rows {
		if row[2] != "view" {
			continue
		}
		views++
		viewsPerCat[itemCat[row[1]]]++
		if row[0] == prev[0] && prev[2] == "view" {
			pairs++
			if itemCat[row[1]] == itemCat[prev[1]] {
				sameCat++
			}
		}
		prev = row
	}
	chance := 0.0
	for _, n := range viewsPerCat {
		p := float64(n) / float64(views)
		chance += p * p
	}
	got := float64(sameCat) / float64(pairs)
	if got < 4*chance || got < 0.5 {
		t.Fatalf("same-category co-views %.3f, chance %.3f", got, chance)
	}
	if testing.Verbose() {
		t.Logf("same-category co-views %.3f, chance %.3f", got, chance)
	}

	// White box: map ids back to the generator's item numbering.
	g := newGenerator(o.withDefaults())
	idx := make(map[string]int32, len(g.itemNum))
	for i, num := range g.itemNum {
		idx["i"+strconv.FormatUint(uint64(num), 10)] = int32(i)
	}
	var near, nearPairs int
	baskets := map[string][]int32{}
	var order []string
	for k, row := range rows {
		if row[2] == "purchase" {
			if _, ok := baskets[row[5]]; !ok {
				order = append(order, row[5])
			}
			baskets[row[5]] = append(baskets[row[5]], idx[row[1]])
		}
		if k == 0 || row[2] != "view" || rows[k-1][2] != "view" || rows[k-1][0] != row[0] {
			continue
		}
		a, b := idx[rows[k-1][1]], idx[row[1]]
		if g.itemCat[a] == g.itemCat[b] {
			nearPairs++
			if d := a - b; d >= -3 && d <= 3 && d != 0 {
				near++
			}
		}
	}
	if f := float64(near) / float64(nearPairs); f < 0.4 {
		t.Fatalf("%.3f of same-category co-views are nearby items, want > 0.4", f)
	}
	var multi, withComp int
	for _, id := range order {
		b := baskets[id]
		if len(b) < 2 {
			continue
		}
		multi++
	found:
		for _, x := range b {
			for _, c := range g.comp[3*int(x) : 3*int(x)+int(g.compN[x])] {
				if slices.Contains(b, c) {
					withComp++
					break found
				}
			}
		}
	}
	if testing.Verbose() {
		t.Logf("nearby co-views %d/%d, baskets with a complement pair %d/%d", near, nearPairs, withComp, multi)
	}
	if multi == 0 || float64(withComp)/float64(multi) < 0.5 {
		t.Fatalf("%d of %d multi-item baskets hold a complement pair, want > 50%%", withComp, multi)
	}
}

// TestGenStreams checks that memory does not grow with Events: with the
// catalog and users fixed, 20x more events allocate about the same.
func TestGenStreams(t *testing.T) {
	alloc := func(events int64) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := Gen(io.Discard, io.Discard, GenOptions{Events: events, Items: 1000, Users: 500}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, big := alloc(10_000), alloc(200_000)
	if big > small+64<<10 {
		t.Fatalf("10k events allocate %d bytes, 200k allocate %d: memory grows with events", small, big)
	}
}

func TestGenFiles(t *testing.T) {
	t.Parallel()
	o := GenOptions{Events: 5000, Seed: 11}
	wantEv, wantIt, wantSt := genBytes(t, o)
	f := func(evName, itName string) {
		t.Helper()
		dir := t.TempDir()
		evPath, itPath := filepath.Join(dir, evName), filepath.Join(dir, itName)
		st, err := GenFiles(evPath, itPath, o)
		if err != nil {
			t.Fatalf("GenFiles: %s", err)
		}
		if st != wantSt {
			t.Fatalf("stats %+v, want %+v", st, wantSt)
		}
		if got := readMaybeCompressed(t, evPath); !bytes.Equal(got, wantEv) {
			t.Fatalf("%s: content differs from Gen", evName)
		}
		if got := readMaybeCompressed(t, itPath); !bytes.Equal(got, wantIt) {
			t.Fatalf("%s: content differs from Gen", itName)
		}
		assertDirNames(t, dir, evName, itName)
	}
	f("events.csv", "items.csv")
	f("events.csv.gz", "items.csv.gz")
	f("events.csv.zst", "items.csv")
	f("events.csv.zst", "items.csv.zst")
}

func TestGenFilesFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := GenOptions{Events: 100}
	// The items directory does not exist: nothing may be left behind.
	if _, err := GenFiles(filepath.Join(dir, "e.csv.gz"), filepath.Join(dir, "nope", "i.csv"), o); err == nil {
		t.Fatalf("GenFiles into a missing directory: no error")
	}
	assertDirNames(t, dir)
	// The same file twice.
	p := filepath.Join(dir, "x.csv")
	if _, err := GenFiles(p, p, o); err == nil {
		t.Fatalf("GenFiles to one file twice: no error")
	}
	assertDirNames(t, dir)
	// The items path is a directory, so the second rename fails after the
	// events file was renamed into place: that one must be removed again.
	for _, name := range []string{"ev", "it"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "keep"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := GenFiles(filepath.Join(dir, "e.csv"), filepath.Join(dir, "it"), o); err == nil {
		t.Fatalf("GenFiles with items onto a directory: no error")
	}
	assertDirNames(t, dir, "ev", "it")
	if _, err := GenFiles(filepath.Join(dir, "ev"), filepath.Join(dir, "i.csv"), o); err == nil {
		t.Fatalf("GenFiles with events onto a directory: no error")
	}
	assertDirNames(t, dir, "ev", "it")
}

// failWriter accepts n bytes, then fails.
type failWriter struct{ n int }

var errFail = errors.New("test: write failed")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errFail
	}
	w.n -= len(p)
	return len(p), nil
}

func TestGenWriteError(t *testing.T) {
	t.Parallel()
	f := func(evLimit, itLimit int, wantPrefix string) {
		t.Helper()
		_, err := Gen(&failWriter{n: evLimit}, &failWriter{n: itLimit}, GenOptions{Events: 100_000})
		if !errors.Is(err, errFail) || !strings.HasPrefix(err.Error(), wantPrefix) {
			t.Fatalf("Gen: error %v, want %q wrapping %v", err, wantPrefix, errFail)
		}
	}
	f(1<<30, 0, "cannot write items: ")
	f(1<<30, 1000, "cannot write items: ")
	f(0, 1<<30, "cannot write events: ")
	f(200_000, 1<<30, "cannot write events: ")
}

func readMaybeCompressed(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".gz"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %s", path, err)
		}
		r = zr
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %s", path, err)
		}
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("cannot read %s: %s", path, err)
	}
	if strings.HasSuffix(path, ".csv") && (len(b) < 2 || b[0] == 0x1f || b[0] == 0x28) {
		t.Fatalf("%s: plain file looks compressed", path)
	}
	return b
}

// assertDirNames fails unless dir holds exactly names (no temporary files).
func assertDirNames(t *testing.T, dir string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}
