package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/edgerec/edgerec/internal/testenv"
	"github.com/edgerec/edgerec/model"
)

// batchLedger writes batches of one event and two counters, the batch's
// own ("c/<id>", 1) and "total", and remembers which were acknowledged.
type batchLedger struct {
	mu    sync.Mutex
	acked map[string]bool // id → acknowledged
	next  atomic.Int64
}

func (l *batchLedger) write(s *State) (string, error) {
	n := l.next.Add(1)
	id := "b" + strconv.FormatInt(n, 10)
	ev := StateEvent{User: []byte("u" + strconv.FormatInt(n%7, 10)), Item: []byte("i" + id), Type: model.EventView, TS: 1000 + n, ID: []byte(id)}
	err := s.Write([]StateEvent{ev}, []Counter{{Key: []byte("c/" + id), Delta: 1}, {Key: []byte("total"), Delta: 1}}, nil)
	l.mu.Lock()
	l.acked[id] = err == nil
	l.mu.Unlock()
	return id, err
}

// writeMany writes n batches from 8 goroutines and returns their errors.
func (l *batchLedger) writeMany(s *State, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	var i atomic.Int64
	for range 8 {
		wg.Go(func() {
			for j := int(i.Add(1)) - 1; j < n; j = int(i.Add(1)) - 1 {
				_, errs[j] = l.write(s)
			}
		})
	}
	wg.Wait()
	return errs
}

