package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// Defaults of Options.
const (
	// DefaultHistoryWindow is how many of a visitor's newest history
	// entries personalise an answer. On the ML-100k splits 200 is within
	// 0.001 nDCG@10 of blending the whole history and caps the list reads
	// of heavy users (README, "Quality").
	DefaultHistoryWindow = 200
	// DefaultSeenItems is how many of a visitor's newest history entries
	// the seen-items filter reads when the snapshot does not say (its
	// build's max_user_items).
	DefaultSeenItems = 1000
	// maxHistoryRead bounds SeenItems and HistoryWindow: a history is read
	// per request.
	maxHistoryRead = 10000
)

// Options configure an Engine. The zero value works.
type Options struct {
	// DefaultK and MaxK bound the list length; defaults 10 and 100.
	DefaultK, MaxK int
	// CacheBytes is the budget of the engine's caches: three quarters for
	// decoded lists shared by every caller, an eighth for answers, an
	// eighth for segments and decisions (cache.go); default 32 MiB.
	CacheBytes int64
	// MaxIDLen bounds ids; default 256.
	MaxIDLen int
	// Weights, when set, replace the interest weights of the snapshot's
	// build (its manifest) in personal answers. Leave it nil: what is
	// served is then what the build and eval measured.
	Weights *model.Weights
	// HistoryWindow is how many of a visitor's newest history entries are
	// blended into personal answers; default DefaultHistoryWindow.
	HistoryWindow int
	// SeenItems is how many of a visitor's newest history entries the
	// seen-items filter reads; default the snapshot's max_user_items, or
	// DefaultSeenItems. It is at least HistoryWindow.
	SeenItems int
	// Config holds placements, pages and segments; nil means
	// DefaultConfig. ConfigPath, when set, is what ReloadConfig reads.
	Config     *Config
	ConfigPath string
	// SignKey signs decision ids, so that keyless beacons can be checked.
	// Ids stay valid across restarts with the same key. Default: a random
	// key for this process.
	SignKey []byte
	// BanditRefresh is how often a bandit page re-reads its arms'
	// counters; default 1 s.
	BanditRefresh time.Duration
	// DecisionTTL is how long a decision id is taken in a keyless beacon
	// after it was issued (to the day); default DefaultDecisionTTL.
	DecisionTTL time.Duration
	// Now returns the time; tests set it. Default: the system clock, read
	// every 100 ms (answers need seconds; a clock read costs about as much
	// as a cached answer's lookup).
	Now func() time.Time
	// Logger receives the engine's logs; default slog.Default().
	Logger *slog.Logger
	// Retention sets how long the state store keeps each kind of data
	// (retention.go); the zero value keeps everything.
	Retention Retention
}

