package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// plot.go draws latency.svg by hand: one panel per offered rate with the
// latency percentiles of every scenario (log scale, shared by all panels so
// they compare at a glance), and a last panel with commit-to-refused and its
// targets. No plotting library: a few dozen SVG elements.

type series struct {
	name  string
	color string
	dash  bool
	vals  []float64 // milliseconds, one per x label; 0: none
	// lo and hi, when set, are the range over the rounds, drawn as a band.
	lo, hi []float64
}

// style gives each scenario the same colour in every panel: the baselines
// dashed and grey-green, the validator's scenarios solid.
var style = map[string]struct {
	color string
	dash  bool
}{
	"db":      {"#d62728", false},
	"cold":    {"#ff7f0e", false},
	"warm":    {"#1f77b4", false},
	"near":    {"#9467bd", false},
	"minimal": {"#2ca02c", true},
	"select":  {"#7f7f7f", true},
}

var plotQuantiles = []struct {
	label string
	q     float64
}{{"p50", .5}, {"p95", .95}, {"p99", .99}, {"p99.9", .999}}

const (
	panelW, panelH   = 330, 300
	marginL, marginT = 84, 90
	gapX             = 64
	plotBottom       = 60
)

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// panel is one chart: x labels, a line per series, target lines.
type panel struct {
	title   string
	xlabels []string
	series  []series
	targets []float64 // milliseconds
}

// legend is every series once, in order of appearance.
func legend(panels []panel) []series {
	seen := map[string]bool{}
	var out []series
	for _, p := range panels {
		for _, s := range p.series {
			if !seen[s.name] {
				seen[s.name] = true
				out = append(out, s)
			}
		}
	}
	return out
}

