package bench

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Header lines of the files Gen writes.
const (
	EventsHeader = "user_id,item_id,event,ts,value,basket"
	ItemsHeader  = "item_id,title,category,price,stock,brand"
)

// Limits checked by GenOptions.Validate. They bound the O(Items+Users)
// memory of the generator (about 25 bytes per item and 10 per user).
const (
	MaxGenItems      = 50_000_000
	MaxGenUsers      = 100_000_000
	MaxGenCategories = 65_535
	MaxGenDays       = 36_500
)

// defaultStart is 2026-01-01T00:00:00Z.
const defaultStart = 1767225600

// GenOptions configures Gen. The zero value is valid: every zero field gets a
// default (see withDefaults); negative values are errors.
type GenOptions struct {
	// Events is the exact number of event rows to write. Default 100_000.
	Events int64
	// Items is the catalog size. Default clamp(Events/200, 200, 200_000).
	Items int
	// Users is the number of user ids events are drawn from; users with no
	// session do not appear. Default clamp(Events/40, 50, 5_000_000).
	Users int
	// Categories is the number of categories. At least 2 (complements live
	// in another category) and at most Items.
	// Default min(clamp(Items/50, 5, 500), Items).
	Categories int
	// Seed selects the data set. 0 means 1.
	Seed uint64
	// Start is the unix time (seconds) sessions begin at (each starts up to
	// 15 minutes after its point on the timeline).
	// Default 2026-01-01T00:00:00Z.
	Start int64
	// Days is the span sessions start in. Default 60.
	Days int
}

func clamp(v, lo, hi int64) int64 {
	return min(max(v, lo), hi)
}

