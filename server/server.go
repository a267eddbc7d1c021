package server

import (
	"bytes"
	"crypto/subtle"
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
	// Concurrency bounds the API requests (/v1/) in flight; over it they
	// answer 503 with Retry-After and their connection stays open.
	// Default 4096.
	Concurrency int
	// MaxConns bounds the open connections; default 10000. A new
	// connection at the bound closes the one that has waited longest for
	// a request; only when every connection is inside a request is the
	// new one refused (503, closed). MaxConnsPerIP bounds the connections
	// of one client address (an IPv6 /64) the same way, within the
	// address, refusing with 429; 0: no bound. See conns.go.
	MaxConns, MaxConnsPerIP int
	// MaxHeaderBytes bounds the request line (the URL) and the headers
	// together; over it a request is answered 431. Default 8192.
	MaxHeaderBytes int
	// ReadTimeout bounds reading a request, from its first byte (from
	// the connection's opening for its first request); WriteTimeout
	// writing an answer; IdleTimeout the wait for the next request on a
	// keep-alive connection. Defaults 5 s, 5 s, 60 s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// CORSOrigins may call the API from browsers (scheme://host[:port],
	// as browsers send Origin); "*" allows any origin, without credentials
	// (cors).
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
	if o.MaxConns == 0 {
		o.MaxConns = 10000
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 8192
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
	case o.MaxConns < 1 || o.MaxConnsPerIP < 0:
		return fmt.Errorf("connection limits %d and %d per address: want at least 1 and at least 0", o.MaxConns, o.MaxConnsPerIP)
	case o.MaxHeaderBytes < 1024:
		return fmt.Errorf("header limit %d: want at least 1024 bytes", o.MaxHeaderBytes)
	}
	if _, err := normalizeOrigins(o.CORSOrigins); err != nil {
		return err
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
	// conns caps the connections (Serve puts it in front of the
	// listener), inflight the requests; logs throttles what clients cause.
	conns    *connLimiter
	inflight gate
	logs     *logThrottle
	// keyless limits keyless decisions and beacons per address; nil: none.
	keyless *ipLimiter
	dash    *dashState // the results dashboard (dashboard.go)

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
	o.CORSOrigins, _ = normalizeOrigins(o.CORSOrigins) // valid: checked above
	s := &Server{o: o, e: e, started: time.Now(), keyless: newIPLimiter(o.KeylessRate, o.KeylessBurst),
		conns: newConnLimiter(nil, o.MaxConns, o.MaxConnsPerIP), logs: newLogThrottle(time.Second), dash: newDashState(o.AdminKey)}
	s.inflight.max = int64(o.Concurrency)
	s.conns.log = s.logClient
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
		Handler: s.Handle,
		Name:    "edgerec",
		// A backstop only: conns caps the connections, inflight the
		// requests (conns.go). The slack covers the workers of closed
		// idle connections that have not noticed yet.
		Concurrency:           2 * o.MaxConns,
		ConnState:             s.conns.state,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		IdleTimeout:           o.IdleTimeout,
		ReadBufferSize:        o.MaxHeaderBytes,
		MaxRequestBodySize:    o.MaxBodySize,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		SecureErrorLogMessage: true,
		Logger:                fasthttpLogger{s},
		ErrorHandler:          s.readError,
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

// Serve answers requests on ln until Shutdown. Call it once.
func (s *Server) Serve(ln net.Listener) error {
	s.conns.Listener = ln
	return s.srv.Serve(s.conns)
}

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
	case badFraming(&ctx.Request.Header):
		ctx.SetConnectionClose()
		err = errBadFraming
	case bytes.HasPrefix(path, []byte("/v1/")):
		if !s.inflight.enter() {
			r, err = routeOverload, s.overloaded(ctx)
			break
		}
		r, err = s.routeV1(ctx, path[len("/v1/"):])
		s.inflight.leave()
		if r != routeNotFound && ctx.IsOptions() {
			r = routeCORS // preflights count apart from their route's answers
		}
	case string(path) == "/healthz":
		r, err = serveOps(ctx, epHealthz, handleHealth)
	case string(path) == "/readyz":
		r, err = serveOps(ctx, epReadyz, s.handleReady)
	case string(path) == "/metrics":
		r, err = serveOps(ctx, epMetrics, s.handleMetrics)
	case string(path) == "/openapi.json":
		r, err = serveOps(ctx, epOpenAPI, handleOpenAPI)
	case isDashboardPath(path):
		r = routeDashboard
		err = s.routeDashboard(ctx, path)
	case string(path) == "/debug/pprof" || string(path) == "/debug/pprof/":
		r, err = serveOps(ctx, epPprofIndex, s.handlePprof)
	case bytes.HasPrefix(path, []byte("/debug/pprof/")):
		r, err = serveOps(ctx, epPprof, s.handlePprof)
	default:
		err = errNotFoundRoute
	}
	if err != nil {
		s.writeError(ctx, err)
	}
	s.m.observe(r, start)
}

