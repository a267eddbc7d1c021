package engine

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// BenchmarkExportAudience1M exports a segment of a million profiles with
// five recommendations per member (a third of them), recording the
// membership changes as an export job does.
//
//	go test -run NONE -bench ExportAudience1M -benchtime 1x ./engine/
func BenchmarkExportAudience1M(b *testing.B) {
	const users = 1_000_000
	root := shopRoot(b)
	state := openState(b, b.TempDir(), index.StateOptions{})
	cfg, err := ParseConfig([]byte(audienceYAML), "audience.yaml")
	if err != nil {
		b.Fatal(err)
	}
	e := newEngine(b, Options{Config: cfg}, state, root)
	start := time.Now()
	seedMillion(b, state, users)
	b.Logf("seeded %d profiles in %v", users, time.Since(start).Round(time.Millisecond))
	members := 0
	for i := range users {
		if i%2 == 0 && i%3 != 2 {
			members++
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		st, err := e.ExportAudience(context.Background(), io.Discard, AudienceOptions{Segment: "pricing", WithRecs: 5, Record: true})
		if err != nil {
			b.Fatal(err)
		}
		if st.Scanned != users || st.Written != members {
			b.Fatalf("stats %+v", st)
		}
	}
	b.ReportMetric(float64(users*b.N)/b.Elapsed().Seconds(), "profiles/s")
}

// seedMillion stores n users: every other one viewed /pricing, each viewed
// two items, two in three consent to email.
func seedMillion(b *testing.B, state *index.State, n int) {
	now := time.Now().Unix()
	const batch = 1000
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := make([]index.StateEvent, 0, 3*batch)
			for lo := w * batch; lo < n; lo += 2 * batch {
				evs = evs[:0]
				for i := lo; i < min(lo+batch, n); i++ {
					user := fmt.Appendf(nil, "u%07d", i)
					page := []byte("/home")
					if i%2 == 0 {
						page = []byte("/pricing")
					}
					evs = append(evs,
						index.StateEvent{User: user, Type: model.EventPageview, TS: now - 3600, Page: page},
						index.StateEvent{User: user, Item: []byte("i" + strconv.Itoa(i*7%200+1)), Type: model.EventView, TS: now - 1800},
						index.StateEvent{User: user, Item: []byte("i" + strconv.Itoa(i*13%200+1)), Type: model.EventView, TS: now - 60})
				}
				if err := state.AppendEvents(evs); err != nil {
					errs <- err
					return
				}
				for i := lo; i < min(lo+batch, n); i++ {
					user := fmt.Appendf(nil, "u%07d", i)
					err := state.UpdateProfile(user, func(p *model.Profile) error {
						p.SetAttr([]byte("email"), model.AttrString, append(user, "@example.jp"...), 0)
						p.SetAttr([]byte("company"), model.AttrString, []byte("Company "+strconv.Itoa(i%997)), 0)
						consent := 1.0
						if i%3 == 2 {
							consent = 0
						}
						p.SetAttr([]byte("consent_email"), model.AttrBool, nil, consent)
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}
