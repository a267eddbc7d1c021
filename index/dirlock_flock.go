//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package index

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dirLocks says whether this platform has directory locks.
const dirLocks = true

// lockDir takes a lock on dir without waiting: shared (in use) or
// exclusive (about to be removed). It returns errDirBusy when a
// conflicting lock is held.
func lockDir(dir string, exclusive bool) (*dirLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot open %q to lock it: %w", dir, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %q", errDirBusy, dir)
		}
		return nil, fmt.Errorf("cannot lock %q: %w", dir, err)
	}
	return &dirLock{f: f}, nil
}