// withDefaults returns o with every zero field set to its default.
func (o GenOptions) withDefaults() GenOptions {
	if o.Events == 0 {
		o.Events = 100_000
	}
	if o.Items == 0 {
		o.Items = int(clamp(o.Events/200, 200, 200_000))
	}
	if o.Users == 0 {
		o.Users = int(clamp(o.Events/40, 50, 5_000_000))
	}
	if o.Categories == 0 {
		o.Categories = min(int(clamp(int64(o.Items/50), 5, 500)), o.Items)
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Start == 0 {
		o.Start = defaultStart
	}
	if o.Days == 0 {
		o.Days = 60
	}
	return o
}

// Validate reports whether o, with defaults applied, can be generated.
func (o GenOptions) Validate() error {
	if o.Events < 0 || o.Items < 0 || o.Users < 0 || o.Categories < 0 || o.Days < 0 {
		return fmt.Errorf("cannot use negative gen options: events=%d items=%d users=%d categories=%d days=%d",
			o.Events, o.Items, o.Users, o.Categories, o.Days)
	}
	d := o.withDefaults()
	switch {
	case d.Items > MaxGenItems:
		return fmt.Errorf("cannot generate %d items: the limit is %d", d.Items, MaxGenItems)
	case d.Users > MaxGenUsers:
		return fmt.Errorf("cannot generate %d users: the limit is %d", d.Users, MaxGenUsers)
	case d.Categories < 2 || d.Categories > MaxGenCategories:
		return fmt.Errorf("cannot generate %d categories: want 2..%d", d.Categories, MaxGenCategories)
	case d.Categories > d.Items:
		return fmt.Errorf("cannot spread %d items over %d categories: want items >= categories", d.Items, d.Categories)
	case d.Days > MaxGenDays:
		return fmt.Errorf("cannot generate %d days: the limit is %d", d.Days, MaxGenDays)
	case d.Start < 0:
		return fmt.Errorf("cannot start at negative unix time %d", d.Start)
	}
	return nil
}

// GenStats counts what Gen wrote.
type GenStats struct {
	Events   int64 // event rows (always Options.Events on success)
	Items    int64 // item rows
	Users    int64 // distinct users with at least one event
	Sessions int64 // sessions with at least one event
	Baskets  int64 // distinct basket ids (checkouts with at least one purchase)
}

// Gen writes a synthetic catalog to items and an event log to events, as CSV
// with the headers ItemsHeader and EventsHeader. The catalog is written first
// and in full, then events are streamed in chunks of at most 64 KiB: memory is
// O(Items+Users), never O(Events). Gen does not close or sync the writers.
//
// Same options give byte-identical output with the same Go toolchain on the
// same architecture (all randomness comes from one PCG stream; floating-point
// maths may round differently on other architectures).
func Gen(events, items io.Writer, o GenOptions) (GenStats, error) {
	if err := o.Validate(); err != nil {
		return GenStats{}, err
	}
	g := newGenerator(o.withDefaults())
	if err := g.writeItems(items); err != nil {
		return g.stats, fmt.Errorf("cannot write items: %w", err)
	}
	g.newUsers()
	if err := g.writeEvents(events); err != nil {
		return g.stats, fmt.Errorf("cannot write events: %w", err)
	}
	return g.stats, nil
}

// GenFiles runs Gen into the files eventsPath and itemsPath. A path ending in
// ".gz" is gzip-compressed, one ending in ".zst" zstd-compressed, anything
// else is plain CSV. Each file is written to a temporary file in its
// directory and renamed into place only when both are complete, so a failed
// run leaves no partial file (if the second rename fails, the first file is
// removed again).
func GenFiles(eventsPath, itemsPath string, o GenOptions) (GenStats, error) {
	if err := o.Validate(); err != nil {
		return GenStats{}, err
	}
	if filepath.Clean(eventsPath) == filepath.Clean(itemsPath) {
		return GenStats{}, fmt.Errorf("cannot write events and items to the same file %q", eventsPath)
	}
	ef, err := createOutFile(eventsPath)
	if err != nil {
		return GenStats{}, err
	}
	defer ef.abort()
	itf, err := createOutFile(itemsPath)
	if err != nil {
		return GenStats{}, err
	}
	defer itf.abort()

	st, err := Gen(ef, itf, o)
	if err != nil {
		return st, err
	}
	if err := ef.finish(); err != nil {
		return st, err
	}
	if err := itf.finish(); err != nil {
		return st, err
	}
	if err := ef.rename(); err != nil {
		return st, err
	}
	if err := itf.rename(); err != nil {
		_ = os.Remove(ef.path)
		return st, err
	}
	return st, nil
}

// outFile is a temporary file, optionally behind a compressor, that becomes
// path once finished and renamed.
type outFile struct {
	path    string
	tmp     string
	f       *os.File
	c       io.WriteCloser // compressor writing to f, or nil
	renamed bool           // tmp became path: abort leaves it alone
}

func createOutFile(path string) (*outFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("cannot create temporary file for %q: %w", path, err)
	}
	of := &outFile{path: path, tmp: f.Name(), f: f}
	switch {
	case strings.HasSuffix(path, ".gz"):
		of.c = gzip.NewWriter(f)
	case strings.HasSuffix(path, ".zst"):
		zw, err := zstd.NewWriter(f)
		if err != nil {
			of.abort()
			return nil, fmt.Errorf("cannot create zstd writer for %q: %w", path, err)
		}
		of.c = zw
	}
	return of, nil
}

func (of *outFile) Write(p []byte) (int, error) {
	if of.c != nil {
		return of.c.Write(p)
	}
	return of.f.Write(p)
}

// finish flushes the compressor and syncs and closes the temporary file.
// The file is renamed by the caller.
func (of *outFile) finish() error {
	if of.c != nil {
		if err := of.c.Close(); err != nil {
			return fmt.Errorf("cannot finish compressing %q: %w", of.path, err)
		}
		of.c = nil
	}
	if err := of.f.Chmod(0o644); err != nil {
		return fmt.Errorf("cannot chmod %q: %w", of.tmp, err)
	}
	if err := of.f.Sync(); err != nil {
		return fmt.Errorf("cannot sync %q: %w", of.tmp, err)
	}
	err := of.f.Close()
	of.f = nil
	if err != nil {
		return fmt.Errorf("cannot close %q: %w", of.tmp, err)
	}
	return nil
}

// rename moves the finished temporary file to its path.
func (of *outFile) rename() error {
	if err := os.Rename(of.tmp, of.path); err != nil {
		return fmt.Errorf("cannot rename %q to %q: %w", of.tmp, of.path, err)
	}
	of.renamed = true
	return nil
}

