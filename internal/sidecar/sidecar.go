// Package sidecar wires the parts of `zmesh proxy` into one process: the
// agent (identity: key, CSR, rotation), the xDS client (config from the
// control plane) and the data plane. The agent gets a certificate first;
// the xDS stream then authenticates with it, and every config push is
// handed to the data plane, which compiles it or refuses it (NACK).
package sidecar

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/sds"
	"github.com/zmesh/zmesh/internal/agent/workloadapi"
	"github.com/zmesh/zmesh/internal/boundedio"
	"github.com/zmesh/zmesh/internal/exepages"
	"github.com/zmesh/zmesh/internal/proxy"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/client"
)

// Config configures one sidecar.
type Config struct {
	ControlPlane string // host:port of the control plane's gRPC/TLS port
	RootCertFile string // the mesh trust bundle (the control plane's root-cert.pem)
	TokenFile    string // bootstrap token, read when a certificate is needed and none is held
	Workload     registry.Workload
	TrustDomain  string
	DNSDomain    string
	CertTTL      time.Duration // requested certificate lifetime; 0 = the CA's default
	// Clock is the agent's and the proxy's notion of now: certificate
	// renewal, the validity of the certificates it receives and of its
	// peers', JWT checks. Nil means time.Now; `zmesh proxy --clock-offset`
	// (a hidden test hook) sets an offset one to inject clock skew.
	Clock func() time.Time

	InboundAddr, OutboundAddr, AdminAddr, AppAddr string
	// AdminAllow limits the admin listener to loopback and these
	// networks (proxy.Config.AdminAllow).
	AdminAllow []netip.Prefix
	// HealthAddr and AppHealthAddr, when set, are the proxy's health
	// listener (GET /healthz/ready) and app-health listener (the app's
	// rewritten probes only), the ports the kubelet probes on a pod's IP;
	// see proxy.Config.
	HealthAddr, AppHealthAddr string
	// Listeners binds the proxy's listeners (proxy.Config.Listeners);
	// nil means net.Listen.
	Listeners proxy.Listeners
	// AdvertiseAddr is where other proxies reach this one's inbound
	// listener; default InboundAddr.
	AdvertiseAddr string
	// TunnelAddr, when set, is the proxy's HBONE tunnel listener
	// (proxy.Config.TunnelAddr), advertised on AdvertiseAddr's host.
	TunnelAddr string

	// WorkloadAPISocket, when set, serves the SPIFFE Workload API there so
	// SPIFFE-aware apps fetch their SVID from this agent.
	WorkloadAPISocket string
	// SDSSocket, when set, serves Envoy's SDS there ("default", "ROOTCA",
	// and SDSFiles under their names).
	SDSSocket string
	SDSFiles  []sds.File
	// KeyType is the workload key's type; default ECDSA P-256.
	KeyType agent.KeyType
	// AccessLog turns on one log line per request.
	AccessLog bool
	// DrainDuration bounds the drain on SIGTERM (the end of Run's
	// context) or POST /quitquitquit: in-flight requests, TCP streams
	// (captured ones included) and upgraded connections get that long to
	// finish before the proxy closes them and exits, sooner when the last
	// one ends; default DefaultDrainDuration.
	DrainDuration time.Duration
	// GCPercent is the garbage collector's target heap growth over the
	// live heap (as GOGC); 0 means DefaultGCPercent, negative leaves the
	// runtime's setting alone.
	GCPercent int
	// KeepStartupPages keeps the pages of the executable that only the
	// start used mapped; by default they are given back once the proxy
	// is configured (package exepages).
	KeepStartupPages bool
	// AppProbers are the app's original probes, served on the admin
	// port's /app-health/... (Istio's ISTIO_KUBE_APP_PROBERS).
	AppProbers proxy.AppProbers

	// Transparent capture (see proxy.Config): OriginalDst recovers a
	// redirected connection's destination; nil leaves capture off.
	OriginalDst              func(net.Conn) (netip.AddrPort, error)
	ProtocolDetectionTimeout time.Duration
	// DNSAddr, when set, answers DNS there (mesh names, the rest
	// forwarded to DNSUpstreams).
	DNSAddr      string
	DNSUpstreams []string
	// CredentialDir is where DestinationRule credentialNames are found
	// (proxy.Config.CredentialDir), and a gateway's servers' ones.
	CredentialDir string
	// Gateway, when set, runs a gateway instead of a sidecar
	// (proxy.Config.Gateway): no app, the Gateways selecting its labels
	// served on their ports; it registers as one with the control plane.
	Gateway *proxy.GatewayConfig

	Logger *slog.Logger
}

