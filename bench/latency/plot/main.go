// Command plot draws bench/latency.sh's latency percentiles per case as
// an SVG, from the fortio results of one run:
//
//	go run ./bench/latency/plot bench/results/RUN > RUN/percentiles.svg
//
// It reads RUN/CASE.json for each case that ran (direct, mesh, capture,
// haproxy) and draws each case's latency from p50 to p99.9. The x axis
// is in "nines" (p90, p99, p99.9 evenly apart), the y axis logarithmic
// in milliseconds, so the median and the tail share one picture.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// cases are bench/latency.sh's, in the order they are drawn.
var cases = []struct{ name, color string }{
	{"direct", "#7f7f7f"},
	{"mesh", "#1f77b4"},
	{"capture", "#9467bd"},
	{"haproxy", "#ff7f0e"},
}

// percentiles are where each case's curve is sampled.
var percentiles = []float64{50, 60, 70, 75, 80, 85, 90, 93, 95, 97, 98, 99, 99.5, 99.7, 99.8, 99.9}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: plot RUN-DIRECTORY > percentiles.svg")
		os.Exit(2)
	}
	var curves []curve
	var run result
	for _, c := range cases {
		f, err := os.Open(filepath.Join(os.Args[1], c.name+".json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			fail(err)
		}
		r, err := read(f)
		f.Close()
		if err != nil {
			fail(fmt.Errorf("%s.json: %w", c.name, err))
		}
		cv := curve{name: c.name, color: c.color}
		for _, p := range percentiles {
			cv.ms = append(cv.ms, r.Histogram.at(p)*1000)
		}
		curves = append(curves, cv)
		run = r
	}
	if len(curves) == 0 {
		fail(fmt.Errorf("no CASE.json of %v in %s", names(), os.Args[1]))
	}
	title := fmt.Sprintf("bench/latency.sh: %s qps, %d connections, latency by percentile", run.RequestedQPS, run.NumThreads)
	draw(os.Stdout, title, curves)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "plot:", err)
	os.Exit(1)
}

func names() []string {
	var n []string
	for _, c := range cases {
		n = append(n, c.name)
	}
	return n
}

// result is the part of fortio's JSON result that is drawn.
type result struct {
	RequestedQPS string
	NumThreads   int
	Histogram    histogram `json:"DurationHistogram"`
}

// histogram is fortio's: buckets of seconds, each with the cumulative
// percentage of requests up to its end.
type histogram struct {
	Count int
	Data  []struct {
		Start, End, Percent float64
	}
}

// read parses one fortio result and checks that its histogram can be
// read as one: buckets in order, percentages rising to 100.
func read(r io.Reader) (result, error) {
	var res result
	if err := json.NewDecoder(io.LimitReader(r, 64<<20)).Decode(&res); err != nil {
		return res, err
	}
	h := res.Histogram
	if h.Count <= 0 || len(h.Data) == 0 {
		return res, errors.New("no requests in the histogram")
	}
	prev := 0.0
	for i, b := range h.Data {
		if !(b.End >= b.Start && b.Start >= 0 && b.Percent >= prev && b.Percent <= 100.0001) || math.IsInf(b.End, 0) {
			return res, fmt.Errorf("histogram bucket %d out of order: %+v", i, b)
		}
		if i > 0 && b.Start < h.Data[i-1].End-1e-12 {
			return res, fmt.Errorf("histogram bucket %d overlaps the one before", i)
		}
		prev = b.Percent
	}
	return res, nil
}

// at is the latency, in seconds, at percentile p: interpolated within the
// bucket that crosses p, as fortio computes its own percentiles.
func (h histogram) at(p float64) float64 {
	prev := 0.0
	for _, b := range h.Data {
		if b.Percent >= p {
			if b.Percent == prev {
				return b.Start
			}
			return b.Start + (b.End-b.Start)*(p-prev)/(b.Percent-prev)
		}
		prev = b.Percent
	}
	return h.Data[len(h.Data)-1].End
}

type curve struct {
	name, color string
	ms          []float64 // at each of percentiles
}

const (
	width, height          = 640, 380
	left, right, top, foot = 60, 20, 50, 50
)

func draw(w io.Writer, title string, curves []curve) {
	lo, hi := math.Inf(1), 0.0
	for _, c := range curves {
		for _, v := range c.ms {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	// Decades of milliseconds that hold every point.
	dlo, dhi := math.Floor(math.Log10(max(lo, 1e-3))), math.Ceil(math.Log10(max(hi, 1e-3)))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	nines := func(p float64) float64 { return -math.Log10(1 - p/100) }
	nlo, nhi := nines(percentiles[0]), nines(percentiles[len(percentiles)-1])
	x := func(p float64) float64 { return left + (nines(p)-nlo)/(nhi-nlo)*(width-left-right) }
	y := func(ms float64) float64 {
		return height - foot - (math.Log10(max(ms, 1e-3))-dlo)/(dhi-dlo)*(height-top-foot)
	}

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%d" y="18" font-size="14">%s</text>`+"\n", left, escape(title))
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, height-foot, width-right, height-foot)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top, left, height-foot)
	for _, p := range []float64{50, 90, 99, 99.9} {
		fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(p), top, x(p), height-foot)
		fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle">p%s</text>`+"\n", x(p), height-foot+16, trimFloat(p))
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle">percentile of requests (nines)</text>`+"\n", (left+width-right)/2, height-12)
	for d := dlo; d <= dhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if d == dhi && m > 1 {
				break
			}
			fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", left, y(v), width-right, y(v))
			fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-4, y(v)+4, trimFloat(v))
		}
	}
	fmt.Fprintf(w, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">ms (log scale)</text>`+"\n", height/2, height/2)
	for i, c := range curves {
		var b strings.Builder
		for j, p := range percentiles {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(p), y(c.ms[j]))
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c.color, strings.TrimSpace(b.String()))
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			left+10+i*100, top-18, c.color, left+26+i*100, top-14, escape(c.name))
	}
	fmt.Fprintln(w, "</svg>")
}

func trimFloat(v float64) string { return strings.TrimSuffix(fmt.Sprintf("%g", v), ".0") }

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
