package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
)

// Defaults of an ext_authz provider.
const (
	// extAuthzIdle is how long an unused provider connection stays open.
	extAuthzIdle = 5 * time.Minute
	// maxExtAuthzResponse bounds a provider's answer.
	maxExtAuthzResponse = 1 << 20
)

// customAnswer is a provider's answer for one request, with what the
// proxy must do with it.
type customAnswer struct {
	verdict authz.CustomVerdict
	// status, body and headers are the reply to send on a denial.
	status  int
	body    string
	headers []*corev3.HeaderValueOption
	// set and remove change the forwarded request on an allow; respond
	// are added to the app's response to the client.
	set     []*corev3.HeaderValueOption
	remove  []string
	respond []*corev3.HeaderValueOption
	// err is why the provider could not answer; the verdict then follows
	// failOpen.
	err error
}

// extAuthz holds the connections to ext_authz providers, one gRPC
// connection or pooled HTTP client per address and expected identity,
// shared by all requests.
type extAuthz struct {
	p      *Proxy
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	https  map[string]*http.Client
	closed bool
}

func newExtAuthz(p *Proxy) *extAuthz {
	return &extAuthz{p: p, conns: map[string]*grpc.ClientConn{}, https: map[string]*http.Client{}}
}

// connKey names the connection to addr for a provider that must prove id
// (plaintext when id is zero).
func connKey(addr string, id spiffeid.ID) string {
	if id.IsZero() {
		return "plain|" + addr
	}
	return id.String() + "|" + addr
}

// mtlsConfig is the client TLS configuration for a provider endpoint
// that must prove id: the workload's certificate, read at each handshake
// so that rotation needs nothing here, secure naming as for any mesh
// endpoint (aliases included), and TLS 1.3 as between proxies.
func (x *extAuthz) mtlsConfig(id spiffeid.ID) *tls.Config {
	conf := tlsconfig.MTLSClientConfig(x.p.cfg.Certs, trustBundles{x.p}, x.p.authorizeServer(id))
	x.p.verifyAtProxyTime(conf, x.p.authorizeServer(id))
	conf.MinVersion = tls.VersionTLS13
	return conf
}

// client returns the Authorization client for addr: mutual TLS expecting
// id when id is set (a mesh endpoint with a proxy), plaintext otherwise.
func (x *extAuthz) client(addr string, id spiffeid.ID) (authv3.AuthorizationClient, error) {
	key := connKey(addr, id)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil, errors.New("proxy is shutting down")
	}
	if cc, ok := x.conns[key]; ok {
		return authv3.NewAuthorizationClient(cc), nil
	}
	creds := insecure.NewCredentials()
	if !id.IsZero() {
		creds = credentials.NewTLS(x.mtlsConfig(id))
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithIdleTimeout(extAuthzIdle),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxExtAuthzResponse)),
	)
	if err != nil {
		return nil, err
	}
	x.conns[key] = cc
	return authv3.NewAuthorizationClient(cc), nil
}

// close closes every provider connection; later calls fail. An HTTP
// check still in flight keeps its connection until it ends (see
// closeIfShutDown).
func (x *extAuthz) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
	for k, cc := range x.conns {
		cc.Close()
		delete(x.conns, k)
	}
	for k, c := range x.https {
		c.CloseIdleConnections()
		delete(x.https, k)
	}
}

