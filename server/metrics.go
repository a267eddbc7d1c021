package server

import (
	"io"
	rtmetrics "runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
)

type route uint8

const (
	routeNotFound route = iota
	routeRecommend
	routeSimilar
	routeBought
	routeUser
	routePopular
	routeEvents
	routeItems
	routeAdmin
	routeStats
	routeHealth
	routeMetrics
	routeCORS
	routeDecide
	routeResults
	routeProfile
	routePage
	routeMembers
	routeScript
	routeOverload
	routeDashboard
	routeOpenAPI
	routeCount
)

var routeNames = [routeCount]string{
	routeNotFound: "not_found", routeRecommend: "recommend", routeSimilar: "similar", routeBought: "bought_together",
	routeUser: "user", routePopular: "popular", routeEvents: "events", routeItems: "items", routeAdmin: "admin",
	routeStats: "stats", routeHealth: "health", routeMetrics: "metrics", routeCORS: "cors",
	routeDecide: "decide", routeResults: "results", routeProfile: "profile", routePage: "page", routeMembers: "members",
	routeScript:    "script",
	routeOverload:  "overloaded",
	routeDashboard: "dashboard",
	routeOpenAPI:   "openapi",
}

// retentionKinds are the kinds of state the retention sweeper deletes.
var retentionKinds = [...]string{index.KindEvents, index.KindHistories, index.KindProfiles,
	engine.KindAssignments, engine.KindAnonymous, engine.KindConversions, engine.KindEventIDs}

