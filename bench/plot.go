package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained page with the report and two SVG
// charts: the latency percentile curve and latency and throughput over
// time.
func (r *Report) WriteHTML(w io.Writer, title string) error {
	var b strings.Builder
	b.WriteString("<!doctype html><meta charset=utf-8><title>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</title><style>body{font:14px system-ui,sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em}svg{display:block;margin:1em 0}</style>\n<h1>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n<pre>")
	var text strings.Builder
	_ = r.WriteText(&text)
	b.WriteString(html.EscapeString(text.String()))
	b.WriteString("</pre>\n<h2>Latency by percentile</h2>\n")
	r.percentileSVG(&b)
	b.WriteString("<h2>Over time</h2>\n")
	r.timeSVG(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

const (
	svgW, svgH = 720, 280
	padL, padB = 70, 40
	padT, padR = 20, 20
)

// percentileSVG plots latency against percentile on the usual
// "nines" axis: x = log10(1/(1-q)), so 90, 99, 99.9 are evenly spaced.
func (r *Report) percentileSVG(b *strings.Builder) {
	type pt struct{ x, y float64 }
	var pts []pt
	maxY := 1.0
	for _, c := range r.Curve {
		q := c.Percentile / 100
		if q >= 0.9999 {
			q = 0.9999
		}
		pts = append(pts, pt{math.Log10(1 / (1 - q)), c.Latency})
		maxY = math.Max(maxY, c.Latency)
	}
	fmt.Fprintf(b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`, svgW, svgH, svgW, svgH)
	axes(b, maxY, "latency")
	const maxX = 4.0
	for i, lbl := range []string{"0%", "90%", "99%", "99.9%", "99.99%"} {
		x := padL + float64(i)/maxX*(svgW-padL-padR)
		fmt.Fprintf(b, `<text x="%.0f" y="%d" font-size="11" text-anchor="middle">%s</text>`, x, svgH-padB+16, lbl)
	}
	b.WriteString(`<polyline fill="none" stroke="#c0392b" stroke-width="2" points="`)
	for _, p := range pts {
		x := padL + p.x/maxX*(svgW-padL-padR)
		y := svgH - padB - p.y/maxY*(svgH-padB-padT)
		fmt.Fprintf(b, "%.1f,%.1f ", x, y)
	}
	b.WriteString(`"/></svg>` + "\n")
}

// timeSVG plots per-second p50 and p99 latency and requests per second.
func (r *Report) timeSVG(b *strings.Builder) {
	maxY, maxN := 1.0, 1.0
	for _, p := range r.Series {
		maxY = math.Max(maxY, p.P99)
		maxN = math.Max(maxN, float64(p.Requests))
	}
	n := math.Max(float64(len(r.Series)-1), 1)
	fmt.Fprintf(b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`, svgW, svgH, svgW, svgH)
	axes(b, maxY, "latency")
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="11" text-anchor="end">%.0f req/s</text>`, svgW-padR, padT-6, maxN)
	line := func(color string, val func(Point) float64, max float64) {
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="`, color)
		for i, p := range r.Series {
			x := padL + float64(i)/n*(svgW-padL-padR)
			y := svgH - padB - val(p)/max*(svgH-padB-padT)
			fmt.Fprintf(b, "%.1f,%.1f ", x, y)
		}
		b.WriteString(`"/>`)
	}
	line("#2980b9", func(p Point) float64 { return p.P50 }, maxY)
	line("#c0392b", func(p Point) float64 { return p.P99 }, maxY)
	line("#27ae60", func(p Point) float64 { return float64(p.Requests) }, maxN)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="11">seconds 0…%d · <tspan fill="#2980b9">p50</tspan> <tspan fill="#c0392b">p99</tspan> <tspan fill="#27ae60">req/s</tspan></text>`,
		padL, svgH-6, len(r.Series)-1)
	b.WriteString("</svg>\n")
}

func axes(b *strings.Builder, maxY float64, label string) {
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, padL, svgH-padB, svgW-padR, svgH-padB)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, padL, padT, padL, svgH-padB)
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		y := float64(svgH-padB) - float64(i)/4*float64(svgH-padB-padT)
		fmt.Fprintf(b, `<text x="%d" y="%.0f" font-size="11" text-anchor="end">%s</text>`, padL-6, y+4, us(v))
		fmt.Fprintf(b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#ddd"/>`, padL, y, svgW-padR, y)
	}
	fmt.Fprintf(b, `<text x="12" y="%d" font-size="11" transform="rotate(-90 12 %d)">%s</text>`, svgH/2, svgH/2, label)
}
