package engine

import (
	"context"

	"github.com/edgerec/edgerec/index"
)

// LoadNewestSnapshot is LoadSnapshot for a server starting up, with
// nothing to serve yet: it loads root's CURRENT version, and when that one
// cannot be served (damaged, incomplete, failing its checksum, missing) the
// newest other version that can, in the order of index.FallbackSnapshots
// (older than CURRENT's first). Each version skipped is logged with the
// reason. With no version good it returns CURRENT's error and serves
// nothing: the server answers 503 until POST /v1/admin/snapshots loads
// one. That call keeps to CURRENT (LoadSnapshot): a bad version is
// refused and the served one stays.
func (e *Engine) LoadNewestSnapshot(ctx context.Context, root string) (*index.Manifest, error) {
	m, err := e.LoadSnapshot(ctx, root)
	if err == nil {
		return m, nil
	}
	if ctx.Err() != nil {
		return nil, err
	}
	e.log.Warn("skipped snapshot: the version CURRENT names cannot be served", "root", root, "err", err)
	dirs, lerr := index.FallbackSnapshots(root)
	if lerr != nil {
		e.log.Warn("no snapshot to fall back to", "root", root, "err", lerr)
		return nil, err
	}
	for _, dir := range dirs {
		m, derr := e.LoadSnapshot(ctx, dir)
		if derr == nil {
			e.log.Warn("serving a fallback snapshot: the version CURRENT names cannot be served", "dir", dir, "version", m.Version)
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, derr
		}
		e.log.Warn("skipped snapshot", "dir", dir, "err", derr)
	}
	return nil, err
}

// Ready returns the served snapshot's version when the engine can answer
// everything: a snapshot is loaded (else ErrNoSnapshot) and the state
// store, if any, takes writes (index.State.Writable: at most one probe
// write a second; else an Unavailable error with code
// "state_not_writable" and the reason), and no HoldReady is held (else
// Unavailable, code "warming": a server warming up, warm.go).
func (e *Engine) Ready() (uint64, error) {
	v := e.live.Version()
	if v == 0 {
		return 0, ErrNoSnapshot
	}
	if err := e.warming(); err != nil {
		return v, err
	}
	if e.state != nil {
		if err := e.state.Writable(); err != nil {
			return v, errorf(Unavailable, "state_not_writable", err.Error())
		}
	}
	return v, nil
}
