//go:build !linux

package bench

import (
	"context"
	"errors"
	"time"
)

// haveLoops: no event loops here; the closed loop runs a goroutine per
// connection.
const haveLoops = false

func closedLoops(context.Context, *AttackOptions, string, *requestHead, time.Time, func() bool) ([]*Report, error) {
	return nil, errors.New("BUG: closedLoops without event loops")
}
