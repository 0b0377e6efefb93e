// Package controlplane wires the pieces of `zmesh controlplane` into one
// process: the CA and its CSR service, the config source, the registry and
// the xDS server on one gRPC/TLS port, and an admin HTTP port for health,
// metrics and proxy status.
package controlplane

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/csr"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/connlimit"
	"github.com/zmesh/zmesh/internal/inject"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/server"
)

// LastGoodConfigDir is the directory in the data dir where the file
// source keeps each config file's last good content (filesource.Config.LastGood).
const LastGoodConfigDir = "config-last-good"

// Config configures a control plane.
type Config struct {
	ConfigDir     string        // directory of Istio YAML, watched; not used with Kubeconfig or InCluster
	Kubeconfig    string        // kubeconfig file: config comes from that cluster (kube.go)
	InCluster     bool          // config comes from the cluster the control plane runs in (its pod's service account)
	DataDir       string        // CA material and the trust bundle (root-cert.pem)
	Listen        string        // gRPC/TLS address for CSRs and xDS, e.g. 127.0.0.1:15012
	Admin         string        // admin HTTP address: /ready, /metrics, /debug/proxy-status; empty disables
	TrustDomain   string        // default cluster.local
	RootNamespace string        // default istio-system
	DNSDomain     string        // default cluster.local
	MeshConfig    string        // Istio MeshConfig YAML file; empty: Istio's defaults
	CertTTL       time.Duration // workload certificate lifetime; default 24h
	MaxCertTTL    time.Duration // cap on requested lifetimes; default 90 days (at least CertTTL)
	Limits        Limits        // connection bounds and time-outs; zero: defaults
	// Clock is the CA's notion of now: what it issues certificates and
	// tokens by and checks renewing clients' certificates and tokens
	// against. Nil means time.Now; `zmesh controlplane --clock-offset`
	// (a hidden test hook) sets an offset one to inject clock skew.
	Clock func() time.Time
	// GCPercent is the garbage collector's target heap growth over the
	// live heap while Run runs (as GOGC; see DefaultGCPercent). 0 means
	// DefaultGCPercent; negative leaves the runtime's setting alone (the
	// command does that when GOGC is set).
	GCPercent int
	// GCHeadroom is the least the heap may grow between collections
	// whatever GCPercent says (gcPercentFor); 0 means DefaultGCHeadroom.
	GCHeadroom uint64
	// Profiling serves Go's profiles (net/http/pprof) under /debug/pprof/
	// on the admin port, for measuring the control plane under load. Off
	// by default: a profile shows the process's memory.
	Profiling bool
	Logger    *slog.Logger

	// Webhook is the HTTPS address of the sidecar injection webhook (POST
	// /inject); empty disables it. See webhook.go.
	Webhook string
	// WebhookRegister says how the control plane registers the webhook:
	// RegisterNone, RegisterURL or RegisterService.
	WebhookRegister string
	// Injection is what the webhook injects; its trust and cluster
	// domains default to TrustDomain and DNSDomain.
	Injection inject.Settings
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if err := c.validateSource(); err != nil {
		return err
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:15012"
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.RootNamespace == "" {
		c.RootNamespace = "istio-system"
	}
	if c.DNSDomain == "" {
		c.DNSDomain = "cluster.local"
	}
	if c.CertTTL < 0 || c.MaxCertTTL < 0 {
		return errors.New("controlplane: certificate lifetimes must be positive")
	}
	if c.MaxCertTTL != 0 && c.CertTTL > c.MaxCertTTL {
		c.MaxCertTTL = c.CertTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c.validateWebhook()
}

// DefaultGCPercent is the control plane's GC target: the heap may grow
// by half the live heap (and stacks) between collections, instead of Go's
// default of all of it. The live heap is almost all per-connection state
// (TLS, HTTP/2, streams) that lives as long as the proxies' connections
// and makes no garbage; garbage comes from handshakes and pushes, whose
// concurrency is bounded whatever the number of proxies. Go's default
// headroom grows with the proxies all the same, to ~400 MiB at 10,000; a
// half of it is what bounds the peak RSS of a reconnect wave, and costs
// GC cycles only while there is garbage (connects and waves: ~12% more
// CPU there at 3,000 proxies, bench/scale). It is relative, not a fixed
// limit: a larger mesh still gets the memory it needs, without a GC spin.
// A small heap keeps at least GCHeadroom to grow by (gctune.go): the CA's
// garbage needs it.
const DefaultGCPercent = 50

// Run serves until ctx is done, then stops every part and returns.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.GCPercent >= 0 {
		gc, floor := cfg.GCPercent, cfg.GCHeadroom
		if gc == 0 {
			gc = DefaultGCPercent
		}
		if floor == 0 {
			floor = DefaultGCHeadroom
		}
		defer tuneGC(gc, floor)()
	}
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return fmt.Errorf("controlplane: trust domain: %w", err)
	}
	if cfg.DataDir != "" {
		// Created here, whatever the mode: the file CA makes it itself,
		// but in Kubernetes mode only the registrations and the bundle
		// file live there, and they would fail one by one.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("controlplane: data dir: %w", err)
		}
	}
	p, err := build(cfg, td)
	if err != nil {
		return err
	}
	if err := p.listen(); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 6)
	p.start(ctx, &wg, errc)
	cfg.Logger.Info("control plane serving", "grpc", p.lis.Addr().String(), "admin", cfg.Admin,
		"trustDomain", cfg.TrustDomain, "dataDir", cfg.DataDir, "configDir", cfg.ConfigDir)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	p.stopServers()
	wg.Wait()
	return runErr
}

