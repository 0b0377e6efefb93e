package client

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
	"github.com/zmesh/zmesh/internal/extauthz/extauthztest"
	"github.com/zmesh/zmesh/internal/meshtest"
)

// meshTLS is a mesh of the test CA: the SVIDs of a workload and of an
// authorizer's proxy, and the bundle both trust.
type meshTLS struct {
	bundle             *x509bundle.Bundle
	workload, provider *x509svid.SVID
}

func newMeshTLS(t *testing.T) meshTLS {
	ca := meshtest.NewCA(t, "cluster.local")
	svid := func(ns, sa string) *x509svid.SVID {
		tc := ca.Issue(t, ns, sa, time.Hour)
		var certs []*x509.Certificate
		for _, der := range tc.Certificate {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, c)
		}
		return &x509svid.SVID{ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/" + ns + "/sa/" + sa),
			Certificates: certs, PrivateKey: tc.PrivateKey.(crypto.Signer)}
	}
	return meshTLS{
		bundle:   x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("cluster.local"), []*x509.Certificate{ca.Cert}),
		workload: svid("api", "backend"),
		provider: svid("authz", "ext-authz"),
	}
}

// clientTLS is Config.TLS as a proxy gives it: the workload's SVID, the
// mesh's bundle, the endpoint's identity required.
func (m meshTLS) clientTLS(id spiffeid.ID) *tls.Config {
	return tlsconfig.MTLSClientConfig(m.workload, m.bundle, tlsconfig.AuthorizeID(id))
}

// serverTLS is the authorizer's proxy's: its SVID, the workload's
// required.
func (m meshTLS) serverTLS() *tls.Config {
	return tlsconfig.MTLSServerConfig(m.provider, m.bundle, tlsconfig.AuthorizeID(m.workload.ID))
}

// TestCheckOverMutualTLS: a provider whose endpoint has a proxy is asked
// over mutual TLS with the workload's certificate, and must prove the
// endpoint's identity (secure naming): one that proves another is not
// asked, and the check fails as any unreachable provider's does.
func TestCheckOverMutualTLS(t *testing.T) {
	m := newMeshTLS(t)
	other := spiffeid.RequireFromString("spiffe://cluster.local/ns/authz/sa/impostor")

	// gRPC, over TLS.
	ga := &grpcAuthorizer{answer: func(context.Context) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: status(codes.OK)}, nil
	}}
	ga.addr = extauthztest.ServeGRPC(t, ga, grpc.Creds(credentials.NewTLS(m.serverTLS())))

	// HTTP, over TLS: HTTP/2.
	var proto atomic.Value
	// (StartTLS would serve httptest's own certificate.)
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { proto.Store(r.Proto) }))
	conf := m.serverTLS()
	conf.NextProtos = []string{"h2", "http/1.1"}
	hs.Listener = tls.NewListener(hs.Listener, conf)
	hs.Start()
	t.Cleanup(hs.Close)

	services := func(addr string, id spiffeid.ID) Services {
		return fakeServices{"ext-authz.authz.svc.cluster.local": {host: "ext-authz.authz.svc.cluster.local", ns: "authz",
			endpoints: []Endpoint{{Addr: addr, ID: id}}}}
	}
	for _, tc := range []struct {
		name string
		http bool
		id   spiffeid.ID
		want authz.CustomVerdict
	}{
		{"gRPC, the endpoint proves its identity", false, m.provider.ID, authz.CustomAllow},
		{"gRPC, the endpoint is not who it should be", false, other, authz.CustomDeny},
		{"HTTP, the endpoint proves its identity", true, m.provider.ID, authz.CustomAllow},
		{"HTTP, the endpoint is not who it should be", true, other, authz.CustomDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, Config{TLS: m.clientTLS})
			prov := &extauthz.Provider{Name: "ext", Service: "ext-authz.authz.svc.cluster.local", Timeout: 2 * time.Second, StatusOnError: 403}
			addr := ga.addr
			if tc.http {
				prov.HTTP, addr = &extauthz.HTTPProvider{}, hs.Listener.Addr().String()
			}
			mesh := Mesh{Providers: map[string]*extauthz.Provider{"ext": prov}, Services: services(addr, tc.id)}
			r := httptest.NewRequest("GET", "http://backend.api/x", nil)
			got := c.Check(context.Background(), mesh, "ext", Request{HTTP: r, Path: "/x", Peer: testPeer})
			if got.Verdict != tc.want || (got.Err != nil) != (tc.want == authz.CustomDeny) {
				t.Fatalf("got %+v, want %v", got, tc.want)
			}
			if tc.http && tc.want == authz.CustomAllow && proto.Load() != "HTTP/2.0" {
				t.Errorf("the check went over %s, want HTTP/2.0", proto)
			}
		})
	}
	t.Run("without Config.TLS, an endpoint with a proxy is not asked", func(t *testing.T) {
		c := newClient(t, Config{})
		prov := &extauthz.Provider{Name: "ext", Service: "ext-authz.authz.svc.cluster.local", Timeout: time.Second, StatusOnError: 403}
		mesh := Mesh{Providers: map[string]*extauthz.Provider{"ext": prov}, Services: services(ga.addr, m.provider.ID)}
		got := c.Check(context.Background(), mesh, "ext", Request{HTTP: httptest.NewRequest("GET", "/", nil), Path: "/", Peer: testPeer})
		if got.Verdict != authz.CustomDeny || got.Err == nil {
			t.Fatalf("got %+v", got)
		}
	})
	if n := len(ga.requests()); n != 1 {
		t.Errorf("the gRPC authorizer got %d checks, want 1", n)
	}
}
