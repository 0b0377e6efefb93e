package proxy

import (
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	vroute "github.com/zmesh/zmesh/internal/route"
	"github.com/zmesh/zmesh/internal/telemetry"
	"github.com/zmesh/zmesh/internal/tracing/otlp"
	"github.com/zmesh/zmesh/internal/xds"
)

// GatewayConfig makes a Proxy a gateway (Istio's ingress or egress
// gateway, `zmesh proxy --gateway`): it serves no app; it listens on the
// ports of the Gateways that select it, and routes what they admit by
// the VirtualServices bound to them, to mesh services over mutual TLS
// with its own identity or to external hosts (with the DestinationRule's
// TLS origination). Its AuthorizationPolicies decide every request first.
type GatewayConfig struct {
	// Ports maps a Gateway server's port number to the address it is
	// served at (host:port), so that an unprivileged process can serve
	// port 443 at :8443. A port not listed is served at Host:number when
	// the number is 1024 or more, and not at all otherwise (logged).
	Ports map[uint32]string
	// Host is where ports not in Ports are bound; default 0.0.0.0.
	Host string
	// CertFileDirs are the directories (absolute) whose files a Gateway
	// server's serverCertificate, privateKey and caCertificates may name,
	// Istio's file-mounted certificates (e.g.
	// /etc/istio/ingressgateway-certs). A path outside them, or a
	// symbolic link leading out of them, is refused at the handshake, so
	// a Gateway (of any namespace: Istio lets any Gateway selecting the
	// gateway name its files) serves only what the operator put there.
	// None: servers with certificate files refuse every handshake.
	CertFileDirs []string
}

// gatewayState is the Gateways of one view compiled for serving: their
// servers by port.
type gatewayState struct {
	ports map[uint32]*gatewayPort
	// creds are the credentials the control plane pushed (Kubernetes
	// Secrets of the gateway's namespace), by name.
	creds map[string]*servedCredential
}

// gatewayPort is one port and the servers of every Gateway on it. Istio
// requires one protocol per port; the first server's decides, and a
// server that disagrees is left out (logged).
type gatewayPort struct {
	number   uint32
	protocol string // upper case: HTTP, HTTPS, HTTP2, GRPC, TCP, TLS
	tls      bool   // the port terminates TLS (HTTPS)
	// stream is set on a TCP port and on a TLS port: connections are
	// relayed by the VirtualServices' tcp and tls routes
	// (gateway_stream.go). On a TLS port whose servers are PASSTHROUGH
	// the bytes pass untouched, routed by SNI; with terminate (SIMPLE or
	// MUTUAL servers) the gateway completes the handshake with the
	// server's credential and relays the plaintext by the tcp routes.
	stream    bool
	terminate bool
	// mesh is set on a TLS port whose servers are ISTIO_MUTUAL: its
	// handshakes take the mesh's certificates and verify the caller's
	// against the mesh's roots, so a caller there has a mesh identity.
	// Servers of the other TLS modes are left out of such a port, and
	// ISTIO_MUTUAL ones out of the others, so that no handshake can make
	// a certificate of a credential's CA pass for a mesh identity.
	mesh    bool
	servers []*gatewayServer
}

// gatewayServer is one server of a Gateway.
type gatewayServer struct {
	gateway   string // NAMESPACE/NAME of its Gateway
	namespace string // its Gateway's namespace
	hosts     []string
	mode      networking.ServerTLSSettings_TLSmode // when the port terminates TLS
	tls       *networking.ServerTLSSettings
	redirect  bool // httpsRedirect
	// routes are the VirtualServices bound to its Gateway whose hosts
	// its hosts admit.
	routes *vroute.Table
	// tcp are the same VirtualServices one by one, in routes' order of
	// precedence, for a TCP server: a TCP stream names no host, so each
	// one's tcp routes are tried in turn.
	tcp []*vroute.VirtualService
	// refused is the last reason its handshakes were refused for, so
	// that a server whose certificate is missing logs once per reason
	// and push, not once per connection.
	refused atomic.Pointer[string]
}

// logRefusal logs, as a warning, that server srv of port n refuses TLS
// handshakes because of err: once per reason (a client cannot flood the
// log by reconnecting), again when the reason changes.
func (srv *gatewayServer) logRefusal(log *slog.Logger, n uint32, err error) {
	msg := err.Error()
	if old := srv.refused.Swap(&msg); old != nil && *old == msg {
		return
	}
	log.Warn("gateway server refuses TLS handshakes", "port", n, "gateway", srv.gateway, "hosts", srv.hosts, "error", msg)
}