// parts are the control plane's components. build fills in everything but
// the listeners and the admin server, which listen adds.
type parts struct {
	cfg       Config
	metrics   *prometheus.Registry
	authority *ca.Authority
	kube      *kubeIdentity // nil outside Kubernetes mode
	source    configSource
	creds     *kubesource.Credentials // gateways' Secrets; nil outside Kubernetes mode
	reg       *registry.Store
	xds       *server.Server
	grpc      *grpc.Server // serves the CSR and xDS services on lis
	lis       net.Listener
	admin     *http.Server // nil when Config.Admin is empty
	adminLis  net.Listener
	limits    Limits             // cfg.Limits with defaults
	connStats *connlimit.Metrics // refusals and open connections of lis and adminLis
	// meshSum is the SHA-256 of the MeshConfig file content loaded at
	// start; meshRejected is set while its latest content is refused
	// (watchMeshConfig).
	meshSum      [sha256.Size]byte
	meshRejected *atomic.Bool
	webhook      *webhookServer // nil when Config.Webhook is empty
	ui           *webView       // the web view on the admin port (ui.go)
}

// build loads the CA, the config directory, the mesh config and the
// registrations saved by a previous run, and registers the CSR and xDS
// services on a gRPC server. It binds no port and starts no goroutine.
func build(cfg Config, td spiffeid.TrustDomain) (*parts, error) {
	log := cfg.Logger
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	authority, kube, err := loadAuthority(cfg, td, metrics)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := ca.ServerTLSConfig(authority)
	if err != nil {
		return nil, err
	}
	csrSvc, err := csr.NewService(csr.Config{Authority: authority, Authenticators: kube.authenticators(authority), Logger: log, Registerer: metrics})
	if err != nil {
		return nil, err
	}

	var source configSource
	if !cfg.kubernetes() {
		// The last good version of each file is kept in the data dir, so
		// that a restart while a file is broken keeps its policies.
		lastGood := filepath.Join(cfg.DataDir, LastGoodConfigDir)
		if source, err = filesource.New(filesource.Config{Dir: cfg.ConfigDir, Logger: log, LastGood: lastGood}); err != nil {
			return nil, err
		}
	}
	mesh, meshSum, err := cfg.mesh()
	if err != nil {
		return nil, err
	}
	reg := registry.NewStore(cfg.DNSDomain)
	var xdsSrv *server.Server
	creds, err := newCredentials(&cfg, func(c []xds.Credential) { xdsSrv.SetCredentials(c) })
	if err != nil {
		return nil, err
	}
	xdsCfg := server.Config{
		Registry: reg,
		Mesh:     mesh,
		Logger:   log,
	}
	if creds != nil {
		xdsCfg.WantCredentials = creds.Want
	}
	xdsSrv = server.New(xdsCfg)
	xdsSrv.Restore(loadRegistrations(cfg.DataDir, log))
	meshRejected := new(atomic.Bool)
	if cfg.kubernetes() {
		ks, err := newKubeSource(&cfg, reg, xdsSrv.SetMesh, metrics, meshRejected)
		if err != nil {
			return nil, err
		}
		source = kubeSource{ks}
	}

	limits := cfg.Limits.withDefaults()
	connStats, err := connlimit.NewMetrics(metrics)
	if err != nil {
		return nil, err
	}
	gs := newGRPCServer(tlsCfg, limits)
	csrSvc.Register(gs)
	xdsSrv.Register(gs)
	registerConfigHealth(metrics, source, cfg.sourceName(), xdsSrv, cfg.MeshConfig != "" || cfg.kubernetes(), meshRejected)
	registerRejections(metrics, source, xdsSrv)
	var wh *webhookServer
	if cfg.Webhook != "" {
		if wh, err = newWebhook(cfg, authority, metrics); err != nil {
			return nil, err
		}
	}
	return &parts{cfg: cfg, metrics: metrics, authority: authority, kube: kube, source: source, creds: creds, reg: reg, xds: xdsSrv, grpc: gs, meshSum: meshSum, meshRejected: meshRejected,
		limits: limits, connStats: connStats, webhook: wh,
		ui: newWebView(webViewConfig{ca: authority, xds: xdsSrv, reg: reg, source: source, mesh: mesh})}, nil
}

