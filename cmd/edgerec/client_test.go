package main

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/edgerec/edgerec/client"
)

// TestClientEndToEnd drives the binary through the Go client (package
// client), the SDK of Go back ends: every method once, over a generated
// shop and the bundled edgerec.yaml, and the typed errors.
func TestClientEndToEnd(t *testing.T) {
	dir := t.TempDir()
	events, items := genSample(t, dir, 20000, 3)
	data := filepath.Join(dir, "data")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots")); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	s := startServer(t, data, freeAddr(t), "--config", "../../edgerec.yaml")
	defer s.stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New("http://"+s.addr, client.Options{APIKey: s.key, HTTP: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	version, err := c.Ready(ctx)
	must("Ready", err)
	sim, err := c.Similar(ctx, "i1", &client.ListOptions{K: 5})
	must("Similar", err)
	if len(sim.Items) != 5 || len(sim.RecID) != 16 || sim.Snapshot != version {
		t.Fatalf("Similar: %+v; want 5 items of snapshot %d", sim, version)
	}
	_, err = c.BoughtTogether(ctx, "i1", &client.ListOptions{K: 5, Cart: []string{"i2", "i3"}})
	must("BoughtTogether", err)
	pop, err := c.Popular(ctx, &client.ListOptions{K: 3, Exclude: []string{sim.Items[0].ID}})
	must("Popular", err)
	if len(pop.Items) != 3 || pop.Items[0].Reason != "popular" {
		t.Fatalf("Popular: %+v", pop)
	}
	rec, err := c.Recommend(ctx, "product_page", "i1", &client.ListOptions{Visitor: "cv1", K: 4})
	must("Recommend", err)
	if rec.Placement != "product_page" || len(rec.Items) != 4 {
		t.Fatalf("Recommend: %+v", rec)
	}

	// Events: a batch with ids, then the same batch again (a retry).
	value := 19.9
	batch := []client.Event{
		{Event: "view", UserID: "cu1", ItemID: "i1", EventID: "ce-1"},
		{Event: "click", UserID: "cu1", ItemID: sim.Items[0].ID, Placement: "product_page", RecID: sim.RecID, EventID: "ce-2"},
		{Event: "purchase", UserID: "cu1", ItemID: sim.Items[0].ID, Value: &value, Basket: "co1", Placement: "product_page", RecID: sim.RecID, EventID: "ce-3"},
		{Event: "pageview", UserID: "cu1", Page: "/pricing"},
	}
	ack, err := c.SendEvents(ctx, batch)
	must("SendEvents", err)
	if ack.Accepted != 4 || ack.Repeats != 0 {
		t.Fatalf("SendEvents: %+v", ack)
	}
	ack, err = c.SendEvents(ctx, batch[:3])
	must("SendEvents again", err)
	if ack.Accepted != 3 || ack.Repeats != 3 {
		t.Fatalf("SendEvents retried: %+v; want 3 accepted, 3 repeats", ack)
	}
	_, err = c.SendEvent(ctx, client.Event{Event: "pageview", UserID: "cu1", Page: "/pricing/"})
	must("SendEvent", err)
	st, err := c.PlacementStats(ctx, "product_page")
	must("PlacementStats", err)
	if st.Clicks != 1 || st.Conversions != 1 || st.Revenue != value {
		t.Fatalf("PlacementStats: %+v; want the click and purchase once", st)
	}
	mine, err := c.UserRecommendations(ctx, "cu1", &client.ListOptions{K: 5})
	must("UserRecommendations", err)
	if len(mine.Items) != 5 {
		t.Fatalf("UserRecommendations: %+v", mine)
	}

	// Profiles, segments, audiences.
	must("SetAttributes", c.SetAttributes(ctx, "cu1", map[string]any{"consent_email": true, "plan": "pro", "seats": 3}))
	p, err := c.Profile(ctx, "cu1")
	must("Profile", err)
	if p.Attributes["plan"] != "pro" || p.Counts["1d"]["pages"]["/pricing"] != 2 || !slices.Contains(p.Segments, "info_gathering") {
		t.Fatalf("Profile: %+v", p)
	}
	segs, err := c.Segments(ctx, "cu1")
	must("Segments", err)
	if !slices.Equal(segs, p.Segments) {
		t.Fatalf("Segments %v, profile's %v", segs, p.Segments)
	}
	rows, next, err := c.Members(ctx, "info_gathering", client.MembersOptions{WithRecs: 2, Limit: 1})
	must("Members", err)
	if len(rows) != 1 || rows[0].UserID != "cu1" || len(rows[0].Recommendations) != 2 || next != "cu1" {
		t.Fatalf("Members: %+v, next %q", rows, next)
	}
	rows, next, err = c.Members(ctx, "info_gathering", client.MembersOptions{After: next, Record: true})
	must("Members after", err)
	if len(rows) != 0 || next != "" {
		t.Fatalf("Members after cu1: %+v, next %q", rows, next)
	}

	// Landing pages.
	d, err := c.Decide(ctx, client.DecideRequest{Page: "lp_consulting", Visitor: "cv2", Q: "営業 成約率改善", UserAgent: desktopUA})
	must("Decide", err)
	if d.Variant != "sales_close_rate" || d.Reason != "rule" || d.DecisionID == "" {
		t.Fatalf("Decide: %+v", d)
	}
	pg, err := c.Page(ctx, client.PageRequest{Decide: client.DecideRequest{Page: "lp_consulting", Visitor: "cu1", UserAgent: desktopUA},
		Placements: []string{"home", "product_page"}, Item: "i1", List: client.ListOptions{K: 3}})
	must("Page", err)
	if pg.Decision == nil || len(pg.Recommendations) != 2 || len(pg.Recommendations["home"].Items) != 3 || pg.Visitor != "cu1" {
		t.Fatalf("Page: %+v", pg)
	}
	r, err := c.Results(ctx, "lp-consulting-cta", 0, "")
	must("Results", err)
	if r.Page != "lp_consulting" || len(r.Variants) == 0 {
		t.Fatalf("Results: %+v", r)
	}

	// Catalog and administration.
	price := 1.5
	n, err := c.UpdateItems(ctx, []client.ItemUpdate{{ItemID: "i1", Price: &price}})
	must("UpdateItems", err)
	if n != 1 {
		t.Fatalf("UpdateItems: %d", n)
	}
	must("ReloadConfig", c.ReloadConfig(ctx))
	loaded, err := c.LoadSnapshot(ctx)
	must("LoadSnapshot", err)
	if loaded.Loaded != version {
		t.Fatalf("LoadSnapshot: %+v; want version %d", loaded, version)
	}
	status, err := c.Status(ctx)
	must("Status", err)
	if status.Events < 5 || len(status.Snapshot) == 0 {
		t.Fatalf("Status: %+v", status)
	}

	// Error answers are *client.Error with the server's status and code.
	var e *client.Error
	if _, err := c.Similar(ctx, "nope", nil); !errors.As(err, &e) || e.Status != 404 || e.Code != "unknown_item" {
		t.Fatalf("Similar of an unknown item: %v", err)
	}
	if _, err := c.Similar(ctx, "i1", &client.ListOptions{K: 1000}); !errors.As(err, &e) || e.Status != 400 || e.Code != "bad_parameter" {
		t.Fatalf("k=1000: %v", err)
	}
	anon, _ := client.New("http://"+s.addr, client.Options{})
	if _, err := anon.SendEvent(ctx, batch[0]); !errors.As(err, &e) || e.Status != 401 || e.Code != "unauthorized" {
		t.Fatalf("events without the key: %v", err)
	}
}
