package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// buildFlags are the flags shared by build and eval.
type buildFlags struct {
	k, popularK, easeMaxItems, easeMinUsers, minSupport, maxUserItems, maxBad int
	similarity, bought, weights                                               string
	lambda                                                                    float64
	ratingValue                                                               bool
	halfLife, popularHalfLife, trendingHalfLife                               string
}

func (f *buildFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.k, "topk", 100, "length of the per-item lists (similar, bought together); -1 keeps all (dense)")
	fs.IntVar(&f.popularK, "popular-k", 1000, "length of the popular and trending lists")
	fs.StringVar(&f.similarity, "similarity", "auto", "similar-items scoring: auto (ease when the catalog allows, else cosine), ease, cosine, jaccard, lift, llr, count")
	fs.Float64Var(&f.lambda, "lambda", 500, "EASE L2 weight")
	fs.IntVar(&f.easeMaxItems, "ease-max-items", 4000, "largest catalog (items with events) for which auto picks EASE; see also -similarity")
	fs.IntVar(&f.easeMinUsers, "ease-min-users", 5, "least number of users an item needs to take part in EASE (rarer items get no similar list from it)")
	fs.StringVar(&f.bought, "bought-together", "llr", "bought-together scoring: llr, lift, cosine, jaccard, count")
	fs.IntVar(&f.minSupport, "min-support", 2, "least number of baskets holding a pair for it to be listed as bought together")
	fs.IntVar(&f.maxUserItems, "max-user-items", 1000, "most recent distinct items per user that feed co-occurrence")
	fs.StringVar(&f.weights, "weights", "view=1,click=1,cart=3,purchase=5,rating=1", "interest weight per event type")
	fs.BoolVar(&f.ratingValue, "rating-value", false, "multiply rating events by their value")
	fs.StringVar(&f.halfLife, "half-life", "0", "half-life of user affinity decay (0 disables); e.g. 30d, 12h")
	fs.StringVar(&f.popularHalfLife, "popular-half-life", "30d", "half-life of the popular lists; 0: no decay (counts)")
	fs.StringVar(&f.trendingHalfLife, "trending-half-life", "3d", "half-life of the trending lists; 0: no decay")
	fs.IntVar(&f.maxBad, "max-bad", 100, "bad input lines tolerated before the build fails")
}

func (f *buildFlags) weightsValue() (model.Weights, error) {
	w := model.Weights{RatingValue: f.ratingValue}
	hl, err := parseSeconds(f.halfLife)
	if err != nil {
		return w, fmt.Errorf("-half-life: %w", err)
	}
	w.HalfLife = hl
	for _, kv := range strings.Split(f.weights, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		x, err := strconv.ParseFloat(val, 64)
		if !ok || err != nil || !(x >= 0) || math.IsInf(x, 0) {
			return w, fmt.Errorf("-weights: bad entry %q: want type=weight, a finite number >= 0", kv)
		}
		t, _ := model.ParseEventType([]byte(name))
		switch t {
		case model.EventView:
			w.View = x
		case model.EventClick:
			w.Click = x
		case model.EventCart:
			w.Cart = x
		case model.EventPurchase:
			w.Purchase = x
		case model.EventRating:
			w.Rating = x
		default:
			return w, fmt.Errorf("-weights: unknown event type %q: want view, click, cart, purchase or rating", name)
		}
	}
	if w.View+w.Click+w.Cart+w.Purchase+w.Rating == 0 {
		return w, fmt.Errorf("-weights: at least one weight must be positive")
	}
	return w, nil
}