// compileGateway builds st.gateway from v's Gateways and VirtualServices.
func (p *Proxy) compileGateway(st *state, v *xds.View) error {
	gs := &gatewayState{ports: map[uint32]*gatewayPort{}, creds: compileCredentials(v.Credentials, p.cfg.Workload.Namespace, p.log)}
	for _, r := range v.Gateways {
		gw, ok := r.Spec.(*networking.Gateway)
		if !ok {
			return fmt.Errorf("gateway: %s is a %T, not a Gateway", r.Key(), r.Spec)
		}
		for _, s := range gw.GetServers() {
			proto := strings.ToUpper(s.GetPort().GetProtocol())
			srv := &gatewayServer{gateway: r.Key(), namespace: r.Namespace, tls: s.GetTls(), redirect: s.GetTls().GetHttpsRedirect()}
			for _, h := range s.GetHosts() {
				srv.hosts = append(srv.hosts, strings.ToLower(h))
			}
			if proto == "HTTPS" || proto == "TLS" {
				srv.mode = s.GetTls().GetMode()
			}
			var bound []config.Resource
			for _, vr := range v.VirtualServices {
				if serverBinds(srv, vr, st.dnsDomain) {
					bound = append(bound, vr)
				}
			}
			rcfg := vroute.Config{
				Namespace: p.cfg.Workload.Namespace,
				Labels:    p.cfg.Workload.Labels,
				DNSDomain: st.dnsDomain,
				Gateways:  []string{r.Key()},
			}
			t, err := vroute.Compile(bound, rcfg)
			if err != nil {
				return err
			}
			srv.routes = t
			terminate := proto == "TLS" && srv.mode != networking.ServerTLSSettings_PASSTHROUGH
			if proto == "TCP" || terminate {
				if srv.tcp, err = compileTCPRoutes(bound, rcfg, p.cfg.Workload.Namespace); err != nil {
					return err
				}
			}
			if terminate && !credentialMode(srv.mode) {
				p.log.Warn("gateway server left out: a TLS server is served in PASSTHROUGH, SIMPLE or MUTUAL mode", "gateway", r.Key(), "port", s.GetPort().GetNumber(), "mode", srv.mode.String())
				continue
			}
			n := s.GetPort().GetNumber()
			port := gs.ports[n]
			if port == nil {
				port = &gatewayPort{number: n, protocol: proto, tls: proto == "HTTPS", mesh: srv.mode == networking.ServerTLSSettings_ISTIO_MUTUAL,
					stream: proto == "TCP" || proto == "TLS", terminate: terminate}
				gs.ports[n] = port
			}
			if port.protocol != proto {
				p.log.Warn("gateway server left out: its port already serves another protocol", "gateway", r.Key(), "port", n, "protocol", proto, "portProtocol", port.protocol)
				continue
			}
			if port.terminate != terminate {
				// One listener either reads the ClientHello and relays it,
				// or completes the handshake: the first server decides.
				p.log.Warn("gateway server left out: PASSTHROUGH and terminating TLS servers cannot share a port", "gateway", r.Key(), "port", n)
				continue
			}
			if port.tls && port.mesh != (srv.mode == networking.ServerTLSSettings_ISTIO_MUTUAL) {
				p.log.Warn("gateway server left out: ISTIO_MUTUAL and other TLS modes cannot share a port", "gateway", r.Key(), "port", n)
				continue
			}
			port.servers = append(port.servers, srv)
		}
	}
	st.gateway = gs
	return nil
}

// serverBinds reports whether the VirtualService vr may serve on srv: it
// is bound to srv's Gateway, and one of srv's hosts admits its namespace
// and meets one of its hosts.
func serverBinds(srv *gatewayServer, vr config.Resource, dns string) bool {
	vs, ok := vr.Spec.(*networking.VirtualService)
	if !ok || !config.BindsGateway(vs, vr.Namespace, srv.gateway) {
		return false
	}
	for _, sh := range srv.hosts {
		if !config.ServerHostAdmits(sh, srv.namespace, vr.Namespace) {
			continue
		}
		_, name := config.SplitServerHost(sh)
		for _, h := range vs.GetHosts() {
			if config.HostsIntersect(name, vroute.Host(h, vr.Namespace, dns)) {
				return true
			}
		}
	}
	return false
}

// server returns the server of the port that admits host (a name
// without port, or "" when unknown: the first server), or nil.
func (gp *gatewayPort) server(host string) *gatewayServer {
	if gp == nil {
		return nil
	}
	host = canonicalHost(host)
	for _, s := range gp.servers {
		if host == "" {
			return s
		}
		for _, h := range s.hosts {
			if _, name := config.SplitServerHost(h); config.HostsIntersect(name, host) {
				return s
			}
		}
	}
	return nil
}

// meshServer picks the server for a request that came to the gateway
// over the mesh (a sidecar's mTLS to its inbound listener, which carries
// no Gateway port): an ISTIO_MUTUAL server that admits host, else a plain
// HTTP one, lowest port first.
func (gs *gatewayState) meshServer(host string) (*gatewayPort, *gatewayServer) {
	if gs == nil {
		return nil, nil
	}
	nums := make([]int, 0, len(gs.ports))
	for n := range gs.ports {
		nums = append(nums, int(n))
	}
	sort.Ints(nums)
	for _, wantMTLS := range []bool{true, false} {
		for _, n := range nums {
			gp := gs.ports[uint32(n)]
			if s := gp.server(host); s != nil {
				if wantMTLS && gp.mesh || !wantMTLS && !gp.tls && config.IsHTTPProtocol(gp.protocol) {
					return gp, s
				}
			}
		}
	}
	return nil, nil
}

