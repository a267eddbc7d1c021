package server

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/edgerec/edgerec/engine"
)

// What the dashboard's templates render: the engine's values as they are
// (the figures of the results JSON), with the links, colours and chart
// geometry the page adds. Numbers are formatted in the templates
// (dashFuncs), so each figure is formatted one way wherever it shows.

type dashPage struct {
	Status      int
	Snapshot    uint64
	Now         string
	Err         string
	Experiments []*dashExp
	Placements  []dashPlacement
	Segments    dashSegments
}

// dashVariantInfo is a variant as the config describes it.
type dashVariantInfo struct {
	ID    string
	Lines []string // its payload, or what a placement's variant sets
}

type dashExp struct {
	R          *engine.ExperimentResult
	Kind       string // "landing page" or "placement"
	Where      string // the page's or placement's name
	Anchor     string
	Placement  bool
	PhaseStart string
	Phases     []dashLink
	Goals      []dashLink
	Variants   []dashVariant
	Chart      ivChart
	Rules      []dashRule
	RuleChart  ivChart
	Shares     shareChart
	Notes      []dashNote
	HasValue   bool   // a variant's conversions carry a value
	Err        string // what was wrong with the selected phase or goal
}

type dashLink struct {
	Label, Href string
	Current     bool
}

type dashVariant struct {
	*engine.VariantResult
	Color string
	Share float64 // of the configured weights
	Lines []string
}

type dashRule struct {
	*engine.RuleResult
	If    string
	Color string
}

type dashNote struct{ Who, Note string }

type dashPlacement struct {
	Name, Strategy string
	Stats          engine.PlacementStats
	// Experiment, Anchor, Phase and Variants are those of the
	// placement's experiment, when it has variants: its current phase.
	Experiment, Anchor string
	Phase              uint64
	Variants           []dashPlacementVariant
}

// dashPlacementVariant is a placement variant's row: the results for
// the click goal (with the impressions, clicks and CTR of its events)
// and for the purchase goal.
type dashPlacementVariant struct {
	Color             string
	Clicks, Purchases engine.VariantResult
}

type dashSegments struct {
	Sizes engine.SegmentSizes
	At    string
	Err   string
}

// palette colours variants in config order (Tableau 10, colour-blind
// friendly enough for up to 10 arms).
var palette = [...]string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

func variantColor(i int) string { return palette[i%len(palette)] }

// newDashExp lays out one experiment's results.
func newDashExp(r *engine.ExperimentResult, kind, where, primary string, infos []dashVariantInfo, rules []*engine.PageRule) *dashExp {
	x := &dashExp{R: r, Kind: kind, Where: where, Anchor: "exp-" + r.Experiment, Placement: kind == "placement"}
	link := func(phase uint64, goal string) string {
		return "/dashboard?exp=" + url.QueryEscape(r.Experiment) + "&phase=" + strconv.FormatUint(phase, 10) +
			"&goal=" + url.QueryEscape(goal) + "#" + x.Anchor
	}
	for _, ph := range r.Phases {
		if ph.N == r.Phase {
			x.PhaseStart = fmtTime(ph.Start)
		}
		label := strconv.FormatUint(ph.N, 10)
		if ph.N == r.CurrentPhase {
			label += " (current)"
		}
		x.Phases = append(x.Phases, dashLink{Label: label + " · from " + fmtTime(ph.Start), Href: link(ph.N, r.Goal), Current: ph.N == r.Phase})
	}
	for _, g := range r.Goals {
		label := g
		if g == primary {
			label += " (primary)"
		}
		x.Goals = append(x.Goals, dashLink{Label: label, Href: link(r.Phase, g), Current: g == r.Goal})
	}
	total := 0.0
	for _, v := range r.Variants {
		total += v.Weight
	}
	var rows []ivInput
	for i := range r.Variants {
		v := &r.Variants[i]
		dv := dashVariant{VariantResult: v, Color: variantColor(i)}
		if total > 0 {
			dv.Share = v.Weight / total
		}
		for _, in := range infos {
			if in.ID == v.Variant {
				dv.Lines = in.Lines
			}
		}
		x.Variants = append(x.Variants, dv)
		x.HasValue = x.HasValue || v.Revenue != 0
		for _, n := range v.Notes {
			x.Notes = append(x.Notes, dashNote{v.Variant, n})
		}
		if !v.Control {
			rows = append(rows, ivInput{v.Variant, dv.Color, &v.Comparison})
		}
	}
	x.Chart = newIVChart("Lift over the control", rows)
	var ruleRows []ivInput
	for i := range r.Rules {
		rr := &r.Rules[i]
		dr := dashRule{RuleResult: rr, Color: variantColor(len(r.Variants) + i)}
		for j, v := range r.Variants {
			if v.Variant == rr.Variant {
				dr.Color = variantColor(j) // the colour of the variant it shows
			}
		}
		for _, pr := range rules {
			if pr.ID == rr.Rule {
				dr.If = pr.If
			}
		}
		x.Rules = append(x.Rules, dr)
		for _, n := range rr.Notes {
			x.Notes = append(x.Notes, dashNote{"rule " + rr.Rule, n})
		}
		ruleRows = append(ruleRows, ivInput{"rule " + rr.Rule, dr.Color, &rr.Comparison})
	}
	x.RuleChart = newIVChart("Lift of each rule over its holdback", ruleRows)
	x.Shares = newShareChart(r)
	return x
}

