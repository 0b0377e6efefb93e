package reliability

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoak runs the main mesh (10 s certificates) under the steady load
// for -soak, editing a policy every 10 s, and samples every process's RSS
// and goroutines every 10 s into soak.csv, plotted to soak.svg. No
// request may fail.
func TestSoak(t *testing.T) {
	if *flagSoak <= 0 {
		t.Skip("the soak runs only with -soak DURATION (bench/reliability.sh --soak 30m)")
	}
	m := startMesh(t, "--cert-ttl", flagCertTTL.String())
	out := outDir(t)
	csvPath := filepath.Join(out, "soak.csv")
	csv, err := os.Create(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer csv.Close()
	fmt.Fprintln(csv, "seconds,process,pid,rss_mib,goroutines")

	l := startLoad(t, m, "soak")
	start := time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	edits := 0
	samples := sample(csv, m, 0)
	for time.Since(start) < *flagSoak {
		<-tick.C
		edits++
		editPolicy(t, m, edits)
		samples = append(samples, sample(csv, m, time.Since(start))...)
	}
	res := l.stop(t)
	csv.Close()
	t.Logf("soak %s: %d requests, %d failed, p99 %.1f ms, %d policy edits; samples in %s",
		*flagSoak, res.Requests, res.Failed, res.P99, edits, csvPath)
	if res.Failed > 0 {
		t.Errorf("%d of %d requests failed during the soak (first at %s)", res.Failed, res.Requests, res.Fails[0].Format("15:04:05.000"))
	}
	summary := summarize(samples)
	t.Logf("per process, first and last sample and the peak:\n%s", summary)
	if err := os.WriteFile(filepath.Join(out, "soak-summary.md"), []byte(summary), 0o644); err != nil {
		t.Error(err)
	}
	for _, problem := range notFlat(samples) {
		t.Error(problem)
	}
	for _, s := range samples {
		if strings.HasPrefix(s.name, "proxy ") && s.goroutines == "" {
			t.Errorf("%s (pid %d) reports no go_goroutines on its admin port", s.name, s.pid)
			break
		}
	}
	plot := exec.Command("go", "run", "./plot", "-o", filepath.Join(out, "soak.svg"), csvPath)
	plot.Stderr = os.Stderr
	if err := plot.Run(); err != nil {
		t.Errorf("plot: %v", err)
	}
}

// editPolicy rewrites a DENY policy on the backend whose path changes at
// every edit: each edit is a new policy version pushed to the proxies, and
// none denies the load's path /.
func editPolicy(t *testing.T, m *mesh, n int) {
	writeFile(t, filepath.Join(m.dir, "soak-edit.yaml"), fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: soak-edit, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/soak-edit-%d"]}
`, n))
}

// sample appends one line per process of the mesh: zmesh up itself, the
// control plane, every proxy and app. Goroutines come from the admin
// endpoints' go_goroutines (control plane and proxies; empty for apps).
func sample(w *os.File, m *mesh, at time.Duration) []proc {
	goroutines := map[int]string{}
	if p := m.cpPID(); p != 0 {
		goroutines[p] = metric(m.cpAdmin, "go_goroutines")
	}
	for name, wl := range m.workloads {
		if p := m.proxyPID(name); p != 0 {
			goroutines[p] = metric(wl.admin, "go_goroutines")
		}
	}
	ps := children(m.cmd.Process.Pid)
	for i := range ps {
		p := &ps[i]
		p.at = at
		p.goroutines = goroutines[p.pid]
		fmt.Fprintf(w, "%.0f,%s,%d,%.1f,%s\n", at.Seconds(), p.name, p.pid, p.rssMiB, p.goroutines)
	}
	return ps
}

// summarize returns a markdown table of each process's first, last and
// peak RSS and goroutines over the soak.
func summarize(samples []proc) string {
	type agg struct{ first, last, peak proc }
	by := map[string]*agg{}
	var names []string
	for _, s := range samples {
		a := by[s.name]
		if a == nil {
			a = &agg{first: s, peak: s}
			by[s.name] = a
			names = append(names, s.name)
		}
		a.last = s
		if s.rssMiB > a.peak.rssMiB {
			a.peak.rssMiB = s.rssMiB
		}
		if g, _ := strconv.Atoi(s.goroutines); g > atoi(a.peak.goroutines) {
			a.peak.goroutines = s.goroutines
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("| process | RSS MiB first | last | peak | goroutines first | last | peak |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range names {
		a := by[n]
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %s | %s | %s |\n", n, a.first.rssMiB, a.last.rssMiB, a.peak.rssMiB,
			a.first.goroutines, a.last.goroutines, a.peak.goroutines)
	}
	return b.String()
}

// Flatness: after soakWarmUp, the soak's samples are cut in two halves
// by time; a process is flat when its second half's peak goroutines are
// at most its first half's plus soakGoroutineSlack, and its second half's
// peak RSS at most its first half's times soakRSSGrowth plus soakRSSSlack
// (the heap settles, a leak keeps growing: one of a kilobyte per request
// at 500 rps is 0.9 GiB in 30 minutes). Soaks too short for three samples
// a half are not judged.
const (
	soakWarmUp         = time.Minute
	soakGoroutineSlack = 10
	soakRSSGrowth      = 1.2
	soakRSSSlack       = 4 // MiB
)

// notFlat returns what in samples is not flat: a process that grew, or
// one whose pid changed (it was restarted: it crashed).
func notFlat(samples []proc) []string {
	type half struct {
		n          int
		rss        float64
		goroutines int
	}
	var end time.Duration
	for _, s := range samples {
		end = max(end, s.at)
	}
	mid := soakWarmUp + (end-soakWarmUp)/2
	halves := map[string]*[2]half{}
	pids := map[string]int{}
	var names, problems []string
	for _, s := range samples {
		if p, ok := pids[s.name]; ok && p != s.pid {
			problems = append(problems, fmt.Sprintf("%s was restarted during the soak (pid %d, then %d)", s.name, p, s.pid))
		}
		pids[s.name] = s.pid
		if s.at < soakWarmUp {
			continue
		}
		h := halves[s.name]
		if h == nil {
			h = &[2]half{}
			halves[s.name] = h
			names = append(names, s.name)
		}
		i := 0
		if s.at > mid {
			i = 1
		}
		h[i].n++
		h[i].rss = max(h[i].rss, s.rssMiB)
		h[i].goroutines = max(h[i].goroutines, atoi(s.goroutines))
	}
	sort.Strings(names)
	for _, name := range names {
		h := halves[name]
		if h[0].n < 3 || h[1].n < 3 {
			continue
		}
		if h[1].goroutines > h[0].goroutines+soakGoroutineSlack {
			problems = append(problems, fmt.Sprintf("%s's goroutines grew: peak %d in the first half, %d in the second", name, h[0].goroutines, h[1].goroutines))
		}
		if h[1].rss > h[0].rss*soakRSSGrowth+soakRSSSlack {
			problems = append(problems, fmt.Sprintf("%s's RSS grew: peak %.1f MiB in the first half, %.1f MiB in the second", name, h[0].rss, h[1].rss))
		}
	}
	return problems
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

type proc struct {
	at         time.Duration // since the soak began
	pid        int
	name       string
	rssMiB     float64
	goroutines string // empty where the process exports none
}

// children returns pid and its descendants, each named for the test's
// plot: up, controlplane, proxy NS/NAME, app NS/NAME.
func children(root int) []proc {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	var out []proc
	var walk func(pid int)
	walk = func(pid int) {
		out = append(out, proc{pid: pid, name: procName(pid), rssMiB: rss(pid)})
		for c, p := range parent {
			if p == pid {
				walk(c)
			}
		}
	}
	walk(root)
	return out
}

func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	arg := func(flag string) string {
		for i, a := range args {
			if a == flag && i+1 < len(args) {
				return args[i+1]
			}
		}
		return ""
	}
	switch {
	case len(args) > 1 && args[1] == "up":
		return "up"
	case len(args) > 1 && args[1] == "controlplane":
		return "controlplane"
	case len(args) > 1 && args[1] == "proxy":
		return "proxy " + arg("--namespace") + "/" + arg("--name")
	case len(args) > 1 && args[1] == "echo":
		return "app " + arg("--name")
	}
	return filepath.Base(args[0])
}

// rss reads VmRSS from /proc/PID/status, in MiB.
func rss(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kib / 1024
		}
	}
	return 0
}

// metric reads one unlabelled metric from an admin endpoint's /metrics.
func metric(admin, name string) string {
	resp, err := plain.Get("http://" + admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

func TestNotFlat(t *testing.T) {
	// series returns a process's samples every 10 s for 10 minutes, RSS
	// and goroutines given by f of the sample's time.
	series := func(name string, f func(at time.Duration) (float64, int)) []proc {
		var out []proc
		for at := time.Duration(0); at <= 10*time.Minute; at += 10 * time.Second {
			rss, g := f(at)
			out = append(out, proc{at: at, pid: 7, name: name, rssMiB: rss, goroutines: strconv.Itoa(g)})
		}
		return out
	}
	steady := func(at time.Duration) (float64, int) {
		return 30 + float64(at/time.Second%3), 30 + int(at/time.Second%5)
	}
	for _, tc := range []struct {
		name    string
		samples []proc
		want    string // a problem must contain it; "" for none
	}{
		{"steady", series("proxy a/b", steady), ""},
		{"a warm-up climb is not growth", series("proxy a/b", func(at time.Duration) (float64, int) {
			if at < time.Minute {
				return 10 + float64(at/time.Second), 10
			}
			return steady(at)
		}), ""},
		{"goroutines leak", series("proxy a/b", func(at time.Duration) (float64, int) {
			return 30, 30 + int(at/(10*time.Second))
		}), "goroutines grew"},
		{"memory leaks", series("controlplane", func(at time.Duration) (float64, int) {
			return 40 + at.Seconds()/10, 30
		}), "RSS grew"},
		{"a restart", append(series("proxy a/b", steady), proc{at: 11 * time.Minute, pid: 8, name: "proxy a/b", rssMiB: 30}), "restarted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(notFlat(tc.samples), "\n")
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("notFlat = %q, want %q", got, tc.want)
			}
		})
	}
}
