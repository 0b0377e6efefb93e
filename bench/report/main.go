// Command report turns the raw results of one bench/latency.sh run into
// the markdown summary that docs/benchmarks.md quotes: latency
// percentiles per case and the latency the mesh (and the haproxy pair, a
// peer measured in the same run) adds, achieved rate and errors, and the
// memory and CPU of each process sampled during the load.
//
// It reads a run directory written by latency.sh:
//
//	meta.env     KEY=VALUE lines describing the run and the machine
//	CASE.json    fortio's -json output for each case (direct, mesh, capture, haproxy)
//	samples.tsv  case, process, pid, unix ms, VmRSS KiB, RssAnon KiB,
//	             utime+stime ticks, and (runs since PSS was sampled)
//	             Pss KiB
//
// and writes summary.md there as well as to stdout. The cases reported
// are meta.env's CASES (runs from before it was recorded: direct and
// mesh). A case whose JSON is missing is reported as pending, or as
// skipped with the reason in SKIPPED_CASE when the script could not run
// it (haproxy not installable). The haproxy case's setup is described by
// HAPROXY_VERSION, HAPROXY_THREADS, HAPROXY_PEER_PROTO (h2 or http/1.1)
// and, once it ran, HAPROXY_PEER_CONNECTS and HAPROXY_PEER_REUSES.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Issue 2's goals, printed beside the measurements.
const (
	goalAddedP99Ms = 1.0
	goalRSSMiB     = 30.0
)

// percentiles are the ones latency.sh asks fortio for (-p).
var percentiles = []float64{50, 90, 99, 99.9}

// cases in report order; a case minus "direct" is the latency it adds
// (added is the label of that line, for the cases that have one).
var cases = []struct{ id, title, added string }{
	{"direct", "direct (fortio → echo)", ""},
	{"mesh", "mesh (fortio → client proxy → mTLS → server proxy → echo)", "added by the mesh"},
	{"capture", "capture (fortio in a pod, redirected → client proxy → mTLS → server proxy → echo in a pod)", "added by the mesh with capture"},
	{"haproxy", "haproxy (fortio → haproxy client → mTLS → haproxy server → echo)", "added by haproxy"},
}

// caseRank is a case's place in the report order; unknown cases last.
func caseRank(id string) int {
	for i, c := range cases {
		if c.id == id {
			return i
		}
	}
	return len(cases)
}

// wanted is the set of cases the run was asked for: meta.env's CASES, or
// direct and mesh for runs that did not record it (before the haproxy
// case existed).
func wanted(meta map[string]string) map[string]bool {
	list, ok := meta["CASES"]
	if !ok {
		list = "direct mesh"
	}
	w := map[string]bool{}
	for _, id := range strings.Fields(list) {
		w[id] = true
	}
	return w
}

