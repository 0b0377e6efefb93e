// Command plot draws bench/scale's convergence against the number of
// proxies as an SVG, from lines of `scale: proxies=N p50=MS p99=MS
// cp_rss_mib=R pushed_proxies=K` (the last line of each run) on stdin:
//
//	grep -h '^scale: proxies=' runs/*.out | go run ./bench/scale/plot > docs/scale-convergence.svg
//
// The x axis is logarithmic in N; the left axis is milliseconds from the
// edit to the last selected proxy applying it (p50 and p99), with the
// 1 s goal; the right axis the control plane's peak RSS against its
// 1 GiB goal.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

type point struct{ n, p50, p99, rss float64 }

func main() {
	pts, err := read(os.Stdin)
	if err == nil && len(pts) == 0 {
		err = fmt.Errorf("no 'scale: proxies=' lines on stdin")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	draw(os.Stdout, pts)
}

func read(r io.Reader) ([]point, error) {
	var pts []point
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "scale: ")
		if !ok || !strings.HasPrefix(line, "proxies=") {
			continue
		}
		f := map[string]float64{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", kv, err)
			}
			f[k] = x
		}
		pts = append(pts, point{f["proxies"], f["p50"], f["p99"], f["cp_rss_mib"]})
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].n < pts[j].n })
	return pts, sc.Err()
}

const (
	width, height          = 640, 360
	left, right, top, foot = 60, 70, 30, 50
)

func draw(w io.Writer, pts []point) {
	minN, maxN := pts[0].n, pts[len(pts)-1].n
	lo, hi := math.Log10(minN)-0.1, math.Log10(maxN)+0.1
	maxMS := 1200.0
	maxRSS := 1100.0
	for _, p := range pts {
		maxMS = max(maxMS, p.p99*1.1)
		maxRSS = max(maxRSS, p.rss*1.1)
	}
	x := func(n float64) float64 {
		return left + (math.Log10(n)-lo)/(hi-lo)*(width-left-right)
	}
	y := func(v, top2 float64) float64 { return height - foot - v/top2*(height-top-foot) }

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%d" y="18" font-size="14">bench/scale: edit to applied (one AuthorizationPolicy), control plane peak RSS</text>`+"\n", left)
	// Axes.
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, height-foot, width-right, height-foot)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top, left, height-foot)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", width-right, top, width-right, height-foot)
	for e := math.Ceil(lo); e <= hi; e++ {
		n := math.Pow(10, e)
		fmt.Fprintf(w, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`+"\n", x(n), height-foot+16, strconv.FormatFloat(n, 'f', -1, 64))
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle">simulated proxies (log scale)</text>`+"\n", (left+width-right)/2, height-12)
	for v := 0.0; v <= maxMS; v += niceStep(maxMS) {
		fmt.Fprintf(w, `<text x="%d" y="%.0f" text-anchor="end">%.0f</text>`+"\n", left-4, y(v, maxMS)+4, v)
	}
	fmt.Fprintf(w, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">ms</text>`+"\n", height/2, height/2)
	for v := 0.0; v <= maxRSS; v += niceStep(maxRSS) {
		fmt.Fprintf(w, `<text x="%d" y="%.0f">%.0f</text>`+"\n", width-right+4, y(v, maxRSS)+4, v)
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" transform="rotate(90 %d %d)" text-anchor="middle">MiB</text>`+"\n", width-14, height/2, width-14, height/2)
	// Goals.
	fmt.Fprintf(w, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#c00" stroke-dasharray="4 4"/><text x="%d" y="%.0f" fill="#c00">1 s goal</text>`+"\n",
		left, y(1000, maxMS), width-right, y(1000, maxMS), left+4, y(1000, maxMS)-4)
	fmt.Fprintf(w, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#888" stroke-dasharray="2 6"/><text x="%d" y="%.0f" fill="#888" text-anchor="end">1 GiB goal</text>`+"\n",
		left, y(1024, maxRSS), width-right, y(1024, maxRSS), width-right-4, y(1024, maxRSS)-4)
	series := []struct {
		name, color string
		v           func(point) float64
		top         float64
	}{
		{"p50", "#1f77b4", func(p point) float64 { return p.p50 }, maxMS},
		{"p99", "#d62728", func(p point) float64 { return p.p99 }, maxMS},
		{"peak RSS", "#2ca02c", func(p point) float64 { return p.rss }, maxRSS},
	}
	for i, s := range series {
		var b strings.Builder
		for _, p := range pts {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(p.n), y(s.v(p), s.top))
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.TrimSpace(b.String()))
		for _, p := range pts {
			fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p.n), y(s.v(p), s.top), s.color)
		}
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			left+10+i*110, top+8, s.color, left+26+i*110, top+12, s.name)
	}
	fmt.Fprintln(w, "</svg>")
}

// niceStep is a round tick step giving about five ticks up to top.
func niceStep(top float64) float64 {
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}