func (o *Options) withDefaults() {
	if o.DefaultK == 0 {
		o.DefaultK = 10
	}
	if o.MaxK == 0 {
		o.MaxK = 100
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 32 << 20
	}
	if o.MaxIDLen == 0 {
		o.MaxIDLen = 256
	}
	if o.HistoryWindow == 0 {
		o.HistoryWindow = DefaultHistoryWindow
	}
	if o.BanditRefresh == 0 {
		o.BanditRefresh = time.Second
	}
	if o.DecisionTTL == 0 {
		o.DecisionTTL = DefaultDecisionTTL
	}
	if o.Config == nil {
		o.Config = DefaultConfig()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if len(o.SignKey) == 0 {
		o.SignKey = make([]byte, 32)
		_, _ = rand.Read(o.SignKey)
	}
}

// Validate reports the first bad option.
func (o *Options) Validate() error {
	switch {
	case o.DefaultK < 1 || o.MaxK < o.DefaultK:
		return fmt.Errorf("need 1 <= default k <= max k; got %d and %d", o.DefaultK, o.MaxK)
	case o.CacheBytes < 0:
		return fmt.Errorf("cache size %d: must not be negative", o.CacheBytes)
	case o.MaxIDLen < 1:
		return fmt.Errorf("id length limit %d: must be positive", o.MaxIDLen)
	case o.HistoryWindow < 1 || o.HistoryWindow > maxHistoryRead:
		return fmt.Errorf("history window %d: want 1 to %d", o.HistoryWindow, maxHistoryRead)
	case o.BanditRefresh < 0:
		return fmt.Errorf("bandit refresh %v: must not be negative", o.BanditRefresh)
	case o.DecisionTTL < 0:
		return fmt.Errorf("decision ttl %v: must not be negative", o.DecisionTTL)
	case o.Retention.Validate() != nil:
		return o.Retention.Validate()
	case o.SeenItems < 0 || o.SeenItems > maxHistoryRead:
		return fmt.Errorf("seen items %d: want 0 (the snapshot's) to %d", o.SeenItems, maxHistoryRead)
	case o.Weights != nil:
		w := o.Weights
		for _, x := range [...]float64{w.View, w.Click, w.Cart, w.Purchase, w.Rating, w.HalfLife} {
			if !(x >= 0) {
				return fmt.Errorf("weights must be numbers >= 0; got %+v", *w)
			}
		}
	}
	return nil
}

// Engine gives every answer of edgerec (recommendations, placements,
// landing-page decisions, segments, whole pages, audiences, experiment
// results) as Go values from plain request structs, over the served index
// snapshot and the state store. Every door (the HTTP server, edgerec eval,
// edgerec export) calls it, so what eval measures is what is served. It is
// safe for concurrent use.
type Engine struct {
	o     Options
	log   *slog.Logger
	live  index.Live
	state *index.State
	lists *index.ListCache
	cache caches
	// gens are the visitors' write generations (cache.go).
	gens [userGens]atomic.Uint64

	cfg    atomic.Pointer[Config]
	cfgGen atomic.Uint64
	// patches are the live catalog corrections; gen changes with each.
	patches atomic.Pointer[patchSet]
	patchMu sync.Mutex
	// bandits holds each bandit experiment's *banditArms.
	bandits sync.Map
	rules   ruleCache

	views    sync.Pool // *View
	recNonce uint64
	recSeq   atomic.Uint64

	// clock is the time in Unix seconds when Options.Now is not set,
	// ticked by tick until Close.
	clock     atomic.Int64
	coarse    bool // Options.Now is the coarse clock
	stopClock chan struct{}
	closeOnce sync.Once

	expLocks        stripes  // a visitor's experiment records
	served          sync.Map // placement name → *atomic.Uint64
	segmentErrors   atomic.Uint64
	audienceSkipped atomic.Uint64
	lastLog         atomic.Int64
	holds           atomic.Int64 // HoldReady's not released (warm.go)

	// The retention sweeper (retention.go), and how old an assignment
	// gets before a decision renews it (seconds; 0 never).
	sweeper     *index.Sweeper
	stopSweeper context.CancelFunc
	sweeperDone chan struct{}
	renewal     int64
}

// New returns an Engine over the state store (nil: an engine without
// state, which answers what needs none). Load a snapshot with
// LoadSnapshot before asking for recommendations.
func New(o Options, state *index.State) (*Engine, error) {
	o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{o: o, log: o.Logger, state: state}
	if e.o.Now == nil {
		e.clock.Store(time.Now().Unix())
		e.coarse = true
		e.stopClock = make(chan struct{})
		go e.tick()
		e.o.Now = func() time.Time { return time.Unix(e.clock.Load(), 0) }
	}
	if o.CacheBytes > 0 {
		// Three quarters for lists, which every computed answer reads;
		// an eighth for answers, an eighth for segments and decisions.
		var err error
		if e.lists, err = index.NewListCache(max(o.CacheBytes*3/4, 1)); err != nil {
			return nil, err
		}
		if e.cache, err = newCaches(max(o.CacheBytes/8, 1), max(o.CacheBytes/8, 1)); err != nil {
			e.lists.Close()
			return nil, err
		}
	}
	e.SetConfig(o.Config)
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	e.recNonce = binary.LittleEndian.Uint64(nonce[:])
	e.patches.Store(&patchSet{m: map[string]ItemPatch{}})
	e.views.New = func() any { return newView(e) }
	if err := e.startSweeper(); err != nil {
		e.Close()
		return nil, err
	}
	for _, d := range [...]struct {
		name string
		v    time.Duration
	}{{"assignments", o.Retention.Assignments}, {"anonymous visitors", o.Retention.Anonymous}} {
		if d.v > 0 && d.v < o.DecisionTTL {
			e.log.Warn("the retention of "+d.name+" is shorter than the decision ttl: a beacon's conversion after it does not count",
				"retention", d.v.String(), "decision_ttl", o.DecisionTTL.String())
		}
	}
	return e, nil
}

// Close releases the served snapshot (it closes once its readers are
// done) and the caches. Call it after the last request; the state store
// belongs to the caller. A second Close does nothing.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		if e.stopSweeper != nil {
			e.stopSweeper()
			<-e.sweeperDone
		}
		if e.stopClock != nil {
			close(e.stopClock)
		}
		e.live.Close()
		if e.lists != nil {
			e.lists.Close()
		}
		e.cache.close()
	})
}

