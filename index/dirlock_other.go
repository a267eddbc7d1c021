//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package index

import "fmt"

// dirLocks says whether this platform has directory locks: not this one,
// so nothing can tell a directory in use from an abandoned one, and
// PruneSnapshots and RemoveDebris remove nothing.
const dirLocks = false

// lockDir grants every shared lock and no exclusive one.
func lockDir(dir string, exclusive bool) (*dirLock, error) {
	if exclusive {
		return nil, fmt.Errorf("%w: %q (no directory locks on this platform)", errDirBusy, dir)
	}
	return &dirLock{}, nil
}
