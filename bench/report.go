package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strings"

	"golang.org/x/term"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// Target is one bar of the issue, judged on this run's figures.
type Target struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Status string `json:"status"` // "met", "missed", "not measured"
}

func findCase(rep *Report, c Case) *caseResult {
	for _, cr := range rep.Cases {
		if cr.Case == c && len(cr.Runs) > 0 {
			return cr
		}
	}
	return nil
}

func status(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func evaluateTargets(rep *Report) []Target {
	var ts []Target
	shm := func(size int, dur, prod, cons string) *caseResult {
		return findCase(rep, Case{Kind: "shm", Size: size, Durability: dur, Producer: prod, Consumer: cons})
	}
	base := func(size int, kind string) *caseResult { return findCase(rep, Case{Kind: kind, Size: size}) }
	none := func(name, want string) { ts = append(ts, Target{Name: name, Want: want, Status: "not measured"}) }

	for _, pc := range [][3]string{{"push", "copy", "1.0"}, {"push", "zerocopy", "1.0"}, {"push256", "events", "1.5"}} {
		name := "64 B none " + pc[0] + "→" + pc[1] + " vs unix socket"
		want := 1.0
		if pc[2] == "1.5" {
			want = 1.5
		}
		c, u := shm(64, "none", pc[0], pc[1]), base(64, "unix")
		if c == nil || u == nil {
			none(name, ">= "+pc[2]+"x")
			continue
		}
		r := c.EventsSec / u.EventsSec
		got := fmt.Sprintf("%.2fx (%.2f M events/s)", r, c.EventsSec/1e6)
		if pc[0] == "push256" {
			got += fmt.Sprintf("; %.2fx Aeron's 35 M/s claim in place", c.EventsSec/35e6)
		}
		ts = append(ts, Target{Name: name, Want: ">= " + pc[2] + "x", Got: got, Status: status(r >= want)})
	}
	for _, pc := range [][2]string{{"push", "zerocopy"}, {"claim", "zerocopy"}} {
		name := "1 MiB none " + pc[0] + "→" + pc[1] + " vs copy()"
		c, b := shm(1<<20, "none", pc[0], pc[1]), base(1<<20, "copy")
		if c != nil && b != nil {
			r := c.MBSec / b.MBSec
			ts = append(ts, Target{Name: name, Want: ">= 0.80", Got: fmt.Sprintf("%.2f (%.0f vs %.0f MB/s)", r, c.MBSec, b.MBSec), Status: status(r >= 0.8)})
		} else {
			none(name, ">= 0.80")
		}
	}
	for _, cm := range []string{"zerocopy", "copy"} {
		name := "64 B none push→" + cm + ": one-way latency, spinning consumer"
		if c := shm(64, "none", "push", cm); c != nil && c.Latency != nil {
			ok := c.Latency.P50 < 1000 && c.Latency.P99 < 5000
			ts = append(ts, Target{Name: name, Want: "p50 < 1 µs, p99 < 5 µs",
				Got: fmt.Sprintf("p50 %.2f µs, p99 %.2f µs", float64(c.Latency.P50)/1e3, float64(c.Latency.P99)/1e3), Status: status(ok)})
		} else {
			none(name, "p50 < 1 µs, p99 < 5 µs")
		}
	}
	for _, cr := range rep.Cases {
		if cr.Kind != "shm" || cr.Durability != "async" || len(cr.Runs) == 0 {
			continue
		}
		n := shm(cr.Size, "none", cr.Producer, cr.Consumer)
		if n == nil {
			continue
		}
		r := cr.EventsSec / n.EventsSec
		ts = append(ts, Target{Name: sizeName(cr.Size) + " async/none push→" + cr.Consumer, Want: ">= 0.5", Got: fmt.Sprintf("%.2f", r), Status: status(r >= 0.5)})
	}
	for _, cr := range rep.Cases {
		if cr.Kind != "shm" || cr.Durability != "async" || cr.Size < 1<<20 || len(cr.Runs) == 0 {
			continue
		}
		if d := base(cr.Size, "disk"); d != nil && d.MBSec > 0 {
			r := cr.MBSec / d.MBSec
			ts = append(ts, Target{Name: sizeName(cr.Size) + " async push→" + cr.Consumer + " vs the disk", Want: ">= 0.8",
				Got: fmt.Sprintf("%.2f (%.0f vs %.0f MB/s)", r, cr.MBSec, d.MBSec), Status: status(r >= 0.8)})
		}
	}
	for _, cm := range []string{"copy", "zerocopy"} {
		name := "64 B sync push→" + cm + " (group commit)"
		if c := shm(64, "sync", "push", cm); c != nil {
			ts = append(ts, Target{Name: name, Want: ">= 500 k events/s", Got: fmt.Sprintf("%.0f k events/s", c.EventsSec/1e3), Status: status(c.EventsSec >= 500e3)})
		} else {
			none(name, ">= 500 k events/s")
		}
	}
	if len(rep.Long) == 0 {
		none("consumer memory over 10 M events", "no growth")
	}
	for _, l := range rep.Long {
		name := fmt.Sprintf("consumer max RSS, %d M events, push→%s", l.N/1_000_000, l.Case.Consumer)
		if l.Error != "" || l.RSSAt1M <= 0 {
			ts = append(ts, Target{Name: name, Want: "no growth after 1 M", Got: "error: " + l.Error, Status: "not measured"})
			continue
		}
		ok := l.Growth <= 4<<20 && float64(l.Growth) <= 0.1*float64(l.RSSAt1M)
		ts = append(ts, Target{Name: name, Want: "no growth after 1 M (<= 4 MiB and 10%)",
			Got: fmt.Sprintf("%.1f MiB at 1 M, %.1f MiB at end", float64(l.RSSAt1M)/(1<<20), float64(l.RSSEnd)/(1<<20)), Status: status(ok)})
	}
	return ts
}

func fmtRate(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtUS(ns int64) string { return fmt.Sprintf("%.2f", float64(ns)/1e3) }

var baselineOrder = []string{"copy()", "chan", "unix socket", "pipe", "disk"}

func printTable(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "diaspora-shm pair benchmark (%s) — %s, %d cores, %s, %s\n", rep.Mode, rep.Machine.CPUModel, rep.Machine.Cores, rep.Machine.Kernel, rep.Machine.GoVersion)
	fmt.Fprintf(w, "medians of %v runs; ratios are MB/s over the baseline's at the same size; latency in µs (paced, spinning consumer)\n\n", rep.Config.(map[string]any)["reps"])
	fmt.Fprintf(w, "%-6s %-26s %10s %10s", "size", "case", "events/s", "MB/s")
	for _, b := range baselineOrder {
		fmt.Fprintf(w, " %8s", "×"+strings.TrimSuffix(b, " socket"))
	}
	fmt.Fprintf(w, " %7s %7s %7s %8s %8s\n", "p50", "p90", "p99", "p99.9", "max")
	last := -1
	for _, cr := range rep.Cases {
		if cr.Size != last && last != -1 {
			fmt.Fprintln(w)
		}
		last = cr.Size
		fmt.Fprintf(w, "%-6s %-26s %10s %10.0f", sizeName(cr.Size), cr.Label(), fmtRate(cr.EventsSec), cr.MBSec)
		for _, b := range baselineOrder {
			if r, ok := cr.Ratios[b]; ok {
				fmt.Fprintf(w, " %8.2f", r)
			} else {
				fmt.Fprintf(w, " %8s", "")
			}
		}
		if l := cr.Latency; l != nil {
			fmt.Fprintf(w, " %7s %7s %7s %8s %8s", fmtUS(l.P50), fmtUS(l.P90), fmtUS(l.P99), fmtUS(l.P999), fmtUS(l.Max))
		}
		if len(cr.Errors) > 0 {
			fmt.Fprintf(w, "  ERR: %s", cr.Errors[0])
		}
		fmt.Fprintln(w)
	}
	if len(rep.Long) > 0 {
		fmt.Fprintln(w)
		for _, l := range rep.Long {
			fmt.Fprintf(w, "memory run %s, %d events: %s events/s, consumer max RSS %.1f MiB at 1 M, %.1f MiB at end %s\n",
				l.Case.Label(), l.N, fmtRate(l.EventsSec), float64(l.RSSAt1M)/(1<<20), float64(l.RSSEnd)/(1<<20), l.Error)
		}
	}
	if q := rep.Quad; q != nil {
		fmt.Fprintf(w, "\n%s (zero copy, medians of %d): pair 1 %s events/s, pair 2 %s events/s, aggregate %s events/s",
			quadName, len(q.Runs), fmtRate(q.PairEvSec[0]), fmtRate(q.PairEvSec[1]), fmtRate(q.AggregateEvSec))
		if u := findCase(rep, Case{Kind: "unix", Size: 64}); u != nil && u.EventsSec > 0 {
			fmt.Fprintf(w, " (%.2fx the one-pair Unix socket)", q.AggregateEvSec/u.EventsSec)
		}
		if len(q.Errors) > 0 {
			fmt.Fprintf(w, "  ERR: %s", q.Errors[0])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range rep.Targets {
		fmt.Fprintf(w, "  %-13s %-58s want %-28s got %s\n", "["+t.Status+"]", t.Name, t.Want, t.Got)
	}
}

func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeChart plots MB/s against event size, both on log scales.
func writeChart(path string, rep *Report) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("diaspora-shm vs baselines (%s, %d vCPU)", rep.Machine.CPUModel, rep.Machine.Cores)
	p.X.Label.Text = "event size (bytes)"
	p.Y.Label.Text = "throughput (MB/s)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker = sizeTicks{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	type series struct {
		label string
		match func(c Case) bool
		col   color.RGBA
		dash  bool
	}
	ss := []series{
		{"diaspora-shm none, copying consumer", func(c Case) bool {
			return c.Kind == "shm" && c.Durability == "none" && c.Producer == "push" && c.Consumer == "copy"
		}, color.RGBA{0x1f, 0x77, 0xb4, 255}, false},
		{"diaspora-shm none, zero-copy consumer", func(c Case) bool {
			return c.Kind == "shm" && c.Durability == "none" && c.Producer == "push" && c.Consumer == "zerocopy"
		}, color.RGBA{0xd6, 0x27, 0x28, 255}, false},
		{"diaspora-shm none, Claim→zero-copy", func(c Case) bool {
			return c.Kind == "shm" && c.Durability == "none" && c.Producer == "claim"
		}, color.RGBA{0x94, 0x67, 0xbd, 255}, false},
		{"diaspora-shm async, zero-copy", func(c Case) bool {
			return c.Kind == "shm" && c.Durability == "async" && c.Consumer == "zerocopy"
		}, color.RGBA{0xff, 0x7f, 0x0e, 255}, false},
		{"copy() (memory bound)", func(c Case) bool { return c.Kind == "copy" }, color.RGBA{0, 0, 0, 255}, true},
		{"Go channel (1 process)", func(c Case) bool { return c.Kind == "chan" }, color.RGBA{0x2c, 0xa0, 0x2c, 255}, true},
		{"Unix socket", func(c Case) bool { return c.Kind == "unix" }, color.RGBA{0x8c, 0x56, 0x4b, 255}, true},
		{"pipe", func(c Case) bool { return c.Kind == "pipe" }, color.RGBA{0x7f, 0x7f, 0x7f, 255}, true},
	}
	any := false
	for _, s := range ss {
		var xy plotter.XYs
		for _, cr := range rep.Cases {
			if s.match(cr.Case) && cr.MBSec > 0 {
				xy = append(xy, plotter.XY{X: float64(cr.Size), Y: cr.MBSec})
			}
		}
		if len(xy) == 0 {
			continue
		}
		any = true
		l, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return err
		}
		l.Color, pts.Color = s.col, s.col
		l.Width = vg.Points(1.5)
		if s.dash {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		pts.Shape = draw.CircleGlyph{}
		p.Add(l, pts)
		p.Legend.Add(s.label, l, pts)
	}
	if !any {
		return fmt.Errorf("no figures to plot")
	}
	p.Y.Max *= 8 // room for the legend above the lines
	if p.X.Min == p.X.Max {
		p.X.Min, p.X.Max = p.X.Min/2, p.X.Max*2
	}
	return p.Save(9*vg.Inch, 6*vg.Inch, path)
}

// sizeTicks labels powers of two of the event-size axis.
type sizeTicks struct{}

func (sizeTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log2(lo)); e <= math.Ceil(math.Log2(hi)); e++ {
		v := math.Exp2(e)
		t := plot.Tick{Value: v}
		if int(e)%2 == 0 {
			t.Label = sizeName(int(v))
		}
		ts = append(ts, t)
	}
	return ts
}
