package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newAdminServer returns the admin HTTP server: /metrics, /ready,
// /debug/config, /debug/certs, the lifecycle endpoints (POST
// /quitquitquit) and the app's rewritten probes (/app-health/...).
func newAdminServer(p *Proxy) *http.Server {
	a := &admin{mux: http.NewServeMux(), quit: make(chan struct{})}
	mux := a.mux
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /ready", p.serveReady)
	mux.HandleFunc("POST /quitquitquit", a.serveQuit(p))
	mux.HandleFunc("GET /app-health/{container}/{probe}", p.serveAppHealth)
	mux.HandleFunc("GET /debug/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, p.debugConfig())
	})
	mux.HandleFunc("GET /debug/certs", func(w http.ResponseWriter, _ *http.Request) {
		if p.cfg.CertStatus == nil {
			writeJSON(w, map[string]any{})
			return
		}
		writeJSON(w, p.cfg.CertStatus())
	})
	return &http.Server{
		Handler:           a,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
}

// admin is the admin server's handler, and the proxy's lifecycle state
// that its endpoints report and change: whether the proxy is draining,
// whether a local process asked it to quit, and the app's probes. It is
// kept on the handler so that each part of the lifecycle has one home.
type admin struct {
	mux      *http.ServeMux
	draining atomic.Bool
	quit     chan struct{} // closed by the first accepted POST /quitquitquit
	quitOnce sync.Once
	probers  atomic.Pointer[AppProbers]
}

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// lifecycle returns the proxy's admin state.
func (p *Proxy) lifecycle() *admin { return p.admin.Handler.(*admin) }

// errDraining is the readiness of a draining proxy.
var errDraining = errors.New("draining")

// readiness says why the proxy must not get traffic yet (or any more), or
// nil when it may: it is not draining, it holds a certificate valid now,
// and it has applied configuration from the control plane. `zmesh up`
// starts the app only once this is nil (Istio's
// holdApplicationUntilProxyStarts), and a load balancer stops sending
// when a drain begins.
func (p *Proxy) readiness() error {
	if p.lifecycle().draining.Load() {
		return errDraining
	}
	if err := p.Ready(); err != nil {
		return err
	}
	svid, err := p.cfg.Certs.GetX509SVID()
	if err != nil {
		return fmt.Errorf("no certificate: %w", err)
	}
	if len(svid.Certificates) == 0 {
		return errors.New("no certificate: empty chain")
	}
	leaf, now := svid.Certificates[0], p.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return fmt.Errorf("certificate not valid now (valid %s to %s)", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// QuitRequested is closed once a local process has asked the proxy to
// stop with POST /quitquitquit (Istio's pilot-agent endpoint, which a
// job's app calls when it is done). The owner of the proxy then drains it
// as it would on SIGTERM.
func (p *Proxy) QuitRequested() <-chan struct{} { return p.lifecycle().quit }

// serveQuit accepts POST /quitquitquit from loopback only. An injected
// pod keeps the admin listener on loopback (the kubelet's probes go to
// the health and app-health listeners, health.go), but an admin listener
// may still be bound to every address (`zmesh up --capture` does, for
// the host), and no other host may stop the proxy.
func (a *admin) serveQuit(p *Proxy) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !fromLoopback(r) {
			p.log.Warn("quitquitquit refused: not from loopback", "peer", r.RemoteAddr)
			writeText(w, http.StatusForbidden, "quitquitquit is accepted from loopback only\n")
			return
		}
		a.quitOnce.Do(func() {
			p.log.Info("quitquitquit: stopping", "peer", r.RemoteAddr)
			close(a.quit)
		})
		writeText(w, http.StatusOK, "OK\n")
	}
}

