package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/bench"
	"github.com/edgerec/edgerec/client"
	"github.com/edgerec/edgerec/index"
)

// runBench runs an attack; dispatch runs bench compare and bench static.
func runBench(c *command, args []string) error {
	fs := c.flagSet()
	url := fs.String("url", "http://127.0.0.1:8080", "edgerec (or any HTTP server) to load")
	mode := fs.String("mode", "open", "open: fixed -rate, latency from each request's intended send time; closed: -connections workers as fast as answers come; step: raise the rate until p99 passes -max-p99")
	rate := fs.Int("rate", 1000, "requests per second (open mode) or first rate (step mode)")
	duration := fs.Duration("duration", 10*time.Second, "attack length (per step in step mode); an open loop sends every request due within it, late ones until -timeout after it")
	requests := fs.Int64("requests", 0, "stop after this many requests (0: no limit): the open loop schedules no more, the closed loop sends no more; -duration still ends the attack")
	conns := fs.Int("connections", 0, "open connections; default 256 open loop, 16 closed loop")
	scenario := fs.String("scenario", "mixed", "product-page, home, cart, similar, events, landing-page, page, mixed, site, or a targets file (METHOD /path [body] per line)")
	page := fs.String("page", "lp_consulting", "landing page of the landing-page steps")
	items := fs.String("items", "", "catalog file whose first column lists the item ids to draw from; default: ask the server's /v1/popular")
	users := fs.Int("users", 10000, "distinct visitor ids to draw from (Zipf)")
	apiKey := fs.String("api-key", "", "bearer key for the events POSTs of the scenario (env EDGEREC_API_KEY)")
	timeout := fs.Duration("timeout", 5*time.Second, "request timeout")
	maxP99 := fs.Duration("max-p99", 10*time.Millisecond, "step mode: the p99 that counts as saturated")
	maxP50 := fs.Duration("max-p50", 0, "step mode: the p50 that counts as saturated (a queue moves the median; stalls of a shared machine move only the tail); 0 no bound")
	factor := fs.Float64("factor", 1.5, "step mode: rate multiplier per step")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var intervals []time.Duration
	fs.Func("table", "after the report, a table of requests, errors, p50 and p99 per period of this length, a multiple of -interval (1m: a soak's minutes); several, comma-separated, print a table each (10s,1m); on stderr with -json", func(v string) error {
		intervals = intervals[:0]
		for _, f := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d < time.Second {
				return fmt.Errorf("%q: want durations of at least 1s, comma-separated", v)
			}
			intervals = append(intervals, d)
		}
		return nil
	})
	out := fs.String("out", "", "write report.txt, report.json and report.html into this directory")
	preconnect := fs.Int("preconnect", 0, "open loop: connections to open before the clock starts (at most -connections), so that the first requests do not wait for the generator's own dials")
	warmup := fs.Duration("warmup", 0, "leave the requests due in the first this long out of the latency percentiles (they stay in the series and the counts): a warm server, without the generator's own start")
	interval := fs.Duration("interval", time.Second, "length of the report's series points (by intended send time): requests, errors, p50 and p99 of each")
	series := fs.Bool("series", false, "print the series, one line per -interval, after the text report")
	cpuProfile := fs.String("cpuprofile", "", "write bench's own CPU profile here (to see what the load generator costs)")
	var headers []string
	fs.Func("header", "a header for every request, \"Name: value\"; repeat for more (a Host header replaces the URL's host)", func(v string) error {
		headers = append(headers, v)
		return nil
	})
	client := fs.String("client", "own", "HTTP client: own (bench's, epoll event loops in closed loop) or fasthttp (fasthttp's HostClient), to compare the two; see scripts/bench-client.sh")
	insecure := fs.Bool("insecure", false, "with an https -url, accept any server certificate (self-signed test servers)")
	emit := fs.String("emit", "", "write the scenario as a wrk Lua script (wrk) or vegeta JSON targets (vegeta) to stdout, and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := envTwins(fs); err != nil {
		return err
	}
	newTargeter, err := targeter(*scenario, *items, *url, *users, *page)
	if err != nil {
		return err
	}
	if err := bench.CheckHeaders(headers); err != nil {
		return fmt.Errorf("-header: %w", err)
	}
	switch *emit {
	case "":
	case "wrk":
		return bench.EmitWrk(os.Stdout, bench.Sample(newTargeter(1), 1000), *apiKey, headers)
	case "vegeta":
		return bench.EmitVegeta(os.Stdout, *url, bench.Sample(newTargeter(1), 1000), *apiKey, headers)
	default:
		return fmt.Errorf("-emit %q: want wrk or vegeta", *emit)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cannot create profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cannot start profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ao := bench.AttackOptions{URL: *url, Duration: *duration, Requests: *requests, Client: *client, Connections: *conns, Timeout: *timeout, APIKey: *apiKey,
		Headers: headers, NewTargeter: newTargeter, Interval: *interval, Preconnect: *preconnect, Warmup: *warmup}
	if *insecure {
		ao.TLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for, for self-signed test servers
	}
	switch *mode {
	case "open":
		ao.Pacer = bench.ConstantPacer{Freq: *rate, Per: time.Second}
	case "closed":
	case "step":
		sat, err := bench.FindSaturation(ctx, bench.StepOptions{Attack: ao, Start: float64(*rate), Factor: *factor, Step: *duration, MaxP99: *maxP99, MaxP50: *maxP50, Log: os.Stderr})
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(sat)
		}
		fmt.Printf("saturation: %.0f/s target, %.0f/s achieved, with p99 <= %v%s and errors <= 1%%\n", sat.Rate, sat.Throughput, *maxP99, p50Bound(*maxP50))
		return nil
	default:
		return fmt.Errorf("-mode %q: want open, closed or step", *mode)
	}
	rep, err := bench.Attack(ctx, ao)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := writeReports(*out, rep, *url+" "+*scenario); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "reports in %s\n", *out)
	}
	switch {
	case *asJSON:
		err = rep.WriteJSON(os.Stdout)
	case *series:
		err = rep.WriteTextSeries(os.Stdout)
	default:
		err = rep.WriteText(os.Stdout)
	}
	w := os.Stdout
	if *asJSON {
		w = os.Stderr
	}
	for _, d := range intervals {
		if err == nil {
			err = bench.WriteIntervals(w, rep.Intervals(d), d)
		}
	}
	return err
}

