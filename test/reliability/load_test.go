package reliability

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// pair is one caller/server pair the load goes through: fortio plays the
// caller's app and sends to its outbound listener with the server's Host.
type pair struct {
	caller, host string
}

var pairs = []pair{
	{caller: "web/frontend", host: "backend.api.svc.cluster.local"},
	{caller: "shop/client", host: "server.shop.svc.cluster.local"},
}

// fortioTimeout is how long fortio waits for a request before it counts
// it failed.
const fortioTimeout = 5 * time.Second

// loadResult is what one fortio run saw.
type loadResult struct {
	Requests int
	Failed   int          // non-200 answers and connection errors
	P99      float64      // milliseconds, over every request
	Fails    []time.Time  // when each failure was logged
	Pairs    []loadResult // each pair's own, in the order of pairs
}

// add sums o, one pair's result, into r.
func (r *loadResult) add(o loadResult) {
	r.Pairs = append(r.Pairs, o)
	r.Requests += o.Requests
	r.Failed += o.Failed
	r.P99 = math.Max(r.P99, o.P99) // the worse pair's p99
	r.Fails = append(r.Fails, o.Fails...)
	sort.Slice(r.Fails, func(i, j int) bool { return r.Fails[i].Before(r.Fails[j]) })
}

// load is fortio running against both pairs.
type load struct {
	runs []*exec.Cmd
	json []string
	logs []string
	done chan error
}

// startLoad runs fortio until stopped against every pair, rps split evenly, in
// the network namespace of the caller when it has one (a captured mesh:
// fortio then sends to the server's app address, as an app would).
// Each fortio keeps 8 connections, an open loop at a fixed rate.
func startLoad(t *testing.T, m *mesh, name string) *load {
	t.Helper()
	l := &load{done: make(chan error, len(pairs))}
	for i, p := range pairs {
		w := m.w(p.caller)
		base := filepath.Join(outDir(t), fmt.Sprintf("%s.pair%d", name, i+1))
		args := []string{"load", "-qps", fmt.Sprint(*flagRPS / len(pairs)), "-c", "8", "-t", "0",
			"-json", base + ".json", "-H", "Host: " + p.host, "-allow-initial-errors",
			"-timeout", fortioTimeout.String()}
		var cmd *exec.Cmd
		if w.netns != "" {
			server := m.w(serverOf(p))
			args = append(args, "http://"+server.app+"/")
			cmd = exec.Command("ip", append([]string{"netns", "exec", w.netns, bins.fortio}, args...)...)
		} else {
			args = append(args, "http://"+w.outbound+"/")
			cmd = exec.Command(bins.fortio, args...)
		}
		f, err := os.Create(base + ".log")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { l.done <- cmd.Wait(); f.Close() }()
		l.runs = append(l.runs, cmd)
		l.json = append(l.json, base+".json")
		l.logs = append(l.logs, base+".log")
	}
	t.Cleanup(func() {
		for _, c := range l.runs {
			if c.ProcessState == nil {
				c.Process.Kill()
			}
		}
	})
	return l
}

// serverOf names the workload a pair calls.
func serverOf(p pair) string {
	name, rest, _ := strings.Cut(p.host, ".")
	ns, _, _ := strings.Cut(rest, ".")
	return ns + "/" + name
}

// stop interrupts every fortio (which then writes its results) and sums
// what they saw.
func (l *load) stop(t *testing.T) loadResult {
	t.Helper()
	for _, c := range l.runs {
		c.Process.Signal(os.Interrupt)
	}
	for range l.runs {
		select {
		case <-l.done:
		case <-time.After(30 * time.Second):
			t.Fatal("fortio did not end")
		}
	}
	var sum loadResult
	for i := range l.runs {
		r, err := readFortio(l.json[i], l.logs[i])
		if err != nil {
			t.Fatalf("fortio %s: %v", l.logs[i], err)
		}
		sum.add(r)
	}
	return sum
}

// readFortio reads fortio's -json result and, from its JSON log, when
// each failure happened.
func readFortio(jsonPath, logPath string) (loadResult, error) {
	var res struct {
		RetCodes          map[string]int
		DurationHistogram struct {
			Count       int
			Percentiles []struct{ Percentile, Value float64 }
		}
	}
	var r loadResult
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return r, err
	}
	r.Requests = res.DurationHistogram.Count
	r.Failed = r.Requests - res.RetCodes["200"]
	for _, p := range res.DurationHistogram.Percentiles {
		if p.Percentile == 99 {
			r.P99 = p.Value * 1000
		}
	}
	f, err := os.Open(logPath)
	if err != nil {
		return r, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			TS    float64 `json:"ts"`
			Level string  `json:"level"`
			Msg   string  `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || (e.Level != "warn" && e.Level != "err") {
			continue
		}
		// One line per failed request: a non-200 answer, or a connection
		// or read error.
		switch {
		case e.Msg == "Non ok http code", strings.HasPrefix(e.Msg, "Unable to connect"),
			strings.Contains(e.Msg, "error"), strings.Contains(e.Msg, "Error"):
			r.Fails = append(r.Fails, time.Unix(0, int64(e.TS*1e9)))
		}
	}
	return r, sc.Err()
}

// during runs fault against the mesh under load: 2 s of steady load
// before it, the fault (which returns once the mesh has recovered), and 2 s
// after.
func during(t *testing.T, m *mesh, name string, fault func()) loadResult {
	t.Helper()
	l := startLoad(t, m, name)
	time.Sleep(2 * time.Second)
	fault()
	time.Sleep(2 * time.Second)
	return l.stop(t)
}