// fromLoopback reports whether r's TCP peer is a loopback address.
func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// debugConfig is the JSON of /debug/config.
type debugConfig struct {
	Version     string `json:"version"`
	Applied     bool   `json:"applied"`
	Workload    string `json:"workload"`
	Identity    string `json:"identity"`
	TrustDomain string `json:"trustDomain"`
	// TrustDomainAliases are the other trust domains whose peers are
	// accepted as the mesh's (with the view's mesh trust domain, if it
	// differs from the proxy's own).
	TrustDomainAliases    []string       `json:"trustDomainAliases,omitempty"`
	RootNamespace         string         `json:"rootNamespace,omitempty"`
	PeerAuthentication    debugPeerAuthn `json:"peerAuthentication"`
	PeerAuthentications   []string       `json:"peerAuthentications"`
	AuthorizationPolicies []string       `json:"authorizationPolicies"`
	// RequestAuthentications selecting the workload.
	RequestAuthentications []string `json:"requestAuthentications"`
	PathNormalization      string   `json:"pathNormalization,omitempty"`
	// ExtensionProviders are the ext_authz providers CUSTOM policies may
	// name.
	ExtensionProviders []string       `json:"extensionProviders,omitempty"`
	Services           []debugService `json:"services"`
	// VirtualServices routing the workload's outbound traffic.
	VirtualServices []string `json:"virtualServices,omitempty"`
	// GatewayPorts are, for a gateway, the ports its Gateways serve.
	GatewayPorts []debugGatewayPort `json:"gatewayPorts,omitempty"`
}

type debugPeerAuthn struct {
	Port   uint32 `json:"port"`
	Mode   string `json:"mode"`
	Source string `json:"source,omitempty"`
}

type debugService struct {
	Hostname string `json:"hostname"`
	// DestinationRules are the rules (merged when several) that govern
	// the proxy's traffic to the service.
	DestinationRules []string        `json:"destinationRules,omitempty"`
	Endpoints        []debugEndpoint `json:"endpoints"`
}

type debugEndpoint struct {
	Address  string `json:"address"`
	Identity string `json:"identity,omitempty"`
	MTLS     bool   `json:"mtls"`
	Workload string `json:"workload,omitempty"`
}

func (p *Proxy) debugConfig() debugConfig {
	d := debugConfig{
		Workload:               p.cfg.Workload.Namespace + "/" + p.cfg.Workload.Name,
		Identity:               p.selfStr,
		TrustDomain:            p.td.Name(),
		PeerAuthentications:    []string{},
		AuthorizationPolicies:  []string{},
		RequestAuthentications: []string{},
		Services:               []debugService{},
	}
	st := p.state.Load()
	if st == nil {
		return d
	}
	v := st.view
	d.Applied = true
	d.Version = v.Version
	d.RootNamespace = v.Mesh.RootNamespace
	if len(st.trustDomains) > 1 {
		d.TrustDomainAliases = trustDomainNames(st.trustDomains[1:])
	}
	d.PeerAuthentication = debugPeerAuthn{Port: p.appPort, Mode: st.mode.String(), Source: st.modeSource}
	for _, r := range v.PeerAuthentications {
		d.PeerAuthentications = append(d.PeerAuthentications, r.Key())
	}
	d.AuthorizationPolicies = append(d.AuthorizationPolicies, st.set.AuthorizationPolicies...)
	d.RequestAuthentications = append(d.RequestAuthentications, st.set.RequestAuthentications...)
	d.PathNormalization = st.norm.String()
	for name := range st.providers {
		d.ExtensionProviders = append(d.ExtensionProviders, name)
	}
	sort.Strings(d.ExtensionProviders)
	for _, s := range v.Services {
		ds := debugService{Hostname: s.Hostname, Endpoints: []debugEndpoint{}}
		if rt := st.routes.lookup(s.Hostname); rt != nil && rt.rule != nil {
			ds.DestinationRules = rt.rule.Keys
		}
		for _, e := range s.Endpoints {
			ds.Endpoints = append(ds.Endpoints, debugEndpoint{Address: e.Address, Identity: e.Identity, MTLS: e.HasProxy, Workload: e.Workload})
		}
		d.Services = append(d.Services, ds)
	}
	for _, r := range v.VirtualServices {
		d.VirtualServices = append(d.VirtualServices, r.Key())
	}
	d.GatewayPorts = p.debugGatewayPorts(st)
	return d
}
