package server

import (
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
	routeDashboard
	routeCount
)

var routeNames = [routeCount]string{
	routeNotFound: "not_found", routeRecommend: "recommend", routeSimilar: "similar", routeBought: "bought_together",
	routeUser: "user", routePopular: "popular", routeEvents: "events", routeItems: "items", routeAdmin: "admin",
	routeStats: "stats", routeHealth: "health", routeMetrics: "metrics", routeCORS: "cors",
	routeDecide: "decide", routeResults: "results", routeProfile: "profile", routePage: "page", routeMembers: "members",
	routeDashboard: "dashboard",
}

// serverMetrics are exported on /metrics in Prometheus text format through
// github.com/VictoriaMetrics/metrics: lock-free counters and log-bucket
// histograms, cheap enough for every request.
type serverMetrics struct {
	set            *metrics.Set
	requests       [routeCount]*metrics.Counter
	latency        [routeCount]*metrics.Histogram
	errors         *metrics.Counter
	cacheHits      *metrics.Counter // the body cache; the engine counts its list cache
	gzipped        *metrics.Counter
	cacheMisses    *metrics.Counter
	eventsIngested *metrics.Counter
	rateLimited    *metrics.Counter
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{set: metrics.NewSet()}
	for r := route(0); r < routeCount; r++ {
		m.requests[r] = m.set.NewCounter(`edgerec_requests_total{route="` + routeNames[r] + `"}`)
		m.latency[r] = m.set.NewHistogram(`edgerec_request_duration_seconds{route="` + routeNames[r] + `"}`)
	}
	m.errors = m.set.NewCounter("edgerec_errors_total")
	m.cacheHits = m.set.NewCounter(`edgerec_body_cache_requests_total{result="hit"}`)
	m.gzipped = m.set.NewCounter(`edgerec_responses_gzip_total`)
	m.cacheMisses = m.set.NewCounter(`edgerec_body_cache_requests_total{result="miss"}`)
	m.eventsIngested = m.set.NewCounter("edgerec_events_ingested_total")
	m.rateLimited = m.set.NewCounter("edgerec_rate_limited_total")
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
	m.latency[r].UpdateDuration(start)
}

func (m *serverMetrics) write(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4")
	m.set.WritePrometheus(ctx)
	metrics.WriteProcessMetrics(ctx)
}