// serverMetrics are exported on /metrics in Prometheus text format through
// github.com/VictoriaMetrics/metrics: lock-free counters and log-bucket
// histograms, cheap enough for every request.
type serverMetrics struct {
	set            *metrics.Set
	requests       [routeCount]*metrics.Counter
	latency        [routeCount]latencyHistogram
	errors         *metrics.Counter
	cacheHits      *metrics.Counter // the body cache; the engine counts its list cache
	gzipped        *metrics.Counter
	cacheMisses    *metrics.Counter
	eventsIngested *metrics.Counter
	rateLimited    *metrics.Counter
	authFailures   *metrics.Counter
	overloaded     *metrics.Counter
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{set: metrics.NewSet()}
	for r := route(0); r < routeCount; r++ {
		m.requests[r] = m.set.NewCounter(`edgerec_requests_total{route="` + routeNames[r] + `"}`)
	}
	m.set.RegisterMetricsWriter(func(w io.Writer) {
		var buf []byte
		for r := route(0); r < routeCount; r++ {
			buf = m.latency[r].appendPrometheus(buf[:0], "edgerec_request_duration_seconds", `route="`+routeNames[r]+`"`)
			_, _ = w.Write(buf)
		}
	})
	m.errors = m.set.NewCounter("edgerec_errors_total")
	m.cacheHits = m.set.NewCounter(`edgerec_body_cache_requests_total{result="hit"}`)
	m.gzipped = m.set.NewCounter(`edgerec_responses_gzip_total`)
	m.cacheMisses = m.set.NewCounter(`edgerec_body_cache_requests_total{result="miss"}`)
	m.eventsIngested = m.set.NewCounter("edgerec_events_ingested_total")
	m.rateLimited = m.set.NewCounter("edgerec_rate_limited_total")
	m.authFailures = m.set.NewCounter("edgerec_auth_failures_total")
	m.overloaded = m.set.NewCounter("edgerec_overloaded_total")
	// Connections and requests in flight (conns.go), and the served
	// snapshot's version as a label: a float64 gauge cannot hold a uint64
	// version exactly (edgerec_snapshot_version rounds its last digits).
	m.set.RegisterMetricsWriter(func(w io.Writer) {
		open, idle := s.conns.counts()
		metrics.WriteGaugeUint64(w, "edgerec_connections_open", uint64(open))
		metrics.WriteGaugeUint64(w, "edgerec_connections_idle", uint64(idle))
		metrics.WriteCounterUint64(w, "edgerec_connections_evicted_total", s.conns.evicted.Load())
		metrics.WriteCounterUint64(w, `edgerec_connections_refused_total{reason="full"}`, s.conns.refusedFull.Load())
		metrics.WriteCounterUint64(w, `edgerec_connections_refused_total{reason="per_ip"}`, s.conns.refusedPerIP.Load())
		metrics.WriteGaugeUint64(w, "edgerec_requests_in_flight", uint64(max(s.inflight.n.Load(), 0)))
		if v := s.e.SnapshotVersion(); v != 0 {
			_, _ = w.Write(strconv.AppendUint([]byte(`edgerec_snapshot_info{version="`), v, 10))
			_, _ = io.WriteString(w, "\"} 1\n")
		}
	})
	// The retention sweeper's counts (engine.Retention), every kind
	// listed from the start.
	m.set.RegisterMetricsWriter(func(w io.Writer) {
		st, ok := s.e.RetentionStats()
		if !ok {
			return
		}
		for _, k := range retentionKinds {
			d := st.Kinds[k]
			metrics.WriteCounterUint64(w, `edgerec_retention_deleted_rows_total{kind="`+k+`"}`, d.Rows)
			metrics.WriteCounterUint64(w, `edgerec_retention_deleted_bytes_total{kind="`+k+`"}`, d.Bytes)
		}
		metrics.WriteCounterUint64(w, "edgerec_retention_sweeps_total", st.Passes)
		metrics.WriteCounterUint64(w, "edgerec_retention_sweep_errors_total", st.Errors)
		if !st.LastStart.IsZero() {
			metrics.WriteGaugeFloat64(w, "edgerec_retention_last_sweep_timestamp_seconds", float64(st.LastStart.UnixNano())/1e9)
			metrics.WriteGaugeFloat64(w, "edgerec_retention_last_sweep_duration_seconds", st.LastDuration.Seconds())
		}
	})
	// The engine's counts, read when scraped.
	e := s.e
	m.set.NewGauge(`edgerec_cache_requests_total{result="hit"}`, func() float64 {
		return float64(m.cacheHits.Get() + e.Stats().Lists.Hits)
	})
	m.set.NewGauge(`edgerec_cache_requests_total{result="miss"}`, func() float64 {
		return float64(m.cacheMisses.Get() + e.Stats().Lists.Misses)
	})
	m.set.NewGauge(`edgerec_list_cache_requests_total{result="hit"}`, func() float64 { return float64(e.Stats().Lists.Hits) })
	m.set.NewGauge(`edgerec_list_cache_requests_total{result="miss"}`, func() float64 { return float64(e.Stats().Lists.Misses) })
	m.set.NewGauge("edgerec_segment_errors_total", func() float64 { return float64(e.Stats().SegmentErrors) })
	m.set.NewGauge("edgerec_audience_skipped_profiles_total", func() float64 { return float64(e.Stats().AudienceSkipped) })
	m.set.NewGauge("edgerec_snapshot_version", func() float64 { return float64(e.SnapshotVersion()) })
	// The state store: 1 while it takes writes, 0 from a failed write (a
	// full disk, an I/O error) until it reopens by itself.
	m.set.RegisterMetricsWriter(func(w io.Writer) {
		st := e.Stats()
		if !st.HasState {
			return
		}
		writable := 1.0
		if st.State.Err != nil {
			writable = 0
		}
		metrics.WriteGaugeFloat64(w, "edgerec_state_writable", writable)
		metrics.WriteCounterUint64(w, "edgerec_state_failed_writes_total", st.State.FailedWrites)
		metrics.WriteCounterUint64(w, "edgerec_state_failures_total", st.State.Failures)
		metrics.WriteCounterUint64(w, "edgerec_state_recoveries_total", st.State.Recoveries)
		// Pebble's figures: compactions share the server's cores with
		// requests, so their count and time beside p99 say whether a
		// stall was one.
		sm, ok := e.StateStoreMetrics()
		if !ok {
			return
		}
		metrics.WriteCounterUint64(w, "edgerec_state_compactions_total", uint64(sm.Compactions))
		metrics.WriteCounterFloat64(w, "edgerec_state_compaction_seconds_total", sm.CompactionSeconds)
		metrics.WriteCounterUint64(w, "edgerec_state_flushes_total", uint64(sm.Flushes))
		metrics.WriteGaugeUint64(w, "edgerec_state_compactions_running", uint64(sm.CompactionsRunning))
		metrics.WriteGaugeUint64(w, "edgerec_state_compaction_debt_bytes", sm.CompactionDebtBytes)
		metrics.WriteGaugeUint64(w, "edgerec_state_l0_tables", uint64(sm.L0Tables))
		metrics.WriteGaugeUint64(w, "edgerec_state_l0_sublevels", uint64(sm.L0Sublevels))
		metrics.WriteGaugeUint64(w, "edgerec_state_disk_bytes", sm.DiskBytes)
		metrics.WriteGaugeUint64(w, "edgerec_state_memtable_bytes", sm.MemTableBytes)
		metrics.WriteGaugeUint64(w, "edgerec_state_block_cache_bytes", uint64(sm.BlockCacheBytes))
		metrics.WriteCounterUint64(w, `edgerec_state_block_cache_requests_total{result="hit"}`, uint64(sm.BlockCacheHits))
		metrics.WriteCounterUint64(w, `edgerec_state_block_cache_requests_total{result="miss"}`, uint64(sm.BlockCacheMisses))
	})
	m.set.NewGauge("edgerec_cache_hit_ratio", func() float64 {
		st := e.Stats().Lists
		h, miss := float64(m.cacheHits.Get()+st.Hits), float64(m.cacheMisses.Get()+st.Misses)
		if h+miss == 0 {
			return 0
		}
		return h / (h + miss)
	})
	return m
}

