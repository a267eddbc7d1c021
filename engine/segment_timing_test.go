package engine

import (
	"fmt"
	"testing"

	"github.com/edgerec/edgerec/engine/rule"
	"github.com/edgerec/edgerec/model"
)

// BenchmarkSegments evaluates the sample config's five templates over a
// B2B lead's profile (60 pageviews over 30 days on 12 paths, a cart, a
// purchase, attributes): decode the stored profile, then every rule. The
// ns/rule metric is the per-rule cost including the decode.
func BenchmarkSegments(b *testing.B) {
	cfg := sampleConfig(b)
	e := newEngine(b, Options{Config: cfg}, nil, "")
	now := int64(1_750_000_000)
	var p model.Profile
	for i := range 60 {
		p.Add(model.EventPageview, now-int64(i)*12*3600, 0, fmt.Appendf(nil, "/page/%d", i%12), nil)
	}
	p.Add(model.EventPageview, now-3600, 0, []byte("/pricing"), nil)
	p.Add(model.EventPageview, now-7200, 0, []byte("/pricing"), nil)
	p.Add(model.EventCart, now-5*3600, 0, nil, []byte("tools"))
	p.Add(model.EventPurchase, now-40*86400, 120, nil, []byte("tools"))
	p.SetAttr([]byte("company"), model.AttrString, []byte("ACME"), 0)
	p.SetAttr([]byte("employees"), model.AttrNumber, nil, 250)
	p.Compact(now, 90*86400)
	raw := p.Append(nil)
	sc := &rule.Ctx{Now: now}
	rules := len(cfg.segments)
	b.ReportAllocs()
	var set SegSet
	for b.Loop() {
		if err := sc.P.Decode(raw); err != nil {
			b.Fatal(err)
		}
		set = e.evalSegments(sc, cfg.segments)
	}
	if !set.has(cfg.segmentIndex["info_gathering"]) || !set.has(cfg.segmentIndex["cart_abandoner"]) {
		b.Fatalf("segments %v", set)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rules), "ns/rule")
}
