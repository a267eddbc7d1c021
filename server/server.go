package server

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
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
	// CacheBytes is the Ristretto budget for rendered answers; default
	// 32 MiB.
	CacheBytes int64
	// GzipMinBytes is the smallest cached answer sent gzip-compressed to
	// clients that accept it (compressed once, then served from the
	// cache); default 1024, negative: never.
	GzipMinBytes int
	// MaxBodySize bounds request bodies; default 1 MiB. MaxBatch bounds the
	// events of one POST; default 1000.
	MaxBodySize, MaxBatch int
	// Concurrency bounds requests in flight; default 4096.
	Concurrency int
	// ReadTimeout, WriteTimeout, IdleTimeout of connections; defaults 5 s,
	// 5 s, 60 s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// CORSOrigins may call the read API from browsers; "*" allows any.
	CORSOrigins []string
	// KeylessRate limits requests without the API key to decisions and
	// events (beacons) per client address: KeylessRate a second, bursts
	// of KeylessBurst (default 5 × the rate); 0: no limit. Over it they
	// answer 429 with Retry-After.
	KeylessRate, KeylessBurst float64
}

func (o *Options) withDefaults() {
	if o.CacheBytes == 0 {
		o.CacheBytes = 32 << 20
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
	if o.KeylessBurst == 0 {
		o.KeylessBurst = 5 * o.KeylessRate
	}
}

// Validate reports the first bad option.
func (o *Options) Validate() error {
	switch {
	case o.CacheBytes < 0:
		return fmt.Errorf("cache size %d: must not be negative", o.CacheBytes)
	case o.MaxBodySize < 1024 || o.MaxBatch < 1:
		return fmt.Errorf("body size and batch limits must be positive (body at least 1024 bytes)")
	case o.KeylessRate < 0 || o.KeylessBurst < 0:
		return fmt.Errorf("keyless rate %v and burst %v: must not be negative", o.KeylessRate, o.KeylessBurst)
	case o.Concurrency < 0 || o.ReadTimeout < 0 || o.WriteTimeout < 0 || o.IdleTimeout < 0:
		return fmt.Errorf("concurrency and timeouts must not be negative")
	}
	return nil
}

// Server answers the edgerec HTTP API over an engine: it parses requests
// into the engine's request structs, asks the engine, renders the answer
// and counts it. Create it with New; it is safe for concurrent use.
type Server struct {
	o     Options
	e     *engine.Engine
	cache *ristretto.Cache[uint64, []byte]
	reqs  sync.Pool // *reqState
	frags atomic.Pointer[fragments]
	seen  [seenSlots]atomic.Uint64 // keys that missed the body cache (seenBefore)
	srv   *fasthttp.Server
	m     *serverMetrics
	// keyless limits keyless decisions and beacons per address; nil: none.
	keyless *ipLimiter

	started    time.Time
	addr       string           // tests: the loopback address served
	testClient *fasthttp.Client // tests: a client of addr
}

// New returns a Server over e. The engine, and its state store, stay the
// caller's: close them after Shutdown.
func New(e *engine.Engine, o Options) (*Server, error) {
	o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s := &Server{o: o, e: e, started: time.Now(), keyless: newIPLimiter(o.KeylessRate, o.KeylessBurst)}
	if o.CacheBytes > 0 {
		cache, err := ristretto.NewCache(&ristretto.Config[uint64, []byte]{
			NumCounters: max(o.CacheBytes/100, 1000), // ~10 counters per cached answer of ~1 KiB
			MaxCost:     o.CacheBytes,
			BufferItems: 64,
			Metrics:     true, // cost added and evicted, for /v1/admin/status
		})
		if err != nil {
			return nil, fmt.Errorf("cannot create cache: %w", err)
		}
		s.cache = cache
	}
	s.m = newServerMetrics(s)
	s.reqs.New = func() any { return new(reqState) }
	s.srv = &fasthttp.Server{
		Handler:              s.Handle,
		Name:                 "edgerec",
		Concurrency:          o.Concurrency,
		ReadTimeout:          o.ReadTimeout,
		WriteTimeout:         o.WriteTimeout,
		IdleTimeout:          o.IdleTimeout,
		MaxRequestBodySize:   o.MaxBodySize,
		NoDefaultContentType: true,
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

func (s *Server) handleReloadConfig(ctx *fasthttp.RequestCtx) error {
	if err := authorize(ctx, s.o.AdminKey); err != nil {
		return err
	}
	if err := s.e.ReloadConfig(); err != nil {
		if engine.KindOf(err) != 0 {
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

// Shutdown stops accepting connections and waits for the requests in
// flight. Close the engine and its stores after it returns, never before:
// no request then runs on them.
func (s *Server) Shutdown() error {
	err := s.srv.Shutdown()
	if s.cache != nil {
		s.cache.Close()
	}
	return err
}

// Handle routes one request. It is the fasthttp handler.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	// The time fasthttp took when the request began: a clock read saved.
	start := ctx.Time()
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
		if err := s.limitKeyless(ctx); err != nil {
			return routeDecide, err
		}
		return routeDecide, s.onlyGet(ctx, get, s.handleDecide)
	case string(p) == "page":
		if err := s.limitKeyless(ctx); err != nil {
			return routePage, err
		}
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
			return routeMembers, s.onlyGet(ctx, get || ctx.IsPost(), func(ctx *fasthttp.RequestCtx) error { return s.handleMembers(ctx, id) })
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
	// An empty id: fasthttp collapses "//", which would make
	// /v1/users//recommendations the profile of user "recommendations"
	// (FuzzReadQuery).
	if n := len("/v1/") + len(prefix); len(orig) > n && string(orig[:len("/v1/")]) == "/v1/" &&
		string(orig[len("/v1/"):n]) == prefix && orig[n] == '/' {
		return nil, orig[n+1:]
	}
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
	v := s.e.SnapshotVersion()
	if v == 0 {
		return engine.ErrNoSnapshot
	}
	ctx.SetContentType("application/json")
	b := append(make([]byte, 0, 64), `{"status":"ready","snapshot":`...)
	b = fmt.Appendf(b, "%d}\n", v)
	ctx.SetBody(b)
	return nil
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
