package index

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgerec/edgerec/model"
)

func pageview(user, page string, ts int64) StateEvent {
	return StateEvent{User: []byte(user), Type: model.EventPageview, TS: ts, Page: []byte(page)}
}

// loadProfile reads user's profile through the public API.
func loadProfile(t *testing.T, s *State, user string) *model.Profile {
	t.Helper()
	v, ok, err := s.AppendProfile(nil, []byte(user))
	if err != nil || !ok {
		t.Fatalf("profile of %s: ok %v, %v", user, ok, err)
	}
	var p model.Profile
	if err := p.Decode(v); err != nil {
		t.Fatal(err)
	}
	return &p
}

// TestStateProfiles: events build profiles in the same batch, the counts
// roll with a controlled clock, survive a reopen, and concurrent batches
// for one user lose nothing.
func TestStateProfiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	o := StateOptions{NoSync: true, Now: func() time.Time { return now }, ProfileRetention: 30 * 24 * time.Hour}
	s := openState(t, dir, o)
	ts := now.Unix()
	evs := []StateEvent{
		pageview("v1", "/pricing", ts-3600),
		pageview("v1", "/pricing", ts-60),
		pageview("v2", "/contact", ts-60),
		{User: []byte("v1"), Item: []byte("i1"), Type: model.EventCart, TS: ts - 30, Category: []byte("tools")},
	}
	if err := s.AppendEvents(evs); err != nil {
		t.Fatal(err)
	}
	p := loadProfile(t, s, "v1")
	if got := p.Count(model.DimPage, "/pricing", 24*3600, ts); got != 2 {
		t.Fatalf("v1 pricing views %d, want 2", got)
	}
	if got := p.Count(model.DimCategory, "tools", 3600, ts); got != 1 || p.Last[model.EventCart] != ts-30 {
		t.Fatalf("v1 tools events %d, last cart %d", got, p.Last[model.EventCart])
	}
	if err := s.UpdateProfile([]byte("v1"), func(p *model.Profile) error {
		p.SetAttr([]byte("industry"), model.AttrString, []byte("logistics"), 0)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateProfile([]byte("v1"), func(*model.Profile) error { return errors.New("no") }); err == nil {
		t.Fatal("a failed update was not reported")
	}

	// Login merges the visitor's behaviour into the user.
	if err := s.MergeProfile([]byte("v2"), []byte("u9")); err != nil {
		t.Fatal(err)
	}
	if got := loadProfile(t, s, "u9").Count(model.DimPage, "/contact", 365*24*3600, now.Unix()); got != 1 {
		t.Fatalf("merged contact views %d, want 1", got)
	}
	// A second login from the same visitor counts nothing twice, and a
	// third takes only what the visitor did in between.
	if err := s.MergeProfile([]byte("v2"), []byte("u9")); err != nil {
		t.Fatal(err)
	}
	if got := loadProfile(t, s, "u9").Count(model.DimPage, "/contact", 365*24*3600, now.Unix()); got != 1 {
		t.Fatalf("after a second merge: %d contact views, want 1", got)
	}
	now = now.Add(3 * time.Hour)
	later := now.Unix()
	if err := s.AppendEvents([]StateEvent{pageview("v2", "/contact", later), pageview("v2", "/pricing", later)}); err != nil {
		t.Fatal(err)
	}
	if err := s.MergeProfile([]byte("v2"), []byte("u9")); err != nil {
		t.Fatal(err)
	}
	if p := loadProfile(t, s, "u9"); p.Count(model.DimPage, "/contact", 365*24*3600, later) != 2 || p.Count(model.DimPage, "/pricing", 365*24*3600, later) != 1 {
		t.Fatalf("after a third merge: contact %d pricing %d, want 2 and 1",
			p.Count(model.DimPage, "/contact", 365*24*3600, later), p.Count(model.DimPage, "/pricing", 365*24*3600, later))
	}
	// Future events are logged but not counted; a damaged profile starts
	// anew instead of blocking its user's events.
	if err := s.AppendEvents([]StateEvent{pageview("u9", "/future", now.Unix()+86400)}); err != nil {
		t.Fatal(err)
	}
	if got := loadProfile(t, s, "u9").Count(model.DimPage, "/future", 365*24*3600, now.Unix()+2*86400); got != 0 {
		t.Fatalf("a future event was counted: %d", got)
	}
	if err := s.db.Set(profileKey(nil, []byte("broken")), []byte{9, 9, 9}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents([]StateEvent{pageview("broken", "/x", now.Unix())}); err != nil {
		t.Fatalf("events of a user with a damaged profile: %v", err)
	}
	if s.CorruptProfiles() != 1 || loadProfile(t, s, "broken").Count(model.DimPage, "/x", 3600, now.Unix()) != 1 {
		t.Fatalf("damaged profile: %d corrupt, not restarted", s.CorruptProfiles())
	}

	// Concurrent batches for the same user.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := s.AppendEvents([]StateEvent{pageview("v1", fmt.Sprintf("/doc/%d", g), ts-int64(i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	closeState(t, s)

	// A restart keeps everything; 40 days later the counts are gone but
	// the attributes stay.
	s = openState(t, dir, o)
	defer closeState(t, s)
	p = loadProfile(t, s, "v1")
	if got := p.Count(model.DimPage, "/doc/*", 24*3600, ts); got != 200 {
		t.Fatalf("after concurrent batches and a restart: %d doc views, want 200", got)
	}
	if a := p.Attr("industry"); a == nil || string(a.Str) != "logistics" {
		t.Fatalf("attribute lost: %+v", p.Attrs)
	}
	now = now.Add(40 * 24 * time.Hour)
	if err := s.AppendEvents([]StateEvent{pageview("v1", "/", now.Unix())}); err != nil {
		t.Fatal(err)
	}
	p = loadProfile(t, s, "v1")
	if got := p.Count(model.DimPage, "/pricing", 365*24*3600, now.Unix()); got != 0 {
		t.Fatalf("pricing views past the retention: %d", got)
	}
	if got := p.Count(model.DimType, "pageview", 3600, now.Unix()); got != 1 || p.Attr("industry") == nil {
		t.Fatalf("after retention: %d pageviews, attrs %+v", got, p.Attrs)
	}

	var users []string
	if err := s.ScanProfiles(nil, func(user, _ []byte) error { users = append(users, string(user)); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(users) != "[broken u9 v1 v2]" {
		t.Fatalf("scan: %v", users)
	}
	users = users[:0]
	if err := s.ScanProfiles([]byte("u9"), func(user, _ []byte) error { users = append(users, string(user)); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(users) != "[v1 v2]" {
		t.Fatalf("scan after u9: %v", users)
	}
}
