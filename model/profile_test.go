package model

import (
	"bytes"
	"fmt"
	"math"
	"testing"
)

const day = 24 * 3600

func TestProfileWindows(t *testing.T) {
	var p Profile
	now := int64(1_700_000_000)
	now -= now % 3600 // on the hour: window edges are exact
	at := func(ago int64) int64 { return now - ago }
	p.Add(EventPageview, at(10*60), 0, []byte("/pricing"), nil)
	p.Add(EventPageview, at(3*3600), 0, []byte("/pricing"), nil)
	p.Add(EventPageview, at(3*day), 0, []byte("/pricing"), nil)
	p.Add(EventPageview, at(20*day), 0, []byte("/blog/a"), nil)
	p.Add(EventPageview, at(40*day), 0, []byte("/blog/b"), nil)
	p.Add(EventView, at(2*3600), 0, nil, []byte("shoes"))
	p.Add(EventPurchase, at(5*day), 30, nil, []byte("shoes"))
	p.Compact(now, 90*day)
	for _, c := range []struct {
		kind   byte
		name   string
		window int64
		want   int64
	}{
		{DimPage, "/pricing", 3600, 1},
		{DimPage, "/pricing", day, 2},
		{DimPage, "/pricing", 7 * day, 3},
		{DimPage, "/blog/*", 30 * day, 1},
		{DimPage, "/blog/*", 60 * day, 2},
		{DimPage, "/contact", 30 * day, 0},
		{DimType, "pageview", 30 * day, 4},
		{DimCategory, "shoes", day, 1},
		{DimCategory, "shoes", 7 * day, 2},
		{DimType, "purchase", 7 * day, 1},
	} {
		if got := p.Count(c.kind, c.name, c.window, now); got != c.want {
			t.Errorf("Count(%c, %s, %ds) = %d, want %d", c.kind, c.name, c.window, got, c.want)
		}
	}
	if p.Purchases != 1 || p.PurchaseValue != 30 || p.Last[EventPurchase] != at(5*day) || p.FirstSeen != at(40*day) || p.LastSeen != at(10*60) {
		t.Errorf("summary: %+v", p)
	}
	// Old hours fold into days: the 3-day-old view keeps its count.
	for _, d := range p.Dims {
		for _, b := range d.Buckets {
			if b.Span == 1 && int64(b.Start/24*24+24+HotHours) <= now/3600 {
				t.Errorf("%s: hour bucket %d of a day older than %d hours", d.Name, b.Start, HotHours)
			}
		}
	}
	if got := p.Count(DimPage, "/pricing", day, now+day+3600); got != 0 {
		t.Errorf("a day later: %d pricing views in 1d, want 0", got)
	}
	// Time passes: the 40-day-old page leaves a 90-day retention at day 51.
	p.Compact(now+51*day, 90*day)
	if got := p.Count(DimPage, "/blog/*", 365*day, now+51*day); got != 1 {
		t.Errorf("after retention: %d blog views, want 1", got)
	}
}

func TestProfileRoundTrip(t *testing.T) {
	var p Profile
	p.SetAttr([]byte("industry"), AttrString, []byte("manufacturing"), 0)
	p.SetAttr([]byte("employees"), AttrNumber, nil, 250)
	p.SetAttr([]byte("consent_email"), AttrBool, nil, 1)
	p.SetAttr([]byte("role"), AttrString, []byte("cto"), 0)
	p.SetAttr([]byte("role"), 0, nil, 0)
	for i := int64(0); i < 50; i++ {
		p.Add(EventPageview, 1_700_000_000+i*7000, 0, []byte("/p"), nil)
	}
	p.Add(EventPurchase, 1_700_000_000, 12.5, nil, []byte("c"))
	p.Compact(1_700_400_000, 90*day)
	enc := p.Append(nil)
	var q Profile
	if err := q.Decode(enc); err != nil {
		t.Fatal(err)
	}
	if again := q.Append(nil); !bytes.Equal(enc, again) {
		t.Fatal("decode then encode differs")
	}
	if len(q.Attrs) != 3 || string(q.Attrs[0].Key) != "consent_email" || q.Attr("industry") == nil || q.Attr("role") != nil {
		t.Fatalf("attrs: %+v", q.Attrs)
	}
	if got := q.Count(DimPage, "/p", 365*day, 1_700_400_000); got != 50 {
		t.Fatalf("count after round trip %d, want 50", got)
	}
	// Mutating a decoded profile must not write over another dimension.
	q.Add(EventPageview, 1_700_400_000, 0, []byte("/p"), nil)
	q.Add(EventPageview, 1_700_400_000, 0, []byte("/q"), nil)
	if got := q.Count(DimType, "purchase", 365*day, 1_700_400_000); got != 1 {
		t.Fatalf("purchase count %d after adding pageviews", got)
	}
	for _, bad := range [][]byte{{9}, enc[:len(enc)-1], append(bytes.Clone(enc), 0)} {
		if err := q.Decode(bad); err == nil {
			t.Errorf("Decode(% x) accepted", bad)
		}
	}
}

func TestProfileMerge(t *testing.T) {
	var visitor, user Profile
	visitor.Add(EventPageview, 1000*3600, 0, []byte("/pricing"), nil)
	visitor.Add(EventPageview, 1001*3600, 0, []byte("/pricing"), nil)
	visitor.SetAttr([]byte("company"), AttrString, []byte("ACME"), 0)
	user.Add(EventPageview, 1001*3600+5, 0, []byte("/pricing"), nil)
	user.SetAttr([]byte("company"), AttrString, []byte("ACME Corp"), 0)
	user.Merge(&visitor)
	if got := user.Count(DimPage, "/pricing", 10*3600, 1002*3600); got != 3 {
		t.Fatalf("merged count %d, want 3", got)
	}
	if user.FirstSeen != 1000*3600 || string(user.Attr("company").Str) != "ACME Corp" {
		t.Fatalf("merged: first %d company %s", user.FirstSeen, user.Attr("company").Str)
	}
}

