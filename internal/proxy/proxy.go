package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authn/jwksfetch"
	"github.com/zmesh/zmesh/internal/connlimit"
	"github.com/zmesh/zmesh/internal/dnsproxy"
	"github.com/zmesh/zmesh/internal/identity"
	"github.com/zmesh/zmesh/internal/rawtcp"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/telemetry"
	"github.com/zmesh/zmesh/internal/tracing"
	"github.com/zmesh/zmesh/internal/tracing/otlp"
)

// CertificateSource is what the proxy needs of the agent: the workload's
// current X.509-SVID and the trust bundles that peers are verified against.
// Both are read on every TLS handshake, so a rotated certificate is used
// by the next handshake while established connections keep working.
type CertificateSource interface {
	x509svid.Source
	x509bundle.Source
}

// Config configures a Proxy. Workload, TrustDomain, AppAddr and Certs are
// required.
type Config struct {
	// Workload is the workload this proxy serves: its name, namespace and
	// service account name its identity and its metrics.
	Workload registry.Workload
	// TrustDomain is the mesh's trust domain, e.g. cluster.local.
	TrustDomain string
	// DNSDomain is the services' domain suffix; default cluster.local.
	DNSDomain string

	// InboundAddr, OutboundAddr and AdminAddr are the listen addresses
	// (host:port; port 0 picks a free one, see the Proxy's *Addr methods).
	InboundAddr  string
	OutboundAddr string
	AdminAddr    string
	// TunnelAddr, when set, is where the proxy takes HBONE: TCP streams
	// from client proxies multiplexed as HTTP/2 CONNECT on one mutual
	// TLS connection (Istio's tunnel port, 15008; see hbone.go). Peers
	// learn it from the registration (registry.Workload.TunnelPort).
	TunnelAddr string
	// AdminAllow, when set, limits the admin listener to connections from
	// these networks and from loopback: an admin listener on a pod's
	// address (the local mesh under capture, where the host's tools read
	// it) must not let the workloads beside it read /debug or stop the
	// proxy with /quitquitquit. Empty: whoever reaches AdminAddr.
	AdminAllow []netip.Prefix
	// HealthAddr, when set, serves GET /healthz/ready there and nothing
	// else (Istio's 15021, where a pod's probes of its sidecar go); empty:
	// no health listener. See health.go.
	HealthAddr string
	// AppHealthAddr, when set, serves the app's rewritten probes
	// (/app-health/...) there and nothing else (Istio's 15020, where the
	// kubelet reaches them on the pod's IP while the admin listener stays
	// on loopback); empty: none. The admin listener serves them too.
	AppHealthAddr string
	// AppAddr is the app's plaintext HTTP listener, host:port.
	AppAddr string
	// Listeners binds the listeners above, each by its name ("inbound",
	// "outbound", "admin", "tunnel", "health", "app_health") and address,
	// and a gateway's ports ("gateway-PORT"); nil means net.Listen.
	// `zmesh proxy` passes its fdstore.Listeners here, which reuse the
	// listeners a supervisor kept from the previous process (so a restart
	// refuses no connection) and hand these over to the next.
	Listeners Listeners

	// Certs supplies the workload certificate and trust bundle.
	Certs CertificateSource
	// CertStatus, if set, is served as JSON on /debug/certs.
	CertStatus func() any

	// Logger receives operational logs and the access log; nil discards.
	Logger *slog.Logger
	// Metrics is the registry the proxy's metrics are registered with and
	// served from on /metrics; nil creates a new one.
	Metrics *prometheus.Registry

	// JWKSFetcher fetches the key sets of RequestAuthentication rules with
	// a jwksUri (or OpenID discovery); nil means a jwksfetch.HTTP.
	JWKSFetcher authn.Fetcher
	// Now is the clock JWTs are checked against; nil means time.Now.
	Now func() time.Time
	// PeerClock is the clock peers' certificates are checked against on
	// the inbound, the HTTP outbound and ext_authz handshakes; nil means
	// time.Now. Apart from Now so that a test may move JWT time alone;
	// `zmesh proxy --clock-offset` (a test hook) sets both.
	PeerClock func() time.Time
	// AccessLogAll logs every request; by default only denied, failed,
	// audited and dry-run requests are logged.
	AccessLogAll bool
	// TCPIdleTimeout closes a TCP stream (CONNECT tunnel, mesh TCP) with
	// no byte in either direction for that long; default DefaultTCPIdle.
	TCPIdleTimeout time.Duration

	// OriginalDst, when set, turns on transparent capture: it returns
	// where a connection accepted by the inbound or outbound listener was
	// going before the kernel redirected it there (SO_ORIGINAL_DST). A
	// connection whose original destination is the listener itself (or
	// for which OriginalDst fails) was not redirected and is served as
	// without capture: the outbound listener stays the app's HTTP proxy.
	OriginalDst func(net.Conn) (netip.AddrPort, error)
	// ProtocolDetectionTimeout is how long a captured connection to a
	// port that declares no protocol, or a plaintext inbound connection,
	// may stay silent before it is taken for a server-first protocol and
	// relayed as TCP (Envoy's protocol_detection_timeout); default
	// DefaultProtocolDetection.
	ProtocolDetectionTimeout time.Duration

	// DNSAddr, when set, is where the proxy answers DNS (UDP and TCP),
	// host:port, DefaultDNSAddr under capture: mesh names resolve to
	// their services' virtual addresses, everything else is forwarded to
	// DNSUpstreams (Istio's DNS proxying). Empty: no DNS server (several
	// proxies on one host without capture would contend for the port).
	DNSAddr string
	// DNSUpstreams are the resolvers (host:port) names outside the mesh
	// are forwarded to, tried in order.
	DNSUpstreams []string

	// CredentialDir is where a DestinationRule's tls.credentialName is
	// found: NAME names the directory CredentialDir/NAME, laid out as a
	// Kubernetes Secret mounted there (tls.crt, tls.key, ca.crt; or
	// Istio's generic cert, key, cacert). Empty: a rule that names a
	// credential fails its requests (503) rather than sending without it.
	// A gateway's servers find their credentialName there too.
	CredentialDir string

	// Gateway, when set, makes the proxy a gateway (see GatewayConfig):
	// it has no app (AppAddr is not used), and requests that reach its
	// inbound listener over the mesh, and its Gateway ports, are routed
	// by the VirtualServices bound to its Gateways.
	Gateway *GatewayConfig
}