// DefaultGCPercent is a proxy's GC target: the heap may grow by half the
// live heap between collections, not all of it. A proxy's live heap is a
// few MiB, under Go's 4 MiB floor for its default target, so the target
// sets much of its memory: at 1,000 requests/s it held ~1.7 MiB less
// (bench/latency.sh, anonymous RSS 9.1–9.8 against 10.7–11.5 MiB) for no
// CPU cost that showed (pair CPU per request 297–307 against 281–312 µs,
// three alternating runs). Saturated, it costs: ~8% more CPU a request
// (docs/benchmarks.md). Most proxies are idle most of the time, and an
// idle one makes no garbage: the memory is what every pod pays, the CPU
// only a busy one; GOGC in the environment wins for those.
const DefaultGCPercent = 50

// gcPercent is the GC target Config.GCPercent asks for, and whether it
// asks for one at all.
func gcPercent(configured int) (int, bool) {
	switch {
	case configured < 0:
		return 0, false
	case configured == 0:
		return DefaultGCPercent, true
	}
	return configured, true
}

// DefaultDrainDuration is Istio's terminationDrainDuration default.
const DefaultDrainDuration = 5 * time.Second

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if c.ControlPlane == "" || c.RootCertFile == "" {
		return errors.New("sidecar: control plane address and root certificate are required")
	}
	if c.Workload.Name == "" || c.Workload.Namespace == "" || c.Workload.ServiceAccount == "" {
		return errors.New("sidecar: workload name, namespace and service account are required")
	}
	if c.AppAddr == "" {
		return errors.New("sidecar: app address is required")
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.DNSDomain == "" {
		c.DNSDomain = "cluster.local"
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.InboundAddr
	}
	if c.DrainDuration < 0 {
		return fmt.Errorf("sidecar: drain duration %s is negative", c.DrainDuration)
	}
	if c.DrainDuration == 0 {
		c.DrainDuration = DefaultDrainDuration
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Run runs the sidecar until ctx is done (SIGTERM) or a local process
// posts /quitquitquit, then drains the proxy (see proxy.Drain) for at
// most DrainDuration and stops everything. At the start of the drain the
// xDS stream closes, so the control plane takes this workload out of the
// mesh's endpoints; the agent keeps its certificate to the end.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	td, roots, err := loadTrustBundle(cfg)
	if err != nil {
		return err
	}
	p, err := build(cfg, td, roots)
	if err != nil {
		return err
	}
	if gc, set := gcPercent(cfg.GCPercent); set {
		defer debug.SetGCPercent(debug.SetGCPercent(gc))
	}

	// The parts outlive ctx by the drain: they stop when runCtx is
	// cancelled, the xDS client when xdsCtx is.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	xdsCtx, stopXDS := context.WithCancel(runCtx)
	defer stopXDS()
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	p.start(runCtx, xdsCtx, &wg, errc)
	if !cfg.KeepStartupPages {
		wg.Go(func() { releaseStartupPages(runCtx, p.proxy, cfg.Logger) })
	}
	cfg.Logger.Info("proxy starting", "workload", p.workload.Key(), "inbound", cfg.InboundAddr, "outbound", cfg.OutboundAddr,
		"admin", cfg.AdminAddr, "app", cfg.AppAddr, "controlplane", cfg.ControlPlane)
	var runErr error
	select {
	case <-ctx.Done():
		cfg.Logger.Info("stopping: signal", "drain", cfg.DrainDuration)
	case <-p.proxy.QuitRequested():
		cfg.Logger.Info("stopping: quitquitquit", "drain", cfg.DrainDuration)
	case runErr = <-errc:
	}
	if runErr == nil {
		stopXDS()
		dctx, stop := context.WithTimeout(runCtx, cfg.DrainDuration)
		_ = p.proxy.Drain(dctx) // logs what it closed
		stop()
	}
	cancel()
	wg.Wait()
	return runErr
}

// startupPagesDelay is how long after its first configuration the proxy
// gives back the executable's pages that its start used: the start's
// bursts (the first connections, the listeners' accept loops) are over.
const startupPagesDelay = 2 * time.Second

// releaseStartupPages gives back the pages of the executable that only
// the start used (exepages.Release), once the proxy serves.
func releaseStartupPages(ctx context.Context, p *proxy.Proxy, log *slog.Logger) {
	select {
	case <-ctx.Done():
		return
	case <-p.Configured():
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(startupPagesDelay):
	}
	n, err := exepages.Release()
	if err != nil {
		log.Warn("startup pages not released", "err", err)
		return
	}
	log.Debug("startup pages released", "bytes", n)
}

// parts are the sidecar's components, built but not yet running.
type parts struct {
	agent       *agent.Agent
	proxy       *proxy.Proxy
	xds         *client.Client
	workloadAPI *workloadapi.Server // nil unless Config.WorkloadAPISocket is set
	sds         *sds.Server         // nil unless Config.SDSSocket is set
	workload    registry.Workload   // this proxy as advertised to the control plane
}

// loadTrustBundle reads the mesh's root certificates, which the agent
// trusts when it asks the control plane's CA for a certificate.
func loadTrustBundle(cfg Config) (spiffeid.TrustDomain, []*x509.Certificate, error) {
	rootPEM, err := os.ReadFile(cfg.RootCertFile)
	if err != nil {
		return spiffeid.TrustDomain{}, nil, fmt.Errorf("sidecar: trust bundle: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return spiffeid.TrustDomain{}, nil, fmt.Errorf("sidecar: trust domain: %w", err)
	}
	bundle, err := x509bundle.Parse(td, rootPEM)
	if err != nil {
		return spiffeid.TrustDomain{}, nil, fmt.Errorf("sidecar: trust bundle %s: %w", cfg.RootCertFile, err)
	}
	return td, bundle.X509Authorities(), nil
}

// build constructs every part, in dependency order, without running any.
// proxy.New binds the proxy's listeners, so they are closed again if a
// later part fails to build.
func build(cfg Config, td spiffeid.TrustDomain, roots []*x509.Certificate) (*parts, error) {
	ag, err := newAgent(cfg, td, roots)
	if err != nil {
		return nil, err
	}
	px, err := newProxy(cfg, ag)
	if err != nil {
		return nil, err
	}
	px.SetAppProbers(cfg.AppProbers)
	p := &parts{agent: ag, proxy: px, workload: advertisedWorkload(cfg, px)}
	if err := p.buildAfterProxy(cfg, td); err != nil {
		px.Close()
		return nil, err
	}
	return p, nil
}

// buildAfterProxy builds the parts that come after the proxy: the xDS
// client that feeds it, and the optional Workload API and SDS servers.
func (p *parts) buildAfterProxy(cfg Config, td spiffeid.TrustDomain) error {
	var err error
	if p.xds, err = newXDSClient(cfg, p.agent, p.proxy, p.workload); err != nil {
		return err
	}
	if p.workloadAPI, err = newWorkloadAPI(cfg, p.agent, td); err != nil {
		return err
	}
	p.sds, err = newSDS(cfg, p.agent, td)
	return err
}

// newAgent returns the agent that holds this workload's key and
// certificate; the proxy and every local socket get them from it.
func newAgent(cfg Config, td spiffeid.TrustDomain, roots []*x509.Certificate) (*agent.Agent, error) {
	return agent.New(agent.Config{
		CAAddress:      cfg.ControlPlane,
		CARoots:        roots,
		Token:          readToken(cfg.TokenFile),
		TrustDomain:    td,
		Namespace:      cfg.Workload.Namespace,
		ServiceAccount: cfg.Workload.ServiceAccount,
		RequestedTTL:   cfg.CertTTL,
		KeyType:        cfg.KeyType,
		Clock:          cfg.Clock,
		Logger:         cfg.Logger,
	})
}

// newProxy returns the data plane, its listeners already bound; the caller
// must Run or Close it.
func newProxy(cfg Config, ag *agent.Agent) (*proxy.Proxy, error) {
	return proxy.New(proxy.Config{
		Workload:     cfg.Workload,
		TrustDomain:  cfg.TrustDomain,
		DNSDomain:    cfg.DNSDomain,
		InboundAddr:  cfg.InboundAddr,
		TunnelAddr:   cfg.TunnelAddr,
		OutboundAddr: cfg.OutboundAddr,
		AdminAddr:    cfg.AdminAddr,
		AdminAllow:   cfg.AdminAllow,
		AppAddr:      cfg.AppAddr,
		Listeners:    cfg.Listeners,
		Certs:        ag,

		HealthAddr:    cfg.HealthAddr,
		AppHealthAddr: cfg.AppHealthAddr,

		CertStatus:   func() any { return ag.Status() },
		Now:          cfg.Clock,
		PeerClock:    cfg.Clock,
		Logger:       cfg.Logger,
		AccessLogAll: cfg.AccessLog,

		OriginalDst:              cfg.OriginalDst,
		ProtocolDetectionTimeout: cfg.ProtocolDetectionTimeout,
		DNSAddr:                  cfg.DNSAddr,
		DNSUpstreams:             cfg.DNSUpstreams,
		CredentialDir:            cfg.CredentialDir,
		Gateway:                  cfg.Gateway,
	})
}

// advertisedWorkload is the workload as the control plane will tell other
// proxies about it: at AdvertiseAddr, with the port actually bound when the
// inbound listener asked for any free one (port 0).
func advertisedWorkload(cfg Config, px *proxy.Proxy) registry.Workload {
	w := cfg.Workload
	w.Address = cfg.AdvertiseAddr
	if host, port, err := net.SplitHostPort(w.Address); err == nil && port == "0" {
		_, bound, _ := net.SplitHostPort(px.InboundAddr().String())
		w.Address = net.JoinHostPort(host, bound)
	}
	w.HasProxy = true
	w.AdminAddress = advertisedAdmin(w.Address, px.AdminAddr().String())
	if ta, ok := px.TunnelAddr().(*net.TCPAddr); ok && w.Address != "" {
		w.TunnelPort = uint32(ta.Port)
	}
	return w
}

// advertisedAdmin is where the control plane reaches the admin listener
// bound at admin: on the advertised host when it is bound to every
// address (0.0.0.0, ::), else where it is bound.
func advertisedAdmin(advertised, admin string) string {
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ah, _, err := net.SplitHostPort(advertised); err == nil {
			host = ah
		}
	}
	return net.JoinHostPort(host, port)
}

// newXDSClient returns the client that registers w with the control plane
// and hands every config push to the proxy.
func newXDSClient(cfg Config, ag *agent.Agent, px *proxy.Proxy, w registry.Workload) (*client.Client, error) {
	return client.New(client.Config{
		Address: cfg.ControlPlane,
		// Verified against the agent's current bundle, so the stream still
		// reconnects after a root rotation retired the root we started with.
		TLS:       ag.ControlPlaneTLS(),
		Proxy:     xds.Proxy{ID: w.Key(), Workload: w, Gateway: cfg.Gateway != nil},
		DNSDomain: cfg.DNSDomain,
		Apply:     px.Apply,
		Logger:    cfg.Logger,
	})
}

// newWorkloadAPI returns the SPIFFE Workload API server, or nil when no
// socket is configured.
func newWorkloadAPI(cfg Config, ag *agent.Agent, td spiffeid.TrustDomain) (*workloadapi.Server, error) {
	if cfg.WorkloadAPISocket == "" {
		return nil, nil
	}
	return workloadapi.New(workloadapi.Config{SocketPath: cfg.WorkloadAPISocket, Source: ag, TrustDomain: td, Logger: cfg.Logger})
}

// newSDS returns the SDS server for Envoy, serving the agent's certificate
// and any configured files, or nil when no socket is configured. The files
// are read now, so a bad one fails the start.
func newSDS(cfg Config, ag *agent.Agent, td spiffeid.TrustDomain) (*sds.Server, error) {
	if cfg.SDSSocket == "" {
		return nil, nil
	}
	srcs := []sds.Source{sds.AgentSecrets(ag, td)}
	if len(cfg.SDSFiles) > 0 {
		fs, err := sds.NewFileSource(cfg.SDSFiles, 0, cfg.Logger)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, fs)
	}
	return sds.New(sds.Config{SocketPath: cfg.SDSSocket, Sources: srcs, Logger: cfg.Logger})
}