// routeV1 routes the API: every path it answers names its endpoint of
// the table (routes.go), whose methods and query parameters serve checks.
func (s *Server) routeV1(ctx *fasthttp.RequestCtx, p []byte) (route, error) {
	switch {
	case string(p) == "decide":
		return s.serveEP(ctx, epDecide, s.handleDecide)
	case string(p) == "page":
		return s.serveEP(ctx, epPage, s.handlePage)
	case string(p) == "recommend":
		return s.serveEP(ctx, epRecommend, s.handleRecommend)
	case string(p) == "popular":
		return s.serveEP(ctx, epPopular, s.handlePopular)
	case string(p) == "events":
		return s.serveEP(ctx, epEvents, s.handleEvents)
	case string(p) == "edgerec.js":
		return s.serveEP(ctx, epScript, s.handleScript)
	case string(p) == "items":
		return s.serveEP(ctx, epItems, s.handlePutItems)
	case bytes.HasPrefix(p, []byte("items/")):
		id, rest := pathID(ctx, p, "items/")
		switch string(rest) {
		case "similar":
			return s.serveEP(ctx, epSimilar, func(ctx *fasthttp.RequestCtx) error { return s.handleItemList(ctx, id, index.ListSimilar) })
		case "bought-together":
			return s.serveEP(ctx, epBought, func(ctx *fasthttp.RequestCtx) error { return s.handleItemList(ctx, id, index.ListBought) })
		}
	case bytes.HasPrefix(p, []byte("users/")):
		id, rest := pathID(ctx, p, "users/")
		switch {
		case string(rest) == "recommendations":
			return s.serveEP(ctx, epUserRecs, func(ctx *fasthttp.RequestCtx) error { return s.handleUser(ctx, id) })
		case string(rest) == "segments":
			return s.serveEP(ctx, epSegments, func(ctx *fasthttp.RequestCtx) error { return s.handleUserSegments(ctx, id) })
		case len(rest) == 0 && !bytes.HasSuffix(p, []byte("/")):
			return s.serveEP(ctx, epProfile, func(ctx *fasthttp.RequestCtx) error {
				if ctx.IsPut() || ctx.IsPost() {
					return s.handlePutProfile(ctx, id)
				}
				return s.handleGetProfile(ctx, id)
			})
		}
	case bytes.HasPrefix(p, []byte("segments/")):
		id, rest := pathID(ctx, p, "segments/")
		if string(rest) == "members" {
			return s.serveEP(ctx, epMembers, func(ctx *fasthttp.RequestCtx) error { return s.handleMembers(ctx, id) })
		}
	case string(p) == "admin/snapshots":
		return s.serveEP(ctx, epAdminSnapshots, s.handleLoadSnapshot)
	case string(p) == "admin/config":
		return s.serveEP(ctx, epAdminConfig, s.handleReloadConfig)
	case string(p) == "admin/status":
		return s.serveEP(ctx, epAdminStatus, s.handleStatus)
	case bytes.HasPrefix(p, []byte("experiments/")):
		id, rest, _ := bytes.Cut(p[len("experiments/"):], []byte("/"))
		if string(rest) == "results" {
			return s.serveEP(ctx, epResults, func(ctx *fasthttp.RequestCtx) error { return s.handleResults(ctx, id) })
		}
	case bytes.HasPrefix(p, []byte("placements/")):
		id, rest, _ := bytes.Cut(p[len("placements/"):], []byte("/"))
		if string(rest) == "stats" {
			return s.serveEP(ctx, epStats, func(ctx *fasthttp.RequestCtx) error { return s.handlePlacementStats(ctx, id) })
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

// authorize checks the bearer key in constant time. The scheme is
// case-insensitive (RFC 9110, 11.1), followed by one or more spaces (RFC
// 6750, 2.1).
func authorize(ctx *fasthttp.RequestCtx, key string) error {
	if key == "" {
		return errUnauthorized
	}
	h := ctx.Request.Header.Peek("Authorization")
	if len(h) < len("Bearer ") || !bytes.EqualFold(h[:len("Bearer")], []byte("Bearer")) || h[len("Bearer")] != ' ' {
		return errUnauthorized
	}
	tok := bytes.TrimLeft(h[len("Bearer "):], " ")
	if subtle.ConstantTimeCompare(tok, []byte(key)) != 1 {
		return errUnauthorized
	}
	return nil
}

// handleHealth answers /healthz: 200 whenever the process serves.
func handleHealth(ctx *fasthttp.RequestCtx) error {
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"status":"ok"}` + "\n")
	return nil
}

// handleMetrics answers /metrics (Prometheus text).
func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) error {
	s.m.write(ctx)
	return nil
}

// handleReady answers /readyz: 200 when a snapshot is loaded and the state
// store takes writes (engine.Ready), else 503 saying which. /healthz
// answers 200 whenever the process serves.
func (s *Server) handleReady(ctx *fasthttp.RequestCtx) error {
	v, err := s.e.Ready()
	if err != nil {
		return err
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
