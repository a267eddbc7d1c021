package server

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// Options configure a Server. The zero value works, except that writes
// need APIKey.
type Options struct {
	// SnapshotRoot is where snapshots are published; POST
	// /v1/admin/snapshots loads its CURRENT version.
	SnapshotRoot string
	// APIKey authorises writes (events, catalog); AdminKey admin calls
	// and pprof, defaulting to APIKey. Empty keys refuse every write.
	APIKey, AdminKey string
	// DefaultK and MaxK bound the list length; defaults 10 and 100.
	DefaultK, MaxK int
	// CacheBytes is the Ristretto budget for lists and rendered bodies;
	// default 64 MiB.
	CacheBytes int64
	// GzipMinBytes is the smallest cached answer sent gzip-compressed to
	// clients that accept it (compressed once, then served from the
	// cache); default 1024, negative: never.
	GzipMinBytes int
	// MaxBodySize bounds request bodies; default 1 MiB. MaxBatch bounds the
	// events of one POST; default 1000. MaxIDLen bounds ids; default 256.
	MaxBodySize, MaxBatch, MaxIDLen int
	// Concurrency bounds requests in flight; default 4096.
	Concurrency int
	// ReadTimeout, WriteTimeout, IdleTimeout of connections; defaults 5 s,
	// 5 s, 60 s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// CORSOrigins may call the read API from browsers; "*" allows any.
	CORSOrigins []string
	// Weights turn a visitor's history into affinity; zero means
	// model.DefaultWeights.
	Weights model.Weights
	// Now returns the time; tests set it. Default time.Now.
	Now func() time.Time
	// Config holds the placements; nil means DefaultConfig. ConfigPath, if
	// set, is what ReloadConfig and POST /v1/admin/config read.
	Config     *Config
	ConfigPath string
}

