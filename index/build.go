package index

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/edgerec/edgerec/model"
)

// The half-lives edgerec build gives the popular and trending lists
// unless told otherwise, in seconds.
const (
	DefaultPopularHalfLife  = 30 * 86400
	DefaultTrendingHalfLife = 3 * 86400
)

// ErrTooManyBadLines is returned when the input has more bad lines than
// BuildOptions.MaxBad allows.
var ErrTooManyBadLines = errors.New("index: too many bad input lines")

// BuildOptions configure a snapshot build. The zero value works.
type BuildOptions struct {
	// K is the length of the per-item lists (similar, bought together);
	// default 100. A negative K keeps every neighbour with a score (dense).
	K int
	// PopularK is the length of the popular and trending lists; default 1000.
	PopularK int
	// Similarity scores the similar-items lists. 0 chooses EASE when the
	// catalog has at most EASEMaxItems items with events, else cosine.
	Similarity model.Similarity
	// EASELambda is EASE's L2 weight; default 500 (best of 100…1000 on
	// the ML-100k item split).
	EASELambda float64
	// EASEMaxItems bounds the catalog size for EASE (O(n²) memory, O(n³)
	// time); default 4000.
	EASEMaxItems int
	// EASEMinUsers is the least number of users an item needs to take part
	// in EASE; rarer items get no similar list (the server falls back for
	// them). Default 5: on the ML-100k item split, 5 instead of 1 keeps
	// nDCG@10 within 0.001 and cuts the solve by half (O(n³)).
	EASEMinUsers int
	// BoughtTogether scores the bought-together lists; default LLR.
	BoughtTogether model.Similarity
	// MinSupport is the least number of baskets a pair needs to be listed
	// as bought together; default 2.
	MinSupport int
	// MaxUserItems bounds the items of one user that feed co-occurrence
	// (the most recent ones), keeping the cost of heavy users and bots in
	// check; default 1000.
	MaxUserItems int
	// Weights turn events into interest; the zero value means
	// model.DefaultWeights. Only events with a positive weight are kept.
	Weights model.Weights
	// PopularHalfLife and TrendingHalfLife are the half-lives, in seconds,
	// of the popular and trending lists' decay; 0 means no decay (edgerec
	// build's flags default to DefaultPopularHalfLife and
	// DefaultTrendingHalfLife).
	PopularHalfLife  float64
	TrendingHalfLife float64
	// MaxBad is the number of bad input lines tolerated before the build
	// fails; default 100. Negative means no bad line is tolerated.
	MaxBad int
	// Workers computing lists; default GOMAXPROCS.
	Workers int
	// Keep is how many of the newest versions the root keeps after a
	// publish (PruneSnapshots: CURRENT's and those in use are kept too);
	// default DefaultKeep, negative keeps every version.
	Keep int
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
}

