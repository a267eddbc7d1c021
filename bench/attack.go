package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Target is one request to send. Body and the header values may be reused
// by the Targeter after the request was sent.
type Target struct {
	Method string
	Path   string // path and query, e.g. /v1/items/i1/similar?k=10
	Body   []byte
	Kind   string // scenario step name, for the report
}

// Targeter fills the next target. Each worker has its own, so it need not
// be safe for concurrent use.
type Targeter func(t *Target)

// AttackOptions configure an attack. Zero values get defaults.
type AttackOptions struct {
	// URL of the server, e.g. http://127.0.0.1:8080.
	URL string
	// Pacer schedules sends (open loop). Nil means closed loop: Connections
	// workers send as fast as answers come back.
	Pacer Pacer
	// Duration of the attack; default 10 s. An open loop sends every hit
	// its Pacer schedules within Duration, the late ones too (until
	// Duration + Timeout: what is not sent by then is dropped and counted
	// in Report.Scheduled only); a closed loop sends until Duration.
	Duration time.Duration
	// Requests, when positive, ends the attack after that many requests:
	// the open loop schedules no more, the closed loop sends no more.
	// With a long Duration it makes an attack a count of requests rather
	// than a window of time (as tests want on a loaded machine).
	Requests int64
	// Connections bounds the open connections; default 256 open loop, 16
	// closed loop.
	Connections int
	// MaxWorkers bounds the goroutines waiting on answers in open loop;
	// the attack starts with 16 and adds one whenever a send is due and all
	// are busy (vegeta's habit); default 10000.
	MaxWorkers int
	// Timeout of one request; default 5 s.
	Timeout time.Duration
	// APIKey is sent as a bearer token with POSTs.
	APIKey string
	// Headers are sent with every request, "Name: value" each; a Host
	// header replaces the URL's host.
	Headers []string
	// TLS configures https:// URLs; nil means the system's roots and the
	// URL's host name. (Closed loops over TLS run a goroutine per
	// connection: the event loops speak plain TCP only.)
	TLS *tls.Config
	// NewTargeter returns a worker's targeter; seed differs per worker.
	NewTargeter func(seed uint64) Targeter
	// Preconnect opens that many connections (at most Connections)
	// before the attack's clock starts, open loop with bench's own
	// client: the first hits then find connections ready rather than
	// each dialing one while the schedule runs on (the dials of a cold
	// start cost the generator itself tens of milliseconds at 25,000/s).
	Preconnect int
	// Warmup keeps the requests due in the attack's first Warmup out of
	// the report's latency percentiles (they stay in its series and
	// counts): a warm server measured without the generator's own start.
	Warmup time.Duration
	// Interval is the length of the report's Series points; default a
	// second. A tenth of a second shows what a start-up or a stall
	// costs within the second it happens in.
	Interval time.Duration
	// Client is the HTTP client: "" or "own" for bench's own (epoll
	// event loops for plain closed loops, keep-alive connections of its
	// own otherwise), "fasthttp" for fasthttp's HostClient (a goroutine
	// per connection in closed loop), to compare the two (see fastClient).
	Client string

	// goroutines makes the closed loop run a goroutine per connection even
	// where it has event loops (to test the portable path).
	goroutines bool
}

