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

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (env EDGEREC_ADDR)")
	data := fs.String("data", "data/run", "data directory: snapshots/ (built by 'edgerec build --out DIR/snapshots') and state/ (env EDGEREC_DATA)")
	apiKey := fs.String("api-key", "", "bearer key for writes; a random one is generated and printed when empty (env EDGEREC_API_KEY)")
	adminKey := fs.String("admin-key", "", "bearer key for admin calls and pprof; default the API key (env EDGEREC_ADMIN_KEY)")
	cacheMB := fs.Int64("cache-mb", 64, "Ristretto budget, MiB, at least 2: three quarters for the engine (decoded lists, answers, segments and decisions), a quarter for rendered answers (env EDGEREC_CACHE_MB)")
	gzipMin := fs.Int("gzip-min", 1024, "smallest cached answer sent gzip-compressed to clients that accept it, bytes; compressed once per cached answer; 0 never (env EDGEREC_GZIP_MIN)")
	maxK := fs.Int("max-k", 100, "largest k a request may ask for (env EDGEREC_MAX_K)")
	cors := fs.String("cors", "", "origins allowed to call the read API from browsers, comma-separated, or * (env EDGEREC_CORS)")
	maxBody := fs.Int("max-body", 1<<20, "largest request body in bytes (env EDGEREC_MAX_BODY)")
	configPath := fs.String("config", "", "edgerec.yaml with placements; reloaded on SIGHUP and POST /v1/admin/config (env EDGEREC_CONFIG)")
	history := fs.Int("history", engine.DefaultHistoryWindow, "newest history entries of a visitor blended into their recommendations; edgerec eval uses the same default (env EDGEREC_HISTORY)")
	seen := fs.Int("max-user-items", 0, "newest history entries of a visitor whose items are left out as seen; 0: the snapshot's build setting (default 1000) (env EDGEREC_MAX_USER_ITEMS)")
	retention := fs.Duration("profile-retention", index.DefaultProfileRetention, "how long profiles keep behaviour counts, at least 1h (env EDGEREC_PROFILE_RETENTION)")
	keylessRate := fs.Float64("keyless-rate", 20, "requests a second per client address without the API key to /v1/decide, /v1/page and beacons to /v1/events; over it they answer 429; 0: no limit (env EDGEREC_KEYLESS_RATE)")
	keylessBurst := fs.Float64("keyless-burst", 0, "burst of -keyless-rate; 0: 5 × the rate (env EDGEREC_KEYLESS_BURST)")
	decisionTTL := fs.Duration("decision-ttl", engine.DefaultDecisionTTL, "how long a decision id is taken in a beacon without the API key (env EDGEREC_DECISION_TTL)")
	drain := fs.Duration("drain", 30*time.Second, "on SIGTERM, how long requests in flight may take before the process exits anyway (env EDGEREC_DRAIN)")
	_ = fs.Parse(args)
	if err := envTwins(fs); err != nil {
		return err
	}
	if err := nonNegative(fs, "max-k", "max-body", "history", "max-user-items", "gzip-min", "keyless-rate", "keyless-burst", "decision-ttl"); err != nil {
		return err
	}
	if *cacheMB < 2 {
		return fmt.Errorf("-cache-mb %d: want at least 2 (MiB)", *cacheMB)
	}
	logger := newLogger()
	if *apiKey == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		*apiKey = hex.EncodeToString(b[:])
		logger.Info("no -api-key given: generated one for this run", "api_key", *apiKey)
	}
	var cfg *engine.Config
	if *configPath != "" {
		c, err := engine.LoadConfig(*configPath)
		if err != nil {
			return err
		}
		cfg = c
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	state, err := index.OpenState(filepath.Join(*data, "state"), index.StateOptions{ProfileRetention: *retention, Logger: logger})
	if err != nil {
		return err
	}
	e, err := engine.New(engine.Options{
		MaxK: *maxK, CacheBytes: *cacheMB << 20 * 3 / 4, HistoryWindow: *history, SeenItems: *seen,
		Config: cfg, ConfigPath: *configPath, SignKey: signKey(*apiKey), Logger: logger, DecisionTTL: *decisionTTL,
	}, state)
	if err != nil {
		_ = state.Close()
		return err
	}
	root := filepath.Join(*data, "snapshots")
	srv, err := server.New(e, server.Options{
		SnapshotRoot: root, APIKey: *apiKey, AdminKey: *adminKey, CacheBytes: *cacheMB << 20 / 4,
		GzipMinBytes: gzipOption(*gzipMin), MaxBodySize: *maxBody, CORSOrigins: splitList(*cors),
		KeylessRate: *keylessRate, KeylessBurst: *keylessBurst,
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
	if _, err := e.LoadNewestSnapshot(ctx, root); err != nil {
		// Serve anyway: /readyz says not ready until POST /v1/admin/snapshots loads one.
		logger.Warn("no snapshot loaded: serving none until POST /v1/admin/snapshots loads one", "err", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		e.Close()
		_ = state.Close()
		return fmt.Errorf("cannot listen on %q: %w", *addr, err)
	}
	logger.Info("listening", "version", version, "url", "http://"+ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
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
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown() }()
	select {
	case err := <-done:
		// No request runs now: the stores can close.
		e.Close()
		if cerr := state.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case <-time.After(*drain):
		// Requests still run on the stores: closing Pebble under them
		// would crash them. Acknowledged events are in the WAL already;
		// the next start replays it.
		logger.Warn("requests still in flight after the drain timeout; exiting without closing the stores", "drain", drain.String())
		return nil
	}
	logger.Info("stopped")
	return nil
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
func runCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	configPath := fs.String("config", "edgerec.yaml", "configuration file to validate")
	_ = fs.Parse(args)
	c, err := engine.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	fmt.Printf("%s: ok: placements %s; pages %s; segments %s\n", *configPath, strings.Join(c.Names(), ", "),
		strings.Join(c.PageNames(), ", "), strings.Join(c.SegmentNames(), ", "))
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
