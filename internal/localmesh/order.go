package localmesh

import (
	"context"
	"net"
	"sync"
	"time"
)

// Grace periods between SIGTERM and SIGKILL. A proxy drains for up to
// its --drain-duration (5s by default) before it exits, so it gets more.
const (
	appGrace   = 5 * time.Second
	proxyGrace = 10 * time.Second
)

// readyPoll is how often an app waiting for its proxy asks the proxy's
// /ready.
const readyPoll = 50 * time.Millisecond

// workloadProcs are one workload's two processes, started and stopped in
// Istio's order: the app only once its proxy is ready, so that its first
// connections find a proxy that holds a certificate and config
// (holdApplicationUntilProxyStarts); the proxy only once the app has
// exited, so that the app can still call out while it shuts down, as
// with Kubernetes' native sidecars.
type workloadProcs struct {
	proxy, app *process
	admin      string // the proxy's admin address, for /ready
}

// run supervises both processes until ctx is done and both have exited.
func (w workloadProcs) run(ctx context.Context) {
	proxyCtx, stopProxy := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProxy()
	var wg sync.WaitGroup
	wg.Go(func() { w.proxy.supervise(proxyCtx, proxyGrace) })
	if w.app == nil {
		// A gateway: its proxy alone, until ctx is done.
		<-ctx.Done()
		stopProxy()
		wg.Wait()
		return
	}
	w.app.before = func(ctx context.Context) error { return waitProxyReady(ctx, w.admin) }
	w.app.supervise(ctx, appGrace)
	stopProxy()
	wg.Wait()
}

// waitProxyReady returns once the proxy's /ready answers 200 (it holds a
// valid certificate and has applied config), or ctx's error. It waits as
// long as it takes: the mesh's own deadline (Config.ReadyWithin) reports
// a proxy that never gets ready.
func waitProxyReady(ctx context.Context, admin string) error {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for !httpOK("http://" + admin + "/ready") {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// appReadyz is the app's readiness probe on its proxy's admin port, as
// Istio rewrites a pod's probes: the proxy checks that the app accepts
// connections on its port, from inside the app's network namespace when
// captured, where the host could not.
const appReadyz = "/app-health/app/readyz"

// appProbers is the --app-probers JSON of m's proxy: appReadyz as a TCP
// probe of the app's port.
func appProbers(m member) string {
	_, port, _ := net.SplitHostPort(m.app)
	return `{"` + appReadyz + `":{"tcpSocket":{"port":` + port + `}}}`
}
