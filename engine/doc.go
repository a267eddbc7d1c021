// Package engine gives every answer of edgerec as Go values from plain
// request structs: recommendations (similar, bought together, personal,
// popular, trending, placements with their business rules),
// landing-page decisions, segments, profiles, whole pages, audience
// exports and experiment results. The HTTP server, edgerec eval and
// edgerec export all call it, so the figure eval prints is the one users
// get. It imports neither fasthttp nor server.
//
// # Views
//
// A request acquires a View (Engine.Acquire): the served snapshot, the
// configuration and the catalog corrections in force when it began, and
// pooled scratch memory. Everything one request asks, a whole page
// included, is asked of one View, which reads the visitor's history and
// profile once, evaluates their segments once, and remembers every list
// it read (a decoded list is never decoded twice per request). Results
// (Recs, Decision, PageResult) alias the View and are valid until it is
// released. After warm-up a View allocates nothing.
//
// # Lists and histories
//
// Lists come through the index's ListCache: decoded once, shared by every
// caller, empty lists included. A personal answer blends the similar
// lists of the visitor's newest Options.HistoryWindow history entries,
// weighted by the interest weights of the snapshot's build, and leaves out
// the items of their newest Options.SeenItems entries (the build's
// max_user_items): what edgerec build and eval measured is what is served.
// When a snapshot is first served, the histories of its build's users are
// imported into the state store (import.go), so they are known without
// their events being posted again.
//
// # Writes
//
// Reads never write, with one exception: a visitor's first randomised
// landing-page assignment and its exposure (Decide). Events (Ingest),
// attributes (SetAttributes), catalog corrections (PatchItems) and the
// membership records of an audience export job (AudienceOptions.Record)
// are the writes.
//
// # Errors
//
// Errors a client caused or can act on are *Error values with a Kind
// (Invalid, NotFound, Unavailable, Conflict, TooLarge, Unauthorized), a
// code and a message; a front end maps the kind to its status. Any other
// error is internal.
package engine