func (o *BuildOptions) withDefaults() {
	if o.K == 0 {
		o.K = 100
	}
	if o.PopularK == 0 {
		o.PopularK = 1000
	}
	if o.EASELambda == 0 {
		o.EASELambda = 500
	}
	if o.EASEMaxItems == 0 {
		o.EASEMaxItems = 4000
	}
	if o.EASEMinUsers == 0 {
		o.EASEMinUsers = 5
	}
	if o.BoughtTogether == 0 {
		o.BoughtTogether = model.SimLLR
	}
	if o.MinSupport == 0 {
		o.MinSupport = 2
	}
	if o.MaxUserItems == 0 {
		o.MaxUserItems = 1000
	}
	if o.Weights == (model.Weights{}) {
		o.Weights = model.DefaultWeights()
	}
	if o.MaxBad == 0 {
		o.MaxBad = 100
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Keep == 0 {
		o.Keep = DefaultKeep
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// Validate reports the first bad option.
func (o *BuildOptions) Validate() error {
	if o.BoughtTogether == model.SimEASE {
		return fmt.Errorf("bought-together cannot use ease")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"EASE lambda", o.EASELambda}, {"popular half-life", o.PopularHalfLife}, {"trending half-life", o.TrendingHalfLife},
		{"EASE max items", float64(o.EASEMaxItems)}, {"EASE min users", float64(o.EASEMinUsers)},
		{"popular k", float64(o.PopularK)}, {"min support", float64(o.MinSupport)}, {"weights half-life", o.Weights.HalfLife},
		{"view weight", o.Weights.View}, {"click weight", o.Weights.Click}, {"cart weight", o.Weights.Cart},
		{"purchase weight", o.Weights.Purchase}, {"rating weight", o.Weights.Rating}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%s must be a finite number >= 0; got %v", f.name, f.v)
		}
	}
	if o.MaxUserItems < 2 {
		return fmt.Errorf("max user items must be at least 2; got %d", o.MaxUserItems)
	}
	return nil
}

// maxBadSamples is how many bad lines are kept for the report.
const maxBadSamples = 10

// Builder reads catalogs and event files and writes a snapshot. Memory is
// O(events) in a compact columnar form (about 30 bytes an event) plus the
// id maps; strings are kept once per distinct id.
type Builder struct {
	o BuildOptions

	itemID map[string]uint32
	items  []ItemInfo
	userID map[string]uint32
	catID  map[string]uint32
	cats   []string // cats[0] = "" (all)

	// events, one entry per kept event
	evUser   []uint32
	evItem   []uint32
	evType   []model.EventType
	evTS     []int64
	evValue  []float32 // NaN: no value
	evBasket []uint64  // 0: none

	files      []string
	ctx        context.Context // of the build under way
	read       int64           // events read, kept or not
	bad        int64
	badSamples []string
	newest     int64
	started    time.Time
}

// NewBuilder returns a Builder with o's defaults filled in.
func NewBuilder(o BuildOptions) (*Builder, error) {
	o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Builder{
		o:       o,
		itemID:  make(map[string]uint32),
		userID:  make(map[string]uint32),
		catID:   make(map[string]uint32),
		cats:    []string{""},
		started: time.Now(),
	}, nil
}

// Options returns the options in force, defaults filled in.
func (b *Builder) Options() BuildOptions { return b.o }

// BadLines returns the number of bad lines so far and the first few.
func (b *Builder) BadLines() (int64, []string) { return b.bad, b.badSamples }

// Events returns the number of events read and kept.
func (b *Builder) Events() (read, kept int64) { return b.read, int64(len(b.evUser)) }

func (b *Builder) badLine(err error) error {
	b.bad++
	if len(b.badSamples) < maxBadSamples {
		b.badSamples = append(b.badSamples, err.Error())
	}
	if b.o.MaxBad < 0 || b.bad > int64(b.o.MaxBad) {
		return fmt.Errorf("%w: %d (max %d); first: %s", ErrTooManyBadLines, b.bad, max(b.o.MaxBad, 0),
			strings.Join(b.badSamples, "; "))
	}
	return nil
}

// ReadItemsFile reads a catalog file (CSV or NDJSON, plain, gzip or zstd).
func (b *Builder) ReadItemsFile(path string) error {
	f, err := OpenInput(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return b.ReadItems(f, path)
}

// ReadItems reads a catalog; name (the path as given) is used in error
// messages and listed in the manifest. A later record of the same id
// replaces an earlier one.
func (b *Builder) ReadItems(r io.Reader, name string) error {
	b.files = append(b.files, name)
	ir, err := NewItemReader(r, name)
	if err != nil {
		return err
	}
	var it model.Item
	for {
		err := ir.Next(&it)
		if err == io.EOF {
			return nil
		}
		var le *LineError
		if errors.As(err, &le) {
			if err := b.badLine(err); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err // the reader names the file
		}
		b.AddItem(&it)
	}
}

// AddItem adds or replaces a catalog entry. it is not retained.
func (b *Builder) AddItem(it *model.Item) {
	n := b.internItem([]byte(it.ID))
	info := &b.items[n]
	users, baskets, events := info.Users, info.Baskets, info.Events
	*info = ItemInfo{Item: *it}
	info.Users, info.Baskets, info.Events = users, baskets, events
	info.Cats = make([]uint32, len(it.Categories))
	for i, c := range it.Categories {
		id, ok := b.catID[c]
		if !ok {
			id = uint32(len(b.cats))
			b.cats = append(b.cats, c)
			b.catID[c] = id
		}
		info.Cats[i] = id
	}
}

func (b *Builder) internItem(id []byte) uint32 {
	if n, ok := b.itemID[string(id)]; ok {
		return n
	}
	n := uint32(len(b.items))
	s := string(id)
	b.itemID[s] = n
	b.items = append(b.items, ItemInfo{Item: model.Item{ID: s}})
	return n
}

func (b *Builder) internUser(id []byte) uint32 {
	if n, ok := b.userID[string(id)]; ok {
		return n
	}
	n := uint32(len(b.userID))
	b.userID[string(id)] = n
	return n
}

// ReadEventsFile reads an events file (CSV or NDJSON, plain, gzip or zstd).
func (b *Builder) ReadEventsFile(path string) error {
	f, err := OpenInput(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return b.ReadEvents(f, path)
}

// ReadEvents reads events; name (the path as given) is used in error
// messages and listed in the manifest.
func (b *Builder) ReadEvents(r io.Reader, name string) error {
	b.files = append(b.files, name)
	er, err := NewEventReader(r, name)
	if err != nil {
		return err
	}
	var ev model.Event
	last := time.Now()
	for {
		err := er.Next(&ev)
		if err == io.EOF {
			return nil
		}
		var le *LineError
		if errors.As(err, &le) {
			if err := b.badLine(err); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err // the reader names the file
		}
		b.AddEvent(&ev)
		if b.read&0xffff == 0 && time.Since(last) > 5*time.Second {
			last = time.Now()
			b.o.Log("read %d events from %s (%d bad lines)", b.read, name, b.bad)
		}
	}
}

// AddEvent adds one event. ev is not retained. Events that carry no item
// interest under the build's weights (impressions, exposures, …) are
// counted and dropped.
func (b *Builder) AddEvent(ev *model.Event) {
	b.read++
	if b.o.Weights.Of(ev.Type, ev.Value, ev.HasValue) <= 0 {
		return
	}
	b.evUser = append(b.evUser, b.internUser(ev.User))
	b.evItem = append(b.evItem, b.internItem(ev.Item))
	b.evType = append(b.evType, ev.Type)
	b.evTS = append(b.evTS, ev.TS)
	v := float32(math.NaN())
	if ev.HasValue {
		v = float32(ev.Value)
	}
	b.evValue = append(b.evValue, v)
	var bk uint64
	if len(ev.Basket) > 0 {
		bk = xxhash.Sum64(ev.Basket) | 1
	}
	b.evBasket = append(b.evBasket, bk)
	if ev.TS > b.newest {
		b.newest = ev.TS
	}
}

// csr is a compressed sparse row matrix of ids: row r holds
// col[ptr[r]:ptr[r+1]].
type csr struct {
	ptr []int64
	col []uint32
}

func (m *csr) row(r uint32) []uint32 { return m.col[m.ptr[r]:m.ptr[r+1]] }
func (m *csr) rows() int             { return len(m.ptr) - 1 }

// transpose returns the column-major view of m with n columns.
func (m *csr) transpose(n int) csr {
	t := csr{ptr: make([]int64, n+1), col: make([]uint32, len(m.col))}
	for _, c := range m.col {
		t.ptr[c+1]++
	}
	for i := 1; i <= n; i++ {
		t.ptr[i] += t.ptr[i-1]
	}
	next := make([]int64, n)
	copy(next, t.ptr[:n])
	for r := 0; r < m.rows(); r++ {
		for _, c := range m.row(uint32(r)) {
			t.col[next[c]] = uint32(r)
			next[c]++
		}
	}
	return t
}

// userItems groups the kept events by user: per user the distinct items,
// at most MaxUserItems of the most recently touched, sorted by item.
func (b *Builder) userItems() csr {
	nUsers := len(b.userID)
	ptr := make([]int64, nUsers+1)
	for _, u := range b.evUser {
		ptr[u+1]++
	}
	for i := 1; i <= nUsers; i++ {
		ptr[i] += ptr[i-1]
	}
	order := make([]uint32, len(b.evUser))
	next := make([]int64, nUsers)
	copy(next, ptr[:nUsers])
	for e, u := range b.evUser {
		order[next[u]] = uint32(e)
		next[u]++
	}
	next = nil
	last := make([]int64, len(b.items)) // last event time per item for the current user, +1
	out := csr{ptr: make([]int64, nUsers+1), col: make([]uint32, 0, len(b.evUser)/2)}
	var row []uint32
	for u := 0; u < nUsers; u++ {
		row = row[:0]
		for _, e := range order[ptr[u]:ptr[u+1]] {
			it := b.evItem[e]
			if last[it] == 0 {
				row = append(row, it)
				last[it] = math.MinInt64 + 1
			}
			if ts := b.evTS[e]; ts > last[it] {
				last[it] = ts
			}
		}
		if len(row) > b.o.MaxUserItems {
			sort.Slice(row, func(i, j int) bool {
				if last[row[i]] != last[row[j]] {
					return last[row[i]] > last[row[j]]
				}
				return row[i] < row[j]
			})
			for _, it := range row[b.o.MaxUserItems:] {
				last[it] = 0
			}
			row = row[:b.o.MaxUserItems]
		}
		sort.Slice(row, func(i, j int) bool { return row[i] < row[j] })
		for _, it := range row {
			last[it] = 0
		}
		out.col = append(out.col, row...)
		out.ptr[u+1] = int64(len(out.col))
	}
	return out
}

// baskets groups purchase events into baskets: by basket id where the
// event has one, else by user and minute. Rows hold distinct items, sorted.
func (b *Builder) baskets() csr {
	type pair struct {
		basket uint64
		item   uint32
	}
	var ps []pair
	for e, t := range b.evType {
		if t != model.EventPurchase {
			continue
		}
		bk := b.evBasket[e]
		if bk == 0 {
			bk = xxhash.Sum64String(strconv.FormatUint(uint64(b.evUser[e]), 10)+"@"+strconv.FormatInt(b.evTS[e]/60, 10)) &^ 1
		}
		ps = append(ps, pair{bk, b.evItem[e]})
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].basket != ps[j].basket {
			return ps[i].basket < ps[j].basket
		}
		return ps[i].item < ps[j].item
	})
	out := csr{ptr: []int64{0}}
	for i, p := range ps {
		if i > 0 && p.basket == ps[i-1].basket && p.item == ps[i-1].item {
			continue
		}
		if i > 0 && p.basket != ps[i-1].basket {
			out.ptr = append(out.ptr, int64(len(out.col)))
		}
		out.col = append(out.col, p.item)
	}
	if len(out.col) > 0 {
		out.ptr = append(out.ptr, int64(len(out.col)))
	}
	return out
}

// kv is one key and value to write.
type kv struct{ k, v []byte }

// Build computes every list and publishes a new snapshot version under
// root. On any error nothing is published and the temporary directory is
// removed. Before it starts, it removes what stopped builds and unpacks
// left in root (RemoveDebris); once published, it prunes the versions
// beyond the newest BuildOptions.Keep (PruneSnapshots). Both are logged;
// their failures too, which fail no build.
func (b *Builder) Build(root string) (*Manifest, error) {
	return b.BuildContext(context.Background(), root)
}

// BuildContext is Build, stopped (nothing published) when ctx is done.
func (b *Builder) BuildContext(ctx context.Context, root string) (*Manifest, error) {
	b.ctx = ctx
	if len(b.items) == 0 {
		return nil, fmt.Errorf("cannot build a snapshot: no items and no events")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create snapshot root %q: %w", root, err)
	}
	if _, err := RemoveDebris(root, time.Now(), b.o.Log); err != nil {
		b.o.Log("cannot remove debris: %v", err)
	}
	version := uint64(time.Now().UnixNano())
	tmp, err := os.MkdirTemp(root, buildingPrefix)
	if err != nil {
		return nil, fmt.Errorf("cannot create a build directory in %q: %w", root, err)
	}
	// Locked shared while the build runs: another build's RemoveDebris
	// leaves it alone. The lock follows the directory when it is renamed.
	lock, err := lockDir(tmp, false)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("cannot lock the build directory: %w", err)
	}
	defer lock.unlock()
	// MkdirTemp makes it 0700; a server running as another user must read it.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("cannot open up %q: %w", tmp, err)
	}
	published := false
	defer func() {
		if !published {
			_ = os.RemoveAll(tmp)
		}
	}()
	db, err := pebble.Open(tmp, snapshotOptions(false))
	if err != nil {
		return nil, fmt.Errorf("cannot open pebble at %q: %w", tmp, err)
	}
	m, err := b.write(db, version)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("cannot close pebble at %q: %w", tmp, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.BuildSeconds = time.Since(b.started).Seconds()
	mb, err := jsonIndent(m)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(tmp, ManifestFile), mb); err != nil {
		return nil, err
	}
	// Verify what was written before anyone can see it.
	s, err := OpenSnapshot(tmp)
	if err != nil {
		return nil, fmt.Errorf("cannot verify the new snapshot: %w", err)
	}
	_ = s.Close()
	if _, err := publish(root, tmp, version); err != nil {
		return nil, err
	}
	published = true
	b.o.Log("published snapshot %s in %s", versionDir(version), root)
	lock.unlock()
	if _, err := PruneSnapshots(root, b.o.Keep, b.o.Log); err != nil {
		b.o.Log("cannot prune old snapshots: %v", err)
	}
	return m, nil
}

