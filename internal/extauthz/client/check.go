package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
)

// Mesh is what a check reads of the configuration in force: the
// providers CUSTOM policies may name, and the mesh services their
// hostnames may be.
type Mesh struct {
	// Providers are extauthz.Compile's, by name.
	Providers map[string]*extauthz.Provider
	// Services finds mesh services; nil knows none, and every provider
	// is then dialled directly.
	Services Services
}

// Services finds the mesh service a provider names, as the proxy routes
// it in the push in force.
type Services interface {
	// Lookup returns the mesh service host names, or nil when host is
	// not one.
	Lookup(host string) Service
}

// Service is a mesh service that a provider's hostname names.
type Service interface {
	// Hostname is the service's fully qualified name, for errors.
	Hostname() string
	// Namespace is the service's, which Istio's NAMESPACE/HOSTNAME form
	// of a provider's service must agree with.
	Namespace() string
	// Pick chooses the endpoint one check goes to, as for any request to
	// the service; false when the service has none.
	Pick() (Endpoint, bool)
}

// Endpoint is where a check is sent.
type Endpoint struct {
	Addr string
	// ID is what the endpoint's proxy must prove over mutual TLS; zero
	// for an endpoint without one, which is asked in plaintext.
	ID spiffeid.ID
}

// Peer is the connection a check is about, as the proxy verified it.
type Peer struct {
	// IP is the client's address.
	IP netip.Addr
	// ID is the client's SPIFFE ID, the source principal; "" over
	// plaintext.
	ID string
	// Local is the address the client connected to.
	Local netip.AddrPort
	// MTLS is set for a mutual TLS connection, whose SNI the check
	// carries.
	MTLS bool
	SNI  string
}

// Request is an HTTP request to check.
type Request struct {
	// HTTP is the request. An HTTP provider that includes the body reads
	// its start and puts it back in front of the rest.
	HTTP *http.Request
	// Path is the normalized path that policies matched, the one
	// forwarded to the app.
	Path string
	Peer Peer
}

// Answer is a provider's answer for one request, with what the proxy
// must do with it.
type Answer struct {
	Verdict authz.CustomVerdict
	// Status, Body and Headers are the reply to send on a denial.
	Status  int
	Body    string
	Headers []*corev3.HeaderValueOption
	// Set and Remove change the forwarded request on an allow; Respond
	// are added to the app's response to the client.
	Set     []*corev3.HeaderValueOption
	Remove  []string
	Respond []*corev3.HeaderValueOption
	// Err is why the provider could not answer; the verdict then follows
	// failOpen.
	Err error
}

// Check asks the provider named provider about req, as Envoy's ext_authz
// filter does, and turns every failure into a verdict: an unreachable,
// slow or broken provider denies with statusOnError, unless the provider
// is failOpen. A provider m does not have denies with 403.
func (c *Client) Check(ctx context.Context, m Mesh, provider string, req Request) Answer {
	prov := m.Providers[provider]
	if prov == nil {
		// authz only names providers it was given; fail closed anyway.
		return Answer{Verdict: authz.CustomDeny, Status: http.StatusForbidden, Err: fmt.Errorf("unknown provider %q", provider)}
	}
	ans := c.ask(ctx, m, prov, req)
	if ans.Err != nil {
		c.log.Warn("ext_authz provider failed", "provider", prov.Name, "failOpen", prov.FailOpen, "err", ans.Err)
		if prov.FailOpen {
			ans.Verdict = authz.CustomAllow
		} else {
			ans.Verdict, ans.Status = authz.CustomDeny, prov.StatusOnError
		}
	}
	return ans
}

// ask puts req to the provider in its API and returns its answer, with
// Err set when there was none.
func (c *Client) ask(ctx context.Context, m Mesh, prov *extauthz.Provider, req Request) Answer {
	if prov.HTTP != nil {
		return c.askHTTP(ctx, m, prov, req.HTTP, req.Path)
	}
	return c.askGRPC(ctx, m, prov, c.grpcRequest(req))
}

// CheckConnection asks the provider named provider about a TCP
// connection, as Envoy's network ext_authz filter does: a CheckRequest
// with the peers and no HTTP request. An HTTP provider cannot judge a
// connection (Istio applies envoyExtAuthzHttp to HTTP traffic only), so
// asking one is a failure, which failOpen settles like any other. A
// provider m does not have denies.
func (c *Client) CheckConnection(ctx context.Context, m Mesh, provider string, pr Peer) authz.CustomVerdict {
	prov := m.Providers[provider]
	if prov == nil {
		return authz.CustomDeny
	}
	var ans Answer
	if prov.HTTP != nil {
		ans.Err = errors.New("an envoyExtAuthzHttp provider cannot authorize a TCP connection")
	} else {
		ans = c.askGRPC(ctx, m, prov, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Address: socketAddress(netip.AddrPortFrom(pr.IP, 0)), Principal: pr.ID},
			Destination: &authv3.AttributeContext_Peer{Address: socketAddress(pr.Local), Principal: c.cfg.Principal},
			Request:     &authv3.AttributeContext_Request{Time: timestamppb.New(c.now())},
			TlsSession:  tlsSession(pr),
		}})
	}
	if ans.Err != nil {
		c.log.Warn("ext_authz provider failed for a TCP connection", "provider", prov.Name, "failOpen", prov.FailOpen, "err", ans.Err)
		if prov.FailOpen {
			return authz.CustomAllow
		}
		return authz.CustomDeny
	}
	return ans.Verdict
}

// target resolves a provider's service: a mesh hostname the proxy routes
// (through an endpoint's proxy with mutual TLS and secure naming, or
// straight to a plaintext endpoint), else host:port dialled directly.
func target(services Services, prov *extauthz.Provider) (string, spiffeid.ID, error) {
	// Istio's form is [NAMESPACE/]HOSTNAME; the namespace only
	// disambiguates, so it must agree with the service's.
	service, ns := prov.Service, ""
	if i := strings.IndexByte(service, '/'); i > 0 {
		ns, service = service[:i], service[i+1:]
	}
	var svc Service
	if services != nil {
		svc = services.Lookup(service)
	}
	if svc != nil {
		if ns != "" && svc.Namespace() != ns {
			return "", spiffeid.ID{}, fmt.Errorf("service %s is in namespace %s, not %s", svc.Hostname(), svc.Namespace(), ns)
		}
		ep, ok := svc.Pick()
		if !ok {
			return "", spiffeid.ID{}, fmt.Errorf("service %s has no endpoints", svc.Hostname())
		}
		return ep.Addr, ep.ID, nil
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
