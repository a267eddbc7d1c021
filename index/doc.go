// Package index owns edgerec's stores: the immutable index snapshots that
// the builder writes and the server reads, the mutable state store, and the
// readers of the input files snapshots are built from.
//
// # Snapshots
//
// A snapshot root holds one directory per version and a CURRENT file naming
// the published one:
//
//	root/
//	  CURRENT                  "v<version>\n", replaced by write-temp + rename
//	  v<version>/              a Pebble store, read-only once published
//	    edgerec-manifest.json  written last; see Manifest
//	  .building-*/             a build in progress (removed on failure)
//	  .unpacking-*/            an unpack in progress (pack.go)
//	  .removing-*/             a pruned version being removed
//
// Builder.Build writes the new version into a .building- directory with
// Pebble's WAL off, compacts it, checksums it, writes the manifest, reopens
// and verifies it, and only then renames it into place and switches
// CURRENT. A reader that finds no manifest, an unknown format, a checksum
// mismatch or a Pebble corruption error refuses the snapshot with an error
// wrapping ErrBadSnapshot: a half-written or damaged snapshot is never
// served.
//
// Every user of a directory of the root holds a shared flock(2) on it
// while it uses it: an open Snapshot on its version (a server serving it),
// a build or unpack on its temporary directory (dirlock.go). After a
// publish, PruneSnapshots removes the versions beyond the newest Keep
// (default 3) but never the one CURRENT names nor one in use; before a
// build or unpack starts, RemoveDebris removes the temporary directories
// of runs that stopped midway (unlocked, older than the new run's start).
// A server starting up on a root whose CURRENT version cannot be served
// falls back to another version (FallbackSnapshots; root.go).
//
// Snapshots travel between machines packed (pack.go): a zstd tar of one
// version directory, unpacked into a temporary directory of the receiving
// root, verified there, and published like a build.
//
// The checksum is xxhash64 over every key and value in key order, each
// preceded by its uvarint length. OpenSnapshot recomputes it in the same
// scan that loads the item table (about 0.1 s for 125k keys).
//
// # Key layout (format 1)
//
// Every key is one prefix byte and a big-endian uint32:
//
//	'i' item     → item record (AppendItem): flags, id, title, brand, price,
//	               stock, users, baskets, events, categories, attributes
//	'c' category → category name (ids from 1; 0 means all categories)
//	's' item     → similar items         (list)
//	'b' item     → bought together       (list; Count = baskets holding both)
//	'p' category → popular, 30-day half-life by default (list)
//	't' category → trending, 3-day half-life by default (list)
//
// and, keyed by the user id instead, 'u' user → the user's newest events
// (history.go), which the server imports into its state store.
//
// A list (AppendList) is a uvarint count followed by fixed 12-byte entries:
// item uint32, score float32 bits, count uint32, little endian, best first.
// Items are dense uint32 numbers, valid within one snapshot only: the
// catalog order first, then items met in events. External ids map to them
// through the item records, loaded into memory at open.
//
// # State store
//
// State (state.go) is the mutable Pebble store beside the snapshots, WAL
// on: each visitor's newest events ('h' + uvarint length + user + BE(^ts)
// + BE(^seq), newest first), the event log for the next build ('e' +
// BE(seq)), counters summed by a merge operator ('k' + key), and metadata
// such as catalog patches and experiment assignments ('m' + key). Events
// are acknowledged after the WAL sync; Pebble's commit pipeline shares one
// sync among concurrent writers. The layout is detailed at the top of
// state.go. A Sweeper (retention.go) deletes what outlived its TTL.
//
// # Lifetimes
//
// Snapshot methods copy what they return out of Pebble before releasing
// it; ItemInfo records are shared and must not be modified. EventReader
// returns events whose byte slices are valid until its next call.
package index