func (b *Builder) write(db *pebble.DB, version uint64) (*Manifest, error) {
	o := &b.o
	m := &Manifest{
		Format:     FormatVersion,
		Version:    version,
		Created:    time.Now().UTC(),
		Items:      len(b.items),
		Categories: len(b.cats) - 1,
		Users:      len(b.userID),
		Events:     b.read,
		BadLines:   b.bad,
		Files:      b.files,
		Newest:     b.newest,
		Lists:      map[string]int{},
	}
	w := newBatchWriter(db)

	t := time.Now()
	users := b.userItems()
	items := users.transpose(len(b.items))
	for i := range b.items {
		b.items[i].Users = uint32(len(items.row(uint32(i))))
	}
	for _, it := range b.evItem {
		b.items[it].Events++
	}
	o.Log("grouped %d events of %d users on %d items in %s", len(b.evUser), len(b.userID), len(b.items), time.Since(t).Round(time.Millisecond))

	sim := o.Similarity
	nActive := 0
	for i := range b.items {
		if int(b.items[i].Users) >= o.EASEMinUsers {
			nActive++
		}
	}
	if sim == 0 {
		sim = model.SimCosine
		if nActive <= o.EASEMaxItems {
			sim = model.SimEASE
		}
	}
	m.Parameters = BuildParams{
		K: o.K, PopularK: o.PopularK, Similarity: sim.String(), BoughtTogether: o.BoughtTogether.String(),
		MinSupport: o.MinSupport, MaxUserItems: o.MaxUserItems, Weights: o.Weights,
		PopularHalfLife: o.PopularHalfLife, TrendingHalfLife: o.TrendingHalfLife,
	}
	t = time.Now()
	var n int
	var err error
	if sim == model.SimEASE {
		m.Parameters.EASELambda = o.EASELambda
		n, err = b.writeEASE(w, &users, &items)
	} else {
		n, err = b.writeCoLists(w, ListSimilar, &users, &items, sim, 1, float64(len(b.userID)))
	}
	if err != nil {
		return nil, err
	}
	m.Lists[ListSimilar.String()] = n
	o.Log("similar items (%s): %d lists in %s", sim, n, time.Since(t).Round(time.Millisecond))

	t = time.Now()
	baskets := b.baskets()
	inBaskets := baskets.transpose(len(b.items))
	for i := range b.items {
		b.items[i].Baskets = uint32(len(inBaskets.row(uint32(i))))
	}
	m.Baskets = baskets.rows()
	n, err = b.writeCoLists(w, ListBought, &baskets, &inBaskets, o.BoughtTogether, o.MinSupport, float64(baskets.rows()))
	if err != nil {
		return nil, err
	}
	m.Lists[ListBought.String()] = n
	o.Log("bought together (%s, %d baskets): %d lists in %s", o.BoughtTogether, baskets.rows(), n, time.Since(t).Round(time.Millisecond))

	t = time.Now()
	for _, kind := range []ListKind{ListPopular, ListTrending} {
		hl := o.PopularHalfLife
		if kind == ListTrending {
			hl = o.TrendingHalfLife
		}
		n, err := b.writePopular(w, kind, hl)
		if err != nil {
			return nil, err
		}
		m.Lists[kind.String()] = n
	}
	if m.Histories, err = b.writeHistories(w); err != nil {
		return nil, err
	}
	for i := range b.items {
		k := makeKey(prefixItem, uint32(i))
		if err := w.set(k[:], AppendItem(nil, &b.items[i])); err != nil {
			return nil, err
		}
	}
	for c := 1; c < len(b.cats); c++ {
		k := makeKey(prefixCategory, uint32(c))
		if err := w.set(k[:], []byte(b.cats[c])); err != nil {
			return nil, err
		}
	}
	if err := w.flush(); err != nil {
		return nil, err
	}
	o.Log("popular lists, %d users' histories and %d item records in %s", m.Histories, len(b.items), time.Since(t).Round(time.Millisecond))

	t = time.Now()
	if err := db.Flush(); err != nil {
		return nil, fmt.Errorf("cannot flush snapshot: %w", err)
	}
	if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		return nil, fmt.Errorf("cannot compact snapshot: %w", err)
	}
	m.Keys, m.Checksum, m.HistoriesChecksum, err = hashStore(db)
	if err != nil {
		return nil, fmt.Errorf("cannot checksum snapshot: %w", err)
	}
	o.Log("compacted and checksummed %d keys in %s", m.Keys, time.Since(t).Round(time.Millisecond))
	return m, nil
}