// DefaultDNSAddr is where a captured workload's DNS is answered, Istio's
// DNS proxy port; the capture rules redirect the app's port 53 there.
const DefaultDNSAddr = "127.0.0.1:15053"

// DefaultProtocolDetection is the protocol detection time-out, Istio's
// former default protocolDetectionTimeout.
const DefaultProtocolDetection = 100 * time.Millisecond

// DefaultTCPIdle is Envoy's tcp_proxy idle_timeout default.
const DefaultTCPIdle = time.Hour

// Time-outs and limits. Connections between proxies are long-lived and
// multiplexed, so idle limits are generous; everything a peer controls is
// bounded.
//
// The two that cut slow clients are variables only so that tests can
// shorten them.
var (
	handshakeTimeout  = 10 * time.Second // first byte and TLS handshake
	readHeaderTimeout = 10 * time.Second
)

const (
	serverIdleTimeout  = 5 * time.Minute
	clientIdleTimeout  = 2 * time.Minute // below the server's, so the client closes first
	dialTimeout        = 5 * time.Second
	maxHeaderBytes     = 64 << 10
	maxIdleConnsPerApp = 512
	shutdownGrace      = 5 * time.Second
)

// Proxy is one workload's data plane. Create it with New, start it with
// Run, and feed it configuration with Apply.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	td      spiffeid.TrustDomain
	self    spiffeid.ID
	selfStr string // self.String(), for XFCC By=
	appPort uint32
	tcpIdle time.Duration
	detect  time.Duration // protocol detection time-out

	registry *prometheus.Registry
	metrics  *telemetry.Metrics
	access   *telemetry.AccessLog

	state   atomic.Pointer[state]
	applyMu sync.Mutex
	// configured is closed when the first configuration is applied: the
	// inbound, tunnel and outbound listeners accept from then on (gate.go).
	configured     chan struct{}
	configuredOnce sync.Once

	now      func() time.Time
	jwks     *authn.JWKSCache
	extAuthz *extAuthz
	// ids makes request, trace and span IDs; spans reports spans (see
	// trace.go), run by Run until the servers have stopped.
	ids   tracing.IDs
	spans *otlp.Exporter
	// prefetch carries the request authentication of the latest push to
	// the goroutine (owned by Run) that fetches its key sets.
	prefetch chan *authn.RequestPolicy

	inLn, outLn, adminLn net.Listener
	tunnelLn             net.Listener // nil without Config.TunnelAddr
	// healthLn and appHealthLn are nil unless configured (health.go).
	healthLn, appHealthLn net.Listener
	dns                   *dnsproxy.Server // nil without Config.DNSAddr

	in        *inbound
	out       *outbound
	gw        *gatewayListeners // nil unless Config.Gateway
	admin     *http.Server
	health    *http.Server // nil without healthLn
	appHealth *http.Server // nil without appHealthLn

	ran       atomic.Bool
	closeOnce sync.Once
}

