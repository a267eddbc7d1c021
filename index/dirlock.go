package index

import (
	"errors"
	"os"
)

// Directory locks: how the processes sharing a snapshot root on one
// machine tell what is in use.
//
// Whoever uses a directory of the root holds a shared flock(2) on it: an
// open Snapshot (a server serving it, eval, export, a build's verifying
// open) on its version directory, a build on its .building- directory, an
// unpack on its .unpacking- directory, a pack on the version it reads.
// Whatever removes a directory (PruneSnapshots, RemoveDebris) first takes
// an exclusive lock without waiting, and leaves the directory alone when
// it cannot. The kernel drops a process's locks when it dies, so a crashed
// build leaves an unlocked directory, and there is no marker to clean up.
// flock locks belong to an open file, so they also keep apart two users in
// one process (tests, or eval beside a build).
//
// A process on another machine sharing the root over a network file
// system is not seen: flock over NFS is not dependable. Serve such
// machines their own root (edgerec snapshot unpack).

// errDirBusy is returned when a directory's lock is held by another.
var errDirBusy = errors.New("index: directory in use")

// dirLock is a held lock on a directory; unlock releases it.
type dirLock struct{ f *os.File }

// unlock releases the lock; a second call, or a call on nil, does
// nothing.
func (l *dirLock) unlock() {
	if l != nil && l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}