// abort closes and removes the temporary file unless it was renamed.
// It is safe to call after finish and more than once.
func (of *outFile) abort() {
	if of.renamed {
		return
	}
	if of.c != nil {
		_ = of.c.Close()
		of.c = nil
	}
	if of.f != nil {
		_ = of.f.Close()
		of.f = nil
	}
	_ = os.Remove(of.tmp)
}

// rng draws from PCG only through Uint64, with our own mapping to ranges and
// floats, so the output does not depend on how math/rand/v2 maps them.
type rng struct {
	p rand.PCG
}

func (r *rng) seed(a, b uint64) {
	r.p.Seed(splitmix64(a), splitmix64(b^0x9e3779b97f4a7c15))
}

func (r *rng) u64() uint64 { return r.p.Uint64() }

// float returns a uniform float in [0, 1).
func (r *rng) float() float64 { return float64(r.p.Uint64()>>11) * 0x1p-53 }

// intn returns a uniform int in [0, n) for n > 0 (Lemire's multiply; the
// bias is below n/2^64).
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.p.Uint64(), uint64(n))
	return int(hi)
}

func (r *rng) chance(p float64) bool { return r.float() < p }

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Shape of the generated behaviour. The rates are per view unless noted.
const (
	itemZipfS      = 1.1  // item popularity within a category
	catZipfS       = 0.9  // category popularity (choice of favourites)
	activityAlpha  = 1.2  // Pareto shape of user activity
	activityCap    = 50.0 // cap on a user's activity weight (mean ≈ 3.3)
	viewStopP      = 0.22 // views per session are 1+Geometric(viewStopP)
	maxViews       = 25
	favSessionP    = 0.85 // a session starts in a favourite category
	neighbourP     = 0.55 // next view: a nearby item in the same category
	sameCatP       = 0.30 // next view: a popular item in the same category
	favSwitchP     = 0.08 // next view: a popular item in a favourite category
	cartP          = 0.12 // a view is followed by a cart
	maxCart        = 8
	checkoutP      = 0.40 // per session with a non-empty cart
	buyCartedP     = 0.90 // a carted item is bought at checkout (the first always is)
	buyComplementP = 0.45 // per bought item: its complement joins the basket
	multiCatP      = 0.20 // an item lists a second category
	outOfStockP    = 0.03
	titleCommaP    = 0.06
	sessionJitter  = 900 // seconds
)

// generator holds the catalog and user model. Items are numbered densely by
// idx, grouped by category in "relatedness" order: items with nearby idx in
// one category are related (co-viewed). Popularity is a separate random
// ranking inside each category.
type generator struct {
	o     GenOptions
	r     rng
	stats GenStats

	catStart []int32  // items of category c are idx catStart[c]..catStart[c+1]-1
	catName  []string // no ',' or '|'
	catSib   []uint16 // the second category some items of c list
	compCat  [][2]uint16
	catCDF   []float64 // prefix sums of category popularity
	zipfH    []float64 // zipfH[r] = sum_{k<=r} (k+1)^-itemZipfS
	popIdx   []int32   // popIdx[catStart[c]+r] = idx of the r-th most popular item of c
	itemCat  []uint16  // idx -> category
	itemNum  []uint32  // idx -> number in the item id "i<num>", a permutation of 1..Items
	comp     []int32   // 3 complement idx per item, the first compN[idx] are set
	compN    []uint8
	userProb []uint32 // alias table over users (Vose): keep i if draw < userProb[i]
	userAlt  []uint32 // else take userAlt[i]
	seen     []uint64 // bitset of users with an event

	buf        []byte
	cart       []int32
	basket     []int32
	nextBasket int64
	err        error
	w          io.Writer
}

var catWords = [...]string{
	"electronics", "audio", "phones", "computers", "cameras", "gaming", "tv", "smart-home",
	"kitchen", "cookware", "appliances", "furniture", "bedding", "bath", "lighting", "decor",
	"garden", "tools", "automotive", "outdoor", "camping", "cycling", "fitness", "running",
	"toys", "baby", "books", "music", "movies", "office", "stationery", "art-supplies",
	"beauty", "skincare", "fragrance", "health", "grocery", "coffee", "pet", "jewelry",
	"watches", "shoes", "womens", "mens", "kids", "bags", "luggage", "crafts",
}