func writeReports(dir string, rep *bench.Report, title string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %q: %w", dir, err)
	}
	for name, write := range map[string]func(io.Writer) error{
		"report.txt":  rep.WriteText,
		"report.json": rep.WriteJSON,
		"report.html": func(w io.Writer) error { return rep.WriteHTML(w, "edgerec bench: "+title) },
	} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("cannot create report: %w", err)
		}
		err = write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("cannot write %q: %w", f.Name(), err)
		}
	}
	return nil
}

// targeter builds the request source: a built-in scenario over item ids
// from a catalog file or the server, or a targets file.
func targeter(scenario, items, url string, users int, page string) (func(uint64) bench.Targeter, error) {
	if _, ok := bench.Scenarios[scenario]; !ok {
		ts, err := bench.TargetsFile(scenario)
		if err != nil {
			return nil, err
		}
		return bench.RoundRobin(ts), nil
	}
	var ids []string
	if items != "" {
		f, err := index.OpenInput(items)
		if err != nil {
			return nil, err
		}
		ids, err = bench.ReadItemIDs(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", items, err)
		}
	} else {
		var err error
		if ids, err = popularIDs(url); err != nil {
			return nil, err
		}
	}
	s, err := bench.NewScenario(scenario, ids, users)
	if err != nil {
		return nil, err
	}
	s.Page = page
	return s.Targeter, nil
}

// popularIDs asks the server for its most popular items (through the
// Go client: a setup step, not part of the measured load).
func popularIDs(url string) ([]string, error) {
	c, err := client.New(url, client.Options{HTTP: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		return nil, err
	}
	l, err := c.Popular(context.Background(), &client.ListOptions{K: 100})
	if err != nil {
		return nil, fmt.Errorf("cannot ask %s for item ids (or give -items): %w", url, err)
	}
	if len(l.Items) == 0 {
		return nil, fmt.Errorf("%s/v1/popular answered no items; give -items", url)
	}
	ids := make([]string, len(l.Items))
	for i, it := range l.Items {
		ids[i] = it.ID
	}
	return ids, nil
}

func runBenchCompare(c *command, args []string) error {
	fs := c.flagSet()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if args = fs.Args(); len(args) != 2 {
		return fmt.Errorf("usage: edgerec bench compare A.json B.json")
	}
	var reps [2]*bench.Report
	for i, p := range args {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("cannot open %q: %w", p, err)
		}
		reps[i], err = bench.ReadReport(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return bench.Compare(os.Stdout, args[0], args[1], reps[0], reps[1])
}

// runBenchStatic serves one fixed body for every request: the floor that
// make bench measures edgerec against.
func runBenchStatic(c *command, args []string) error {
	fs := c.flagSet()
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	size := fs.Int("size", 1200, "body size in bytes")
	readTimeout := fs.Duration("read-timeout", 0, "connection read timeout, as edgerec serve's (0: none)")
	writeTimeout := fs.Duration("write-timeout", 0, "connection write timeout (0: none)")
	idleTimeout := fs.Duration("idle-timeout", 0, "keep-alive idle timeout (0: the read timeout)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	body := []byte(`{"items":"` + strings.Repeat("x", max(*size-13, 0)) + `"}` + "\n")
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}, Name: "static", ReadTimeout: *readTimeout, WriteTimeout: *writeTimeout, IdleTimeout: *idleTimeout}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown()
	}()
	fmt.Fprintf(os.Stderr, "static %d-byte body on http://%s\n", len(body), *addr)
	return srv.ListenAndServe(*addr)
}

// p50Bound is how a saturation line names the -max-p50 bound, if any.
func p50Bound(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf(", p50 <= %v", d)
}