// New validates cfg, binds the three listeners and returns a proxy that
// serves nothing until Run. The caller must call Run (which closes the
// listeners on return) or Close.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DNSDomain == "" {
		cfg.DNSDomain = "cluster.local"
	}
	td := spiffeid.RequireTrustDomainFromString(cfg.TrustDomain)
	self, _ := identity.ForServiceAccount(td, cfg.Workload.Namespace, cfg.Workload.ServiceAccount)
	appPort, _ := appPortOf(cfg.AppAddr)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("workload", cfg.Workload.Namespace+"/"+cfg.Workload.Name)
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
		// go_goroutines alone (the Go collector's ~30 series are not worth
		// their scrape): a goroutine leak under load shows in the soak's
		// samples (test/reliability).
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "go_goroutines", Help: "Number of goroutines that currently exist.",
		}, func() float64 { return float64(runtime.NumGoroutine()) }))
	}
	m, err := telemetry.New(reg)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{
		cfg:      cfg,
		log:      log,
		td:       td,
		self:     self,
		selfStr:  self.String(),
		appPort:  appPort,
		registry: reg,
		metrics:  m,
		access:   accessLog(log, cfg.AccessLogAll),
		now:      cfg.Now,
		prefetch: make(chan *authn.RequestPolicy, 1),

		configured: make(chan struct{}),
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.detect = cfg.ProtocolDetectionTimeout
	if p.detect <= 0 {
		p.detect = DefaultProtocolDetection
	}
	p.tcpIdle = cfg.TCPIdleTimeout
	if p.tcpIdle <= 0 {
		p.tcpIdle = DefaultTCPIdle
	}
	fetcher := cfg.JWKSFetcher
	if fetcher == nil {
		fetcher = &jwksfetch.HTTP{}
	}
	p.jwks = authn.NewJWKSCache(authn.JWKSCacheConfig{Fetcher: fetcher, Now: p.now, Logger: log})
	p.extAuthz = newExtAuthz(p)
	if p.spans, err = newSpans(p); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.registerCertMetrics()

	if err := p.listen(); err != nil {
		return nil, err
	}
	// The data listeners' connections read and write with raw system
	// calls (rawtcp), and are accepted once the proxy is configured (gate).
	for _, ln := range []*net.Listener{&p.inLn, &p.outLn, &p.tunnelLn} {
		if *ln != nil {
			*ln = gate(rawtcp.Listener{Listener: *ln}, p.configured)
		}
	}
	if cfg.DNSAddr != "" {
		p.dns, err = dnsproxy.New(dnsproxy.Config{Addr: cfg.DNSAddr, Upstreams: cfg.DNSUpstreams, Namespace: cfg.Workload.Namespace, Logger: log})
		if err != nil {
			p.closeListeners()
			return nil, fmt.Errorf("proxy: DNS: %w", err)
		}
	}
	p.in = newInbound(p)
	p.out = newOutbound(p)
	if cfg.Gateway != nil {
		p.gw = newGatewayListeners(p, *cfg.Gateway)
	} else {
		// Every listener is bound: what the previous process had beyond
		// them (a tunnel port since removed) is not served any more.
		p.releaseUnclaimedListeners()
	}
	p.admin = newAdminServer(p)
	if p.healthLn != nil {
		p.health = newHealthServer(p)
	}
	if p.appHealthLn != nil {
		p.appHealth = newAppHealthServer(p)
	}
	return p, nil
}