func main() {
	dir := flag.String("dir", "", "run directory written by bench/latency.sh")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "report: -dir is required")
		os.Exit(2)
	}
	var out strings.Builder
	if err := report(&out, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	fmt.Print(out.String())
	if err := os.WriteFile(filepath.Join(*dir, "summary.md"), []byte(out.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// fortioResult is the part of fortio's JSON output the report uses.
type fortioResult struct {
	ActualQPS         float64
	ActualDuration    int64 // nanoseconds
	NumThreads        int
	DurationHistogram struct {
		Count       int64
		Max         float64 // seconds
		Avg         float64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
	RetCodes map[string]int64
}

// percentileMs returns the latency at percentile p in milliseconds, or
// NaN when fortio did not compute it.
func (r *fortioResult) percentileMs(p float64) float64 {
	for _, pc := range r.DurationHistogram.Percentiles {
		if pc.Percentile == p {
			return pc.Value * 1000
		}
	}
	return math.NaN()
}

// errors counts the requests that did not get a 200.
func (r *fortioResult) errors() int64 {
	return r.DurationHistogram.Count - r.RetCodes["200"]
}

// errorSummary is the error count with its status codes, e.g.
// "3 (503×2, -1×1)"; fortio reports failed connections as -1.
func (r *fortioResult) errorSummary() string {
	n := r.errors()
	if n == 0 {
		return "0"
	}
	codes := make([]string, 0, len(r.RetCodes))
	for code := range r.RetCodes {
		if code != "200" {
			codes = append(codes, code)
		}
	}
	sort.Strings(codes)
	parts := make([]string, len(codes))
	for i, code := range codes {
		parts[i] = fmt.Sprintf("%s×%d", code, r.RetCodes[code])
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}

func report(w io.Writer, dir string) error {
	meta, err := readMeta(filepath.Join(dir, "meta.env"))
	if err != nil {
		return err
	}
	results := map[string]*fortioResult{}
	for _, c := range cases {
		r, err := readResult(filepath.Join(dir, c.id+".json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		results[c.id] = r
	}
	samples, err := readSamples(filepath.Join(dir, "samples.tsv"), meta["CLK_TCK"])
	if err != nil {
		return err
	}

	fmt.Fprintf(w, "### zmesh latency, %s\n\n", meta["STARTED"])
	fmt.Fprintf(w, "fortio %s, %s qps, %s connections, %s-byte responses, %s per case after a %s warm-up, open loop (`-uniform -nocatchup`), histogram resolution 0.1 ms.  \n",
		meta["FORTIO_VERSION"], meta["QPS"], meta["CONNECTIONS"], meta["SIZE"], meta["DURATION"], meta["WARMUP"])
	fmt.Fprintf(w, "zmesh: %s.  \n", meta["ZMESH"])
	want := wanted(meta)
	if want["haproxy"] && meta["HAPROXY_VERSION"] != "" {
		fmt.Fprintf(w, "haproxy: %s.  \n", haproxySetup(meta))
	}
	fmt.Fprintf(w, "Machine: %s CPUs (%s), Linux %s, %s; fortio, proxies and echo share these CPUs. Load average before: %s, after: %s.\n\n",
		meta["NPROC"], meta["CPU_MODEL"], meta["KERNEL"], meta["GO_VERSION"], meta["LOADAVG_BEFORE"], meta["LOADAVG_AFTER"])

	fmt.Fprintln(w, "| case | p50 | p90 | p99 | p99.9 | max | achieved qps | requests | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	direct, mesh := results["direct"], results["mesh"]
	for _, c := range cases {
		r, ok := results[c.id]
		if !ok && !want[c.id] {
			continue
		}
		if !ok {
			status := "pending"
			if why := meta["SKIPPED_"+c.id]; why != "" {
				status = "skipped: " + strings.ReplaceAll(why, "|", "\\|")
			}
			fmt.Fprintf(w, "| %s | %s | | | | | | | |\n", c.title, status)
			continue
		}
		fmt.Fprintf(w, "| %s |", c.title)
		for _, p := range percentiles {
			fmt.Fprintf(w, " %s |", ms(r.percentileMs(p)))
		}
		fmt.Fprintf(w, " %s | %.1f | %d | %s |\n", ms(r.DurationHistogram.Max*1000), r.ActualQPS, r.DurationHistogram.Count, r.errorSummary())
		if c.added != "" && direct != nil {
			fmt.Fprintf(w, "| **%s** |", c.added)
			for _, p := range percentiles {
				fmt.Fprintf(w, " **%s** |", ms(r.percentileMs(p)-direct.percentileMs(p)))
			}
			fmt.Fprintln(w, " | | | |")
		}
	}
	fmt.Fprintln(w)

	if len(samples) > 0 {
		fmt.Fprintln(w, "| case | process | peak RSS | mean RSS | peak anonymous RSS | peak PSS | CPU (cores) | CPU per request | samples |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
		for _, s := range samples {
			if s.process == machine {
				continue
			}
			perReq := math.NaN()
			if r := results[s.caseID]; r != nil && r.ActualQPS > 0 {
				perReq = s.cores() / r.ActualQPS * 1e6
			}
			fmt.Fprintf(w, "| %s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %s | %s | %s | %d |\n",
				s.caseID, s.process, s.peakMiB(), s.meanMiB(), s.peakAnonMiB(), mib(s.peakPssMiB()), cores(s.cores()), micros(perReq), len(s.points))
		}
		for _, c := range cases {
			if m := machineLoad(samples, c.id); m != "" {
				fmt.Fprintf(w, "\n%s: %s.", c.id, m)
			}
		}
		fmt.Fprintln(w)
		var perCase []string
		for _, c := range cases {
			if v := proxyCPUPerRequest(samples, c.id, results[c.id]); !math.IsNaN(v) {
				perCase = append(perCase, c.id+" "+micros(v))
			}
		}
		if len(perCase) > 0 {
			fmt.Fprintf(w, "\nCPU per request of the proxy pair (client and server proxy together): %s.\n", strings.Join(perCase, ", "))
		}
		note := "\nRSS is VmRSS; anonymous RSS (RssAnon) leaves out the pages of the zmesh binary that all zmesh processes share"
		if sampled(samples, "haproxy") {
			note += " (for haproxy, the pages of its binary and shared libraries such as OpenSSL's)"
		}
		fmt.Fprintln(w, note+"; PSS counts each shared page once, split among the processes that map it (what a process costs the machine). CPU is per process between its first and last sample, in cores (1.00 = one CPU all the time); per request, it is divided by the achieved rate.")
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "Goals (issue 2):")
	if direct != nil && mesh != nil {
		added := mesh.percentileMs(99) - direct.percentileMs(99)
		fmt.Fprintf(w, "- added p99 < %.0f ms: %s (%s)\n", goalAddedP99Ms, verdict(added < goalAddedP99Ms), ms(added))
	} else {
		fmt.Fprintf(w, "- added p99 < %.0f ms: pending\n", goalAddedP99Ms)
	}
	proxies := 0
	for _, s := range samples {
		if s.caseID == "mesh" && strings.HasSuffix(s.process, "proxy") {
			proxies++
			fmt.Fprintf(w, "- %s RSS < %.0f MiB: %s (peak %.1f MiB, of which %.1f MiB anonymous; peak PSS %s)\n",
				s.process, goalRSSMiB, verdict(s.peakMiB() < goalRSSMiB), s.peakMiB(), s.peakAnonMiB(), mib(s.peakPssMiB()))
		}
	}
	if proxies == 0 {
		fmt.Fprintf(w, "- proxy RSS < %.0f MiB: pending\n", goalRSSMiB)
	}
	return nil
}

// haproxySetup describes the haproxy pair from meta.env: version,
// threads, the protocol between the instances and how well their
// connections were reused.
func haproxySetup(meta map[string]string) string {
	proto := "HTTP/1.1 keep-alive"
	if meta["HAPROXY_PEER_PROTO"] == "h2" {
		proto = "HTTP/2 (ALPN h2)"
	}
	threads := "haproxy's default threads"
	if t := meta["HAPROXY_THREADS"]; t != "" {
		threads = "`nbthread " + t + "`"
	}
	desc := fmt.Sprintf("%s, %s per instance (a zmesh proxy runs with GOMAXPROCS = CPUs), %s over mutual TLS 1.3 between the instances, pooled (`http-reuse always`)",
		meta["HAPROXY_VERSION"], threads, proto)
	if c, r := meta["HAPROXY_PEER_CONNECTS"], meta["HAPROXY_PEER_REUSES"]; c != "" && r != "" {
		desc += fmt.Sprintf(": %s connections opened between them, %s requests sent on a reused one (warm-up included)", c, r)
	}
	return desc
}

// proxyCPUPerRequest is the CPU time per request, in µs, of case caseID's
// proxies (the processes whose label ends in "proxy", or names a haproxy
// instance) together; NaN when the case has none or did not run.
func proxyCPUPerRequest(samples []*series, caseID string, r *fortioResult) float64 {
	if r == nil || r.ActualQPS <= 0 {
		return math.NaN()
	}
	sum, n := 0.0, 0
	for _, s := range samples {
		if s.caseID == caseID && (strings.HasSuffix(s.process, "proxy") || strings.HasPrefix(s.process, "haproxy ")) {
			sum += s.cores()
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / r.ActualQPS * 1e6
}

// sampled reports whether samples holds a process of case caseID.
func sampled(samples []*series, caseID string) bool {
	for _, s := range samples {
		if s.caseID == caseID && s.process != machine {
			return true
		}
	}
	return false
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', 3, 64) + " ms"
}

func micros(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " µs"
}

func cores(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func readMeta(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	meta := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			meta[k] = v
		}
	}
	return meta, sc.Err()
}

func readResult(path string) (*fortioResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r fortioResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// machine is the series name latency.sh gives the busy ticks of all CPUs.
const machine = "machine"

// machineLoad says how busy the machine's CPUs were during a case and how
// much of that the benchmark's own processes were charged: the rest is
// other work on the machine (the noise in the tail latencies) and kernel
// time, such as interrupt handling, that no process is charged for.
func machineLoad(samples []*series, caseID string) string {
	total, own := math.NaN(), 0.0
	for _, s := range samples {
		if s.caseID != caseID {
			continue
		}
		if s.process == machine {
			total = s.cores()
		} else if c := s.cores(); !math.IsNaN(c) {
			own += c
		}
	}
	if math.IsNaN(total) {
		return ""
	}
	return fmt.Sprintf("all CPUs busy %.2f cores, of which the processes above %.2f, the rest (other work on the machine, kernel time not charged to a process) %.2f",
		total, own, max(total-own, 0))
}

// series is the samples of one process during one case.
type series struct {
	caseID, process string
	clkTck          float64
	points          []point
}

type point struct {
	pid                            string
	unixMs, rssKiB, anonKiB, ticks float64
	pssKiB                         float64 // NaN: not sampled
}

func (s *series) peakMiB() float64 {
	peak := 0.0
	for _, p := range s.points {
		peak = max(peak, p.rssKiB)
	}
	return peak / 1024
}

// peakAnonMiB is the peak of the process's anonymous memory (heap,
// stacks): the part of its RSS that is its own, while the file-backed
// rest is the zmesh binary's pages, shared by every zmesh process.
func (s *series) peakAnonMiB() float64 {
	peak := 0.0
	for _, p := range s.points {
		peak = max(peak, p.anonKiB)
	}
	return peak / 1024
}

// peakPssMiB is the peak proportional set size: the process's own pages
// plus its share of the pages it shares. NaN when the run did not sample
// it.
func (s *series) peakPssMiB() float64 {
	peak := math.NaN()
	for _, p := range s.points {
		if !math.IsNaN(p.pssKiB) && (math.IsNaN(peak) || p.pssKiB > peak) {
			peak = p.pssKiB
		}
	}
	return peak / 1024
}

// mib formats MiB, "–" for NaN.
func mib(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", v)
}

func (s *series) meanMiB() float64 {
	sum := 0.0
	for _, p := range s.points {
		sum += p.rssKiB
	}
	return sum / float64(len(s.points)) / 1024
}

// cores is the CPU the process used between its first and last sample,
// in cores (1.00 = one CPU busy all the time). If it was restarted during
// the case, only its last incarnation counts.
func (s *series) cores() float64 {
	last := s.points[len(s.points)-1]
	first := last
	for i := len(s.points) - 1; i >= 0 && s.points[i].pid == last.pid; i-- {
		first = s.points[i]
	}
	secs := (last.unixMs - first.unixMs) / 1000
	if secs <= 0 || s.clkTck <= 0 {
		return math.NaN()
	}
	return (last.ticks - first.ticks) / s.clkTck / secs
}

// readSamples reads samples.tsv into one series per (case, process), in
// the order they first appear. A process restarted during a case (new
// pid) keeps one series.
func readSamples(path, clkTck string) ([]*series, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tck, _ := strconv.ParseFloat(clkTck, 64)
	var order []*series
	byKey := map[string]*series{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 7 && len(fields) != 8 {
			continue
		}
		nums := [5]float64{4: math.NaN()}
		for i, s := range fields[3:] {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, line, err)
			}
			nums[i] = v
		}
		key := fields[0] + "\t" + fields[1]
		s := byKey[key]
		if s == nil {
			s = &series{caseID: fields[0], process: fields[1], clkTck: tck}
			byKey[key] = s
			order = append(order, s)
		}
		if len(fields) == 8 && nums[4] == 0 {
			nums[4] = math.NaN() // smaps_rollup unreadable
		}
		s.points = append(s.points, point{pid: fields[2], unixMs: nums[0], rssKiB: nums[1], anonKiB: nums[2], ticks: nums[3], pssKiB: nums[4]})
	}
	sort.SliceStable(order, func(i, j int) bool {
		ri, rj := caseRank(order[i].caseID), caseRank(order[j].caseID)
		if ri != rj {
			return ri < rj
		}
		return order[i].caseID < order[j].caseID
	})
	return order, sc.Err()
}