func (o *Options) withDefaults() {
	if o.DefaultK == 0 {
		o.DefaultK = 10
	}
	if o.MaxK == 0 {
		o.MaxK = 100
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 64 << 20
	}
	if o.GzipMinBytes == 0 {
		o.GzipMinBytes = 1024
	}
	if o.MaxBodySize == 0 {
		o.MaxBodySize = 1 << 20
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 1000
	}
	if o.MaxIDLen == 0 {
		o.MaxIDLen = 256
	}
	if o.Concurrency == 0 {
		o.Concurrency = 4096
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 5 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.AdminKey == "" {
		o.AdminKey = o.APIKey
	}
	if o.Weights == (model.Weights{}) {
		o.Weights = model.DefaultWeights()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Config == nil {
		o.Config = DefaultConfig()
	}
}

// Validate reports the first bad option.
func (o *Options) Validate() error {
	if o.DefaultK < 1 || o.MaxK < o.DefaultK {
		return fmt.Errorf("need 1 <= default k <= max k; got %d and %d", o.DefaultK, o.MaxK)
	}
	if o.MaxBodySize < 1024 || o.MaxBatch < 1 || o.MaxIDLen < 1 {
		return fmt.Errorf("body size, batch and id limits must be positive")
	}
	return nil
}

// Server answers the edgerec HTTP API. Create it with New; it is safe for
// concurrent use.
type Server struct {
	o     Options
	live  index.Live
	state *index.State
	cache *ristretto.Cache[uint64, []byte]
	cfg   atomic.Pointer[Config]
	// cfgGen changes with every config load: cached rule outcomes of an
	// old config are not reused.
	cfgGen atomic.Uint64
	// bandits holds each bandit experiment's *banditArms.
	bandits sync.Map

	// gen changes whenever cached bodies may be stale (catalog patches).
	gen     atomic.Uint64
	patches atomic.Pointer[map[string]itemPatch]
	patchMu sync.Mutex

	reqs       sync.Pool // *reqState
	recNonce   uint64
	signKey    []byte // signs decision ids
	recSeq     atomic.Uint64
	srv        *fasthttp.Server
	m          *serverMetrics
	started    time.Time
	addr       string           // tests: the loopback address served
	testClient *fasthttp.Client // tests: a client of addr
}

// New returns a Server over the state store. Load a snapshot with
// LoadSnapshot before serving reads.
func New(o Options, state *index.State) (*Server, error) {
	o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cache, err := ristretto.NewCache(&ristretto.Config[uint64, []byte]{
		NumCounters: max(o.CacheBytes/100, 1000), // ~10 counters per cached item of ~1 KiB
		MaxCost:     o.CacheBytes,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create cache: %w", err)
	}
	s := &Server{o: o, state: state, cache: cache, started: time.Now()}
	s.setConfig(o.Config)
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	s.recNonce = binary.LittleEndian.Uint64(nonce[:])
	// Decision ids stay valid across restarts: the signing key derives from
	// the API key, which only the operator knows.
	sk := sha256.Sum256([]byte("edgerec decision ids\x00" + o.APIKey))
	s.signKey = sk[:]
	empty := map[string]itemPatch{}
	s.patches.Store(&empty)
	s.m = newServerMetrics(s)
	s.reqs.New = func() any { return newReqState() }
	s.srv = &fasthttp.Server{
		Handler:                       s.Handle,
		Name:                          "edgerec",
		Concurrency:                   o.Concurrency,
		ReadTimeout:                   o.ReadTimeout,
		WriteTimeout:                  o.WriteTimeout,
		IdleTimeout:                   o.IdleTimeout,
		MaxRequestBodySize:            o.MaxBodySize,
		NoDefaultServerHeader:         false,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		ReduceMemoryUsage:             false,
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			status := fasthttp.StatusBadRequest
			code, msg := "bad_request", "cannot parse request: "+err.Error()
			if errors.Is(err, fasthttp.ErrBodyTooLarge) {
				status, code, msg = fasthttp.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", o.MaxBodySize)
			}
			s.writeError(ctx, errorf(status, code, msg))
		},
	}
	return s, nil
}

// LoadSnapshot opens and verifies the snapshot at path (a root or a version
// directory) and swaps it in. On any error the served snapshot stays. The
// version already served is not opened twice (Pebble would refuse its
// lock): its manifest is returned.
func (s *Server) LoadSnapshot(path string) (*index.Manifest, error) {
	if dir, err := index.ResolveSnapshot(path); err == nil {
		if cur := s.live.Acquire(); cur != nil {
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
		return nil, err
	}
	s.live.Swap(snap, nil)
	s.m.snapshotVersion.Store(snap.Version())
	log.Printf("serving snapshot %s: %d items", snap.Dir(), snap.NumItems())
	return snap.Manifest(), nil
}

// ReloadConfig reads Options.ConfigPath again and swaps the new
// configuration in; requests in flight finish with the old one. A bad file
// changes nothing and its error names the line.
func (s *Server) ReloadConfig() error {
	if s.o.ConfigPath == "" {
		return errorf(fasthttp.StatusConflict, "no_config", "the server was started without a config file")
	}
	c, err := LoadConfig(s.o.ConfigPath)
	if err != nil {
		return err
	}
	s.setConfig(c)
	log.Printf("loaded config %s: placements %s", s.o.ConfigPath, c.names())
	return nil
}

// setConfig swaps in a validated configuration.
func (s *Server) setConfig(c *Config) {
	// The generation goes with the config: a request keys cached rule
	// outcomes by the generation of the config it read its page from.
	c.gen = s.cfgGen.Add(1)
	s.cfg.Store(c)
}

func (s *Server) handleReloadConfig(ctx *fasthttp.RequestCtx) error {
	if err := authorize(ctx, s.o.AdminKey); err != nil {
		return err
	}
	if err := s.ReloadConfig(); err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return err
		}
		return errorf(fasthttp.StatusBadRequest, "bad_config", err.Error())
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"reloaded":true}` + "\n")
	return nil
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting connections and waits for requests in flight,
// then releases the snapshot. The state store belongs to the caller.
func (s *Server) Shutdown() error {
	err := s.srv.Shutdown()
	s.live.Close()
	s.cache.Close()
	return err
}

// Handle routes one request. It is the fasthttp handler.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	path := ctx.Path()
	r := routeNotFound
	var err error
	switch {
	case bytes.HasPrefix(path, []byte("/v1/")):
		r, err = s.routeV1(ctx, path[len("/v1/"):])
	case string(path) == "/healthz":
		r = routeHealth
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}` + "\n")
	case string(path) == "/readyz":
		r = routeHealth
		err = s.handleReady(ctx)
	case string(path) == "/metrics":
		r = routeMetrics
		s.m.write(ctx)
	case bytes.HasPrefix(path, []byte("/debug/pprof")):
		r = routeAdmin
		err = s.handlePprof(ctx)
	default:
		err = errNotFoundRoute
	}
	if err != nil {
		s.writeError(ctx, err)
	}
	s.m.observe(r, start)
}

