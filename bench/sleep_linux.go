package bench

import (
	"syscall"
	"time"
)

// preciseSleep blocks the calling thread for d with nanosleep(2), which
// wakes within the kernel's timer slack (50 µs by default). Runtime timers
// ride on epoll_wait, whose millisecond timeout made an idle scheduler send
// up to 1 ms late, and lateness counts as latency in an open-loop test.
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for {
		var rem syscall.Timespec
		if err := syscall.Nanosleep(&ts, &rem); err != syscall.EINTR {
			return
		}
		ts = rem
	}
}
