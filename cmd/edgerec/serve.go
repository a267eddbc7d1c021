package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/server"
)

// envTwins sets every flag not given on the command line from its
// environment twin: -cache-mb ↔ EDGEREC_CACHE_MB.
func envTwins(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "EDGEREC_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	return err
}

// serveFlags are the flags of edgerec serve. The deploy kit's systemd
// unit is checked against them (TestSystemdUnit).
type serveFlags struct {
	addr, data, apiKey, adminKey, cors, configPath string
	cacheMB, memoryMB                              int64
	gzipMin, maxK, maxBody, history, maxUserItems  int
	retention, drain, decisionTTL, warm            time.Duration
	keylessRate, keylessBurst                      float64
	concurrency, maxConns, maxConnsPerIP, maxHead  int
	readTimeout, writeTimeout, idleTimeout         time.Duration
	ret                                            engine.Retention
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "listen address (env EDGEREC_ADDR)")
	fs.StringVar(&f.data, "data", "data/run", "data directory: snapshots/ (built by 'edgerec build --out DIR/snapshots') and state/ (env EDGEREC_DATA)")
	fs.StringVar(&f.apiKey, "api-key", "", "bearer key for writes; when empty, a random one that no client knows (never logged: keys stay out of logs), so writes are refused. Prefer the env twin EDGEREC_API_KEY: a flag is visible in ps")
	fs.StringVar(&f.adminKey, "admin-key", "", "bearer key for admin calls and pprof; default the API key (env EDGEREC_ADMIN_KEY)")
	fs.Int64Var(&f.cacheMB, "cache-mb", 64, "Ristretto budget, MiB, at least 2: three quarters for the engine (decoded lists, answers, segments and decisions), a quarter for rendered answers (env EDGEREC_CACHE_MB)")
	fs.Int64Var(&f.memoryMB, "memory-mb", 0, "soft limit of the process's Go memory, MiB (GOMEMLIMIT): the garbage collector runs when the heap reaches it instead of whenever the live heap doubles (GOGC off), so the footprint holds flat while the caches fill; 0: twice the caches' budgets (see memoryBudget: 240 MiB with -cache-mb 64), at most 60% of the machine's or the cgroup's memory; at least the budgets + 64 MiB. GOMEMLIMIT or GOGC in the environment leave the runtime's own settings (env EDGEREC_MEMORY_MB)")
	fs.IntVar(&f.gzipMin, "gzip-min", 1024, "smallest cached answer sent gzip-compressed to clients that accept it, bytes; compressed once per cached answer; 0 never (env EDGEREC_GZIP_MIN)")
	fs.IntVar(&f.maxK, "max-k", 100, "largest k a request may ask for (env EDGEREC_MAX_K)")
	fs.StringVar(&f.cors, "cors", "", "origins whose pages may call the API from browsers, comma-separated scheme://host[:port], answered with credentials; or * for any origin, without credentials (env EDGEREC_CORS)")
	fs.IntVar(&f.maxBody, "max-body", 1<<20, "largest request body in bytes (env EDGEREC_MAX_BODY)")
	fs.StringVar(&f.configPath, "config", "", "edgerec.yaml with placements; reloaded on SIGHUP and POST /v1/admin/config (env EDGEREC_CONFIG)")
	fs.IntVar(&f.history, "history", engine.DefaultHistoryWindow, "newest history entries of a visitor blended into their recommendations; edgerec eval uses the same default (env EDGEREC_HISTORY)")
	fs.IntVar(&f.maxUserItems, "max-user-items", 0, "newest history entries of a visitor whose items are left out as seen; 0: the snapshot's build setting (default 1000) (env EDGEREC_MAX_USER_ITEMS)")
	fs.DurationVar(&f.retention, "profile-retention", index.DefaultProfileRetention, "how long profiles keep behaviour counts, at least 1h (env EDGEREC_PROFILE_RETENTION)")
	fs.DurationVar(&f.ret.Events, "retention-events", engine.DefaultRetentionEvents, "how long the event log keeps an event after it arrived (the input of the next build); 0 forever (env EDGEREC_RETENTION_EVENTS)")
	fs.DurationVar(&f.ret.Histories, "retention-histories", engine.DefaultRetentionHistories, "how long a visitor's history keeps an event after its time (what personal answers and the seen filter read); 0 forever (env EDGEREC_RETENTION_HISTORIES)")
	fs.DurationVar(&f.ret.Profiles, "retention-profiles", engine.DefaultRetentionProfiles, "how long a profile is kept after its last event (one with attributes only stays); see also -profile-retention; 0 forever (env EDGEREC_RETENTION_PROFILES)")
	fs.DurationVar(&f.ret.Assignments, "retention-assignments", engine.DefaultRetentionAssignments, "how long a visitor with events keeps their experiment variants after their last decision; at least -decision-ttl, or later conversions do not count; 0 forever (env EDGEREC_RETENTION_ASSIGNMENTS)")
	fs.DurationVar(&f.ret.Anonymous, "retention-anonymous", engine.DefaultRetentionAnonymous, "the same for an anonymous visitor without events (a decision only); 0 forever (env EDGEREC_RETENTION_ANONYMOUS)")
	fs.DurationVar(&f.ret.EventIDs, "retention-event-ids", engine.DefaultRetentionEventIDs, "the window in which an event sent again with the same event_id is acknowledged and not counted twice, after its arrival; 0 forever (env EDGEREC_RETENTION_EVENT_IDS)")
	fs.DurationVar(&f.ret.Interval, "retention-sweep", engine.DefaultSweepInterval, "time between the background passes that delete expired state, in small batches with pauses, then compact (env EDGEREC_RETENTION_SWEEP)")
	fs.Float64Var(&f.keylessRate, "keyless-rate", 20, "requests a second per client address without the API key to /v1/decide, /v1/page and beacons to /v1/events; over it they answer 429; 0: no limit (env EDGEREC_KEYLESS_RATE)")
	fs.Float64Var(&f.keylessBurst, "keyless-burst", 0, "burst of -keyless-rate; 0: 5 × the rate (env EDGEREC_KEYLESS_BURST)")
	fs.DurationVar(&f.decisionTTL, "decision-ttl", engine.DefaultDecisionTTL, "how long a decision id is taken in a beacon without the API key (env EDGEREC_DECISION_TTL)")
	fs.IntVar(&f.concurrency, "concurrency", 4096, "API requests (/v1/) in flight at most; over it they answer 503 with Retry-After on a connection that stays open (env EDGEREC_CONCURRENCY)")
	fs.IntVar(&f.maxConns, "max-conns", 10000, "open connections at most (about 20 KB each when idle); a new one over it closes the connection that has waited longest for a request, and is refused with 503 only when every connection is inside a request (env EDGEREC_MAX_CONNS)")
	fs.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", 0, "open connections per client address (IPv6: per /64) at most, the same way, refused with 429; 0: no bound. Behind a proxy every client has the proxy's address (env EDGEREC_MAX_CONNS_PER_IP)")
	fs.IntVar(&f.maxHead, "max-header-bytes", 8192, "request line (URL) and headers together, bytes, at least 1024; over it 431 (env EDGEREC_MAX_HEADER_BYTES)")
	fs.DurationVar(&f.readTimeout, "read-timeout", 5*time.Second, "time to read a request, from its first byte, or from the connection's opening for its first (env EDGEREC_READ_TIMEOUT)")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 5*time.Second, "time to write an answer (env EDGEREC_WRITE_TIMEOUT)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 60*time.Second, "how long a keep-alive connection may wait for its next request (env EDGEREC_IDLE_TIMEOUT)")
	fs.DurationVar(&f.warm, "warm", 5*time.Second, "at start, the longest time to warm the caches (every item's lists, every placement, the answers of the visitors with the most history, as many as half the answer cache holds) before /readyz answers 200; the server listens meanwhile; 0: no warming (env EDGEREC_WARM)")
	fs.DurationVar(&f.drain, "drain", 30*time.Second, "on SIGTERM, how long requests in flight may take before the process exits anyway; a service manager's stop timeout must be longer (env EDGEREC_DRAIN)")
}

