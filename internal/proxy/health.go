package proxy

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zmesh/zmesh/internal/connlimit"
)

// Listeners for the kubelet.
//
// The kubelet probes a pod from its node, on the pod's IP: a listener on
// loopback is out of its reach. The admin listener, though, must stay on
// loopback in a pod, since it stops the proxy (POST /quitquitquit) and
// shows its configuration and certificates (/debug/*) to whoever reaches
// it. So, as Istio splits Envoy's admin (127.0.0.1:15000) from the
// agent's status port (15020) and the health port (15021), the proxy can
// serve two more listeners meant to be bound on every address, each with
// a single purpose and nothing else on it:
//
//   - the health listener (Config.HealthAddr, Istio's 15021) answers
//     GET /healthz/ready with the proxy's own readiness, the same answer
//     as the admin's /ready (readiness is its one source);
//   - the app-health listener (Config.AppHealthAddr, Istio's 15020)
//     serves the app's rewritten probes, GET /app-health/CONTAINER/
//     livez|readyz|startupz, which run the original probe against the app
//     from inside the pod (see probe.go), POST /quitquitquit, from
//     loopback only (the pod's own containers), and the metrics at
//     GET /stats/prometheus, as Istio's agent does.
//
// Serving only these paths, rather than the admin mux behind a check of
// the caller's address, keeps a forgotten or future admin endpoint off
// the pod's network by construction: what is not routed cannot leak.
// Both listeners are bounded as the control plane's admin port is
// (connections per source and in total, time-outs, small headers): the
// kubelet opens a fresh connection per probe, and anyone who can reach
// the pod can reach these ports.

// Bounds of the health and app-health listeners: kubelets and load
// balancers, a handful of connections at a time.
const (
	healthPerSource     = 16
	healthTotal         = 64
	healthHeaderBytes   = 8 << 10
	healthReadTimeout   = 10 * time.Second
	healthIdleTimeout   = 30 * time.Second
	healthWriteDeadline = 10 * time.Second
)

// serveReady answers the proxy's readiness: 200 "ready" when it may get
// traffic, 503 with the reason otherwise. It is both the admin's /ready
// and the health listener's /healthz/ready.
func (p *Proxy) serveReady(w http.ResponseWriter, _ *http.Request) {
	if err := p.readiness(); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}

// newHealthServer returns the health listener's server: GET
// /healthz/ready and nothing else.
func newHealthServer(p *Proxy) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/ready", p.serveReady)
	srv := boundedServer(p, mux)
	srv.WriteTimeout = healthWriteDeadline
	return srv
}

// newAppHealthServer returns the app-health listener's server: the app's
// rewritten probes, POST /quitquitquit from loopback and the proxy's
// metrics at /stats/prometheus, as Istio's agent serves them on its
// status port (15020), where a Job's app posts quitquitquit when done;
// nothing else. It has no write time-out: a probe may take its
// own timeoutSeconds, which bounds the handler instead. It must be made
// after the admin server, whose quit it shares.
func newAppHealthServer(p *Proxy) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /app-health/{container}/{probe}", p.serveAppHealth)
	mux.HandleFunc("POST /quitquitquit", p.lifecycle().serveQuit(p))
	// The proxy's metrics, for Prometheus scraping the pod's address
	// (the injector's prometheus.io annotations name this path).
	mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{}))
	return boundedServer(p, mux)
}

func boundedServer(p *Proxy, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(readHeaderTimeout, healthReadTimeout),
		ReadTimeout:       healthReadTimeout,
		IdleTimeout:       healthIdleTimeout,
		MaxHeaderBytes:    healthHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
}

// listenBounded binds addr and bounds the connections it holds (see the
// comment at the top of this file).
func (p *Proxy) listenBounded(name, addr string, m *connlimit.Metrics) (net.Listener, error) {
	ln, err := p.listenTCP(name, addr)
	if err != nil {
		return nil, err
	}
	bl, err := connlimit.NewListener(ln, connlimit.Config{PerSource: healthPerSource, Total: healthTotal, Name: name, Metrics: m})
	if err != nil {
		ln.Close()
		return nil, err
	}
	return bl, nil
}

// HealthAddr returns the bound address of the health listener, nil
// without one.
func (p *Proxy) HealthAddr() net.Addr {
	if p.healthLn == nil {
		return nil
	}
	return p.healthLn.Addr()
}

// AppHealthAddr returns the bound address of the app-health listener, nil
// without one.
func (p *Proxy) AppHealthAddr() net.Addr {
	if p.appHealthLn == nil {
		return nil
	}
	return p.appHealthLn.Addr()
}
