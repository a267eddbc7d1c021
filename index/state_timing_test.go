package index

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/edgerec/edgerec/model"
)

// stateSink keeps benchmark results alive.
var stateSink atomic.Int64

// BenchmarkAppendEvents appends one event a call from parallel writers, as
// POST /v1/events does. With Sync each call waits for the WAL fsync; more
// writers than cores (p16: 16 a core) let Pebble's group commit share one
// fsync among many calls.
func BenchmarkAppendEvents(b *testing.B) {
	for _, bc := range []struct {
		name   string
		noSync bool
		par    int
	}{
		{"NoSync", true, 1},
		{"Sync", false, 1},
		{"Sync-p16", false, 16},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openState(b, b.TempDir(), StateOptions{NoSync: bc.noSync})
			defer closeState(b, s)
			var writers atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(bc.par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				user := "visitor-" + strconv.FormatInt(writers.Add(1), 10)
				evs := []StateEvent{{
					User:      []byte(user),
					Item:      []byte("85123A"),
					Type:      model.EventView,
					RecID:     []byte("r-0123456789abcdef"),
					Placement: []byte("product_page"),
				}}
				for ts := int64(1700000000); pb.Next(); ts++ {
					evs[0].TS = ts
					if err := s.AppendEvents(evs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkLoadHistory reads a 50-event history from a store of 1000
// users with 60 events each, flushed to an sstable (block cache warm).
func BenchmarkLoadHistory(b *testing.B) {
	const users, perUser = 1000, 60
	s := openState(b, b.TempDir(), StateOptions{NoSync: true})
	defer closeState(b, s)
	evs := make([]StateEvent, 0, perUser)
	for u := range users {
		evs = evs[:0]
		user := []byte("user-" + strconv.Itoa(u))
		for i := range perUser {
			evs = append(evs, StateEvent{User: user, Item: []byte("item-" + strconv.Itoa(i*users+u)), Type: model.EventView, TS: int64(1700000000 + i)})
		}
		if err := s.AppendEvents(evs); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	ids := make([][]byte, users)
	for u := range ids {
		ids[u] = []byte("user-" + strconv.Itoa(u))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var h History
		n := 0
		for u := int(next.Add(7919)); pb.Next(); u += 7919 {
			if err := s.LoadHistory(&h, ids[u%users], 50); err != nil {
				b.Error(err)
				return
			}
			if len(h.Entries()) != 50 {
				b.Errorf("history of %d events; want 50", len(h.Entries()))
				return
			}
			n += len(h.Entries())
		}
		stateSink.Add(int64(n))
	})
}

// BenchmarkAppendBatches: 8 writers, each committing synced batches of 50
// events of 50 random users out of 100k (a back end forwarding events).
func BenchmarkAppendBatches(b *testing.B) {
	s := openState(b, b.TempDir(), StateOptions{})
	defer closeState(b, s)
	b.SetParallelism(4)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		evs := make([]StateEvent, 50)
		users := make([][]byte, 50)
		for pb.Next() {
			for i := range evs {
				users[i] = strconv.AppendInt(users[i][:0], int64(r.IntN(100000)), 10)
				evs[i] = StateEvent{User: users[i], Item: []byte("i1"), Type: model.EventView, TS: 1_700_000_000 + int64(i)}
			}
			if err := s.AppendEvents(evs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*50)/b.Elapsed().Seconds(), "events/s")
}