// target resolves a provider's service: a mesh hostname the proxy routes
// (through an endpoint's proxy with mutual TLS and secure naming, or
// straight to a plaintext endpoint), else host:port dialled directly.
func (x *extAuthz) target(st *state, prov *extauthz.Provider) (string, spiffeid.ID, error) {
	// Istio's form is [NAMESPACE/]HOSTNAME; the namespace only
	// disambiguates, so it must agree with the service's.
	service, ns := prov.Service, ""
	if i := strings.IndexByte(service, '/'); i > 0 {
		ns, service = service[:i], service[i+1:]
	}
	if rt := st.routes.lookup(service); rt != nil {
		if ns != "" && rt.namespace != ns {
			return "", spiffeid.ID{}, fmt.Errorf("service %s is in namespace %s, not %s", rt.hostname, rt.namespace, ns)
		}
		ep := rt.pick()
		if ep == nil {
			return "", spiffeid.ID{}, fmt.Errorf("service %s has no endpoints", rt.hostname)
		}
		if ep.hasProxy {
			return ep.addr, ep.id, nil
		}
		return ep.addr, spiffeid.ID{}, nil
	}
	if ns != "" {
		return "", spiffeid.ID{}, fmt.Errorf("service %s is not a mesh service in namespace %s", service, ns)
	}
	if _, _, err := net.SplitHostPort(service); err == nil {
		return service, spiffeid.ID{}, nil
	}
	if prov.Port == 0 || prov.Port > 65535 {
		return "", spiffeid.ID{}, fmt.Errorf("service %s is not a mesh service and has no port", service)
	}
	return net.JoinHostPort(service, strconv.Itoa(int(prov.Port))), spiffeid.ID{}, nil
}

// check asks the provider about r, as Envoy's ext_authz filter does, and
// turns every failure into a verdict: an unreachable, slow or broken
// provider denies with statusOnError, unless the provider is failOpen.
func (x *extAuthz) check(ctx context.Context, st *state, name string, r *http.Request, pr *peer, path string) customAnswer {
	prov := st.providers[name]
	if prov == nil {
		// authz only names providers it was given; fail closed anyway.
		return customAnswer{verdict: authz.CustomDeny, status: http.StatusForbidden, err: fmt.Errorf("unknown provider %q", name)}
	}
	ans := x.ask(ctx, st, prov, r, pr, path)
	if ans.err != nil {
		x.p.log.Warn("ext_authz provider failed", "provider", prov.Name, "failOpen", prov.FailOpen, "err", ans.err)
		if prov.FailOpen {
			ans.verdict = authz.CustomAllow
		} else {
			ans.verdict, ans.status = authz.CustomDeny, prov.StatusOnError
		}
	}
	return ans
}

// ask puts r to the provider in its API and returns its answer, with err
// set when there was none.
func (x *extAuthz) ask(ctx context.Context, st *state, prov *extauthz.Provider, r *http.Request, pr *peer, path string) customAnswer {
	if prov.HTTP != nil {
		return x.askHTTP(ctx, st, prov, r, path)
	}
	return x.askGRPC(ctx, st, prov, x.request(r, pr, path))
}

// checkConnection asks the provider about a TCP connection, as Envoy's
// network ext_authz filter does: a CheckRequest with the peers and no
// HTTP request. An HTTP provider cannot judge a connection (Istio applies
// envoyExtAuthzHttp to HTTP traffic only), so asking one is a failure,
// which failOpen settles like any other.
func (x *extAuthz) checkConnection(ctx context.Context, st *state, name string, pr *peer) authz.CustomVerdict {
	prov := st.providers[name]
	if prov == nil {
		return authz.CustomDeny
	}
	var ans customAnswer
	if prov.HTTP != nil {
		ans.err = errors.New("an envoyExtAuthzHttp provider cannot authorize a TCP connection")
	} else {
		ans = x.askGRPC(ctx, st, prov, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Address: socketAddress(netip.AddrPortFrom(pr.ip, 0)), Principal: pr.uri},
			Destination: &authv3.AttributeContext_Peer{Address: socketAddress(pr.local), Principal: x.p.selfStr},
			Request:     &authv3.AttributeContext_Request{Time: timestamppb.New(x.p.now())},
			TlsSession:  tlsSession(pr),
		}})
	}
	if ans.err != nil {
		x.p.log.Warn("ext_authz provider failed for a TCP connection", "provider", prov.Name, "failOpen", prov.FailOpen, "err", ans.err)
		if prov.FailOpen {
			return authz.CustomAllow
		}
		return authz.CustomDeny
	}
	return ans.verdict
}