// parseServeFlags parses serve's command line, then the environment
// twins of the flags it did not give.
func parseServeFlags(c *command, args []string) (*serveFlags, error) {
	fs := c.flagSet()
	f := new(serveFlags)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, &usageError{msg: fmt.Sprintf("edgerec serve: unexpected argument %q", fs.Arg(0))}
	}
	if err := envTwins(fs); err != nil {
		return nil, err
	}
	if err := nonNegative(fs, "max-k", "max-body", "history", "max-user-items", "gzip-min", "keyless-rate", "keyless-burst", "decision-ttl",
		"concurrency", "max-conns", "max-conns-per-ip", "max-header-bytes"); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read-timeout", f.readTimeout}, {"write-timeout", f.writeTimeout}, {"idle-timeout", f.idleTimeout}} {
		if d.v <= 0 {
			return nil, fmt.Errorf("-%s %v: want a positive duration", d.name, d.v)
		}
	}
	if f.warm < 0 {
		return nil, fmt.Errorf("-warm %v: want a duration, or 0 for no warming", f.warm)
	}
	if f.ret.Interval <= 0 {
		return nil, fmt.Errorf("-retention-sweep %v: want a positive duration", f.ret.Interval)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"events", f.ret.Events}, {"histories", f.ret.Histories}, {"profiles", f.ret.Profiles},
		{"assignments", f.ret.Assignments}, {"anonymous", f.ret.Anonymous}, {"event-ids", f.ret.EventIDs}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Minute) {
			return nil, fmt.Errorf("-retention-%s %v: want 0 (keep forever) or a minute or more", d.name, d.v)
		}
	}
	if f.cacheMB < 2 {
		return nil, fmt.Errorf("-cache-mb %d: want at least 2 (MiB)", f.cacheMB)
	}
	if f.memoryMB < 0 || (f.memoryMB > 0 && f.memoryMB < memoryBudget(f.cacheMB)+memoryWorkMB) {
		return nil, fmt.Errorf("-memory-mb %d: want 0 (twice the caches' budgets) or at least %d: the caches take %d MiB (-cache-mb %d and Pebble's caches) and the heap's own work %d MiB more",
			f.memoryMB, memoryBudget(f.cacheMB)+memoryWorkMB, memoryBudget(f.cacheMB), f.cacheMB, memoryWorkMB)
	}
	return f, nil
}

