// Package model owns edgerec's domain types and the pure maths around them.
//
// # Types
//
// Event is one behaviour event (view, cart, purchase, rating, …) as read
// from a file or a request; Item is a catalog entry; Neighbour is one entry
// of a precomputed list (similar items, bought together, popular), holding a
// dense uint32 item number that is only meaningful inside one snapshot.
//
// # Maths
//
// Similarity (co-occurrence, Jaccard, cosine, lift, log-likelihood ratio,
// EASE), top-K selection, the blending of neighbour lists into a personal
// list (Scorer: the one code path both the server and offline evaluation
// use), time decay, and the offline ranking metrics of the Microsoft
// Recommenders benchmarks (precision, recall, MAP, nDCG at k, coverage).
//
// # Rules
//
// No I/O and no imports of our other packages. Functions follow the
// AppendX(dst, …) / DecodeX(dst, src) habit: slices passed in are owned by
// the caller, and results may alias dst.
package model
