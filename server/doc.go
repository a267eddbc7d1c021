// Package server is edgerec's HTTP front: fasthttp routing and handlers,
// request parsing, JSON writing, authentication, limits and metrics, over
// the snapshots and state store of package index.
//
// # Request path
//
// Handle routes on the path bytes (server.go). A read acquires the served
// snapshot, takes a pooled reqState, parses the query with fasthttp's byte
// getters and either answers from the body cache or computes the answer:
// lists through the cache and Pebble, the visitor's history from the state
// store, filters, blending and business rules (recommend.go,
// placement.go), then appends JSON without reflection (json.go). Errors
// become statuses in one place (errors.go).
//
// # Body cache
//
// A non-personal answer is cached in Ristretto under a hash of (snapshot
// version, catalog-patch generation, path, query). The cached value is
// the answer's tail, everything after the per-request rec_id, followed by
// its deflate stream once a client that accepts gzip asked for it, and a
// 4-byte trailer (compress.go). Values are immutable once Set; a hit
// writes the head and the cached tail, or the gzip member spliced from a
// stored block holding the head and the cached deflate stream. Nothing is
// compressed per request; personal answers and /v1/page are neither
// cached nor compressed.
//
// # Decisions, profiles, segments
//
// decide.go makes landing-page decisions (rules, sticky assignment,
// split or bandit) and results.go measures them; profile.go and
// segment.go serve profiles and evaluate segments, lowered from
// expr-lang trees to closures; audience.go exports segment members; page.go
// answers one page view in one call.
package server