func (o *AttackOptions) withDefaults() {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Connections <= 0 {
		o.Connections = 256
		if o.Pacer == nil {
			o.Connections = 16
		}
	}
	if o.MaxWorkers <= 0 {
		o.MaxWorkers = 10000
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
}

// result is one answered (or failed) request.
type result struct {
	intended time.Time // when it was due (open loop) or sent (closed loop)
	latency  time.Duration
	status   int
	err      errKind
	kind     string
}

type errKind uint8

const (
	errNone errKind = iota
	errTimeout
	errConn
	errOther
)

var errKindNames = [...]string{errNone: "", errTimeout: "timeout", errConn: "connection", errOther: "other"}

func classify(err error) errKind {
	switch {
	case err == nil:
		return errNone
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errTimeout
	}
	if kind, ok := classifyFast(err); ok {
		return kind
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	var oe *net.OpError
	if errors.As(err, &oe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return errConn
	}
	return errOther
}

// Attack sends requests to o.URL until o.Duration passes or ctx ends and
// returns the report. In open loop each request's latency counts from the
// time it was due, not the time it was sent: a stalled server cannot hide
// the requests that queued behind it (no coordinated omission).
func Attack(ctx context.Context, o AttackOptions) (*Report, error) {
	o.withDefaults()
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("cannot parse -url %q: want http://host:port or https://host:port", o.URL)
	}
	if o.NewTargeter == nil {
		return nil, fmt.Errorf("BUG: no targeter")
	}
	if o.Client != "" && o.Client != "own" && o.Client != "fasthttp" {
		return nil, fmt.Errorf("cannot use -client %q: want own or fasthttp", o.Client)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	head, err := newRequestHead(u.Host, o.APIKey, o.Headers)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if u.Scheme == "https" {
		tlsConf = &tls.Config{}
		if o.TLS != nil {
			tlsConf = o.TLS.Clone()
		}
		if tlsConf.ServerName == "" {
			tlsConf.ServerName = u.Hostname()
		}
	}
	pool := newConnPool(addr, tlsConf, o.Connections, o.Timeout)
	defer pool.closeIdle()
	if o.Pacer != nil && o.Client != "fasthttp" {
		if err := pool.preconnect(ctx, min(o.Preconnect, o.Connections)); err != nil {
			return nil, err
		}
	}
	var fc *fastClient
	if o.Client == "fasthttp" {
		fc = newFastClient(addr, tlsConf, head, &o)
		defer fc.hc.CloseIdleConnections()
	}
	rate := 0.0
	if o.Pacer != nil {
		rate = o.Pacer.Rate(0)
	}
	rep := newReport(rate, o.Duration)
	rep.interval, rep.warmup = o.Interval, o.Warmup
	// An open loop may send the last hits of its schedule late, up to a
	// Timeout after the end (see Duration): past that, a send could not
	// answer within its timeout of its slot anyway.
	window := o.Duration
	if o.Pacer != nil {
		window += o.Timeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	start := time.Now()
	rep.Start = start
	// take reports whether one more request may go out (o.Requests).
	var taken atomic.Int64
	take := func() bool { return o.Requests <= 0 || taken.Add(1) <= o.Requests }
	if o.Pacer == nil {
		rep.Connections = o.Connections // closed loop: wrk's correction needs them
	}
	if o.Pacer == nil && haveLoops && !o.goroutines && tlsConf == nil && fc == nil {
		parts, err := closedLoops(ctx, &o, addr, head, start, take)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			rep.merge(p)
		}
		rep.finish(time.Since(start))
		return rep, nil
	}
	// Workers record into a few locked shards, merged at the end: no
	// channel hop per request, little contention, and memory that does not
	// grow with the number of workers (an HDR histogram is ~150 KB).
	shards := make([]shard, 4*runtime.GOMAXPROCS(0))
	for i := range shards {
		shards[i].r = newReport(rate, o.Duration)
		shards[i].r.interval, shards[i].r.warmup = o.Interval, o.Warmup
		shards[i].r.Start = start
	}
	// ended also reads the clock: ctx's own timer may fire late when
	// every P is busy (event loops of another attack hold theirs in
	// epoll), and meanwhile a dial under ctx's deadline fails at once.
	end := start.Add(window)
	ended := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }
	var wg sync.WaitGroup
	var seed uint64
	worker := func(ticks <-chan time.Time, seed uint64) {
		defer wg.Done()
		tg := o.NewTargeter(seed)
		sh := &shards[seed%uint64(len(shards))]
		var t Target
		var req *fasthttp.Request
		var resp *fasthttp.Response
		if fc != nil {
			req, resp = new(fasthttp.Request), new(fasthttp.Response)
		}
		send := func(intended time.Time) {
			tg(&t)
			var status int
			var err error
			var from time.Time
			if fc != nil {
				from = time.Now()
				status, err = fc.do(req, resp, &t, from.Add(o.Timeout))
				if errors.Is(err, fasthttp.ErrNoFreeConns) && ended() {
					return // as below
				}
			} else {
				var c *conn
				c, err = pool.get(ctx)
				if err != nil && ended() {
					// The attack ended while this one waited for or dialed a
					// connection: the end cut it, not the server. (A request
					// that was sent counts whatever happens after the end.)
					return
				}
				from = time.Now()
				if err == nil {
					var reuse bool
					status, reuse, err = c.do(head, t.Method, t.Path, t.Body, from.Add(o.Timeout))
					pool.put(c, reuse)
				}
			}
			// A hit handed over early (sendLead) counts from when it went
			// out, a late one from its slot.
			if intended.Before(from) {
				from = intended
			}
			res := result{intended: intended, latency: time.Since(from), status: status, err: classify(err), kind: t.Kind}
			sh.mu.Lock()
			sh.r.add(res)
			sh.mu.Unlock()
		}
		if ticks == nil { // closed loop
			for !ended() && take() {
				send(time.Now())
			}
			return
		}
		for intended := range ticks {
			send(intended)
		}
	}
	if o.Pacer == nil {
		for i := 0; i < o.Connections; i++ {
			wg.Add(1)
			seed++
			go worker(nil, seed)
		}
		wg.Wait()
	} else {
		w, err := newWaker()
		if err != nil {
			return nil, err
		}
		defer w.close()
		ticks := make(chan time.Time)
		workers := 0
		spawn := func() {
			workers++
			wg.Add(1)
			seed++
			go worker(ticks, seed)
		}
		for workers < min(16, o.MaxWorkers) {
			spawn()
		}
		// The scheduler hands each hit to an idle worker when it is due
		// (sendLead before), spawning one when all are busy, and sleeps in
		// between with the waker, which gives the P to the workers
		// meanwhile.
		var hits uint64
	loop:
		for {
			due, stop := o.Pacer.Due(hits)
			if stop || due >= o.Duration || !take() {
				break
			}
			if !sleepUntil(ctx, w, start.Add(due-sendLead)) {
				break
			}
			intended := start.Add(due)
			select {
			case ticks <- intended:
			default:
				if workers < o.MaxWorkers {
					spawn()
				}
				select {
				case ticks <- intended:
				case <-ctx.Done():
					break loop
				}
			}
			hits++
		}
		close(ticks)
		rep.Workers = workers
		// The schedule: the hits due before the end, or before the
		// caller's cancel if that came first. Those not sent show as
		// Scheduled − Requests.
		cut := o.Duration
		if parent.Err() != nil {
			cut = min(cut, time.Since(start))
		}
		n := hits
		for due, stop := o.Pacer.Due(n); !stop && due < cut && (o.Requests <= 0 || n < uint64(o.Requests)); due, stop = o.Pacer.Due(n) {
			n++
		}
		rep.Scheduled = int64(n)
		wg.Wait()
	}
	for i := range shards {
		rep.merge(shards[i].r)
	}
	rep.finish(time.Since(start))
	return rep, nil
}

// sendLead is how long before its slot the scheduler hands a hit to a
// worker: about what the waker and the hand-off take. A send's lateness,
// from its slot to the write of its first byte, at 2,000 and 10,000/s
// with one P or two (the server on the other core, 3 s runs): p50 28-39
// µs with no lead, 5-13 µs with 25 µs, -6 to 3 µs with 40 µs, -30 to -10
// µs with 60 µs; the CPU cost per request does not change. A send that
// goes out early counts its latency from its write, so the lead never
// shortens a latency.
const sendLead = 40 * time.Microsecond

type shard struct {
	mu sync.Mutex
	r  *Report
}

// sleepUntil waits with w until due; false if ctx ended first. It sleeps
// in slices of at most 50 ms so that a cancel is seen soon.
func sleepUntil(ctx context.Context, w *waker, due time.Time) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		d := time.Until(due)
		if d <= 0 {
			return true
		}
		if err := w.sleep(min(d, 50*time.Millisecond)); err != nil {
			time.Sleep(min(d, 50*time.Millisecond)) // not expected; keep the schedule
		}
	}
}