// check verifies s against the ledger: every acknowledged batch is there
// (its event, in the log and the history, and its counter); every batch
// is there whole or not at all; "total" counts the batches there. It
// returns how many batches are there.
func (l *batchLedger) check(t *testing.T, s *State) int {
	t.Helper()
	logged := map[string]int{}
	if _, err := s.ScanEvents(0, func(_ uint64, ev *StateEvent) error {
		logged[string(ev.ID)]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	there := 0
	for id, acked := range l.acked {
		c, err := s.Counter([]byte("c/" + id))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case acked && (c != 1 || logged[id] != 1):
			t.Fatalf("acknowledged batch %s: counter %v, logged %d times; want 1 and 1", id, c, logged[id])
		case c == 0 && logged[id] != 0, c == 1 && logged[id] != 1, c != 0 && c != 1:
			t.Fatalf("batch %s (acknowledged %v) is there in part: counter %v, logged %d times", id, acked, c, logged[id])
		}
		if c == 1 {
			there++
		}
	}
	total, err := s.Counter([]byte("total"))
	if err != nil {
		t.Fatal(err)
	}
	if int(total) != there {
		t.Fatalf("counter total %v; want %d, the batches there", total, there)
	}
	return there
}

// TestStateRecoversFromFullDisk: on a full disk (ENOSPC on every write,
// sync and create) writes fail with ErrNoSpace and ErrNotWritable, reads
// go on, and once space returns the store reopens and takes writes again,
// with no restart; every acknowledged batch is there, after the reopen and
// after a crash, and no batch is there in part.
func TestStateRecoversFromFullDisk(t *testing.T) {
	mem := vfs.NewCrashableMem()
	d := &testenv.FullDisk{}
	s, err := OpenState("state", StateOptions{FS: testenv.InjectFS(mem, d), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l := &batchLedger{acked: map[string]bool{}}
	if err := errors.Join(l.writeMany(s, 200)...); err != nil {
		t.Fatal(err)
	}

	// Readers run throughout, the reopen included.
	stop := make(chan struct{})
	var reads, readErrs atomic.Int64
	var rwg sync.WaitGroup
	for r := range 4 {
		rwg.Go(func() {
			var h History
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := s.LoadHistory(&h, []byte("u"+strconv.Itoa(r)), 50)
				if err == nil && len(h.Entries()) == 0 {
					err = fmt.Errorf("u%d: no history", r)
				}
				if err == nil {
					_, err = s.Counter([]byte("total"))
				}
				if err != nil {
					readErrs.Add(1)
					t.Error(err)
				}
				reads.Add(1)
			}
		})
	}

	d.Full.Store(true)
	errs := l.writeMany(s, 100)
	for i, err := range errs {
		if !errors.Is(err, ErrNotWritable) || !errors.Is(err, ErrNoSpace) {
			t.Fatalf("write %d on a full disk: %v; want ErrNotWritable and ErrNoSpace", i, err)
		}
	}
	if err := s.Writable(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Writable on a full disk: %v; want ErrNoSpace", err)
	}
	if f := s.Failure(); f.Err == nil || f.FailedWrites < 100 || f.Failures != 1 {
		t.Fatalf("Failure on a full disk: %+v; want an error, 100 failed writes or more, 1 failure", f)
	}
	if err := s.tryReopen(); err == nil {
		t.Fatal("a reopen on a full disk: nil; want its error")
	}
	readsFull := reads.Load()

	d.Full.Store(false)
	if err := s.tryReopen(); err != nil {
		t.Fatalf("a reopen once space returned: %v", err)
	}
	if err := s.Writable(); err != nil {
		t.Fatalf("Writable after the reopen: %v", err)
	}
	if err := errors.Join(l.writeMany(s, 200)...); err != nil {
		t.Fatalf("writes after the reopen: %v", err)
	}
	close(stop)
	rwg.Wait()
	if readErrs.Load() != 0 || reads.Load() == readsFull {
		t.Fatalf("reads: %d, %d failed, %d after the disk filled; want none failed", reads.Load(), readErrs.Load(), readsFull)
	}
	if f := s.Failure(); f.Err != nil || f.Recoveries != 1 {
		t.Fatalf("Failure after the reopen: %+v; want no error, 1 recovery", f)
	}
	there := l.check(t, s)
	t.Logf("%d batches acknowledged of %d written; %d there after the reopen", 400, len(l.acked), there)

	// A crash now: what was synced, no more.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	closeState(t, s)
	s2 := openState(t, "state", StateOptions{FS: crashed, Logger: slog.New(slog.DiscardHandler)})
	defer closeState(t, s2)
	there2 := l.check(t, s2)
	t.Logf("%d there after a crash", there2)
	if err := s2.AppendEvents([]StateEvent{view("u1", "i-after", 5000)}); err != nil {
		t.Fatal(err)
	}
}

// TestStateReopenSeq: event numbers go on after a reopen from the highest
// one handed out, though the failed batch's never reached the disk.
func TestStateReopenSeq(t *testing.T) {
	d := &testenv.FullDisk{}
	s := openState(t, "state", StateOptions{FS: testenv.InjectFS(vfs.NewMem(), d), Logger: slog.New(slog.DiscardHandler)})
	defer closeState(t, s)
	if err := s.AppendEvents([]StateEvent{view("u1", "i1", 1)}); err != nil {
		t.Fatal(err)
	}
	d.Full.Store(true)
	if err := s.AppendEvents([]StateEvent{view("u1", "i2", 2), view("u1", "i3", 3)}); err == nil {
		t.Fatal("a write on a full disk: nil; want an error")
	}
	d.Full.Store(false)
	if err := s.tryReopen(); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents([]StateEvent{view("u1", "i4", 4)}); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	if _, err := s.ScanEvents(0, func(seq uint64, ev *StateEvent) error {
		seqs = append(seqs, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if last := seqs[len(seqs)-1]; last != 4 {
		t.Fatalf("event numbers after a reopen: %v; want the new event numbered 4", seqs)
	}
}

// TestStateFullDiskCycles: 32 writers of large events (the WAL's blocks
// fill between syncs) while the disk fills and empties five times: no
// panic, no batch there in part, every acknowledged one there, after the
// last reopen and after a crash.
func TestStateFullDiskCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("five cycles of a full disk under load: not with -short")
	}
	mem := vfs.NewCrashableMem()
	d := &testenv.FullDisk{}
	s, err := OpenState("state", StateOptions{FS: testenv.InjectFS(mem, d), Logger: slog.New(slog.DiscardHandler), RecoverInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l := &batchLedger{acked: map[string]bool{}}
	page := []byte(strings.Repeat("p", 3000))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var oks, refused atomic.Int64
	for range 32 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := l.next.Add(1)
				id := "b" + strconv.FormatInt(n, 10)
				ev := StateEvent{User: []byte("u" + strconv.FormatInt(n%7, 10)), Item: []byte("i" + id), Type: model.EventView, TS: 1000 + n, ID: []byte(id), Page: page}
				err := s.Write([]StateEvent{ev}, []Counter{{Key: []byte("c/" + id), Delta: 1}, {Key: []byte("total"), Delta: 1}}, nil)
				l.mu.Lock()
				l.acked[id] = err == nil
				l.mu.Unlock()
				switch {
				case err == nil:
					oks.Add(1)
				case errors.Is(err, ErrNotWritable):
					refused.Add(1)
					time.Sleep(time.Millisecond) // a client backs off
				default:
					t.Error(err)
				}
			}
		})
	}
	for range 5 {
		for n := oks.Load(); oks.Load() < n+50; {
			time.Sleep(time.Millisecond) // 50 more writes acknowledged
		}
		d.Full.Store(true)
		for f := s.Failure().Failures; s.Failure().Failures == f; {
			time.Sleep(time.Millisecond) // the store saw it
		}
		d.Full.Store(false)
	}
	close(stop)
	wg.Wait()
	for s.tryReopen() != nil {
		time.Sleep(10 * time.Millisecond)
	}
	f := s.Failure()
	there := l.check(t, s)
	t.Logf("%d writes acknowledged, %d refused; %d failures, %d reopens; %d batches there", oks.Load(), refused.Load(), f.Failures, f.Recoveries, there)
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	closeState(t, s)
	s2 := openState(t, "state", StateOptions{FS: crashed, Logger: slog.New(slog.DiscardHandler)})
	defer closeState(t, s2)
	l.check(t, s2)
}

// TestSweepDuringReopen: retention passes run without a break, mostly
// reading, while the disk fills and empties three times and the store
// reopens itself: a pass never uses a closed DB (it holds the store's
// write lock but for its pauses; without it Pebble panics "pebble:
// closed"), fails with ErrNotWritable at worst, and once the disk is back
// a pass deletes what expired.
func TestSweepDuringReopen(t *testing.T) {
	clk := &testClock{now: time.Unix(1_700_000_000, 0)}
	d := &testenv.FullDisk{}
	s := openState(t, "state", StateOptions{
		FS: testenv.InjectFS(vfs.NewMem(), d), Logger: slog.New(slog.DiscardHandler),
		Now: clk.Now, RecoverInterval: 20 * time.Millisecond,
	})
	defer closeState(t, s)
	old := clk.Now().Unix() - 3*86400
	write := func(round int) {
		var evs []StateEvent
		for u := range 200 {
			evs = append(evs, StateEvent{User: fmt.Appendf(nil, "r%du%d", round, u), Item: []byte("i1"), Type: model.EventView, TS: old})
		}
		if err := s.AppendEvents(evs); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	// Fresh histories a pass reads and keeps: most of its time is reads
	// and pauses, no commit that would fail first.
	var fresh []StateEvent
	for u := range 3000 {
		fresh = append(fresh, StateEvent{User: fmt.Appendf(nil, "f%d", u), Item: []byte("i1"), Type: model.EventView, TS: clk.Now().Unix()})
	}
	if err := s.AppendEvents(fresh); err != nil {
		t.Fatal(err)
	}
	w, err := s.NewSweeper(SweepOptions{Histories: 24 * time.Hour, Events: 24 * time.Hour, BatchKeys: 7, Pause: time.Millisecond, CompactBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var passes, refused atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			switch err := w.Sweep(context.Background()); {
			case err == nil:
				passes.Add(1)
			case errors.Is(err, ErrNotWritable):
				refused.Add(1)
				time.Sleep(100 * time.Microsecond)
			default:
				t.Error(err)
			}
		}
	})
	for round := 1; round <= 3; round++ {
		for p := passes.Load(); passes.Load() == p; {
			time.Sleep(time.Millisecond) // a whole pass on a writable store
		}
		d.Full.Store(true)
		for f := s.Failure().Failures; s.Failure().Failures == f; {
			_ = s.AppendEvents([]StateEvent{view("x", "i1", old)}) // fails, or a pass's write does
		}
		d.Full.Store(false)
		for s.Failure().Err != nil {
			time.Sleep(time.Millisecond) // the background reopen
		}
		write(round)
	}
	close(stop)
	wg.Wait()
	sweep(t, w)
	var h History
	for round := range 4 {
		if err := s.LoadHistory(&h, fmt.Appendf(nil, "r%du7", round), 10); err != nil || len(h.Entries()) != 0 {
			t.Fatalf("round %d: %d entries left (%v); want none", round, len(h.Entries()), err)
		}
	}
	f := s.Failure()
	t.Logf("%d passes, %d refused; %d failures, %d reopens", passes.Load(), refused.Load(), f.Failures, f.Recoveries)
	if f.Recoveries < 3 {
		t.Fatalf("%d reopens; want 3", f.Recoveries)
	}
}