// listen binds the proxy's TCP listeners, or none of them.
func (p *Proxy) listen() error {
	cfg := p.cfg
	bind := func(ln *net.Listener, what, addr string) error {
		l, err := p.listenTCP(what, addr)
		if err != nil {
			p.closeListeners()
			return fmt.Errorf("proxy: %s listener: %w", what, err)
		}
		*ln = l
		return nil
	}
	if err := bind(&p.inLn, "inbound", cfg.InboundAddr); err != nil {
		return err
	}
	if err := bind(&p.outLn, "outbound", cfg.OutboundAddr); err != nil {
		return err
	}
	if err := bind(&p.adminLn, "admin", cfg.AdminAddr); err != nil {
		return err
	}
	if cfg.TunnelAddr != "" {
		if err := bind(&p.tunnelLn, "tunnel", cfg.TunnelAddr); err != nil {
			return err
		}
	}
	if len(cfg.AdminAllow) > 0 {
		p.adminLn = &allowListener{Listener: p.adminLn, allow: cfg.AdminAllow, log: p.log}
	}
	if cfg.HealthAddr == "" && cfg.AppHealthAddr == "" {
		return nil
	}
	limits, err := connlimit.NewMetrics(p.registry)
	if err != nil {
		p.closeListeners()
		return fmt.Errorf("proxy: %w", err)
	}
	bounded := func(ln *net.Listener, what, addr string) error {
		if addr == "" {
			return nil
		}
		l, err := p.listenBounded(what, addr, limits)
		if err != nil {
			p.closeListeners()
			return fmt.Errorf("proxy: %s listener: %w", what, err)
		}
		*ln = l
		return nil
	}
	if err := bounded(&p.healthLn, "health", cfg.HealthAddr); err != nil {
		return err
	}
	return bounded(&p.appHealthLn, "app_health", cfg.AppHealthAddr)
}

// Listeners binds a proxy's listeners by name (Config.Listeners).
type Listeners interface {
	// Listen returns a TCP listener on addr.
	Listen(name, addr string) (net.Listener, error)
	// Release says that the listener name is closed for good, not to be
	// served by the proxy's next process either.
	Release(name string)
	// ReleaseUnclaimed releases whatever was kept for this proxy that it
	// has not listened on: once a gateway has opened the ports of its
	// first configuration, those of its previous process's that are gone.
	ReleaseUnclaimed()
}

// listenTCP binds one listener through Config.Listeners.
func (p *Proxy) listenTCP(name, addr string) (net.Listener, error) {
	if p.cfg.Listeners != nil {
		return p.cfg.Listeners.Listen(name, addr)
	}
	return net.Listen("tcp", addr)
}

// releaseUnclaimedListeners releases what was kept for this proxy and
// not listened on (Listeners.ReleaseUnclaimed).
func (p *Proxy) releaseUnclaimedListeners() {
	if p.cfg.Listeners != nil {
		p.cfg.Listeners.ReleaseUnclaimed()
	}
}

