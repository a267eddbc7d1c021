// Package server is edgerec's HTTP front: fasthttp routing, request
// parsing into engine requests, rendering, authentication, limits, CORS
// and metrics. A handler is parse → one engine call → render; no business
// rule lives here (package engine has them all).
//
// # Request path
//
// Handle routes on the path bytes (server.go). A read acquires an
// engine.View, parses the query with fasthttp's byte getters into the
// engine's request struct and either answers from the body cache or asks
// the View, then appends JSON without reflection (internal/jsonw). Errors
// become statuses in one place (errors.go): engine.Error kinds map to
// 400, 404, 409, 413, 401 and 503, anything else is a logged 500.
//
// # Body cache
//
// A non-personal answer is cached in Ristretto under a hash of the View's
// epoch (snapshot version, catalog-patch generation), the path and the
// query. The cached value is the answer's tail, everything after the
// per-request rec_id, followed by its deflate stream once a client that
// accepts gzip asked for it, and a 4-byte trailer (compress.go). Values
// are immutable once Set; a hit writes the head and the cached tail, or
// the gzip member spliced from a stored block holding the head and the
// cached deflate stream. Nothing is compressed per request; personal
// answers and /v1/page are neither cached nor compressed.
//
// # CORS and the browser script
//
// Each route names its methods (cors.go): OPTIONS on a route is its
// preflight, another method a 405 with Allow, and every answer of a
// route gets the CORS headers of its own request, so cached bodies never
// carry another origin's grant. /v1/edgerec.js (script.go) is
// assets/edgerec.js, embedded, stripped of comment lines and gzipped once
// at start, and named by a hash of its bytes (ETag, ?v=).
//
// # Dashboard
//
// GET /dashboard (dashboard.go) renders the engine's results, placement
// stats and segment sizes as one HTML page through html/template, from
// templates embedded from dashboard/; a signed session cookie or the
// admin key as a bearer header lets a reader in.
package server