func (s *Server) routeV1(ctx *fasthttp.RequestCtx, p []byte) (route, error) {
	if ctx.IsOptions() {
		s.cors(ctx)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return routeCORS, nil
	}
	get := ctx.IsGet() || ctx.IsHead()
	switch {
	case string(p) == "decide":
		return routeDecide, s.onlyGet(ctx, get, s.handleDecide)
	case string(p) == "page":
		return routePage, s.onlyGet(ctx, get, s.handlePage)
	case string(p) == "recommend":
		return routeRecommend, s.onlyGet(ctx, get, s.handleRecommend)
	case string(p) == "popular":
		return routePopular, s.onlyGet(ctx, get, s.handlePopular)
	case string(p) == "events":
		if !ctx.IsPost() {
			return routeEvents, errMethod
		}
		return routeEvents, s.handleEvents(ctx)
	case string(p) == "items":
		if !ctx.IsPut() && !ctx.IsPost() {
			return routeItems, errMethod
		}
		return routeItems, s.handlePutItems(ctx)
	case bytes.HasPrefix(p, []byte("items/")):
		id, rest := pathID(ctx, p, "items/")
		switch string(rest) {
		case "similar":
			return routeSimilar, s.onlyGet(ctx, get, func(ctx *fasthttp.RequestCtx) error { return s.handleItemList(ctx, id, index.ListSimilar) })
		case "bought-together":
			return routeBought, s.onlyGet(ctx, get, func(ctx *fasthttp.RequestCtx) error { return s.handleItemList(ctx, id, index.ListBought) })
		}
	case bytes.HasPrefix(p, []byte("users/")):
		id, rest := pathID(ctx, p, "users/")
		switch {
		case string(rest) == "recommendations":
			return routeUser, s.onlyGet(ctx, get, func(ctx *fasthttp.RequestCtx) error { return s.handleUser(ctx, id) })
		case string(rest) == "segments":
			return routeProfile, s.onlyGet(ctx, get, func(ctx *fasthttp.RequestCtx) error { return s.handleUserSegments(ctx, id) })
		case len(rest) == 0 && !bytes.HasSuffix(p, []byte("/")):
			if ctx.IsPut() || ctx.IsPost() {
				return routeProfile, s.handlePutProfile(ctx, id)
			}
			return routeProfile, s.onlyGet(ctx, get, func(ctx *fasthttp.RequestCtx) error { return s.handleGetProfile(ctx, id) })
		}
	case bytes.HasPrefix(p, []byte("segments/")):
		id, rest := pathID(ctx, p, "segments/")
		if string(rest) == "members" {
			return routeMembers, s.onlyGet(ctx, get, func(ctx *fasthttp.RequestCtx) error { return s.handleMembers(ctx, id) })
		}
	case string(p) == "admin/snapshots":
		if !ctx.IsPost() {
			return routeAdmin, errMethod
		}
		return routeAdmin, s.handleLoadSnapshot(ctx)
	case string(p) == "admin/config":
		if !ctx.IsPost() {
			return routeAdmin, errMethod
		}
		return routeAdmin, s.handleReloadConfig(ctx)
	case string(p) == "admin/status":
		return routeAdmin, s.handleStatus(ctx)
	case bytes.HasPrefix(p, []byte("experiments/")):
		id, rest, _ := bytes.Cut(p[len("experiments/"):], []byte("/"))
		if string(rest) == "results" {
			return routeResults, s.onlyGet(ctx, get, func(ctx *fasthttp.RequestCtx) error { return s.handleResults(ctx, id) })
		}
	case bytes.HasPrefix(p, []byte("placements/")):
		id, rest, _ := bytes.Cut(p[len("placements/"):], []byte("/"))
		if string(rest) == "stats" {
			return routeStats, s.onlyGet(ctx, get, func(ctx *fasthttp.RequestCtx) error { return s.handlePlacementStats(ctx, id) })
		}
	}
	return routeNotFound, errNotFoundRoute
}