// start runs every part in a goroutine owned by wg, the xDS client with
// xdsCtx (which ends first when draining), the others with ctx. A part
// that fails while its context is live sends its error to errc, which
// must have room for one error per part so that no goroutine blocks on it.
func (p *parts) start(ctx, xdsCtx context.Context, wg *sync.WaitGroup, errc chan<- error) {
	runWith := func(ctx context.Context, name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	run := func(name string, f func(context.Context) error) { runWith(ctx, name, f) }
	if p.workloadAPI != nil {
		run("workload API", p.workloadAPI.Run)
	}
	if p.sds != nil {
		run("sds", p.sds.Run)
	}
	run("agent", p.agent.Run)
	run("proxy", p.proxy.Run)
	runWith(xdsCtx, "xds client", p.runXDS)
}

// runXDS runs the xDS client once the agent holds a certificate, since the
// stream authenticates with it. It returns nil if ctx ends first.
func (p *parts) runXDS(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-p.agent.Ready():
	}
	return p.xds.Run(ctx)
}

// maxTokenFile bounds the bootstrap token file: a projected service
// account token is a few KiB.
const maxTokenFile = 64 << 10

// readToken returns a function that reads the bootstrap token file each
// time it is needed, so an operator can replace an expired token without
// restarting the proxy.
func readToken(path string) func() (string, error) {
	return func() (string, error) {
		if path == "" {
			return "", errors.New("no bootstrap token file configured")
		}
		b, err := boundedio.ReadFile(path, maxTokenFile)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
}