var nouns = [...]string{
	"Headphones", "Speaker", "Charger", "Cable", "Case", "Stand", "Lamp", "Mug",
	"Kettle", "Pan", "Knife", "Chair", "Desk", "Pillow", "Towel", "Mirror",
	"Planter", "Drill", "Wrench", "Tent", "Backpack", "Bottle", "Jacket", "Sneakers",
	"Puzzle", "Blocks", "Notebook", "Pen", "Brush", "Serum", "Candle", "Leash",
	"Watch", "Wallet", "Blender", "Monitor", "Keyboard", "Mouse", "Helmet", "Mat",
}

var adjectives = [...]string{
	"Classic", "Compact", "Wireless", "Premium", "Ultra", "Eco", "Smart", "Portable",
	"Deluxe", "Mini", "Pro", "Essential", "Vintage", "Modern", "Rugged", "Soft",
	"Quick", "Silent", "Bold", "Slim",
}

// titleVariants follow ", " in about titleCommaP of titles, so those titles
// must be CSV-quoted; one also holds a double quote.
var titleVariants = [...]string{
	"Pack of 2", "Large", "Set of 3", "Black", "Refurbished", `12" Size`,
}

var brandHeads = [...]string{
	"Nova", "Zen", "Aero", "Lumi", "Vex", "Orbi", "Kilo", "Terra", "Pix", "Sol",
	"Quanta", "Ever", "Bright", "Max", "Fjord", "Hexa", "Mira", "Astra", "Koru", "Juno",
}

var brandTails = [...]string{
	"tek", "ly", "on", "ix", "wave", "line", "craft", "works", "gear", "form", "lab", "core",
}

func brandName(k int) string {
	n := len(brandHeads) * len(brandTails)
	h, q := k%len(brandHeads), k/len(brandHeads)
	s := brandHeads[h] + brandTails[(h+q)%len(brandTails)] // all pairs before a number is added
	if k >= n {
		s += strconv.Itoa(k/n + 1)
	}
	return s
}

func catNameOf(c int) string {
	s := catWords[c%len(catWords)]
	if c >= len(catWords) {
		s += "-" + strconv.Itoa(c/len(catWords)+1)
	}
	return s
}

// newGenerator seeds the generator and builds the catalog for o, which must
// be valid and have defaults applied.
func newGenerator(o GenOptions) *generator {
	g := &generator{o: o}
	g.r.seed(o.Seed, 0x243f6a8885a308d3)
	g.newCatalog()
	return g
}

// otherCat returns a uniform category other than c.
func (g *generator) otherCat(c int) uint16 {
	o := g.r.intn(g.o.Categories - 1)
	if o >= c {
		o++
	}
	return uint16(o)
}

