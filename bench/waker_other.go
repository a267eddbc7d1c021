//go:build !linux

package bench

import "time"

// waker: a runtime timer, which wakes within a millisecond (see
// waker_linux.go).
type waker struct{}

func newWaker() (*waker, error) { return &waker{}, nil }

func (*waker) sleep(d time.Duration) error {
	time.Sleep(d)
	return nil
}

func (*waker) close() {}