func (m *serverMetrics) observe(r route, start time.Time) {
	m.requests[r].Inc()
	m.latency[r].observe(time.Since(start))
}

// latencyBuckets are the upper bounds, in seconds, of the request latency
// histogram: 50 µs (a cached answer) to 10 s.
var latencyBuckets = [...]float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// latencyBucketsNanos are latencyBuckets in nanoseconds, for observe.
var latencyBucketsNanos = func() (ns [len(latencyBuckets)]time.Duration) {
	for i, s := range latencyBuckets {
		ns[i] = time.Duration(s * 1e9)
	}
	return ns
}()

// latencyHistogram is a Prometheus classic histogram: cumulative
// buckets with an le label, which histogram_quantile reads in
// Prometheus and VictoriaMetrics alike. (VictoriaMetrics/metrics'
// Histogram exports vmrange buckets, which only MetricsQL reads, so the
// deploy kit's Grafana dashboard could not draw quantiles from
// Prometheus.) Lock-free: one atomic add per bucket hit, count and sum.
type latencyHistogram struct {
	buckets [len(latencyBuckets) + 1]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum     atomic.Uint64                          // nanoseconds
}

func (h *latencyHistogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBucketsNanos) && d > latencyBucketsNanos[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(uint64(max(d, 0)))
}

// appendPrometheus appends h in the Prometheus text format to dst: the
// cumulative buckets, _sum and _count, each with labels (`route="x"`).
// A histogram that observed nothing appends nothing, as
// VictoriaMetrics/metrics' do. The reads are not one atomic snapshot: a
// scrape during a request may see its bucket and not its sum.
func (h *latencyHistogram) appendPrometheus(dst []byte, name, labels string) []byte {
	var counts [len(h.buckets)]uint64
	var total uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return dst
	}
	var cum uint64
	for i := range counts {
		cum += counts[i]
		dst = append(dst, name...)
		dst = append(dst, "_bucket{"...)
		dst = append(dst, labels...)
		dst = append(dst, `,le="`...)
		if i < len(latencyBuckets) {
			dst = strconv.AppendFloat(dst, latencyBuckets[i], 'g', -1, 64)
		} else {
			dst = append(dst, "+Inf"...)
		}
		dst = append(dst, `"} `...)
		dst = strconv.AppendUint(dst, cum, 10)
		dst = append(dst, '\n')
	}
	dst = append(dst, name...)
	dst = append(dst, "_sum{"...)
	dst = append(dst, labels...)
	dst = append(dst, "} "...)
	dst = strconv.AppendFloat(dst, float64(h.sum.Load())/1e9, 'g', -1, 64)
	dst = append(dst, '\n')
	dst = append(dst, name...)
	dst = append(dst, "_count{"...)
	dst = append(dst, labels...)
	dst = append(dst, "} "...)
	dst = strconv.AppendUint(dst, cum, 10)
	return append(dst, '\n')
}

func (m *serverMetrics) write(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4")
	m.set.WritePrometheus(ctx)
	metrics.WriteProcessMetrics(ctx)
	// The heap the last collection kept: with edgerec serve's memory limit
	// (-memory-mb) the heap's size follows the limit, not what is live;
	// this is what to watch against go_memlimit_bytes.
	live := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(live)
	if live[0].Value.Kind() == rtmetrics.KindUint64 {
		metrics.WriteGaugeUint64(ctx, "go_gc_heap_live_bytes", live[0].Value.Uint64())
	}
}
