// Package bench measures edgerec the way a client sees it, and makes the data
// to measure it with.
//
// # Contents
//
// The open-loop load generator (Attack with a Pacer) schedules requests at
// a fixed rate and measures latency from the intended send time, so a slow
// server cannot hide its queueing (no coordinated omission; see vegeta's
// lib/attack.go). It sends every request its schedule holds, so the number
// sent is a count, not what fitted in a window of time. Without a Pacer,
// Attack is a closed loop, on epoll event loops where Linux has them.
//
// The synthetic data generator (Gen, GenFiles) writes an e-commerce catalog
// and an event log with structure a recommender can learn: users browse
// within a few favourite categories, consecutive views favour related items,
// item popularity is Zipf within a category, and baskets often hold an
// item together with one of its fixed complements. Output is deterministic:
// the same GenOptions give byte-identical files. Memory is O(Items+Users);
// events are streamed, so any event count works.
//
// # Rules
//
// bench imports only model, an HTTP client, the standard library and
// klauspost/compress. Never server or index: it measures what a client sees,
// not what the server thinks it did.
package bench