// ivInput is one row of an interval chart: an arm against its control.
type ivInput struct {
	name, color string
	c           *engine.Comparison
}

// ivChart draws each arm's lift over its control as a horizontal bar
// chart on one shared axis: the always-valid interval as a wide, light,
// dashed band, the fixed-horizon interval as a narrow solid bar inside
// it, the estimate as a dark tick, and 0 (no effect) as a dark line. Its
// bars are SVG in a 1000-unit wide box stretched to the page's width;
// its labels are HTML, so text keeps its size on a phone.
type ivChart struct {
	Caption string
	Ticks   []ivTick
	Rows    []ivRow
	Bars    bool // a row has an interval or an estimate: draw the axis
}

type ivTick struct {
	X     float64 // 0-1000
	Pos   float64 // 0-100, percent of the width
	Label string
	Zero  bool
}

type ivRow struct {
	Name, Color       string
	HasAV, HasFH      bool
	AVX, AVW          float64
	FHX, FHW          float64
	HasPt             bool
	PtX               float64
	ClipLow, ClipHigh bool
	Text, Empty       string
}

// The lift axis spans at most -100% (the arm never converts) to +200%;
// intervals beyond are cut at the edge.
const ivMin, ivMax = -1.0, 2.0

func newIVChart(caption string, in []ivInput) ivChart {
	ch := ivChart{Caption: caption}
	if len(in) == 0 {
		return ch
	}
	lo, hi := 0.0, 0.0
	for _, r := range in {
		for _, p := range []*float64{r.c.Lift, r.c.LiftLow, r.c.LiftHigh, r.c.SeqLow, r.c.SeqHigh} {
			if p != nil {
				lo, hi = min(lo, *p), max(hi, *p)
			}
		}
	}
	lo, hi = max(lo, ivMin), min(hi, ivMax)
	if hi-lo < 0.02 {
		lo, hi = min(lo, -0.01), max(hi, 0.01)
	}
	step := niceStep((hi - lo) / 5)
	lo, hi = math.Floor(lo/step+1e-9)*step, math.Ceil(hi/step-1e-9)*step
	x := func(v float64) float64 { return (min(max(v, lo), hi) - lo) / (hi - lo) * 1000 }
	for v := lo; v <= hi+step/2; v += step {
		v := math.Round(v/step) * step
		t := ivTick{X: x(v), Label: tickLabel(v, step), Zero: math.Abs(v) < step/2}
		t.Pos = t.X / 10
		ch.Ticks = append(ch.Ticks, t)
	}
	for _, r := range in {
		row := ivRow{Name: r.name, Color: r.color}
		c := r.c
		if c.SeqLow != nil && c.SeqHigh != nil {
			row.HasAV, row.AVX, row.AVW = true, x(*c.SeqLow), x(*c.SeqHigh)-x(*c.SeqLow)
			row.ClipLow, row.ClipHigh = *c.SeqLow < lo, *c.SeqHigh > hi
		}
		if c.LiftLow != nil && c.LiftHigh != nil {
			row.HasFH, row.FHX, row.FHW = true, x(*c.LiftLow), x(*c.LiftHigh)-x(*c.LiftLow)
			row.ClipLow = row.ClipLow || *c.LiftLow < lo
			row.ClipHigh = row.ClipHigh || *c.LiftHigh > hi
		}
		if c.Lift != nil {
			row.HasPt, row.PtX = true, x(*c.Lift)
		}
		if row.HasAV || row.HasFH || row.HasPt {
			row.Text = "lift " + fmtLift(c.Lift) + " · fixed-horizon " + fmtCI(c.LiftLow, c.LiftHigh) + " · always-valid " + fmtCI(c.SeqLow, c.SeqHigh)
			if row.ClipLow || row.ClipHigh {
				row.Text += " (cut at the chart's edge)"
			}
		} else {
			row.Empty = "no interval yet (see the notes below)"
		}
		ch.Bars = ch.Bars || row.Text != ""
		ch.Rows = append(ch.Rows, row)
	}
	return ch
}