func (g *generator) newCatalog() {
	nc, n := g.o.Categories, g.o.Items
	r := &g.r

	// Category sizes: 1 item each plus a random share of the rest.
	w := make([]float64, nc)
	total := 0.0
	for c := range w {
		w[c] = 0.3 + 1.4*r.float()
		total += w[c]
	}
	g.catStart = make([]int32, nc+1)
	cum, maxSize := 0.0, 0
	for c := 0; c < nc; c++ {
		g.catStart[c] = int32(c + int(float64(n-nc)*cum/total))
		cum += w[c]
	}
	g.catStart[nc] = int32(n)
	for c := 0; c < nc; c++ {
		maxSize = max(maxSize, int(g.catStart[c+1]-g.catStart[c]))
	}

	g.zipfH = make([]float64, maxSize)
	h := 0.0
	for k := range g.zipfH {
		h += math.Pow(float64(k+1), -itemZipfS)
		g.zipfH[k] = h
	}
	g.catCDF = make([]float64, nc)
	h = 0
	for c := range g.catCDF {
		h += math.Pow(float64(c+1), -catZipfS)
		g.catCDF[c] = h
	}

	g.catName = make([]string, nc)
	g.catSib = make([]uint16, nc)
	g.compCat = make([][2]uint16, nc)
	for c := 0; c < nc; c++ {
		g.catName[c] = catNameOf(c)
		g.catSib[c] = g.otherCat(c)
		g.compCat[c] = [2]uint16{g.otherCat(c), g.otherCat(c)}
	}

	g.itemCat = make([]uint16, n)
	g.popIdx = make([]int32, n)
	for c := 0; c < nc; c++ {
		lo, hi := int(g.catStart[c]), int(g.catStart[c+1])
		for i := lo; i < hi; i++ {
			g.itemCat[i] = uint16(c)
			g.popIdx[i] = int32(i)
		}
		p := g.popIdx[lo:hi]
		for i := len(p) - 1; i > 0; i-- {
			j := r.intn(i + 1)
			p[i], p[j] = p[j], p[i]
		}
	}

	g.itemNum = make([]uint32, n)
	for i := range g.itemNum {
		g.itemNum[i] = uint32(i + 1)
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		g.itemNum[i], g.itemNum[j] = g.itemNum[j], g.itemNum[i]
	}

	// Complements: 1-3 fixed items in the complement categories of the
	// item's category. Half map the item's relative position (so related
	// items share complements), half are popular items there.
	g.comp = make([]int32, 3*n)
	g.compN = make([]uint8, n)
	for i := 0; i < n; i++ {
		c := int(g.itemCat[i])
		lo, size := int(g.catStart[c]), int(g.catStart[c+1]-g.catStart[c])
		want := 1 + r.intn(3)
		for k := 0; k < want; k++ {
			cc := int(g.compCat[c][r.intn(2)])
			var x int32
			if r.chance(0.5) {
				clo, csize := int(g.catStart[cc]), int(g.catStart[cc+1]-g.catStart[cc])
				pos := (i-lo)*csize/size + r.intn(3) - 1
				x = int32(clo + min(max(pos, 0), csize-1))
			} else {
				x = g.popularItem(cc)
			}
			cs := g.comp[3*i : 3*i+int(g.compN[i])]
			if !slices.Contains(cs, x) {
				g.comp[3*i+int(g.compN[i])] = x
				g.compN[i]++
			}
		}
	}
}

// popularItem draws an item of category c by its Zipf popularity.
func (g *generator) popularItem(c int) int32 {
	lo, hi := g.catStart[c], g.catStart[c+1]
	h := g.zipfH[:hi-lo]
	rank, _ := slices.BinarySearch(h, g.r.float()*h[len(h)-1])
	return g.popIdx[int(lo)+min(rank, len(h)-1)]
}

func (g *generator) writeItems(w io.Writer) error {
	n := g.o.Items
	r := &g.r
	nBrands := int(clamp(int64(n/25), 8, 4000))
	brands := make([]string, nBrands)
	for k := range brands {
		brands[k] = brandName(k)
	}
	basePrice := make([]float64, g.o.Categories)
	for c := range basePrice {
		basePrice[c] = math.Exp(math.Log(5) + r.float()*(math.Log(400)-math.Log(5)))
	}
	byNum := make([]int32, n)
	for i, num := range g.itemNum {
		byNum[num-1] = int32(i)
	}

	cw := csv.NewWriter(w)
	if err := cw.Write(strings.Split(ItemsHeader, ",")); err != nil {
		return err
	}
	var row [6]string
	var title strings.Builder
	for _, i := range byNum {
		c := int(g.itemCat[i])
		brand := brands[(c*13+r.intn(8))%nBrands]

		title.Reset()
		title.WriteString(brand)
		title.WriteByte(' ')
		title.WriteString(adjectives[r.intn(len(adjectives))])
		title.WriteByte(' ')
		title.WriteString(nouns[(c*3+r.intn(4))%len(nouns)])
		if r.chance(titleCommaP) {
			title.WriteString(", ")
			title.WriteString(titleVariants[r.intn(len(titleVariants))])
		}

		category := g.catName[c]
		if r.chance(multiCatP) {
			category += "|" + g.catName[g.catSib[c]]
		}

		price := basePrice[c] * math.Exp((r.float()-0.5)*1.4)
		price = max(math.Round(price*100)/100, 0.99)

		stock := 0
		if !r.chance(outOfStockP) {
			stock = int(math.Exp(r.float() * math.Log(500)))
		}

		row[0] = "i" + strconv.FormatUint(uint64(g.itemNum[i]), 10)
		row[1] = title.String()
		row[2] = category
		row[3] = strconv.FormatFloat(price, 'f', 2, 64)
		row[4] = strconv.Itoa(stock)
		row[5] = brand
		if err := cw.Write(row[:]); err != nil {
			return err
		}
		g.stats.Items++
	}
	cw.Flush()
	return cw.Error()
}

