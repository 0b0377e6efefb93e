// Command plot draws the soak's samples (soak.csv from TestSoak:
// seconds,process,pid,rss_mib,goroutines) as an SVG of two panels, RSS
// and goroutines against time, one line per process, so that growth
// shows at a glance:
//
//	go run ./test/reliability/plot -o soak.svg soak.csv
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

type series struct {
	name string
	x, y []float64
}

func main() {
	out := flag.String("o", "", "SVG file to write (default stdout)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: plot [-o out.svg] soak.csv")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	rss, gor, err := read(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	w := io.Writer(os.Stdout)
	if *out != "" {
		o, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "plot:", err)
			os.Exit(1)
		}
		defer o.Close()
		w = o
	}
	const width, panel = 900, 300
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, 2*panel+40)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	draw(w, rss, "RSS (MiB)", 0, width, panel)
	draw(w, gor, "goroutines", panel+20, width, panel)
	fmt.Fprintln(w, "</svg>")
}

// read returns the RSS and goroutine series per process name (a process
// restarted keeps its name, so its line continues).
func read(r io.Reader) (rss, gor []*series, err error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, nil, err
	}
	byName := func(m map[string]*series, name string) *series {
		if m[name] == nil {
			m[name] = &series{name: name}
		}
		return m[name]
	}
	rm, gm := map[string]*series{}, map[string]*series{}
	for i, row := range rows {
		if i == 0 || len(row) < 5 {
			continue
		}
		x, err := strconv.ParseFloat(row[0], 64)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		if v, err := strconv.ParseFloat(row[3], 64); err == nil {
			s := byName(rm, row[1])
			s.x, s.y = append(s.x, x), append(s.y, v)
		}
		if v, err := strconv.ParseFloat(row[4], 64); err == nil {
			s := byName(gm, row[1])
			s.x, s.y = append(s.x, x), append(s.y, v)
		}
	}
	return sorted(rm), sorted(gm), nil
}

func sorted(m map[string]*series) []*series {
	var out []*series
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

var colors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// draw plots ss in a panel at top, with axes from 0 to the maxima and a
// legend on the right.
func draw(w io.Writer, ss []*series, title string, top, width, height int) {
	const left, right, pad = 50, 170, 20
	pw, ph := float64(width-left-right), float64(height-2*pad)
	var xmax, ymax float64
	for _, s := range ss {
		for i := range s.x {
			xmax, ymax = math.Max(xmax, s.x[i]), math.Max(ymax, s.y[i])
		}
	}
	xmax, ymax = math.Max(xmax, 1), math.Max(ymax*1.1, 1)
	y0 := float64(top + pad)
	fmt.Fprintf(w, `<text x="%d" y="%.0f" font-weight="bold">%s</text>`+"\n", left, y0-6, title)
	fmt.Fprintf(w, `<rect x="%d" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, y0, pw, ph)
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		y := y0 + ph - ph*float64(i)/4
		fmt.Fprintf(w, `<text x="%d" y="%.0f" text-anchor="end">%.0f</text>`+"\n", left-4, y+4, v)
		t := xmax * float64(i) / 4
		fmt.Fprintf(w, `<text x="%.0f" y="%.0f" text-anchor="middle">%.0fs</text>`+"\n", float64(left)+pw*float64(i)/4, y0+ph+14, t)
	}
	for i, s := range ss {
		c := colors[i%len(colors)]
		var pts []string
		for j := range s.x {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(left)+pw*s.x[j]/xmax, y0+ph-ph*s.y[j]/ymax))
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`+"\n", float64(left)+pw+8, y0+12+float64(i)*13, c, s.name)
	}
}
