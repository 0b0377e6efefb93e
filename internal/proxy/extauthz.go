package proxy

import (
	"context"
	"crypto/tls"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz/client"
)

// extAuthz is the proxy's side of CUSTOM authorization. The client that
// asks providers and reads their answers is internal/extauthz/client;
// this glue gives it the workload's identity and mutual TLS, turns a
// request or connection and the state in force into its input; the
// handlers apply its Answer.
type extAuthz struct{ c *client.Client }

func newExtAuthz(p *Proxy) *extAuthz {
	return &extAuthz{c: client.New(client.Config{
		Logger:    p.log,
		Now:       p.now,
		Principal: p.selfStr,
		// A provider endpoint with a proxy: mutual TLS as to any mesh
		// endpoint (the client sets ALPN).
		TLS:              func(id spiffeid.ID) *tls.Config { return p.meshClientTLS(id) },
		Dial:             newDialer().DialContext,
		IdleTimeout:      clientIdleTimeout,
		HandshakeTimeout: handshakeTimeout,
		MaxHeaderBytes:   maxHeaderBytes,
	})}
}

// close closes every provider connection; later checks fail.
func (x *extAuthz) close() { x.c.Close() }

// check asks the provider named name about r from pr; path is the
// normalized path policies matched, the one forwarded to the app.
func (x *extAuthz) check(ctx context.Context, st *state, name string, r *http.Request, pr *peer, path string) client.Answer {
	return x.c.Check(ctx, extAuthzMesh(st), name, client.Request{HTTP: r, Path: path, Peer: extAuthzPeer(pr)})
}

// checkConnection asks the provider named name about a TCP connection
// from pr.
func (x *extAuthz) checkConnection(ctx context.Context, st *state, name string, pr *peer) authz.CustomVerdict {
	return x.c.CheckConnection(ctx, extAuthzMesh(st), name, extAuthzPeer(pr))
}

// applyHeaders applies a provider's header options to h, with Envoy's
// append semantics (client.ApplyHeaders).
func applyHeaders(h http.Header, opts []*corev3.HeaderValueOption) { client.ApplyHeaders(h, opts) }

func extAuthzMesh(st *state) client.Mesh {
	return client.Mesh{Providers: st.providers, Services: meshServices{st.routes}}
}

func extAuthzPeer(pr *peer) client.Peer {
	return client.Peer{IP: pr.ip, ID: pr.uri, Local: pr.local, MTLS: pr.mtls, SNI: pr.sni}
}

// meshServices are the routes of the state in force, as the client
// resolves a provider's mesh hostname.
type meshServices struct{ t *routeTable }

func (m meshServices) Lookup(host string) client.Service {
	if rt := m.t.lookup(host); rt != nil {
		return routeService{rt}
	}
	return nil
}

// routeService is a mesh service a provider's hostname names.
type routeService struct{ rt *route }

func (s routeService) Hostname() string  { return s.rt.hostname }
func (s routeService) Namespace() string { return s.rt.namespace }

// Pick picks an endpoint as for any request to the service: mutual TLS
// expecting its identity when it has a proxy, plaintext otherwise.
func (s routeService) Pick() (client.Endpoint, bool) {
	ep := s.rt.pick()
	if ep == nil {
		return client.Endpoint{}, false
	}
	if ep.hasProxy {
		return client.Endpoint{Addr: ep.addr, ID: ep.id}, true
	}
	return client.Endpoint{Addr: ep.addr}, true
}

var (
	_ client.Services = meshServices{}
	_ client.Service  = routeService{}
)