// pathID cuts the id after prefix from p, the decoded path after /v1/,
// and returns it and the rest of the path. An id may hold '/' (user ids
// such as "acme/42" arrive in events), which a client sends as %2F: the
// decoded path then has a segment too many, so such an id is cut from
// the original path and unescaped (allocating; every other request
// allocates nothing here).
func pathID(ctx *fasthttp.RequestCtx, p []byte, prefix string) (id, rest []byte) {
	id, rest, _ = bytes.Cut(p[len(prefix):], []byte("/"))
	orig := ctx.Request.URI().PathOriginal()
	if !bytes.Contains(orig, []byte("%2F")) && !bytes.Contains(orig, []byte("%2f")) {
		return id, rest
	}
	raw, ok := bytes.CutPrefix(orig, []byte("/v1/"+prefix))
	if !ok {
		return id, rest
	}
	rawID, rawRest, _ := bytes.Cut(raw, []byte("/"))
	uid, err1 := url.PathUnescape(string(rawID))
	urest, err2 := url.PathUnescape(string(rawRest))
	if err1 != nil || err2 != nil {
		return id, rest
	}
	return []byte(uid), []byte(urest)
}

func (s *Server) onlyGet(ctx *fasthttp.RequestCtx, get bool, h func(*fasthttp.RequestCtx) error) error {
	if !get {
		return errMethod
	}
	s.cors(ctx)
	return h(ctx)
}

// cors answers browsers from allowed origins.
func (s *Server) cors(ctx *fasthttp.RequestCtx) {
	if len(s.o.CORSOrigins) == 0 {
		return
	}
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return
	}
	for _, o := range s.o.CORSOrigins {
		if o == "*" || o == string(origin) {
			ctx.Response.Header.SetBytesV("Access-Control-Allow-Origin", origin)
			ctx.Response.Header.Set("Vary", "Origin")
			if ctx.IsOptions() {
				ctx.Response.Header.Set("Access-Control-Allow-Methods", "GET, POST, PUT, OPTIONS")
				ctx.Response.Header.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
				ctx.Response.Header.Set("Access-Control-Max-Age", "600")
			}
			return
		}
	}
}

// authorize checks the bearer key in constant time.
func authorize(ctx *fasthttp.RequestCtx, key string) error {
	if key == "" {
		return errUnauthorized
	}
	h := ctx.Request.Header.Peek("Authorization")
	tok, ok := bytes.CutPrefix(h, []byte("Bearer "))
	if !ok || subtle.ConstantTimeCompare(tok, []byte(key)) != 1 {
		return errUnauthorized
	}
	return nil
}

func (s *Server) handleReady(ctx *fasthttp.RequestCtx) error {
	ref := s.live.Acquire()
	if ref == nil {
		return errNoSnapshot
	}
	v := ref.Version()
	ref.Release()
	ctx.SetContentType("application/json")
	b := append(make([]byte, 0, 64), `{"status":"ready","snapshot":`...)
	b = fmt.Appendf(b, "%d}\n", v)
	ctx.SetBody(b)
	return nil
}

// itemPatch is a live catalog correction (PUT /v1/items).
type itemPatch struct {
	Price    float64
	HasPrice bool
	Stock    int64
	HasStock bool
}

// newRecID returns a fresh 16-hex-digit recommendation id into dst.
func (s *Server) appendRecID(dst []byte) []byte {
	x := s.recSeq.Add(1)*0x9e3779b97f4a7c15 ^ s.recNonce
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 29
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hexDigits[(x>>uint(i))&0xf])
	}
	return dst
}

func splitComma(b []byte, fn func(part []byte)) {
	for len(b) > 0 {
		part, rest, _ := bytes.Cut(b, []byte(","))
		if p := bytes.TrimSpace(part); len(p) > 0 {
			fn(p)
		}
		b = rest
	}
}