// releaseListener says that listener name is closed for good.
func (p *Proxy) releaseListener(name string) {
	if p.cfg.Listeners != nil {
		p.cfg.Listeners.Release(name)
	}
}

// listeners returns the TCP listeners bound, in the order they are bound.
func (p *Proxy) listeners() []net.Listener {
	var out []net.Listener
	for _, ln := range []net.Listener{p.inLn, p.outLn, p.adminLn, p.healthLn, p.appHealthLn, p.tunnelLn} {
		if ln != nil {
			out = append(out, ln)
		}
	}
	return out
}

func (p *Proxy) closeListeners() {
	for _, ln := range p.listeners() {
		ln.Close()
	}
}

// Validate reports the first thing wrong with c: a missing certificate
// source, workload name, namespace or service account, a bad trust
// domain, or an app address without a port.
func (c Config) Validate() error {
	if c.Certs == nil {
		return errors.New("proxy: Certs is required")
	}
	if c.Workload.Name == "" {
		return errors.New("proxy: Workload.Name is required")
	}
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return fmt.Errorf("proxy: trust domain %q: %w", c.TrustDomain, err)
	}
	if _, err := identity.ForServiceAccount(td, c.Workload.Namespace, c.Workload.ServiceAccount); err != nil {
		return fmt.Errorf("proxy: workload identity: %w", err)
	}
	if _, err := appPortOf(c.AppAddr); err != nil {
		return err
	}
	return nil
}

func appPortOf(addr string) (uint32, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("proxy: app address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return 0, fmt.Errorf("proxy: app address %q: bad port", addr)
	}
	return uint32(port), nil
}

// InboundAddr returns the bound address of the inbound (mesh-facing)
// listener.
func (p *Proxy) InboundAddr() net.Addr { return p.inLn.Addr() }

// OutboundAddr returns the bound address of the outbound listener, the
// app's HTTP proxy.
func (p *Proxy) OutboundAddr() net.Addr { return p.outLn.Addr() }

// DNSAddr returns the bound address of the DNS server (UDP and TCP), nil
// without one.
func (p *Proxy) DNSAddr() net.Addr {
	if p.dns == nil {
		return nil
	}
	return p.dns.Addr()
}

// TunnelAddr returns the bound address of the HBONE tunnel listener, nil
// without one.
func (p *Proxy) TunnelAddr() net.Addr {
	if p.tunnelLn == nil {
		return nil
	}
	return p.tunnelLn.Addr()
}

// AdminAddr returns the bound address of the admin listener.
func (p *Proxy) AdminAddr() net.Addr { return p.adminLn.Addr() }

// ID returns the SPIFFE ID the proxy serves as.
func (p *Proxy) ID() spiffeid.ID { return p.self }

// Configured is closed once the proxy has applied its first
// configuration.
func (p *Proxy) Configured() <-chan struct{} { return p.configured }

// Ready reports whether the proxy holds a certificate and has applied a
// view: what /ready answers.
func (p *Proxy) Ready() error {
	if p.state.Load() == nil {
		return errors.New("no configuration applied yet")
	}
	if _, err := p.cfg.Certs.GetX509SVID(); err != nil {
		return fmt.Errorf("no certificate: %w", err)
	}
	return nil
}