// newGRPCServer returns the server for the mesh port: TLS from the CA,
// bounded messages, keepalives that notice dead proxies, and connections
// that never finish their handshake or never carry an RPC cut within
// seconds (lim), so they cannot pile up.
func newGRPCServer(tlsCfg *tls.Config, lim Limits) *grpc.Server {
	return grpc.NewServer(
		grpc.Creds(newBoundedHandshakes(credentials.NewTLS(tlsCfg), lim.Handshakes, lim.HandshakeTimeout)),
		grpc.MaxRecvMsgSize(4<<20),
		// A proxy's stream is idle but for pushes and ACKs: gRPC's 32 KiB
		// read and write buffers per connection would be 640 MiB at
		// 10,000 proxies. No read buffer (frames are read from the TLS
		// connection, which buffers a record anyway; a 4 KiB bufio.Reader
		// per connection was 40 MiB of heap at 10,000), and write buffers
		// taken from a pool only while a push is being written.
		grpc.ReadBufferSize(0),
		grpc.WriteBufferSize(16<<10),
		grpc.SharedWriteBuffer(true),
		// Credentials and xDS metadata fit in a few kB; gRPC's default
		// (16 MB) lets one request cost seconds of HPACK decoding.
		grpc.MaxHeaderListSize(maxHeaderListSize),
		// A proxy opens one stream per connection and sends its headers
		// once: an HPACK dynamic table, which the client would fill and
		// this side would mirror for the connection's life, compresses
		// nothing here and costs each connection its entries and index
		// maps (~1.5 KiB of heap per proxy). Clients send literals.
		grpc.HeaderTableSize(0),
		grpc.ConnectionTimeout(lim.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, MaxConnectionIdle: lim.IdleTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
}

// listen binds the gRPC port and, when configured, the admin port, so that
// an address in use fails Run before any goroutine starts. If the admin
// port fails, the gRPC listener is closed again. Each port has its own
// connection bounds (p.limits): a flood of one cannot starve the other, and
// the admin port keeps answering while the gRPC port refuses.
func (p *parts) listen() error {
	lis, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("controlplane: listen: %w", err)
	}
	if p.lis, err = bound(lis, "grpc", p.limits.PerSource, p.limits.Total, p.connStats); err != nil {
		lis.Close()
		return err
	}
	if p.webhook != nil {
		if err := p.webhook.listen(); err != nil {
			lis.Close()
			return err
		}
	}
	if p.cfg.Admin == "" {
		return nil
	}
	adminLis, err := net.Listen("tcp", p.cfg.Admin)
	if err != nil {
		lis.Close()
		if p.webhook != nil {
			p.webhook.lis.Close()
		}
		return fmt.Errorf("controlplane: admin listen: %w", err)
	}
	if p.adminLis, err = bound(adminLis, "admin", p.limits.AdminPerSource, p.limits.AdminTotal, p.connStats); err != nil {
		lis.Close()
		adminLis.Close()
		return err
	}
	p.admin = &http.Server{
		Handler:           p.ui.wrap(adminHandler(p.xds, p.source, p.metrics, p.cfg.Profiling)),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	return nil
}

// start runs every part in a goroutine owned by wg. Those that can fail
// send their error to errc, which must have room for one error each (6) so
// that no goroutine blocks on it. The servers do not watch ctx: after
// cancelling it, call stopServers before waiting for wg.
func (p *parts) start(ctx context.Context, wg *sync.WaitGroup, errc chan<- error) {
	log := p.cfg.Logger
	wg.Go(func() {
		if err := p.source.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("controlplane: config source: %w", err)
		}
	})
	wg.Go(func() { feedSnapshots(ctx, p.source, p.xds) })
	if p.creds != nil {
		wg.Go(func() { _ = p.creds.Run(ctx) })
	}
	wg.Go(func() { watchMeshConfig(ctx, &p.cfg, p.meshSum, time.Second, p.ui.setMesh, p.meshRejected) })
	if p.kube != nil {
		p.kube.start(ctx, wg)
	} else {
		// Picks up `zmesh ca rotate` steps (and edited cacerts) while running.
		wg.Go(func() { p.authority.Watch(ctx, 2*time.Second, log) })
	}
	wg.Go(func() { saveRegistrations(ctx, p.cfg.DataDir, p.reg, log) })
	wg.Go(func() {
		if err := p.xds.Run(ctx); err != nil {
			errc <- err
		}
	})
	wg.Go(func() {
		if err := p.grpc.Serve(p.lis); err != nil {
			errc <- fmt.Errorf("controlplane: grpc: %w", err)
		}
	})
	if p.admin != nil {
		wg.Go(func() {
			if err := p.admin.Serve(p.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("controlplane: admin: %w", err)
			}
		})
	}
	if p.webhook != nil {
		p.webhook.start(ctx, wg, errc)
	}
}

// stopServers stops the gRPC server, giving in-flight RPCs 3s before it
// closes every connection, then the admin server, giving it 2s. It returns
// once the gRPC server has stopped.
func (p *parts) stopServers() {
	stopped := make(chan struct{})
	go func() { p.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		p.grpc.Stop()
		// GracefulStop returns once the handlers, whose streams Stop just
		// closed, have returned.
		<-stopped
	}
	if p.admin != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = p.admin.Shutdown(sctx)
		scancel()
	}
	if p.webhook != nil {
		p.webhook.shutdown()
	}
	p.ui.close()
}

