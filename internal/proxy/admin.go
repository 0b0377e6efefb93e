package proxy

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newAdminServer returns the admin HTTP server: /metrics, /ready,
// /debug/config and /debug/certs.
func newAdminServer(p *Proxy) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := p.Ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	})
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
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
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
}

type debugPeerAuthn struct {
	Port   uint32 `json:"port"`
	Mode   string `json:"mode"`
	Source string `json:"source,omitempty"`
}

type debugService struct {
	Hostname  string          `json:"hostname"`
	Endpoints []debugEndpoint `json:"endpoints"`
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
		for _, e := range s.Endpoints {
			ds.Endpoints = append(ds.Endpoints, debugEndpoint{Address: e.Address, Identity: e.Identity, MTLS: e.HasProxy, Workload: e.Workload})
		}
		d.Services = append(d.Services, ds)
	}
	return d
}