// newUsers builds the activity alias table: user weights are Pareto
// (a few heavy users), capped at activityCap so no user dominates.
func (g *generator) newUsers() {
	n := g.o.Users
	r := &g.r
	w := make([]float64, n)
	total := 0.0
	for u := range w {
		w[u] = min(math.Pow(1-r.float(), -1/activityAlpha), activityCap)
		total += w[u]
	}
	// Vose's alias method: O(1) draws with 8 bytes per user.
	g.userProb = make([]uint32, n)
	g.userAlt = make([]uint32, n)
	small := make([]uint32, 0, n)
	large := make([]uint32, 0, n)
	for u := range w {
		w[u] *= float64(n) / total
		if w[u] < 1 {
			small = append(small, uint32(u))
		} else {
			large = append(large, uint32(u))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		g.userProb[s] = uint32(w[s] * (1 << 32))
		g.userAlt[s] = l
		w[l] -= 1 - w[s]
		if w[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// Leftovers have weight 1 up to rounding: always keep them.
	for _, u := range append(small, large...) {
		g.userProb[u] = math.MaxUint32
		g.userAlt[u] = u
	}
	g.seen = make([]uint64, (n+63)/64)
}

func (g *generator) pickUser() int {
	u := g.r.intn(len(g.userProb))
	if uint32(g.r.u64()>>32) < g.userProb[u] {
		return u
	}
	return int(g.userAlt[u])
}

// profile returns the 1-3 favourite categories of user u. They are derived
// from (Seed, u) on each call instead of stored, to keep memory per user low.
func (g *generator) profile(u int) (favs [3]uint16, n int) {
	var r rng
	r.seed(g.o.Seed^0x13198a2e03707344, uint64(u))
	x := r.float()
	switch {
	case x < 0.4:
		n = 1
	case x < 0.8:
		n = 2
	default:
		n = 3
	}
	total := g.catCDF[len(g.catCDF)-1]
	for k, tries := 0, 0; k < n; tries++ {
		c, _ := slices.BinarySearch(g.catCDF, r.float()*total)
		c = min(c, len(g.catCDF)-1)
		if slices.Contains(favs[:k], uint16(c)) && tries < 8 {
			continue
		}
		favs[k] = uint16(c)
		k++
	}
	return favs, n
}

// pickFav draws a favourite, the first ones more likely.
func (g *generator) pickFav(favs [3]uint16, n int) int {
	x := g.r.float()
	switch {
	case n == 1 || x < 0.6:
		return int(favs[0])
	case n == 2 || x < 0.9:
		return int(favs[1])
	default:
		return int(favs[2])
	}
}

func (g *generator) writeEvents(w io.Writer) error {
	g.w = w
	g.buf = make([]byte, 0, 64<<10+256)
	g.buf = append(g.buf, EventsHeader...)
	g.buf = append(g.buf, '\n')
	span := float64(int64(g.o.Days) * 86400)
	for g.stats.Events < g.o.Events && g.err == nil {
		ts := g.o.Start + int64(float64(g.stats.Events)/float64(g.o.Events)*span) + int64(g.r.intn(sessionJitter))
		g.session(ts)
	}
	g.flush()
	for _, x := range g.seen {
		g.stats.Users += int64(bits.OnesCount64(x))
	}
	return g.err
}

// session writes one session of a random user starting near ts. It stops
// early once Events rows are written.
func (g *generator) session(ts int64) {
	r := &g.r
	u := g.pickUser()
	g.seen[u/64] |= 1 << (u % 64)
	g.stats.Sessions++
	favs, nf := g.profile(u)

	var item int32
	if r.chance(favSessionP) {
		item = g.popularItem(g.pickFav(favs, nf))
	} else {
		c, _ := slices.BinarySearch(g.catCDF, r.float()*g.catCDF[len(g.catCDF)-1])
		item = g.popularItem(min(c, len(g.catCDF)-1))
	}

	views := 1
	for views < maxViews && !r.chance(viewStopP) {
		views++
	}
	g.cart = g.cart[:0]
	for v := 0; v < views; v++ {
		if v > 0 {
			item = g.nextView(item, favs, nf)
		}
		ts += 10 + int64(r.intn(110))
		if !g.emit(u, item, "view", ts, 0, 0) {
			return
		}
		if r.chance(cartP) && len(g.cart) < maxCart {
			ts += 3 + int64(r.intn(30))
			if !g.emit(u, item, "cart", ts, 0, 0) {
				return
			}
			if !slices.Contains(g.cart, item) {
				g.cart = append(g.cart, item)
			}
		}
	}
	if len(g.cart) == 0 || !r.chance(checkoutP) {
		return
	}

	g.basket = g.basket[:0]
	for k, it := range g.cart {
		if k == 0 || r.chance(buyCartedP) {
			g.basket = append(g.basket, it)
		}
	}
	for _, it := range g.basket {
		if nc := int(g.compN[it]); nc > 0 && r.chance(buyComplementP) {
			x := g.comp[3*int(it)+r.intn(nc)]
			if !slices.Contains(g.basket, x) {
				g.basket = append(g.basket, x) // the range above sees the old length
			}
		}
	}
	g.nextBasket++
	ts += 30 + int64(r.intn(300))
	for k, it := range g.basket {
		qty := 1
		if x := r.float(); x >= 0.93 {
			qty = 3
		} else if x >= 0.75 {
			qty = 2
		}
		if !g.emit(u, it, "purchase", ts, qty, g.nextBasket) {
			return
		}
		if k == 0 {
			g.stats.Baskets++
		}
	}
}

// nextView returns the item viewed after item.
func (g *generator) nextView(item int32, favs [3]uint16, nf int) int32 {
	r := &g.r
	c := int(g.itemCat[item])
	x := r.float()
	switch {
	case x < neighbourP:
		lo, size := g.catStart[c], g.catStart[c+1]-g.catStart[c]
		d := int32(1 + r.intn(3))
		if r.chance(0.5) {
			d = -d
		}
		pos := ((item-lo+d)%size + size) % size
		return lo + pos
	case x < neighbourP+sameCatP:
		return g.popularItem(c)
	case x < neighbourP+sameCatP+favSwitchP:
		return g.popularItem(g.pickFav(favs, nf))
	default:
		// A look at a complement: cross-category co-views.
		if nc := int(g.compN[item]); nc > 0 {
			return g.comp[3*int(item)+r.intn(nc)]
		}
		return g.popularItem(c)
	}
}

// emit appends one event row. It returns false once Events rows are written
// or a write failed; the row is then not written.
func (g *generator) emit(u int, item int32, ev string, ts int64, qty int, basket int64) bool {
	if g.stats.Events >= g.o.Events || g.err != nil {
		return false
	}
	b := g.buf
	b = append(b, 'u')
	b = strconv.AppendUint(b, uint64(u)+1, 10)
	b = append(b, ",i"...)
	b = strconv.AppendUint(b, uint64(g.itemNum[item]), 10)
	b = append(b, ',')
	b = append(b, ev...)
	b = append(b, ',')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, ',')
	if qty > 0 {
		b = strconv.AppendInt(b, int64(qty), 10)
	}
	b = append(b, ',')
	if basket > 0 {
		b = append(b, 'o')
		b = strconv.AppendInt(b, basket, 10)
	}
	b = append(b, '\n')
	g.buf = b
	g.stats.Events++
	if len(b) >= 64<<10 {
		g.flush()
	}
	return g.err == nil
}

func (g *generator) flush() {
	if g.err == nil && len(g.buf) > 0 {
		_, g.err = g.w.Write(g.buf)
	}
	g.buf = g.buf[:0]
}