// niceStep rounds a raw tick step up to 1, 2, 2.5 or 5 times a power of 10.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 0.01
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v, step float64) string {
	if math.Abs(v) < step/2 {
		return "0"
	}
	prec := 0
	if step < 0.01 {
		prec = 1
	}
	return signed(strconv.FormatFloat(math.Abs(v)*100, 'f', prec, 64)+"%", v)
}

// shareChart draws the traffic share per hour as stacked columns, one
// per hour (hours without exposures are gaps), the newest 7 days, at
// least a day.
type shareChart struct {
	N      int // hours spanned: the SVG's width
	Rects  []shareRect
	First  string
	Last   string
	Hidden int // earlier hours with exposures not drawn
	Legend []shareKey
}

type shareRect struct {
	X, Y, W, H float64
	Color      string
	Title      string
}

type shareKey struct{ Name, Color string }

const shareHours = 7 * 24

func newShareChart(r *engine.ExperimentResult) shareChart {
	var ch shareChart
	for i, v := range r.Variants {
		ch.Legend = append(ch.Legend, shareKey{v.Variant, variantColor(i)})
	}
	if len(r.Shares) == 0 {
		return ch
	}
	last := r.Shares[len(r.Shares)-1].Hour
	first := r.Shares[0].Hour
	if last-first >= shareHours*3600 {
		first = last - (shareHours-1)*3600
	}
	// At least a day wide, so that an hour's column stays a column.
	ch.N = max(int((last-first)/3600)+1, 24)
	w := 1.0
	if ch.N <= 72 {
		w = 0.85
	}
	for _, h := range r.Shares {
		if h.Hour < first {
			ch.Hidden++
			continue
		}
		x := float64(h.Hour-first) / 3600
		cum := 0.0
		var title strings.Builder
		title.WriteString(fmtTime(h.Hour))
		for i, v := range r.Variants {
			sh := h.Shares[v.Variant]
			if !(sh > 0) {
				continue
			}
			title.WriteString(" · " + v.Variant + " " + strconv.FormatFloat(sh*100, 'f', 1, 64) + "%")
			ch.Rects = append(ch.Rects, shareRect{X: x, Y: 100 * (1 - cum - sh), W: w, H: 100 * sh, Color: variantColor(i)})
			cum += sh
		}
		for i := range ch.Rects {
			if ch.Rects[i].X == x {
				ch.Rects[i].Title = title.String()
			}
		}
	}
	ch.First, ch.Last = fmtTime(first), fmtTime(first+int64(ch.N-1)*3600)
	return ch
}