// writeCoLists writes, for every item, the top-K items co-occurring with it
// in the rows of rows (users or baskets), scored by sim from the counts,
// keeping pairs seen in at least minSupport rows. cols is the transpose of
// rows; n the number of rows.
func (b *Builder) writeCoLists(w *batchWriter, kind ListKind, rows, cols *csr, sim model.Similarity, minSupport int, n float64) (int, error) {
	// A bought-together list only holds pairs bought together more often
	// than chance (lift > 1); LLR needs the same check, since it also grows
	// with evidence against association.
	positive := kind == ListBought || sim == model.SimLLR
	return b.parallelItems(w, kind, b.coRow(rows, cols, sim, minSupport, n, positive))
}

// rowFunc computes the list of item i into dst with the scratch of one
// worker: acc is zero on entry and must be left zero, touched is empty.
type rowFunc func(acc, touched []uint32, top *model.TopK, i uint32, dst []model.Neighbour) ([]uint32, []model.Neighbour)

// coRow returns the rowFunc of writeCoLists.
func (b *Builder) coRow(rows, cols *csr, sim model.Similarity, minSupport int, n float64, positive bool) rowFunc {
	k := b.o.K
	if k < 0 {
		k = len(b.items)
	}
	return func(acc []uint32, touched []uint32, top *model.TopK, i uint32, dst []model.Neighbour) ([]uint32, []model.Neighbour) {
		ci := float64(len(cols.row(i)))
		if ci == 0 {
			return touched, dst
		}
		for _, r := range cols.row(i) {
			for _, j := range rows.row(r) {
				if acc[j] == 0 {
					touched = append(touched, j)
				}
				acc[j]++
			}
		}
		top.Reset(k)
		for _, j := range touched {
			c := acc[j]
			acc[j] = 0
			if j == i || int(c) < minSupport {
				continue
			}
			cij, cj := float64(c), float64(len(cols.row(j)))
			if positive && cij*n <= ci*cj {
				continue
			}
			s := model.CoScore(sim, cij, ci, cj, n)
			if s > 0 {
				top.Push(model.Neighbour{Item: j, Score: float32(s), Count: c})
			}
		}
		return touched[:0], top.AppendSorted(dst)
	}
}