// askGRPC sends req to a gRPC provider and returns its answer, with err
// set when there was none.
func (x *extAuthz) askGRPC(ctx context.Context, st *state, prov *extauthz.Provider, req *authv3.CheckRequest) customAnswer {
	addr, id, err := x.target(st, prov)
	if err != nil {
		return customAnswer{err: err}
	}
	c, err := x.client(addr, id)
	if err != nil {
		return customAnswer{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, prov.Timeout)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		return customAnswer{err: fmt.Errorf("check at %s: %w", addr, err)}
	}
	if e := resp.GetErrorResponse(); e != nil {
		return customAnswer{err: fmt.Errorf("provider at %s answered an error (status %d)", addr, e.GetStatus().GetCode())}
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		ok := resp.GetOkResponse()
		return customAnswer{verdict: authz.CustomAllow, set: ok.GetHeaders(), remove: ok.GetHeadersToRemove(),
			respond: ok.GetResponseHeadersToAdd()}
	}
	ans := customAnswer{verdict: authz.CustomDeny, status: http.StatusForbidden}
	if d := resp.GetDeniedResponse(); d != nil {
		if code := int(d.GetStatus().GetCode()); code >= 200 && code <= 599 {
			ans.status = code
		}
		ans.body, ans.headers = d.GetBody(), d.GetHeaders()
	}
	return ans
}

// request builds the CheckRequest Envoy would send for r: peers, and the
// HTTP request with its headers (lower-case names, repeated values joined
// with ",", pseudo-headers included).
func (x *extAuthz) request(r *http.Request, pr *peer, path string) *authv3.CheckRequest {
	headers := make(map[string]string, len(r.Header)+4)
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	target := path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	scheme := "http"
	if pr.mtls {
		scheme = "https"
	}
	headers[":authority"], headers[":method"], headers[":path"], headers[":scheme"] = r.Host, r.Method, target, scheme
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress(netip.AddrPortFrom(pr.ip, 0)), Principal: pr.uri},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress(pr.local), Principal: x.p.selfStr},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(x.p.now()),
			Http: &authv3.AttributeContext_HttpRequest{
				Method:   r.Method,
				Headers:  headers,
				Path:     target,
				Host:     r.Host,
				Scheme:   scheme,
				Query:    r.URL.RawQuery,
				Protocol: r.Proto,
				Size:     r.ContentLength,
			},
		},
		TlsSession: tlsSession(pr),
	}}
}

func tlsSession(pr *peer) *authv3.AttributeContext_TLSSession {
	if !pr.mtls {
		return nil
	}
	return &authv3.AttributeContext_TLSSession{Sni: pr.sni}
}

func socketAddress(ap netip.AddrPort) *corev3.Address {
	if !ap.Addr().IsValid() {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ap.Addr().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}

// applyHeaders applies a provider's header options to h, with Envoy's
// append semantics; invalid names or values are skipped.
func applyHeaders(h http.Header, opts []*corev3.HeaderValueOption) {
	for _, o := range opts {
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if v == "" && len(o.GetHeader().GetRawValue()) > 0 {
			v = string(o.GetHeader().GetRawValue())
		}
		if strings.HasPrefix(k, ":") || !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			continue
		}
		_, present := h[http.CanonicalHeaderKey(k)]
		switch {
		case o.GetAppend() != nil && o.GetAppend().GetValue():
			h.Add(k, v)
		case o.GetAppend() != nil:
			h.Set(k, v)
		case o.GetAppendAction() == corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !present {
				h.Set(k, v)
			}
		case o.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if present {
				h.Set(k, v)
			}
		default:
			// APPEND_IF_EXISTS_OR_ADD is the enum's zero value, which a
			// provider that sets nothing sends; Envoy's ext_authz has long
			// treated an unset append as "set", and so do we.
			h.Set(k, v)
		}
	}
}
