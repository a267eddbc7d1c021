package engine

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgerec/edgerec/index"
)

// errLine is what every config error starts with: the file, the line,
// and for YAML syntax the column ("fuzz.yaml:3: …", "fuzz.yaml:3:5: …").
var errLine = regexp.MustCompile(`^fuzz\.yaml:[1-9][0-9]*(:[1-9][0-9]*)?: \S`)

// FuzzParseConfig: any bytes given as edgerec.yaml are refused with an
// error that names the file and a line, or make a config that an engine
// swaps in (as a reload does) and serves without panic or internal
// error: one decision per landing page, one answer per placement, and a
// whole page of them. Seed corpus: testdata/fuzz/FuzzParseConfig (the
// bundled edgerec.yaml among them).
func FuzzParseConfig(f *testing.F) {
	now := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st := openState(f, f.TempDir(), index.StateOptions{Now: clock})
	e := newEngine(f, Options{Now: clock, SignKey: []byte("fuzz"), Logger: discard}, st, shopRoot(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, "fuzz.yaml")
		if err != nil {
			if !errLine.MatchString(err.Error()) {
				t.Fatalf("error does not name a line: %q", err)
			}
			return
		}
		e.SetConfig(cfg)
		v := e.Acquire()
		defer v.Release()
		served := func(what string, err error) {
			t.Helper()
			if err != nil && KindOf(err) == 0 {
				t.Fatalf("%s: internal error %v", what, err)
			}
		}
		for _, name := range cfg.PageNames() {
			p := cfg.Pages[name]
			for _, ua := range []string{"Mozilla/5.0 (iPhone) Mobile", "Googlebot/2.1"} {
				var d Decision
				err := v.Decide(&DecideRequest{Page: []byte(name), Visitor: []byte("v1"), UserAgent: []byte(ua),
					Q: []byte("営業　成約率改善"), Ref: []byte("https://www.google.com/search?q=seo"),
					UTMSource: []byte("ads"), UTMCampaign: []byte("sales-enablement")}, &d)
				served("decide "+name, err)
				if err != nil {
					continue
				}
				if d.Page != name || d.Experiment != p.Experiment || p.variant([]byte(d.Variant)) < 0 || !json.Valid(d.Payload) {
					t.Fatalf("page %q decided %+v", name, d)
				}
				if !strings.HasPrefix(string(d.DecisionID), d.Experiment+"."+d.Variant+".") {
					t.Fatalf("page %q: decision id %q", name, d.DecisionID)
				}
			}
		}
		names := cfg.Names()
		for _, name := range names {
			var out Recs
			err := v.Recommend(&RecRequest{Placement: []byte(name), Item: []byte(v.ItemID(0)), User: []byte("v1"),
				Cart: [][]byte{[]byte(v.ItemID(1))}}, &out)
			served("placement "+name, err)
			if err == nil {
				checkPicks(t, v, name, &out)
			}
		}
		if len(names) > MaxPagePlacements {
			names = names[:MaxPagePlacements]
		}
		req := PageRequest{Decide: DecideRequest{Visitor: []byte("v2")}, Rec: RecRequest{Item: []byte(v.ItemID(2))}}
		for _, n := range names {
			req.Placements = append(req.Placements, []byte(n))
		}
		if pages := cfg.PageNames(); len(pages) > 0 {
			req.Page = []byte(pages[0])
		}
		var res PageResult
		err = v.Page(&req, &res)
		served("page", err)
		if err == nil {
			if len(res.Recs) != len(names) {
				t.Fatalf("a page of %d placements answered %d", len(names), len(res.Recs))
			}
			for i := range res.Recs {
				checkPicks(t, v, names[i], &res.Recs[i])
			}
		}
	})
}

// checkPicks checks an answer: items of the snapshot, each once, at most
// the engine's largest k.
func checkPicks(t *testing.T, v *View, name string, r *Recs) {
	t.Helper()
	if len(r.Picks) > v.e.MaxK() {
		t.Fatalf("placement %q: %d picks", name, len(r.Picks))
	}
	seen := map[uint32]bool{}
	for _, p := range r.Picks {
		if int(p.Item) >= v.NumItems() || seen[p.Item] {
			t.Fatalf("placement %q: pick %d twice or out of range in %+v", name, p.Item, r.Picks)
		}
		seen[p.Item] = true
	}
}