// parallelItems runs row for every item on o.Workers goroutines, each with
// its own scratch, and writes the non-empty lists under kind.
func (b *Builder) parallelItems(w *batchWriter, kind ListKind, row rowFunc) (int, error) {
	nItems := len(b.items)
	out := make(chan kv, 256)
	var wg sync.WaitGroup
	for wk := 0; wk < b.o.Workers; wk++ {
		wg.Add(1)
		go func(wk int) {
			defer wg.Done()
			acc := make([]uint32, nItems)
			var touched []uint32
			var top model.TopK
			var list []model.Neighbour
			for i, j := wk, 0; i < nItems; i, j = i+b.o.Workers, j+1 {
				if j&255 == 0 && b.ctx.Err() != nil {
					return // the build stops: the writer reports ctx's error
				}
				touched, list = row(acc, touched, &top, uint32(i), list[:0])
				if len(list) == 0 {
					continue
				}
				k := makeKey(byte(kind), uint32(i))
				out <- kv{append([]byte(nil), k[:]...), AppendList(nil, list)}
			}
		}(wk)
	}
	go func() { wg.Wait(); close(out) }()
	n := 0
	var err error
	for e := range out {
		if err == nil {
			err = w.set(e.k, e.v)
			n++
		}
	}
	if err == nil {
		err = b.ctx.Err()
	}
	return n, err
}

