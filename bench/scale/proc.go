package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// controlPlane is one `zmesh controlplane` process.
type controlPlane struct {
	cmd   *exec.Cmd
	admin string
	done  chan struct{} // closed when the process has exited

	mu      sync.Mutex
	peakCPU float64 // highest CPU use over a sampling interval, in cores
	peakMem goMem   // the memory reading of the highest RSS (sampleMemory)
	// The highest readings of each since memoryAtPeak, in bytes.
	maxHeap, maxStack, maxNextGC float64
	stop                         chan struct{}
	sampled                      chan struct{}
}

// startControlPlane runs bin as a control plane on grpcAddr and
// adminAddr and waits until it reports ready.
func startControlPlane(ctx context.Context, bin, dir, grpcAddr, adminAddr string, profiling bool, env []string) (*controlPlane, error) {
	args := []string{"controlplane",
		"--config-dir", filepath.Join(dir, "config"),
		"--data-dir", filepath.Join(dir, "data"),
		"--listen", grpcAddr, "--admin", adminAddr,
	}
	if profiling {
		args = append(args, "--profiling")
	}
	logf, err := os.OpenFile(filepath.Join(dir, "controlplane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	cp := &controlPlane{cmd: cmd, admin: adminAddr, done: make(chan struct{}), stop: make(chan struct{}), sampled: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(cp.done) }()
	go cp.sample()
	go cp.sampleMemory()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get("http://" + adminAddr + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cp, nil
			}
		}
		select {
		case <-cp.done:
			return nil, fmt.Errorf("control plane exited before ready (see %s)", filepath.Join(dir, "controlplane.log"))
		case <-ctx.Done():
			cp.kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cp.kill()
			return nil, fmt.Errorf("control plane not ready after 60s")
		}
	}
}

// sample records the control plane's CPU use every 100 ms until it exits.
func (cp *controlPlane) sample() {
	defer close(cp.sampled)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	lastCPU, lastAt := cp.cpuSeconds(), time.Now()
	for lastCPU < 0 {
		select {
		case <-cp.done:
			return
		case <-t.C:
		}
		lastCPU, lastAt = cp.cpuSeconds(), time.Now()
	}
	for {
		select {
		case <-cp.done:
			return
		case <-t.C:
		}
		c, now := cp.cpuSeconds(), time.Now()
		// CPU time is accounted in ticks, in bursts on this paravirtualized
		// machine: measure over windows of at least a second.
		if c < 0 || now.Sub(lastAt) < time.Second {
			continue
		}
		use := (c - lastCPU) / now.Sub(lastAt).Seconds()
		cp.mu.Lock()
		cp.peakCPU = max(cp.peakCPU, use)
		cp.mu.Unlock()
		lastCPU, lastAt = c, now
	}
}

// resetPeakCPU starts a new peak measurement and returns the previous one.
func (cp *controlPlane) resetPeakCPU() float64 {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	p := cp.peakCPU
	cp.peakCPU = 0
	return p
}

// cpuSeconds is the process's user plus system CPU time, -1 if unknown.
func (cp *controlPlane) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cp.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	rest := s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(rest)
	if len(f) < 13 {
		return -1
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// memory returns the process's VmHWM (peak RSS) and VmRSS in MiB.
func (cp *controlPlane) memory() (peak, now float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", cp.cmd.Process.Pid))
	if err != nil {
		return -1, -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmHWM":
			peak = kb / 1024
		case "VmRSS":
			now = kb / 1024
		}
	}
	return peak, now
}

// terminate stops the process as an operator would (SIGTERM) and waits.
func (cp *controlPlane) terminate() {
	_ = cp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cp.done:
	case <-time.After(15 * time.Second):
		cp.kill()
	}
	<-cp.sampled
}

func (cp *controlPlane) kill() {
	_ = cp.cmd.Process.Kill()
	<-cp.done
}

// proxyStatus is the part of /debug/proxy-status the benchmark reads.
type proxyStatus struct {
	ID     string `json:"id"`
	Synced bool   `json:"synced"`
}

// synced returns how many proxies the control plane sees connected and in
// sync.
func (cp *controlPlane) synced() (connected, synced int, err error) {
	resp, err := http.Get("http://" + cp.admin + "/debug/proxy-status")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var st []proxyStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, 0, err
	}
	for _, s := range st {
		if s.Synced {
			synced++
		}
	}
	return len(st), synced, nil
}

