package engine

import (
	"context"
	"strconv"
	"time"

	"github.com/edgerec/edgerec/index"
)

// importHistories writes the users' histories a snapshot carries into
// the state store, the first time the snapshot is served: a customer
// known to the build is known to the server, without their events being
// posted again. History entries are keyed by their content, so an event
// both imported and posted is one entry, and a repeated import changes
// nothing; the mark "imported/v<version>" only saves the work.
func (e *Engine) importHistories(ctx context.Context, snap *index.Snapshot) error {
	if e.state == nil || snap.Manifest().Histories == 0 {
		return nil
	}
	mark := []byte("imported/v" + strconv.FormatUint(snap.Version(), 10))
	if _, done, err := e.state.AppendMeta(nil, mark); err != nil || done {
		return err
	}
	start := time.Now()
	w := e.state.NewHistoryWriter()
	users := 0
	err := snap.ScanHistories(func(user []byte, entries []index.HistoryEntry) error {
		if users++; users&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		for i := range entries {
			if err := w.Add(user, &entries[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := e.state.PutMeta(mark, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return err
	}
	e.log.Info("imported the build's histories", "snapshot", snap.Version(), "users", users,
		"entries", w.Entries(), "seconds", time.Since(start).Seconds())
	return nil
}