// Run serves until ctx is done, then stops accepting, gives in-flight
// requests a short grace period, closes every connection and returns once
// every goroutine it started has ended. It returns nil after a cancelled
// ctx, or the first listener error. Run may be called once.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.ran.CompareAndSwap(false, true) {
		return errors.New("proxy: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	serve := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("proxy: %s: %w", name, err)
				cancel()
			}
		})
	}
	serve("inbound", func() error { return p.in.run(ctx, p.inLn) })
	if p.gw == nil {
		serve("outbound", func() error { return p.out.run(ctx, p.outLn) })
	} else {
		// A gateway has no app to be the HTTP proxy of: a local process
		// must not send through it with the gateway's identity.
		p.outLn.Close()
	}
	serve("admin", func() error { return p.admin.Serve(p.adminLn) })
	if p.tunnelLn != nil {
		serve("tunnel", func() error { return p.in.runTunnel(ctx, p.tunnelLn) })
	}
	if p.health != nil {
		serve("health", func() error { return p.health.Serve(p.healthLn) })
	}
	if p.appHealth != nil {
		serve("app-health", func() error { return p.appHealth.Serve(p.appHealthLn) })
	}
	wg.Go(func() { p.prefetchKeys(ctx) })
	// Spans outlive the servers: requests that finish during shutdown
	// still report theirs.
	spansCtx, stopSpans := context.WithCancel(context.Background())
	spansDone := make(chan struct{})
	go func() {
		defer close(spansDone)
		p.spans.Run(spansCtx)
	}()
	if p.dns != nil {
		serve("dns", func() error { return p.dns.Run(ctx) })
	}
	if p.gw != nil {
		serve("gateway", func() error { return p.gw.run(ctx) })
	}
	p.log.Info("proxy started", "inbound", p.InboundAddr().String(), "outbound", p.OutboundAddr().String(), "admin", p.AdminAddr().String(), "id", p.selfStr)

	<-ctx.Done()
	p.shutdown()
	wg.Wait()
	stopSpans()
	<-spansDone
	p.log.Info("proxy stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// shutdown stops the servers: new connections are refused at once,
// in-flight requests get shutdownGrace, then everything is closed.
func (p *Proxy) shutdown() {
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	servers := []interface {
		Shutdown(context.Context) error
		Close() error
	}{p.in.srv, p.out.srv, p.admin}
	for _, s := range []*http.Server{p.health, p.appHealth} {
		if s != nil {
			servers = append(servers, s)
		}
	}
	for _, s := range servers {
		wg.Go(func() {
			if err := s.Shutdown(sctx); err != nil {
				s.Close()
			}
		})
	}
	// Streams (tunnels, TCP, upgrades) are not the servers' to wait
	// for: closed at once, and their goroutines awaited.
	for _, s := range []*streamSet{&p.in.streams, &p.out.streams} {
		s.closeAll()
		wg.Go(func() { s.wait(sctx) })
	}
	wg.Wait()
	p.out.tunnels.closeAll()
	p.out.mirrors.close()
	p.extAuthz.close()
	p.Close()
	p.in.closeIdle()
	p.out.closeIdle()
}

// Close closes the listeners. Run calls it on return; call it directly
// only for a proxy that is never run.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.closeListeners()
		if p.dns != nil {
			p.dns.Close()
		}
	})
	return nil
}

// prefetchKeys fetches the JWKS of each pushed request authentication as
// it arrives, so that the first requests after a push do not wait for
// them. A fetch is bounded by its rule's timeout; failures are logged by
// the cache, and requests retry them (rate-limited) on their own path.
func (p *Proxy) prefetchKeys(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case rp := <-p.prefetch:
			if err := p.jwks.Prefetch(ctx, rp); err != nil {
				p.log.Warn("JWKS prefetch failed; tokens of these issuers are refused until a fetch succeeds", "err", err)
			}
		}
	}
}

// schedulePrefetch hands rp to prefetchKeys, replacing a policy not yet
// taken. Callers hold applyMu.
func (p *Proxy) schedulePrefetch(rp *authn.RequestPolicy) {
	remote := false
	for _, r := range rp.Rules() {
		remote = remote || !r.Inline()
	}
	if !remote {
		return
	}
	select {
	case <-p.prefetch:
	default:
	}
	p.prefetch <- rp
}

func accessLog(log *slog.Logger, all bool) *telemetry.AccessLog {
	a := telemetry.NewAccessLog(log)
	if all {
		return a
	}
	return a.ErrorsOnly()
}