// writeEASE fits EASE on the binary user×item matrix of the items with at
// least EASEMinUsers users and writes the top-K positive weights of each row
// of B as the item's similar list. Rarer items get cosine lists.
func (b *Builder) writeEASE(w *batchWriter, users, items *csr) (int, error) {
	dense := make([]uint32, 0, len(b.items))
	pos := make([]int32, len(b.items))
	for i := range b.items {
		pos[i] = -1
		if int(b.items[i].Users) >= b.o.EASEMinUsers {
			pos[i] = int32(len(dense))
			dense = append(dense, uint32(i))
		}
	}
	n := len(dense)
	if n == 0 {
		return b.writeCoLists(w, ListSimilar, users, items, model.SimCosine, 1, float64(users.rows()))
	}
	g := make([]float64, n*n)
	for u := 0; u < users.rows(); u++ {
		row := users.row(uint32(u))
		for _, a := range row {
			if pos[a] < 0 {
				continue
			}
			ga := g[int(pos[a])*n:]
			for _, c := range row {
				if pos[c] >= 0 {
					ga[pos[c]]++
				}
			}
		}
	}
	t := time.Now()
	bm, err := model.EASE(g, n, b.o.EASELambda)
	if err != nil {
		return 0, err
	}
	b.o.Log("EASE: %d items, lambda %v, solved in %s", n, b.o.EASELambda, time.Since(t).Round(time.Millisecond))
	k := b.o.K
	if k < 0 {
		k = n
	}
	return b.parallelItems(w, ListSimilar, func(_, touched []uint32, top *model.TopK, i uint32, dst []model.Neighbour) ([]uint32, []model.Neighbour) {
		p := pos[i]
		if p < 0 {
			return touched, dst
		}
		top.Reset(k)
		for c, v := range bm[int(p)*n : int(p+1)*n] {
			if v > 0 {
				j := dense[c]
				top.Push(model.Neighbour{Item: j, Score: float32(v)})
			}
		}
		dst = top.AppendSorted(dst)
		return touched, dst
	})
}

