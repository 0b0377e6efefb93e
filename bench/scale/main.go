// Command scale measures the control plane at scale: one real `zmesh
// controlplane` process, N simulated proxies (the proxy's own delta-xDS
// client, internal/xds/client, each with its own identity and its own TLS
// connection; no data plane), M namespaces of policies. It changes one
// AuthorizationPolicy and measures, per proxy the change selects, the time
// from the edit of the file to the proxy applying the new view; it checks
// that no other proxy received a push; then it restarts the control plane
// with every proxy connected and measures the reconnect wave.
//
//	go run ./bench/scale --proxies 1000 [--namespaces 1000]
//
// What is real: the control plane binary (built with -tags grpcnotrace, as
// `make build`), its file watcher, CA, xDS server and connection bounds
// (defaults: simulated proxies connect from 127.1.x.y, at most 500 per
// source address, under the default 1,024 per source); gRPC over TLS with a
// client certificate per proxy; the client's ACK/NACK and reconnect logic.
// What is not: the first --csr-proxies proxies get their certificates
// through the CSR API with bootstrap tokens, the others from the CA's key
// in the data dir, signed in this process (N CSR round trips would measure
// the CA, which bench/ca does); a proxy's "apply" is recording the view.
//
// The last line is the contract of DESIGN §5:
//
//	scale: proxies=N p50=MS p99=MS cp_rss_mib=R pushed_proxies=K
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/ca"
)

type options struct {
	proxies, namespaces, apps, services, csrProxies int
	zmesh, profile                                  string
	reconnect, keep                                 bool
	timeout                                         time.Duration
	cpProcs                                         int
	cpMemLimit, cpGOGC                              string
	connectRate                                     int
}