// configValid reports whether the control plane has every resource of its
// config directory in force (/debug/config), so that a benchmark never
// measures a half-rejected mesh.
func (cp *controlPlane) configValid() error {
	resp, err := http.Get("http://" + cp.admin + "/debug/config")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var d struct {
		Valid    bool              `json:"valid"`
		Rejected []json.RawMessage `json:"rejected"`
		Error    string            `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return err
	}
	if !d.Valid {
		return fmt.Errorf("control plane rejected %d resources of the generated config %s", len(d.Rejected), d.Error)
	}
	return nil
}

// fetch saves an admin URL's body (a profile) to path.
func (cp *controlPlane) fetch(path, url string) error {
	resp, err := http.Get("http://" + cp.admin + url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// freePort returns a loopback address with a port free now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// goMemory returns the Go runtime's view of the control plane's memory,
// from its /metrics: goroutines, heap in use, stacks, and the heap size
// at which the next GC starts, in MiB but for goroutines. It is what the
// RSS is made of: live heap, GC headroom up to next_gc, and stacks.
func (cp *controlPlane) goMemory() (string, error) {
	m, err := cp.readGoMemory()
	if err != nil {
		return "", err
	}
	return m.String(), nil
}

// goMem is one reading of the control plane's memory: its RSS from /proc
// and the Go runtime's figures from /metrics, in bytes but for goroutines.
type goMem struct {
	rss                                       float64
	goroutines, heapInuse, stackInuse, nextGC float64
	sys                                       float64
}

func (m goMem) String() string {
	return fmt.Sprintf("goroutines=%.0f heap_inuse=%.0fMiB stack_inuse=%.0fMiB next_gc=%.0fMiB go_sys=%.0fMiB",
		m.goroutines, m.heapInuse/(1<<20), m.stackInuse/(1<<20), m.nextGC/(1<<20), m.sys/(1<<20))
}

func (cp *controlPlane) readGoMemory() (goMem, error) {
	var m goMem
	resp, err := http.Get("http://" + cp.admin + "/metrics")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	fields := map[string]*float64{
		"go_goroutines":                 &m.goroutines,
		"go_memstats_heap_inuse_bytes":  &m.heapInuse,
		"go_memstats_stack_inuse_bytes": &m.stackInuse,
		"go_memstats_next_gc_bytes":     &m.nextGC,
		"go_memstats_sys_bytes":         &m.sys,
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if f := fields[name]; f != nil {
			if v, err := strconv.ParseFloat(value, 64); err == nil {
				*f = v
			}
		}
	}
	_, m.rss = cp.memory()
	m.rss *= 1 << 20
	return m, sc.Err()
}

// sampleMemory reads the control plane's memory every 250 ms until it
// exits, keeping the reading of the highest RSS (see memoryAtPeak): what
// the peak is made of, which VmHWM alone does not say.
func (cp *controlPlane) sampleMemory() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-cp.done:
			return
		case <-t.C:
		}
		m, err := cp.readGoMemory()
		if err != nil {
			continue
		}
		cp.mu.Lock()
		if m.rss > cp.peakMem.rss {
			cp.peakMem = m
		}
		cp.maxHeap = max(cp.maxHeap, m.heapInuse)
		cp.maxStack = max(cp.maxStack, m.stackInuse)
		cp.maxNextGC = max(cp.maxNextGC, m.nextGC)
		cp.mu.Unlock()
	}
}

// memoryAtPeak returns the reading of the highest RSS since the last
// call, as "rss=R <goMem>", with the highest heap, stack and GC goal
// sampled meanwhile, and starts a new one.
func (cp *controlPlane) memoryAtPeak() string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	m := cp.peakMem
	s := fmt.Sprintf("rss=%.0fMiB %s; highest sampled heap_inuse=%.0fMiB stack_inuse=%.0fMiB next_gc=%.0fMiB",
		m.rss/(1<<20), m, cp.maxHeap/(1<<20), cp.maxStack/(1<<20), cp.maxNextGC/(1<<20))
	cp.peakMem, cp.maxHeap, cp.maxStack, cp.maxNextGC = goMem{}, 0, 0, 0
	return s
}