// writePopular writes, for all items (category 0) and for every category,
// the items ranked by decayed event weight with the given half-life.
func (b *Builder) writePopular(w *batchWriter, kind ListKind, halfLife float64) (int, error) {
	score := make([]float64, len(b.items))
	for e, it := range b.evItem {
		score[it] += b.o.Weights.Of(b.evType[e], float64(b.evValue[e]), !math.IsNaN(float64(b.evValue[e]))) *
			model.Decay(float64(b.newest-b.evTS[e]), halfLife)
	}
	tops := make([]model.TopK, len(b.cats))
	for c := range tops {
		tops[c].Reset(b.o.PopularK)
	}
	for i, s := range score {
		if s <= 0 {
			continue
		}
		n := model.Neighbour{Item: uint32(i), Score: float32(s), Count: b.items[i].Events}
		tops[0].Push(n)
		for _, c := range b.items[i].Cats {
			tops[c].Push(n)
		}
	}
	written := 0
	var list []model.Neighbour
	for c := range tops {
		list = tops[c].AppendSorted(list[:0])
		if len(list) == 0 {
			continue
		}
		k := makeKey(byte(kind), uint32(c))
		if err := w.set(k[:], AppendList(nil, list)); err != nil {
			return written, err
		}
		written++
	}
	return written, nil
}

// batchWriter writes through Pebble batches of a few MiB.
type batchWriter struct {
	db    *pebble.DB
	batch *pebble.Batch
}

func newBatchWriter(db *pebble.DB) *batchWriter {
	return &batchWriter{db: db, batch: db.NewBatch()}
}

func (w *batchWriter) set(k, v []byte) error {
	if err := w.batch.Set(k, v, nil); err != nil {
		return fmt.Errorf("cannot write key %q: %w", k, err)
	}
	if w.batch.Len() > 4<<20 {
		return w.flush()
	}
	return nil
}

func (w *batchWriter) flush() error {
	if w.batch.Empty() {
		return nil
	}
	if err := w.batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("cannot commit batch: %w", err)
	}
	w.batch = w.db.NewBatch()
	return nil
}
