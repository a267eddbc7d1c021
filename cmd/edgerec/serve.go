package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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
	cacheMB := fs.Int64("cache-mb", 64, "Ristretto cache budget for lists and rendered answers, MiB (env EDGEREC_CACHE_MB)")
	gzipMin := fs.Int("gzip-min", 1024, "smallest cached answer sent gzip-compressed to clients that accept it, bytes; compressed once per cached answer; 0 never (env EDGEREC_GZIP_MIN)")
	maxK := fs.Int("max-k", 100, "largest k a request may ask for (env EDGEREC_MAX_K)")
	cors := fs.String("cors", "", "origins allowed to call the read API from browsers, comma-separated, or * (env EDGEREC_CORS)")
	maxBody := fs.Int("max-body", 1<<20, "largest request body in bytes (env EDGEREC_MAX_BODY)")
	configPath := fs.String("config", "", "edgerec.yaml with placements; reloaded on SIGHUP and POST /v1/admin/config (env EDGEREC_CONFIG)")
	history := fs.Int("history", 50, "newest events of a visitor that personalise their answers (env EDGEREC_HISTORY)")
	retention := fs.Duration("profile-retention", index.DefaultProfileRetention, "how long profiles keep behaviour counts, at least 1h (env EDGEREC_PROFILE_RETENTION)")
	_ = fs.Parse(args)
	if err := envTwins(fs); err != nil {
		return err
	}
	if *apiKey == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		*apiKey = hex.EncodeToString(b[:])
		log.Printf("no -api-key given: generated %s for this run", *apiKey)
	}
	var cfg *server.Config
	if *configPath != "" {
		c, err := server.LoadConfig(*configPath)
		if err != nil {
			return err
		}
		cfg = c
	}
	state, err := index.OpenState(filepath.Join(*data, "state"), index.StateOptions{HistoryLen: *history, ProfileRetention: *retention})
	if err != nil {
		return err
	}
	defer state.Close()
	root := filepath.Join(*data, "snapshots")
	srv, err := server.New(server.Options{
		SnapshotRoot: root, APIKey: *apiKey, AdminKey: *adminKey, CacheBytes: *cacheMB << 20,
		GzipMinBytes: gzipOption(*gzipMin), MaxK: *maxK, MaxBodySize: *maxBody, CORSOrigins: splitList(*cors),
		Config: cfg, ConfigPath: *configPath,
	}, state)
	if err != nil {
		return err
	}
	if err := srv.LoadPatches(); err != nil {
		return err
	}
	if _, err := srv.LoadSnapshot(root); err != nil {
		// Serve anyway: /readyz says not ready until POST /v1/admin/snapshots loads one.
		log.Printf("no snapshot loaded: %v", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %q: %w", *addr, err)
	}
	log.Printf("edgerec %s listening on http://%s", version, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
wait:
	select {
	case err := <-errc:
		return err
	case s := <-sig:
		if s == syscall.SIGHUP {
			if err := srv.ReloadConfig(); err != nil {
				log.Printf("SIGHUP: config not reloaded, the old one stays: %v", err)
			}
			goto wait
		}
		log.Printf("%s: finishing requests in flight", s)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-time.After(30 * time.Second):
		log.Printf("shutdown took over 30s; closing stores anyway")
	}
	log.Printf("stopped")
	return nil
}

// runCheck validates a configuration file without serving, for deploy
// pipelines.
func runCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	configPath := fs.String("config", "edgerec.yaml", "configuration file to validate")
	_ = fs.Parse(args)
	c, err := server.LoadConfig(*configPath)
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