func runServe(c *command, args []string) error {
	f, err := parseServeFlags(c, args)
	if err != nil {
		return err
	}
	logger := newLogger()
	ensureProcs(logger)
	mem := ensureMemory(logger, f.memoryMB, f.cacheMB)
	if f.apiKey == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		f.apiKey = hex.EncodeToString(b[:])
		logger.Warn("no -api-key given: writes and admin calls are refused (a random key for this run, not logged); give -api-key or EDGEREC_API_KEY")
	}
	var cfg *engine.Config
	if f.configPath != "" {
		loaded, err := engine.LoadConfig(f.configPath)
		if err != nil {
			return err
		}
		cfg = loaded
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	state, err := index.OpenState(filepath.Join(f.data, "state"), index.StateOptions{ProfileRetention: f.retention, Logger: logger})
	if err != nil {
		return err
	}
	e, err := engine.New(engine.Options{
		MaxK: f.maxK, CacheBytes: f.cacheMB << 20 * 3 / 4, HistoryWindow: f.history, SeenItems: f.maxUserItems,
		Config: cfg, ConfigPath: f.configPath, SignKey: signKey(f.apiKey), Logger: logger, DecisionTTL: f.decisionTTL,
		Retention: f.ret,
	}, state)
	if err != nil {
		_ = state.Close()
		return err
	}
	root := filepath.Join(f.data, "snapshots")
	srv, err := server.New(e, server.Options{
		SnapshotRoot: root, APIKey: f.apiKey, AdminKey: f.adminKey, CacheBytes: f.cacheMB << 20 / 4,
		GzipMinBytes: gzipOption(f.gzipMin), MaxBodySize: f.maxBody, CORSOrigins: splitList(f.cors),
		KeylessRate: f.keylessRate, KeylessBurst: f.keylessBurst,
		Concurrency: f.concurrency, MaxConns: f.maxConns, MaxConnsPerIP: f.maxConnsPerIP, MaxHeaderBytes: f.maxHead,
		ReadTimeout: f.readTimeout, WriteTimeout: f.writeTimeout, IdleTimeout: f.idleTimeout,
	})
	if err != nil {
		e.Close()
		_ = state.Close()
		return err
	}
	if err := e.LoadPatches(); err != nil {
		e.Close()
		_ = state.Close()
		return err
	}
	loaded := true
	if _, err := e.LoadNewestSnapshot(ctx, root); err != nil {
		// Serve anyway: /readyz says not ready until POST /v1/admin/snapshots loads one.
		logger.Warn("no snapshot loaded: serving none until POST /v1/admin/snapshots loads one", "err", err)
		loaded = false
	}
	// /readyz says "warming" from the first connection until the
	// caches are warm (engine/warm.go, logWarm).
	release := func() {}
	if loaded && f.warm > 0 {
		release = e.HoldReady()
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		e.Close()
		_ = state.Close()
		return fmt.Errorf("cannot listen on %q: %w", f.addr, err)
	}
	logger.Info("listening", "version", version, "url", "http://"+ln.Addr().String())
	if mem != nil {
		go mem.run(ctx, 5*time.Second)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if loaded && f.warm > 0 {
		st, err := e.Warm(ctx, engine.WarmOptions{Deadline: time.Now().Add(f.warm)})
		release() // before the log line: who reads it finds /readyz 200
		logWarm(logger, st, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
wait:
	select {
	case err := <-errc:
		e.Close()
		_ = state.Close()
		return err
	case <-hup:
		if err := e.ReloadConfig(); err != nil {
			logger.Warn("SIGHUP: config not reloaded, the old one stays", "err", err)
		}
		goto wait
	case <-ctx.Done():
		logger.Info("stopping: no new connections, finishing requests in flight")
	}
	if err := stopServing(logger, f.drain, srv, e, state); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// stopServing shuts srv down (no new connections, the requests in flight
// finish), then closes the engine and the state store, all within drain.
// Past it, stopServing returns without waiting further: requests still
// running on the stores (closing Pebble under them would crash them), or
// a state store whose disk does not answer (a Sync that never returns on
// a full or failed disk), are abandoned, and the process exits.
// Acknowledged events are in the WAL already; the next start replays it.
func stopServing(logger *slog.Logger, drain time.Duration, srv *server.Server, e *engine.Engine, state *index.State) error {
	done := make(chan error, 1)
	closed := make(chan struct{})
	go func() {
		err := srv.Shutdown()
		close(closed)
		// No request runs now: the stores can close.
		e.Close()
		if cerr := state.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	select {
	case <-closed:
		logger.Warn("the state store did not close within the drain timeout (a disk that does not answer?); exiting without it", "drain", drain.String())
	default:
		logger.Warn("requests still in flight after the drain timeout; exiting without closing the stores", "drain", drain.String())
	}
	return nil
}

// minProcs is the fewest Go Ps the server runs with.
//
// On one core (a small edge box, a one-CPU container, taskset -c 1) Go
// runs one P, and a goroutine that is busy for a while keeps it for Go's
// 10 ms time slices while every request waits in the run queue: a Pebble
// compaction of the state store, warming. Under the soak's mix at 5,000
// requests a second, every compaction showed as a stall of 20 to 50 ms
// that every kind of answer waited through, cached ones too, growing
// with the state store (p99.9 31.5 ms, max 62 ms in 150 s); with two Ps
// the kernel interleaves the background thread with the request thread
// at a finer grain (p99.9 4.3 ms, max 10.7 ms; README, "Soak and crash
// trials").
const minProcs = 2

// ensureProcs raises GOMAXPROCS to minProcs unless the operator set it.
func ensureProcs(logger *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n := runtime.GOMAXPROCS(0); n < minProcs {
		runtime.GOMAXPROCS(minProcs)
		logger.Info("running two Ps on one core: background work (compactions, warming) does not hold up requests",
			"cores", n, "gomaxprocs", minProcs)
	}
}

// logWarm logs what engine.Warm did. A failure leaves the server
// serving with cold caches. Requests of clients that do not wait for
// /readyz are served meanwhile (see minProcs).
func logWarm(logger *slog.Logger, st engine.WarmStats, err error) {
	if err != nil {
		logger.Warn("warming failed: serving with cold caches", "err", err)
		return
	}
	msg := "warmed the caches"
	if !st.Complete {
		msg = "warmed the caches partly: -warm ended it"
	}
	logger.Info(msg, "seconds", st.Took.Seconds(), "items", st.Items, "visitors", st.Visitors, "answers", st.Answers)
}

// signKey derives the key that signs decision ids from the API key: ids
// then stay valid across restarts, and only the operator can make them.
func signKey(apiKey string) []byte {
	k := sha256.Sum256([]byte("edgerec decision ids\x00" + apiKey))
	return k[:]
}

// newLogger is the process's structured logger: text lines on stderr.
func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// nonNegative refuses negative values of the named int flags of fs.
func nonNegative(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		f := fs.Lookup(n)
		if f == nil {
			panic("BUG: no flag " + n)
		}
		if v, err := strconv.ParseInt(f.Value.String(), 10, 64); err == nil && v < 0 {
			return fmt.Errorf("-%s %d: must not be negative", n, v)
		}
	}
	return nil
}

// runCheck validates a configuration file without serving, for deploy
// pipelines.
func runCheck(c *command, args []string) error {
	fs := c.flagSet()
	configPath := fs.String("config", "edgerec.yaml", "configuration file to validate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := engine.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	fmt.Printf("%s: ok: placements %s; pages %s; segments %s\n", *configPath, strings.Join(cfg.Names(), ", "),
		strings.Join(cfg.PageNames(), ", "), strings.Join(cfg.SegmentNames(), ", "))
	return nil
}

// gzipOption maps the --gzip-min flag (0: never) onto
// server.Options.GzipMinBytes (0: the default, negative: never).
func gzipOption(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}