// jsonText is a payload value as text: a string as it is, anything else
// as JSON.
func jsonText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

// dashFuncs format the figures. A nil statistic (not computed: the notes
// say why) shows as a dash.
var dashFuncs = template.FuncMap{
	"count": fmtCount,
	"money": fmtMoney,
	"pct":   fmtPct,
	"pctv":  func(x float64) string { return fmtPct(&x) },
	"lift":  fmtLift,
	"ci":    fmtCI,
	"prob":  fmtProb,
	"pp": func(p *float64) string {
		if p == nil {
			return "—"
		}
		return strconv.FormatFloat(*p*100, 'f', 3, 64) + " pp"
	},
	"share": func(x float64) string { return strconv.FormatFloat(x*100, 'f', 0, 64) + "%" },
	"ctr": func(s engine.PlacementStats) string {
		if s.Impressions == 0 {
			return "—"
		}
		x := s.CTR()
		return fmtPct(&x)
	},
	"pval": func(p *float64) string {
		switch {
		case p == nil:
			return "—"
		case *p < 0.0001:
			return "< 0.0001"
		}
		return strconv.FormatFloat(*p, 'f', 4, 64)
	},
	// f is a chart coordinate, or χ².
	"f": func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) },
	// num and nump are the exact values, for data- attributes.
	"num": func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) },
	"nump": func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'g', -1, 64)
	},
	"width": func(part, whole int) string {
		if whole <= 0 {
			return "0"
		}
		return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 1, 64)
	},
	"decisionClass": func(d string) string {
		switch d {
		case "better", "worse", "control":
			return d
		}
		return "inconclusive"
	},
}

// fmtCount formats a count (a float64, int or uint64) with thousands
// separators, 2 decimals if it is not whole.
func fmtCount(v any) string {
	var x float64
	switch n := v.(type) {
	case float64:
		x = n
	case int:
		x = float64(n)
	case uint64:
		x = float64(n)
	default:
		panic(fmt.Sprintf("BUG: count of a %T", v))
	}
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return group(strconv.FormatFloat(math.Abs(x), 'f', 0, 64), x < 0)
	}
	return fmtMoney(x)
}

// fmtMoney formats a value with thousands separators and 2 decimals,
// none when it is whole.
func fmtMoney(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return group(strconv.FormatFloat(math.Abs(x), 'f', 0, 64), x < 0)
	}
	s := strconv.FormatFloat(math.Abs(x), 'f', 2, 64)
	i := strings.IndexByte(s, '.')
	return group(s[:i], x < 0) + s[i:]
}

func group(digits string, neg bool) string {
	var b strings.Builder
	if neg {
		b.WriteString("−")
	}
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtPct formats a rate as a percentage with 2 decimals.
func fmtPct(p *float64) string {
	if p == nil {
		return "—"
	}
	return strconv.FormatFloat(*p*100, 'f', 2, 64) + "%"
}

// fmtLift formats a relative lift as a signed percentage, 1 decimal.
func fmtLift(p *float64) string {
	if p == nil {
		return "—"
	}
	return signed(strconv.FormatFloat(math.Abs(*p)*100, 'f', 1, 64)+"%", *p)
}

// fmtCI formats an interval of lifts.
func fmtCI(lo, hi *float64) string {
	if lo == nil || hi == nil {
		return "—"
	}
	return "[" + fmtLift(lo) + ", " + fmtLift(hi) + "]"
}

// fmtProb formats a probability as a percentage, 1 decimal.
func fmtProb(p *float64) string {
	if p == nil {
		return "—"
	}
	return strconv.FormatFloat(*p*100, 'f', 1, 64) + "%"
}

// signed puts + or a minus sign (U+2212) before a magnitude; none for 0.
func signed(mag string, v float64) string {
	switch {
	case v > 0 && strings.Trim(mag, "0.%") != "":
		return "+" + mag
	case v < 0 && strings.Trim(mag, "0.%") != "":
		return "−" + mag
	}
	return mag
}