func BenchmarkProfileDecodeCount(b *testing.B) {
	var p Profile
	now := int64(1_700_000_000)
	for i := int64(0); i < 200; i++ {
		p.Add(EventPageview, now-i*3*3600, 0, []byte([]string{"/", "/pricing", "/contact", "/blog/x", "/case"}[i%5]), nil)
	}
	p.Compact(now, 90*day)
	enc := p.Append(nil)
	var q Profile
	b.ReportAllocs()
	for b.Loop() {
		if err := q.Decode(enc); err != nil {
			b.Fatal(err)
		}
		_ = q.Count(DimPage, "/pricing", 30*day, now)
	}
}

// A 48-hour window stays exact to the hour after compaction, whatever
// the time of day.
func TestProfileHotWindow(t *testing.T) {
	for _, minute := range []int64{0, 30, 23*60 + 30, 12 * 60} {
		now := int64(1_700_006_400) - 1_700_006_400%day + minute*60 // some UTC day, at minute
		var p Profile
		p.Add(EventPageview, now-60*3600, 0, []byte("/x"), nil)
		p.Add(EventPageview, now-47*3600, 0, []byte("/x"), nil)
		p.Compact(now, 90*day)
		if got := p.Count(DimPage, "/x", 48*3600, now); got != 1 {
			t.Errorf("at minute %d of the day: %d views in 48h, want 1", minute, got)
		}
		if got := p.Count(DimPage, "/x", 7*day, now); got != 2 {
			t.Errorf("at minute %d: %d views in 7d, want 2", minute, got)
		}
	}
}

// Many distinct pages never push out the event-type counts.
func TestProfileDimCap(t *testing.T) {
	now := int64(1_700_000_000)
	var p Profile
	p.Add(EventPurchase, now-10*day, 5, nil, nil)
	for i := range MaxDims + 20 {
		p.Add(EventPageview, now-int64(MaxDims+20-i)*60, 0, []byte(fmt.Sprintf("/doc/%d", i)), nil)
	}
	p.Compact(now, 90*day)
	if len(p.Dims) != MaxDims {
		t.Fatalf("%d dims, want %d", len(p.Dims), MaxDims)
	}
	if got := p.Count(DimType, "purchase", 30*day, now); got != 1 {
		t.Fatalf("purchase count %d after many pages, want 1", got)
	}
	if got := p.Count(DimPage, fmt.Sprintf("/doc/%d", MaxDims+19), 30*day, now); got != 1 {
		t.Fatalf("the newest page was dropped")
	}
}

// TestProfilePurchaseValue: the sum of purchase values stays finite
// whatever the values, through merges and encodings.
func TestProfilePurchaseValue(t *testing.T) {
	f := func(want float64, values ...float64) {
		t.Helper()
		var p Profile
		for i, v := range values {
			p.Add(EventPurchase, 1_700_000_000+int64(i), v, nil, nil)
		}
		var q Profile
		if err := q.Decode(p.Append(nil)); err != nil {
			t.Fatal(err)
		}
		if p.PurchaseValue != want || q.PurchaseValue != want {
			t.Fatalf("values %v: sum %v, decoded %v, want %v", values, p.PurchaseValue, q.PurchaseValue, want)
		}
	}
	f(0)
	f(12.5, 10, 2.5)
	f(math.MaxFloat64, 1e308, 1e308)
	f(-math.MaxFloat64, -1e308, -1e308)
	f(0, math.MaxFloat64, -math.MaxFloat64)
	f(3, 1, math.NaN(), math.Inf(1), 2, math.Inf(-1))
	// Merging two saturated sums.
	var a, b Profile
	a.Add(EventPurchase, 1_700_000_000, 1e308, nil, nil)
	a.Add(EventPurchase, 1_700_000_001, 1e308, nil, nil)
	b.Add(EventPurchase, 1_700_000_000, -1e308, nil, nil)
	b.Add(EventPurchase, 1_700_000_001, -1e308, nil, nil)
	a.MergeSince(&b, MergeMark{})
	if a.PurchaseValue != 0 || a.Purchases != 4 {
		t.Fatalf("merged: %v over %d purchases", a.PurchaseValue, a.Purchases)
	}
	// A stored infinite sum (an older version's) decodes finite.
	enc := a.Append(nil)
	var c Profile
	_ = c.Decode(enc)
	c.PurchaseValue = math.Inf(1)
	if err := a.Decode(c.Append(nil)); err != nil || a.PurchaseValue != math.MaxFloat64 {
		t.Fatalf("stored +Inf: %v, %v", a.PurchaseValue, err)
	}
}

// TestProfileDimCountIn: a stored name ending in '*' counts only itself
// through CountIn, where Count reads the '*' as a prefix.
func TestProfileDimCountIn(t *testing.T) {
	var p Profile
	now := int64(1_700_000_000)
	p.Add(EventPageview, now, 0, []byte("/x*"), nil)
	p.Add(EventPageview, now, 0, []byte("/x2"), nil)
	p.Add(EventPageview, now-40*day, 0, []byte("/x2"), nil)
	if got := p.Count(DimPage, "/x*", 30*day, now); got != 2 {
		t.Fatalf("prefix count %d, want 2", got)
	}
	for _, d := range p.Dims {
		want := map[string]int64{"/x*": 1, "/x2": 1, "pageview": 2}[string(d.Name)]
		if got := d.CountIn(30*day, now); got != want {
			t.Fatalf("%s: %d in 30 days, want %d", d.Name, got, want)
		}
	}
}