// tick keeps e.clock current until Close.
func (e *Engine) tick() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-e.stopClock:
			return
		case now := <-t.C:
			e.clock.Store(now.Unix())
		}
	}
}

// Logger returns the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// LogThrottled logs at most one message a second: for errors a client
// can cause on every request.
func (e *Engine) LogThrottled(msg string, args ...any) {
	now := time.Now().Unix()
	if last := e.lastLog.Load(); last != now && e.lastLog.CompareAndSwap(last, now) {
		e.log.Warn(msg, args...)
	}
}

// LoadSnapshot opens and verifies the snapshot at path (a root or a
// version directory), brings its users' histories into the state store
// the first time it is served, and swaps it in. On any error the served
// snapshot stays. The version already served is not opened twice (Pebble
// would refuse its lock): its manifest is returned.
func (e *Engine) LoadSnapshot(ctx context.Context, path string) (*index.Manifest, error) {
	if dir, err := index.ResolveSnapshot(path); err == nil {
		if cur := e.live.Acquire(); cur != nil {
			a, err1 := os.Stat(cur.Dir())
			b, err2 := os.Stat(dir)
			same := err1 == nil && err2 == nil && os.SameFile(a, b)
			m := *cur.Manifest()
			cur.Release()
			if same {
				return &m, nil
			}
		}
	}
	snap, err := index.OpenSnapshot(path)
	if err != nil {
		if errors.Is(err, index.ErrBadSnapshot) {
			return nil, errorf(Conflict, "bad_snapshot", err.Error())
		}
		return nil, err
	}
	if err := e.importHistories(ctx, snap); err != nil {
		_ = snap.Close()
		return nil, err
	}
	e.live.Swap(snap, nil)
	e.log.Info("serving snapshot", "dir", snap.Dir(), "items", snap.NumItems())
	return snap.Manifest(), nil
}

// Snapshot returns the manifest of the served snapshot, or nil.
func (e *Engine) Snapshot() *index.Manifest {
	ref := e.live.Acquire()
	if ref == nil {
		return nil
	}
	defer ref.Release()
	m := *ref.Manifest()
	return &m
}

// SnapshotVersion returns the served snapshot's version, 0 when none.
func (e *Engine) SnapshotVersion() uint64 { return e.live.Version() }

// Epoch is View.Epoch without a View, for a front end that looks up a
// cached rendering before it asks anything: the snapshot version (0 when
// none is loaded) and the generation of the catalog corrections.
func (e *Engine) Epoch() (snapshot, patches uint64) {
	return e.live.Version(), e.patches.Load().gen
}

