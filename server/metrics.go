package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
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
	routeCount
)

var routeNames = [routeCount]string{
	routeNotFound: "not_found", routeRecommend: "recommend", routeSimilar: "similar", routeBought: "bought_together",
	routeUser: "user", routePopular: "popular", routeEvents: "events", routeItems: "items", routeAdmin: "admin",
	routeStats: "stats", routeHealth: "health", routeMetrics: "metrics", routeCORS: "cors",
	routeDecide: "decide", routeResults: "results", routeProfile: "profile", routePage: "page", routeMembers: "members",
}

// serverMetrics are exported on /metrics in Prometheus text format through
// github.com/VictoriaMetrics/metrics: lock-free counters and log-bucket
// histograms, cheap enough for every request.
type serverMetrics struct {
	set             *metrics.Set
	requests        [routeCount]*metrics.Counter
	latency         [routeCount]*metrics.Histogram
	errors          *metrics.Counter
	cacheHits       *metrics.Counter
	gzipped         *metrics.Counter
	audienceSkipped *metrics.Counter
	cacheMisses     *metrics.Counter
	eventsIngested  *metrics.Counter
	segmentErrors   *metrics.Counter
	snapshotVersion atomic.Uint64
	served          sync.Map // placement string → *atomic.Uint64
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{set: metrics.NewSet()}
	for r := route(0); r < routeCount; r++ {
		m.requests[r] = m.set.NewCounter(`edgerec_requests_total{route="` + routeNames[r] + `"}`)
		m.latency[r] = m.set.NewHistogram(`edgerec_request_duration_seconds{route="` + routeNames[r] + `"}`)
	}
	m.errors = m.set.NewCounter("edgerec_errors_total")
	m.cacheHits = m.set.NewCounter(`edgerec_cache_requests_total{result="hit"}`)
	m.gzipped = m.set.NewCounter(`edgerec_responses_gzip_total`)
	m.audienceSkipped = m.set.NewCounter(`edgerec_audience_skipped_profiles_total`)
	m.cacheMisses = m.set.NewCounter(`edgerec_cache_requests_total{result="miss"}`)
	m.eventsIngested = m.set.NewCounter("edgerec_events_ingested_total")
	m.segmentErrors = m.set.NewCounter("edgerec_segment_errors_total")
	m.set.NewGauge("edgerec_snapshot_version", func() float64 { return float64(m.snapshotVersion.Load()) })
	m.set.NewGauge("edgerec_cache_hit_ratio", func() float64 {
		h, miss := float64(m.cacheHits.Get()), float64(m.cacheMisses.Get())
		if h+miss == 0 {
			return 0
		}
		return h / (h + miss)
	})
	return m
}

func (m *serverMetrics) observe(r route, start time.Time) {
	m.requests[r].Inc()
	m.latency[r].UpdateDuration(start)
}

func (m *serverMetrics) countServed(placement []byte) {
	if v, ok := m.served.Load(string(placement)); ok {
		v.(*atomic.Uint64).Add(1)
		return
	}
	v, _ := m.served.LoadOrStore(string(placement), new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

func (m *serverMetrics) servedFor(placement []byte) uint64 {
	if v, ok := m.served.Load(string(placement)); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

func (m *serverMetrics) write(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4")
	m.set.WritePrometheus(ctx)
	metrics.WriteProcessMetrics(ctx)
}