// serveGateway handles one request the gateway admitted on port gp (nil:
// none fits) from pr: the server whose hosts take its Host, its
// httpsRedirect, the gateway's policies (peer and request
// authentication, authorization, with the server's port as destination
// port), then the route of the VirtualService bound there. The access
// log records the caller (its mesh identity, else its address) and the
// destination host.
func (p *Proxy) serveGateway(w http.ResponseWriter, r *http.Request, st *state, gp *gatewayPort, srv *gatewayServer, pr *peer) {
	if screenRequest(w, r) {
		return
	}
	start := time.Now()
	rec := newRecorder(w)
	defer rec.release()
	rec.grpc = protocolOf(r) == "grpc"
	rec.streams = &p.out.streams
	labels := telemetry.RequestLabels{
		Reporter: telemetry.ReporterSource,
		Source:   p.out.self,
		Protocol: protocolOf(r),
		Security: telemetry.SecurityNone,
	}
	// The gateway's span, as a sidecar's client span: it continues the
	// caller's trace (or starts one) and is the parent the next hop sees.
	span := p.startTrace(r.Header, otlp.Client, start)
	host := canonicalHost(stripPort(r.Host))
	var d verdict
	var upstream, peerID string
	var cb *countingBody
	if srv == nil && gp != nil {
		srv = gp.server(host)
	}
	switch {
	case st == nil || st.gateway == nil:
		rec.fail(flagNoRoute, nil)
		rec.reason = "no configuration yet"
		writeText(rec, http.StatusServiceUnavailable, bodyNoUpstream)
	case srv == nil:
		// Istio's gateway: a host no server on the port takes has no
		// route (404).
		rec.fail(flagNoRoute, nil)
		rec.reason = "no Gateway server takes host " + host
		writeText(rec, http.StatusNotFound, "")
	case srv.redirect && r.TLS == nil:
		rec.Header().Set("Location", "https://"+r.Host+r.URL.RequestURI())
		rec.WriteHeader(http.StatusMovedPermanently)
	default:
		pr.appPort = gp.number
		d = p.in.decide(r.Context(), st, r, pr)
		if p.in.refuse(rec, r, &d) {
			break
		}
		vs := srv.routes.Lookup(host)
		if vs == nil || !vs.HTTP {
			rec.fail(flagNoRoute, nil)
			rec.reason = "no VirtualService bound to " + srv.gateway + " routes host " + host
			writeText(rec, http.StatusNotFound, "")
			break
		}
		if d.path != "" {
			// Forward the normalized path that policies matched.
			r.URL.Path, r.URL.RawPath = d.decoded, d.path
		}
		d.applyAuthHeaders(r.Header)
		if d.custom != nil {
			rec.respond = d.custom.Respond
		}
		// The caller's identity headers are this gateway's to say: it
		// calls on with its own identity, and says nothing of the
		// caller's to a server outside the mesh.
		delete(r.Header, headerXFCC)
		delete(r.Header, headerSourceWorkload)
		upstream, peerID, cb = p.out.virtual(rec, r, &labels, st, vs, gp.number)
	}
	p.reportGateway(r, rec, &d, pr, host, &labels, start, upstream, peerID, requestSize(r, cb))
	if span != nil {
		port := "0"
		if gp != nil {
			port = portString(gp.number)
		}
		service := labels.Service
		if service == "" {
			service = host
		}
		p.endTrace(span, r, rec, "outbound|"+port+"||"+service, service, port, peerID)
	}
}

// reportGateway records a request the gateway served: Istio's metrics
// as its source proxy, and the access log line with the caller and the
// destination.
func (p *Proxy) reportGateway(r *http.Request, rec *recorder, d *verdict, pr *peer, host string, labels *telemetry.RequestLabels, start time.Time, upstream, peerID string, reqBytes int64) {
	elapsed := time.Since(start)
	res := &d.res
	labels.Code, labels.Flags, labels.GRPCStatus = rec.status(), rec.flags, grpcLabel(rec)
	p.metrics.ObserveRequest(&telemetry.RequestObservation{
		Labels:        *labels,
		Duration:      elapsed,
		RequestBytes:  reqBytes,
		ResponseBytes: rec.bytes,
	})
	dst := labels.Service
	source := pr.uri
	if source == "" && pr.ip.IsValid() {
		source = pr.ip.String()
	}
	if dst == "" {
		dst = host
	}
	p.access.Log(r.Context(), &telemetry.AccessEntry{
		Direction:   "gateway",
		Method:      r.Method,
		Authority:   r.Host,
		Path:        r.URL.RequestURI(),
		Protocol:    r.Proto,
		Code:        rec.status(),
		Flags:       rec.flags,
		Duration:    elapsed,
		Peer:        peerID,
		Upstream:    upstream,
		Policy:      res.Policy,
		Reason:      rec.reason,
		BytesIn:     reqBytes,
		BytesOut:    rec.bytes,
		Source:      source,
		Destination: dst,
	})
}

// portString is n in decimal, for addresses and logs.
func portString(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
