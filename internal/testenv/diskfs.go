package testenv

import (
	"os"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// FullDisk is an errorfs.Injector that fails every write, sync and create
// with ENOSPC while Full is set: a state store's disk filling up.
type FullDisk struct{ Full atomic.Bool }

func (d *FullDisk) MaybeError(op errorfs.Op) error {
	if !d.Full.Load() {
		return nil
	}
	switch op.Kind {
	case errorfs.OpCreate, errorfs.OpReuseForWrite, errorfs.OpFileWrite, errorfs.OpFileWriteAt,
		errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo, errorfs.OpFilePreallocate:
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
	}
	return nil
}

func (d *FullDisk) String() string { return "full disk" }

// InjectFS is fs with inj's errors, in the files Pebble reuses too
// (recycled WAL files, which errorfs returns unwrapped).
func InjectFS(fs vfs.FS, inj errorfs.Injector) vfs.FS {
	return injectFS{errorfs.Wrap(fs, inj), inj}
}

type injectFS struct {
	*errorfs.FS
	inj errorfs.Injector
}

func (fs injectFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	if err != nil {
		return nil, err
	}
	return errorfs.WrapFile(f, errorfs.InjectorFunc(func(op errorfs.Op) error {
		op.Path = newname // the file's name now, not the recycled one's
		return fs.inj.MaybeError(op)
	})), nil
}
