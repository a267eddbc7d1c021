package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

type countingReader struct {
	ctx context.Context // the read fails with ctx's error once it is done
	r   io.Reader
	n   *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// progress reports how far the reading of one file is.
type progress struct {
	name  string
	total int64
	done  atomic.Int64
	quit  chan struct{}
	ended chan struct{}
	tty   bool
	start time.Time
}

func newProgress(name string, total int64) *progress {
	p := &progress{name: name, total: total, quit: make(chan struct{}), ended: make(chan struct{}), start: time.Now()}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		p.tty = true
	}
	go p.run()
	return p
}

func (p *progress) run() {
	defer close(p.ended)
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			if p.tty {
				p.draw()
				fmt.Fprintln(os.Stderr)
			}
			return
		case <-t.C:
			if p.tty {
				p.draw()
			} else {
				log.Printf("reading %s: %s of %s", p.name, humanBytes(p.done.Load()), humanBytes(p.total))
			}
		}
	}
}

func (p *progress) draw() {
	done := p.done.Load()
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	const width = 30
	n := int(frac * width)
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(os.Stderr, "\r%-24s [%s%s] %3.0f%% %s/s ", p.name, strings.Repeat("#", n), strings.Repeat(" ", width-n),
		frac*100, humanBytes(int64(rate)))
}

func (p *progress) stop() {
	close(p.quit)
	<-p.ended
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// peakRSS returns the peak resident set size of this process (VmHWM).
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return humanBytes(kb * 1024)
			}
		}
	}
	return "unknown"
}