// feedSnapshots hands every snapshot the config source accepts to the xDS
// server.
func feedSnapshots(ctx context.Context, source configSource, xdsSrv *server.Server) {
	updates, cancel := source.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case snap := <-updates:
			xdsSrv.Update(snap)
		}
	}
}

func adminHandler(xdsSrv *server.Server, source configSource, metrics *prometheus.Registry, profiling bool) http.Handler {
	mux := http.NewServeMux()
	if profiling {
		registerProfiling(mux)
	}
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if source.Current() == nil {
			http.Error(w, "config not loaded", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/proxy-status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, xdsSrv.Status())
	})
	mux.HandleFunc("GET /debug/config", func(w http.ResponseWriter, _ *http.Request) {
		d := describe(source.Current())
		// What of the directory's latest content is not in force, and why.
		rej := rejections(source, xdsSrv)
		if rej == nil {
			rej = []rejection{}
		}
		err := source.LastError()
		d["rejected"], d["valid"] = rej, err == nil && len(rej) == 0
		if err != nil {
			d["error"] = err.Error()
		}
		writeJSON(w, d)
	})
	return mux
}

// describe lists a snapshot's resources by kind and key, for /debug/config.
func describe(s *config.Snapshot) map[string]any {
	if s == nil {
		return map[string]any{"version": ""}
	}
	byKind := map[string][]string{}
	for _, r := range s.All() {
		byKind[string(r.Kind)] = append(byKind[string(r.Kind)], r.Key())
	}
	return map[string]any{"version": s.Version, "resources": byKind}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