func main() {
	var o options
	flag.IntVar(&o.proxies, "proxies", 1000, "simulated proxies")
	flag.IntVar(&o.namespaces, "namespaces", 1000, "namespaces, each with a PeerAuthentication and 1+apps AuthorizationPolicies")
	flag.IntVar(&o.apps, "apps", 4, "app labels (and selector AuthorizationPolicies) per namespace")
	flag.IntVar(&o.services, "services", 20, "proxies (the first ones) that register a service; every proxy is sent every service")
	flag.IntVar(&o.csrProxies, "csr-proxies", 64, "proxies that get their certificate through the CSR API with a bootstrap token")
	flag.StringVar(&o.zmesh, "zmesh", "", "zmesh binary (default: built from ./cmd/zmesh with -tags grpcnotrace)")
	flag.StringVar(&o.profile, "profile", "", "directory for control plane profiles (CPU during connect, change and reconnect; heap after sync, after a GC)")
	flag.BoolVar(&o.reconnect, "reconnect", true, "restart the control plane with every proxy connected and measure the wave")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (config, data, control plane log)")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after")
	flag.IntVar(&o.connectRate, "connect-rate", 500, "proxies started per second at the start (0: all at once); the reconnect wave is always all at once")
	flag.IntVar(&o.cpProcs, "cp-gomaxprocs", 0, "GOMAXPROCS of the control plane (0: Go's default)")
	flag.StringVar(&o.cpMemLimit, "cp-gomemlimit", "", "GOMEMLIMIT of the control plane (e.g. 900MiB; empty: none)")
	flag.StringVar(&o.cpGOGC, "cp-gogc", "", "GOGC of the control plane (empty: the binary's default)")
	selfProfile := flag.String("self-cpuprofile", "", "write this process's CPU profile (the simulated proxies) to a file")
	flag.Parse()
	if *selfProfile != "" {
		pf, err := os.Create(*selfProfile)
		if err == nil {
			err = pprof.StartCPUProfile(pf)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if o.proxies < 1 || o.namespaces < 1 || o.apps < 1 || o.services < 0 || o.csrProxies < 0 {
		fmt.Fprintln(os.Stderr, "scale: --proxies, --namespaces and --apps must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	err := run(ctx, o)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("scale: "+format+"\n", args...)
}

func run(ctx context.Context, o options) (err error) {
	dir, err := os.MkdirTemp("", "zmesh-scale-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("work directory %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	m := mesh{proxies: o.proxies, namespaces: o.namespaces, apps: o.apps, services: min(o.services, o.proxies)}
	for _, d := range []string{"config", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	if err := m.writeConfig(filepath.Join(dir, "config")); err != nil {
		return err
	}
	authority, err := ca.Load(ca.Config{DataDir: filepath.Join(dir, "data"), TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local")})
	if err != nil {
		return err
	}
	bin := o.zmesh
	if bin == "" {
		bin = filepath.Join(dir, "zmesh")
		build := exec.CommandContext(ctx, "go", "build", "-tags", "grpcnotrace", "-trimpath", "-o", bin, "./cmd/zmesh")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build zmesh (run from the module root, or give --zmesh): %w", err)
		}
	}
	grpcAddr, err := freePort()
	if err != nil {
		return err
	}
	adminAddr, err := freePort()
	if err != nil {
		return err
	}
	profiling := o.profile != ""
	if profiling {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	cp, err := startControlPlane(ctx, bin, dir, grpcAddr, adminAddr, profiling, o.cpEnv())
	if err != nil {
		return err
	}
	defer func() {
		if cp != nil {
			cp.kill()
		}
	}()
	if err := cp.configValid(); err != nil {
		return err
	}
	_, cpStartRSS := cp.memory()
	logf("control plane ready: %d namespaces, %d policies, rss=%.0fMiB", o.namespaces, o.namespaces*(2+o.apps)+1, cpStartRSS)

	// Identities.
	roots := authority.BundlePool()
	nCSR := min(o.csrProxies, o.proxies)
	start := time.Now()
	byCSR, err := signByCSR(ctx, authority, m, grpcAddr, roots, nCSR)
	if err != nil {
		return err
	}
	csrTook := time.Since(start)
	start = time.Now()
	direct, err := signDirect(authority, m, nCSR, o.proxies)
	if err != nil {
		return err
	}
	logf("identities: %d by bootstrap token and CSR over gRPC (%s), %d signed from the data dir (%s)",
		nCSR, csrTook.Round(time.Millisecond), len(direct), time.Since(start).Round(time.Millisecond))
	certs := append(byCSR, direct...)

	f, err := newFleet(m, grpcAddr, roots, certs)
	if err != nil {
		return err
	}

	// Connect.
	runCtx, stopFleet := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopFleet(); wg.Wait() }()
	cpu0 := cp.cpuSeconds()
	cp.resetPeakCPU()
	var profWG sync.WaitGroup
	defer profWG.Wait()
	profileCPU := func(name string, seconds int) {
		if !profiling {
			return
		}
		profWG.Go(func() {
			if err := cp.fetch(filepath.Join(o.profile, name), fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds)); err != nil {
				logf("profile %s: %v", name, err)
			}
		})
	}
	// The connect profile covers the expected connect time; the change's
	// profile waits for it to end (one CPU profile at a time).
	connectSecs := 20
	if o.connectRate > 0 {
		connectSecs = min(60, max(5, o.proxies/o.connectRate+5))
	}
	profileCPU("cpu-connect.pprof", connectSecs)
	start = time.Now()
	for i, s := range f.sims {
		if o.connectRate > 0 && i > 0 && i%(max(1, o.connectRate/10)) == 0 {
			// Pods start over time; a tenth of a second's worth at once.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(o.connectRate)))):
			}
		}
		wg.Go(func() { _ = s.client.Run(runCtx) })
	}
	for _, s := range f.sims {
		select {
		case <-s.client.Synced():
		case <-ctx.Done():
			return fmt.Errorf("waiting for proxies to sync: %w", ctx.Err())
		}
	}
	allSynced := time.Since(start)
	// Proxies that registered services change every view: wait for the
	// last of those pushes to settle.
	if err := f.quiet(ctx, time.Second); err != nil {
		return err
	}
	settled := time.Duration(f.lastAnyApply.Load() - start.UnixNano())
	connectPeak, _ := cp.memory()
	var syncBytes, syncDials int64
	for _, s := range f.sims {
		syncBytes += s.bytesIn.Load()
		syncDials += s.dials.Load()
	}
	logf("connect: %d proxies synced in %s, last push at %s; control plane cpu=%.1fs peak_cpu=%.2f cores rss_peak=%.0fMiB; %.0f bytes read and %.2f dials per proxy",
		o.proxies, allSynced.Round(time.Millisecond), settled.Round(time.Millisecond), cp.cpuSeconds()-cpu0, cp.resetPeakCPU(), connectPeak,
		float64(syncBytes)/float64(o.proxies), float64(syncDials)/float64(o.proxies))
	if mem, err := cp.goMemory(); err == nil {
		logf("memory after sync: %s", mem)
	}
	logf("memory at the connect's highest sampled RSS: %s", cp.memoryAtPeak())
	if profiling {
		if err := cp.fetch(filepath.Join(o.profile, "heap.pprof"), "/debug/pprof/heap?gc=1"); err != nil {
			logf("heap profile: %v", err)
		}
	}

	// Change one policy.
	before := make([]int64, len(f.sims))
	for i, s := range f.sims {
		before[i] = s.bytesIn.Load()
	}
	profWG.Wait()
	cpu0 = cp.cpuSeconds()
	profileCPU("cpu-change.pprof", 3)
	editAt := time.Now()
	f.editAt.Store(editAt.UnixNano())
	if err := m.edit(filepath.Join(dir, "config")); err != nil {
		return err
	}
	var latencies []time.Duration
	expected := 0
	for i, s := range f.sims {
		if !m.selected(i) {
			continue
		}
		expected++
		for s.changedAt.Load() == 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s to apply the change: %w", s.id, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
		latencies = append(latencies, time.Duration(s.changedAt.Load()-editAt.UnixNano()))
	}
	// Anything pushed to a proxy the change does not select would come
	// with the same push; give it two seconds to show.
	if err := f.quiet(ctx, 2*time.Second); err != nil {
		return err
	}
	pushed, wrong, missed := 0, 0, 0
	var pushedBytes, otherBytes int64
	for i, s := range f.sims {
		got := s.changedAt.Load() != 0
		n := s.bytesIn.Load() - before[i]
		if got {
			pushed++
			pushedBytes += n
		} else {
			otherBytes += n
		}
		if got && !m.selected(i) {
			wrong++
		}
		if m.selected(i) && !s.sawEdit.Load() {
			missed++
		}
	}
	changeCPU := cp.cpuSeconds() - cpu0
	cpPeak, _ := cp.memory()
	p50, p99 := percentile(latencies, 0.50), percentile(latencies, 0.99)
	logf("change: %s edited; %d proxies selected, %d pushed (%d not selected), %d without the edit; p50=%.1fms p99=%.1fms max=%.1fms; %.0f bytes read per pushed proxy, %.1f per other; control plane cpu=%.2fs",
		m.editedPolicy(), expected, pushed, wrong, missed, ms(p50), ms(p99), ms(slices.Max(latencies)),
		safeDiv(pushedBytes, pushed), safeDiv(otherBytes, o.proxies-pushed), changeCPU)

	// Reconnect wave.
	if o.reconnect {
		if err := reconnectWave(ctx, &cp, o, bin, dir, grpcAddr, adminAddr, f); err != nil {
			return err
		}
	}

	fmt.Printf("scale: proxies=%d p50=%.1f p99=%.1f cp_rss_mib=%.0f pushed_proxies=%d\n", o.proxies, ms(p50), ms(p99), cpPeak, pushed)
	if wrong > 0 || missed > 0 || pushed != expected {
		return fmt.Errorf("%d proxies selected by the change, %d pushed, %d pushed without being selected, %d selected without the edit", expected, pushed, wrong, missed)
	}
	return nil
}

// reconnectWave stops the control plane with every proxy connected,
// starts it again on the same addresses and data dir, and measures the
// time until it sees every proxy in sync again, its CPU and memory, and
// how many times the proxies dialled.
func reconnectWave(ctx context.Context, cpp **controlPlane, o options, bin, dir, grpcAddr, adminAddr string, f *fleet) error {
	var dials0 int64
	for _, s := range f.sims {
		dials0 += s.dials.Load()
	}
	stopped := time.Now()
	(*cpp).terminate()
	*cpp = nil
	stopTook := time.Since(stopped)
	started := time.Now()
	cp, err := startControlPlane(ctx, bin, dir, grpcAddr, adminAddr, o.profile != "", o.cpEnv())
	if err != nil {
		return err
	}
	*cpp = cp
	ready := time.Since(started)
	if o.profile != "" {
		go func() {
			if err := cp.fetch(filepath.Join(o.profile, "cpu-reconnect.pprof"), "/debug/pprof/profile?seconds=10"); err != nil {
				logf("profile cpu-reconnect.pprof: %v", err)
			}
		}()
	}
	var connected, synced int
	for {
		connected, synced, err = cp.synced()
		if err == nil && synced >= o.proxies {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reconnect wave: %d of %d proxies connected, %d synced: %w", connected, o.proxies, synced, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	took := time.Since(started)
	var dials int64
	for _, s := range f.sims {
		dials += s.dials.Load()
	}
	peak, _ := cp.memory()
	logf("reconnect: control plane stopped in %s, ready %s after start; all %d proxies back in sync %s after start (%s after stop); %d dials (%.2f per proxy); control plane cpu=%.1fs peak_cpu=%.2f cores rss_peak=%.0fMiB",
		stopTook.Round(time.Millisecond), ready.Round(time.Millisecond), o.proxies, took.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond),
		dials-dials0, float64(dials-dials0)/float64(o.proxies), cp.cpuSeconds(), cp.resetPeakCPU(), peak)
	logf("memory at the wave's highest sampled RSS: %s", cp.memoryAtPeak())
	if mem, err := cp.goMemory(); err == nil {
		logf("memory after the wave: %s", mem)
	}
	return nil
}

// quiet waits until no proxy has applied a view for d.
func (f *fleet) quiet(ctx context.Context, d time.Duration) error {
	for {
		last := time.Unix(0, f.lastAnyApply.Load())
		wait := time.Until(last.Add(d))
		if wait <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("waiting for pushes to settle: " + ctx.Err().Error())
		case <-time.After(wait):
		}
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func safeDiv(a int64, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// cpEnv is the control plane's environment beyond this process's own:
// the runtime settings asked for.
func (o options) cpEnv() []string {
	var env []string
	if o.cpProcs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", o.cpProcs))
	}
	if o.cpMemLimit != "" {
		env = append(env, "GOMEMLIMIT="+o.cpMemLimit)
	}
	if o.cpGOGC != "" {
		env = append(env, "GOGC="+o.cpGOGC)
	}
	return env
}