func (r *report) plot() string {
	var panels []panel
	for _, rate := range r.cfg.rates {
		p := panel{title: fmt.Sprintf("%d validations/s offered", rate)}
		for _, q := range plotQuantiles {
			p.xlabels = append(p.xlabels, q.label)
		}
		for i := range scenarios {
			sc := &scenarios[i]
			cs := r.cellsOf(sc.key, rate)
			if len(cs) == 0 {
				continue
			}
			s := series{name: sc.name, color: style[sc.key].color, dash: style[sc.key].dash}
			for _, q := range plotQuantiles {
				l := latency(cs, q.q)
				s.vals = append(s.vals, l.med)
				if l.n > 1 {
					s.lo, s.hi = append(s.lo, l.lo), append(s.hi, l.hi)
				}
			}
			p.series = append(p.series, s)
		}
		panels = append(panels, p)
	}
	if len(r.revs) > 0 {
		p := panel{title: "commit to refused", xlabels: []string{"p50", "p99", "max"}, targets: []float64{10, 50}}
		colors := []string{"#17becf", "#8c564b"}
		for i, rv := range r.revs {
			name := "idle"
			if rv.load > 0 {
				name = fmt.Sprintf("under %d/s", rv.load)
			}
			p.series = append(p.series, series{name: "revocation, " + name, color: colors[i%2],
				vals: []float64{ms(rv.quantile(.5)), ms(rv.quantile(.99)), ms(rv.quantile(1))}})
		}
		panels = append(panels, p)
	}

	// One log scale for all panels: whole decades around every value.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range panels {
		for _, s := range p.series {
			for _, vs := range [][]float64{s.vals, s.lo, s.hi} {
				for _, v := range vs {
					if v > 0 {
						lo, hi = math.Min(lo, v), math.Max(hi, v)
					}
				}
			}
		}
		for _, t := range p.targets {
			hi = math.Max(hi, t)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0.1, 10
	}
	dLo, dHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dHi <= dLo {
		dHi = dLo + 1
	}
	y := func(v float64) float64 {
		v = math.Max(v, math.Pow(10, dLo))
		return marginT + panelH*(1-(math.Log10(v)-dLo)/(dHi-dLo))
	}

	width := marginL + len(panels)*(panelW+gapX) + 10
	height := marginT + panelH + plotBottom + 20*((len(legend(panels))+2)/3)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="13">`+"\n", width, height, width, height)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w(`<text x="%d" y="26" font-size="17" font-weight="bold">sessionguard: validation latency, GET /v1/auth, open loop (from scheduled send time)</text>`+"\n", marginL)
	w(`<text x="%d" y="46" fill="#555">%d cores, load %s. Lines: median over %d round(s); shaded: their range. Lower is better; dashed: the baselines.</text>`+"\n",
		marginL, r.machine.cores, html.EscapeString(r.machine.loadStart), r.cfg.rounds)

	for pi, p := range panels {
		x0 := float64(marginL + pi*(panelW+gapX))
		w(`<text x="%.0f" y="%d" font-weight="bold" text-anchor="middle">%s</text>`+"\n", x0+panelW/2, marginT-12, html.EscapeString(p.title))
		// Decade grid lines and labels (the labels on every panel).
		for d := dLo; d <= dHi; d++ {
			v := math.Pow(10, d)
			yy := y(v)
			w(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ccc"/>`+"\n", x0, x0+panelW, yy, yy)
			w(`<text x="%.0f" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n", x0-6, yy+4, msLabel(v))
			for k := 2; k < 10 && d < dHi; k++ {
				yy := y(v * float64(k))
				w(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x0, x0+panelW, yy, yy)
			}
		}
		w(`<rect x="%.0f" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", x0, marginT, panelW, panelH)
		xs := func(i int) float64 { return x0 + panelW*(float64(i)+0.5)/float64(len(p.xlabels)) }
		for i, l := range p.xlabels {
			w(`<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n", xs(i), marginT+panelH+18, l)
		}
		for _, t := range p.targets {
			yy := y(t)
			w(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="2,3"/>`+"\n", x0, x0+panelW, yy, yy)
			w(`<text x="%.0f" y="%.1f" text-anchor="end" fill="#d62728" font-size="11">target %s</text>`+"\n", x0+panelW-4, yy-4, msLabel(t))
		}
		for _, s := range p.series {
			if len(s.lo) == len(s.vals) && len(s.hi) == len(s.vals) {
				var band []string
				for i, v := range s.hi {
					band = append(band, fmt.Sprintf("%.1f,%.1f", xs(i), y(v)))
				}
				for i := len(s.lo) - 1; i >= 0; i-- {
					band = append(band, fmt.Sprintf("%.1f,%.1f", xs(i), y(s.lo[i])))
				}
				w(`<polygon points="%s" fill="%s" fill-opacity="0.12" stroke="none"/>`+"\n", strings.Join(band, " "), s.color)
			}
		}
		for _, s := range p.series {
			var pts []string
			for i, v := range s.vals {
				if v > 0 {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", xs(i), y(v)))
				}
			}
			dash := ""
			if s.dash {
				dash = ` stroke-dasharray="6,4"`
			}
			w(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2.2"%s/>`+"\n", strings.Join(pts, " "), s.color, dash)
			for _, pt := range pts {
				xy := strings.Split(pt, ",")
				w(`<circle cx="%s" cy="%s" r="3.2" fill="%s"/>`+"\n", xy[0], xy[1], s.color)
			}
		}
	}
	w(`<text x="18" y="%.0f" transform="rotate(-90 18 %.0f)" text-anchor="middle" fill="#333">latency (ms, log scale)</text>`+"\n",
		float64(marginT+panelH/2), float64(marginT+panelH/2))

	// Legend: every series name once, three to a row.
	for n, s := range legend(panels) {
		lx := float64(marginL + (n%3)*300)
		ly := float64(marginT + panelH + plotBottom - 14 + 20*(n/3))
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="6,4"`
		}
		w(`<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="3"%s/>`+"\n", lx, lx+28, ly-4, ly-4, s.color, dash)
		w(`<text x="%.0f" y="%.0f">%s</text>`+"\n", lx+36, ly, html.EscapeString(s.name))
	}
	w("</svg>\n")
	return b.String()
}

// msLabel is a decade's label: 0.1 ms, 1 ms, 10 ms, 1 s.
func msLabel(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%g s", v/1000)
	}
	return fmt.Sprintf("%g ms", v)
}