// ReloadConfig reads Options.ConfigPath again and swaps the new
// configuration in; requests in flight finish with the old one. A bad file
// changes nothing and its error names the line.
func (e *Engine) ReloadConfig() error {
	if e.o.ConfigPath == "" {
		return errorf(Conflict, "no_config", "the server was started without a config file")
	}
	c, err := LoadConfig(e.o.ConfigPath)
	if err != nil {
		return err
	}
	e.SetConfig(c)
	e.log.Info("loaded config", "path", e.o.ConfigPath, "placements", c.names())
	return nil
}

// SetConfig swaps in a validated configuration.
func (e *Engine) SetConfig(c *Config) {
	// The generation goes with the config: a request keys cached rule
	// outcomes by the generation of the config it read its page from.
	c.gen = e.cfgGen.Add(1)
	e.registerPhases(c)
	e.cfg.Store(c)
}

// Config returns the configuration in force. It must not be modified.
func (e *Engine) Config() *Config { return e.cfg.Load() }

// MaxK returns the largest k a request may ask for.
func (e *Engine) MaxK() int { return e.o.MaxK }

// Stats are the engine's counts since it was made.
type Stats struct {
	// Lists: the list cache (zero without one).
	Lists index.CacheStats
	// SegmentErrors counts segment rules that failed at run time;
	// AudienceSkipped profiles an export could not decode.
	SegmentErrors, AudienceSkipped uint64
	// CatalogPatches is the number of items with live corrections.
	CatalogPatches int
	// State is the state store's writability and failure counts (zero
	// without a state store, HasState false).
	State    index.Failure
	HasState bool
}

// StateStoreMetrics returns the state store's Pebble figures; false
// without a state store, or while it reopens.
func (e *Engine) StateStoreMetrics() (index.StoreMetrics, bool) {
	if e.state == nil {
		return index.StoreMetrics{}, false
	}
	return e.state.StoreMetrics()
}

// Stats returns the engine's counts.
func (e *Engine) Stats() Stats {
	st := Stats{SegmentErrors: e.segmentErrors.Load(), AudienceSkipped: e.audienceSkipped.Load(),
		CatalogPatches: len(e.patches.Load().m)}
	if e.lists != nil {
		st.Lists = e.lists.Stats()
	}
	if e.state != nil {
		st.State, st.HasState = e.state.Failure(), true
	}
	return st
}

// AppendRecID appends a fresh 16-hex-digit id to dst: a recommendation's
// rec_id for attribution, or a new visitor's id.
func (e *Engine) AppendRecID(dst []byte) []byte {
	x := e.recSeq.Add(1)*0x9e3779b97f4a7c15 ^ e.recNonce
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 29
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hexDigits[(x>>uint(i))&0xf])
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// CheckID validates an id from a request; name says which in the error.
func (e *Engine) CheckID(name string, id []byte) error {
	if len(id) == 0 {
		return badParam(name, "empty")
	}
	if len(id) > e.o.MaxIDLen {
		return badParam(name, "longer than "+strconv.Itoa(e.o.MaxIDLen)+" bytes")
	}
	if !utf8.Valid(id) {
		return badParam(name, "not valid UTF-8")
	}
	return nil
}

// MaxIDLen returns the longest id (and event field) the engine takes.
func (e *Engine) MaxIDLen() int { return e.o.MaxIDLen }

// Now returns the engine's time.
func (e *Engine) Now() time.Time { return e.o.Now() }

// exactNow is the time in Unix seconds for what a caller compares with
// its own clock (an audience record's change time against --since): the
// system clock where the coarse one may lag a tick behind it.
func (e *Engine) exactNow() int64 {
	if e.coarse {
		return time.Now().Unix()
	}
	return e.o.Now().Unix()
}

// WaitCache waits until the list cache has applied the writes it was
// given (Ristretto's Set is asynchronous): for tests and benchmarks that
// measure warm answers.
func (e *Engine) WaitCache() {
	if e.lists != nil {
		e.lists.Wait()
	}
	e.cache.wait()
}