func (f *buildFlags) options() (index.BuildOptions, error) {
	logger := newLogger()
	o := index.BuildOptions{
		K: f.k, PopularK: f.popularK, EASELambda: f.lambda, EASEMaxItems: f.easeMaxItems, EASEMinUsers: f.easeMinUsers,
		MinSupport: f.minSupport, MaxUserItems: f.maxUserItems, MaxBad: f.maxBad,
		Log: func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) },
	}
	if f.maxBad == 0 {
		o.MaxBad = -1
	}
	var err error
	if f.similarity != "auto" {
		if o.Similarity, err = model.ParseSimilarity(f.similarity); err != nil {
			return o, fmt.Errorf("-similarity: %w", err)
		}
	}
	if o.BoughtTogether, err = model.ParseSimilarity(f.bought); err != nil {
		return o, fmt.Errorf("-bought-together: %w", err)
	}
	if o.Weights, err = f.weightsValue(); err != nil {
		return o, err
	}
	if o.PopularHalfLife, err = parseSeconds(f.popularHalfLife); err != nil {
		return o, fmt.Errorf("-popular-half-life: %w", err)
	}
	if o.TrendingHalfLife, err = parseSeconds(f.trendingHalfLife); err != nil {
		return o, fmt.Errorf("-trending-half-life: %w", err)
	}
	return o, o.Validate()
}

// parseSeconds parses a Go duration, or a number of days as "30d".
func parseSeconds(s string) (float64, error) {
	if s == "0" || s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		x, err := strconv.ParseFloat(d, 64)
		if err != nil || !(x >= 0) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return x * 86400, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q: want e.g. 30d, 12h, 90m", s)
	}
	return d.Seconds(), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runBuild(c *command, args []string) error {
	fs := c.flagSet()
	events := fs.String("events", "", "event files, comma-separated (CSV or NDJSON; plain, gzip or zstd)")
	items := fs.String("items", "", "catalog file (CSV or NDJSON; plain, gzip or zstd); optional")
	out := fs.String("out", "", "snapshot root: the new version is published there atomically")
	keep := fs.Int("keep", index.DefaultKeep, "versions kept in the snapshot root after the publish: the newest N, plus the one CURRENT names and any a server on this machine serves; 0 keeps all")
	var bf buildFlags
	bf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *events == "" || *out == "" {
		return fmt.Errorf("-events and -out are required")
	}
	if *keep < 0 {
		return fmt.Errorf("-keep %d: must not be negative (0 keeps every version)", *keep)
	}
	o, err := bf.options()
	if err != nil {
		return err
	}
	o.Keep = keepOption(*keep)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	start := time.Now()
	b, err := index.NewBuilder(o)
	if err != nil {
		return err
	}
	if *items != "" {
		if err := readFile(ctx, *items, b.ReadItems); err != nil {
			return err
		}
	}
	for _, f := range splitList(*events) {
		if err := readFile(ctx, f, b.ReadEvents); err != nil {
			return err
		}
	}
	m, err := b.BuildContext(ctx, *out)
	if err != nil {
		return err
	}
	bad, samples := b.BadLines()
	for _, s := range samples {
		fmt.Fprintf(os.Stderr, "bad line: %s\n", s)
	}
	fmt.Printf("snapshot v%d in %s: %d items, %d users, %d categories, %d events (%d bad lines), %d baskets; lists %v; similarity %s; %.2fs, peak RSS %s\n",
		m.Version, *out, m.Items, m.Users, m.Categories, m.Events, bad, m.Baskets, m.Lists,
		m.Parameters.Similarity, time.Since(start).Seconds(), peakRSS())
	return nil
}

// readFile feeds a file to read, showing progress on the compressed bytes:
// a bar when stderr is a terminal, a log line every 5 s otherwise.
func readFile(ctx context.Context, path string, read func(r io.Reader, name string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot open %q: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot stat %q: %w", path, err)
	}
	p := newProgress(filepath.Base(path), st.Size())
	defer p.stop()
	r, err := index.NewDecompressReader(&countingReader{ctx: ctx, r: f, n: &p.done})
	if err != nil {
		return fmt.Errorf("cannot read %q: %w", path, err)
	}
	defer r.Close()
	return read(r, path)
}

// keepOption maps the --keep flag (0: keep every version) onto
// index.BuildOptions.Keep and index.UnpackOptions.Keep (0: the default,
// negative: every version).
func keepOption(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
