package index

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerec/edgerec/model"
)

func openState(t *testing.T, dir string, o StateOptions) *State {
	t.Helper()
	s, err := OpenState(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func view(user, item string, ts int64) StateEvent {
	return StateEvent{User: []byte(user), Item: []byte(item), Type: model.EventView, TS: ts}
}

func TestStateHistory(t *testing.T) {
	s := openState(t, t.TempDir(), StateOptions{HistoryLen: 3, NoSync: true})
	defer s.Close()
	must(t, s.AppendEvents([]StateEvent{view("u1", "a", 10), view("u10", "x", 50), view("u1", "b", 30), view("u1", "c", 20)}))
	must(t, s.AppendEvents([]StateEvent{view("u1", "d", 40), {User: []byte("u1"), Item: []byte("e"), Type: model.EventRating, TS: 5, Value: 4, HasValue: true}}))
	var h History
	must(t, s.LoadHistory(&h, []byte("u1")))
	got := ""
	for _, e := range h.Entries() {
		got += string(e.Item) + strconv.FormatInt(e.TS, 10) + " "
	}
	if got != "d40 b30 c20 " {
		t.Fatalf("u1 history %q; want the 3 newest, newest first", got)
	}
	must(t, s.LoadHistory(&h, []byte("u10")))
	if len(h.Entries()) != 1 || string(h.Entries()[0].Item) != "x" {
		t.Fatalf("u10 history: %+v", h.Entries())
	}
	must(t, s.LoadHistory(&h, []byte("u")))
	if len(h.Entries()) != 0 {
		t.Fatalf("u history: %+v", h.Entries())
	}
	if err := s.AppendEvents([]StateEvent{{Item: []byte("a"), Type: model.EventView}}); err == nil {
		t.Fatal("event without user accepted")
	}
}

func TestStateReopenAndLog(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir, StateOptions{})
	must(t, s.AppendEvents([]StateEvent{view("u", "a", 1), view("u", "b", 2)}))
	must(t, s.MergeHistory([]byte("u"), []byte("w"), 3))
	must(t, s.Close())
	s = openState(t, dir, StateOptions{})
	defer s.Close()
	ev := StateEvent{User: []byte("u"), Item: []byte("c"), Type: model.EventPurchase, TS: 3, Value: 9.5, HasValue: true,
		Basket: []byte("o1"), RecID: []byte("r1"), Placement: []byte("home"), Page: []byte("/p")}
	must(t, s.AppendEvents([]StateEvent{ev}))
	var items []string
	var seqs []uint64
	last, err := s.ScanEvents(0, func(seq uint64, e *StateEvent) error {
		items = append(items, string(e.Item))
		seqs = append(seqs, seq)
		if string(e.Item) == "c" && (string(e.Basket) != "o1" || string(e.RecID) != "r1" || string(e.Placement) != "home" ||
			string(e.Page) != "/p" || e.Value != 9.5 || !e.HasValue || e.Type != model.EventPurchase) {
			t.Fatalf("logged event: %+v", e)
		}
		return nil
	})
	must(t, err)
	if fmt.Sprint(items) != "[a b c]" || seqs[2] <= seqs[1] || last != seqs[2] {
		t.Fatalf("log: %v seqs %v last %d", items, seqs, last)
	}
	// The merged history of w survived the reopen, and its seqs are not reused.
	var h History
	must(t, s.LoadHistory(&h, []byte("w")))
	if len(h.Entries()) != 2 || string(h.Entries()[0].Item) != "b" {
		t.Fatalf("merged history: %+v", h.Entries())
	}
	if n, _ := s.ScanEvents(last, func(uint64, *StateEvent) error { return nil }); n != last {
		t.Fatalf("scan after last: %d", n)
	}
}

func TestStateCounters(t *testing.T) {
	dir := t.TempDir()
	s := openState(t, dir, StateOptions{NoSync: true})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if err := s.AppendEventsAndCount(nil, []Counter{{Key: []byte("p/home/clicks"), Delta: 1}, {Key: []byte("p/home/revenue"), Delta: 0.5}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	must(t, s.Close())
	s = openState(t, dir, StateOptions{})
	defer s.Close()
	if v, err := s.Counter([]byte("p/home/clicks")); err != nil || v != 800 {
		t.Fatalf("clicks %v, %v", v, err)
	}
	if v, _ := s.Counter([]byte("p/home/revenue")); v != 400 {
		t.Fatalf("revenue %v", v)
	}
	if v, _ := s.Counter([]byte("p/none")); v != 0 {
		t.Fatalf("unknown counter %v", v)
	}
}

// TestStateCrash kills a process that writes events with SIGKILL and checks
// that every event it acknowledged is in the store.
func TestStateCrash(t *testing.T) {
	if os.Getenv("EDGEREC_CRASH_DIR") != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStateCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(), "EDGEREC_CRASH_DIR="+dir)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(60 * time.Second)
	for len(acked) < 2000 && sc.Scan() && time.Now().Before(deadline) {
		if id, ok := cutAck(sc.Text()); ok {
			acked[id] = true
		}
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	if len(acked) < 2000 {
		t.Fatalf("child acknowledged only %d events", len(acked))
	}
	s := openState(t, dir, StateOptions{})
	defer s.Close()
	stored := map[string]bool{}
	_, err = s.ScanEvents(0, func(_ uint64, ev *StateEvent) error {
		stored[string(ev.Item)] = true
		return nil
	})
	must(t, err)
	for id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged event %s lost after kill -9 (%d acked, %d stored)", id, len(acked), len(stored))
		}
	}
	t.Logf("%d acknowledged events, %d stored after kill -9", len(acked), len(stored))
}

func cutAck(line string) (string, bool) {
	const p = "ACK "
	if len(line) > len(p) && line[:len(p)] == p {
		return line[len(p):], true
	}
	return "", false
}

// TestStateCrashChild is the child of TestStateCrash: it writes events from
// four goroutines with durable acknowledgement and prints each ack.
func TestStateCrashChild(t *testing.T) {
	dir := os.Getenv("EDGEREC_CRASH_DIR")
	if dir == "" {
		t.Skip("runs as the child of TestStateCrash")
	}
	s := openState(t, dir, StateOptions{})
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				id := "g" + strconv.Itoa(g) + "-" + strconv.Itoa(i)
				if err := s.AppendEvents([]StateEvent{view("u"+strconv.Itoa(g), id, int64(i))}); err != nil {
					panic(err)
				}
				mu.Lock()
				fmt.Fprintf(w, "ACK %s\n", id)
				_ = w.Flush()
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
}
