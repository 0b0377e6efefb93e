package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func strictMesh() config.Resource {
	return config.Resource{
		Meta: config.Meta{Kind: config.KindPeerAuthentication, APIVersion: "security.istio.io/v1", Name: "default", Namespace: "istio-system"},
		Spec: &securityv1beta1.PeerAuthentication{Mtls: &securityv1beta1.PeerAuthentication_MutualTLS{Mode: securityv1beta1.PeerAuthentication_MutualTLS_STRICT}},
	}
}

func allowFrom(ns, name, app, principal string) config.Resource {
	return config.Resource{
		Meta: config.Meta{Kind: config.KindAuthorizationPolicy, APIVersion: "security.istio.io/v1", Name: name, Namespace: ns},
		Spec: &securityv1beta1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": app}},
			Rules:    []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{Principals: []string{principal}}}}}},
		},
	}
}

func frontendSpec() proxySpec {
	return proxySpec{ns: "web", name: "frontend", sa: "frontend", labels: map[string]string{"app": "frontend"}, services: []string{"frontend"}, address: "127.0.0.1:16001"}
}

func backendSpec() proxySpec {
	return proxySpec{ns: "api", name: "backend", sa: "backend", labels: map[string]string{"app": "backend"}, services: []string{"backend"}, address: "127.0.0.1:16002"}
}

func TestProxyGetsItsViewAndStatusShowsSynced(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	snap := config.NewSnapshot("1", []config.Resource{strictMesh(), allowFrom("web", "allow-frontend", "frontend", "cluster.local/ns/web/sa/x"), allowFrom("api", "allow-backend", "backend", "x")})
	cp := startControlPlane(t, ca, "", snap, time.Second)
	p := startProxy(t, ca, cp.addr, frontendSpec())
	p.waitSynced(t)

	// The first view may predate the proxy's own registration; wait for it.
	eventually(t, 2*time.Second, "own service in view", func() bool {
		v := p.c.View()
		return len(v.Services) == 1
	})
	v := p.c.View()
	if !reflect.DeepEqual(v.Mesh, testMesh) {
		t.Errorf("mesh = %+v, want %+v", v.Mesh, testMesh)
	}
	if len(v.PeerAuthentications) != 1 || v.PeerAuthentications[0].Key() != "istio-system/default" {
		t.Errorf("peer authentications = %v", keys(v.PeerAuthentications))
	}
	if got := keys(v.AuthorizationPolicies); len(got) != 1 || got[0] != "web/allow-frontend" {
		t.Errorf("authorization policies = %v, want only web/allow-frontend", got)
	}
	svc := v.Services[0]
	if svc.Hostname != "frontend.web.svc.cluster.local" || len(svc.Endpoints) != 1 {
		t.Fatalf("services = %+v", v.Services)
	}
	ep := svc.Endpoints[0]
	if ep.Identity != "spiffe://cluster.local/ns/web/sa/frontend" || !ep.HasProxy || ep.Address != "127.0.0.1:16001" || ep.Workload != "web/frontend" {
		t.Errorf("endpoint = %+v", ep)
	}
	// What the proxy assembled is exactly what the control plane built.
	want := xds.Build(snap, registry.AllocateAddresses(cp.store.Services()), testMesh, xds.Proxy{ID: "web/frontend", Workload: registry.Workload{Namespace: "web", Labels: map[string]string{"app": "frontend"}}})
	if v.Version != want.Version || xds.Version(v) != want.Version {
		t.Errorf("client view version %s (content %s), server built %s", v.Version, xds.Version(v), want.Version)
	}
	eventually(t, 2*time.Second, "status synced", func() bool {
		st, ok := statusOf(cp.srv, "web/frontend")
		return ok && st.Synced && st.AckedVersion == v.Version
	})
	st, _ := statusOf(cp.srv, "web/frontend")
	if st.Identity != "spiffe://cluster.local/ns/web/sa/frontend" || st.ConnectedAt.IsZero() || st.LastNack != "" {
		t.Errorf("status = %+v", st)
	}
}

func TestConfigChangeReachesProxyWithinASecond(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", []config.Resource{strictMesh()}), time.Second)
	p := startProxy(t, ca, cp.addr, frontendSpec())
	p.waitSynced(t)
	before := p.c.View().Version

	cp.srv.Update(config.NewSnapshot("2", []config.Resource{strictMesh(), allowFrom("web", "allow", "frontend", "cluster.local/ns/web/sa/a")}))
	eventually(t, time.Second, "new policy applied", func() bool {
		v := p.last()
		return v.Version != before && len(v.AuthorizationPolicies) == 1
	})
	// And removing it again is pushed as a removal.
	cp.srv.Update(config.NewSnapshot("3", []config.Resource{strictMesh()}))
	eventually(t, time.Second, "policy removed", func() bool { return len(p.last().AuthorizationPolicies) == 0 })
}

// TestSetMeshReachesProxies: mesh settings replaced while running (an
// edited MeshConfig) are pushed to connected proxies; a trust domain other
// than the one proxies are authenticated against is refused.
func TestSetMeshReachesProxies(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", []config.Resource{strictMesh()}), time.Second)
	p := startProxy(t, ca, cp.addr, frontendSpec())
	p.waitSynced(t)
	if got := p.last().Mesh.OutboundTrafficPolicy; got != "" {
		t.Fatalf("outbound traffic policy before: %q", got)
	}
	m := testMesh
	m.OutboundTrafficPolicy = "REGISTRY_ONLY"
	if err := cp.srv.SetMesh(m); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "new mesh settings applied", func() bool {
		return p.last().Mesh.OutboundTrafficPolicy == "REGISTRY_ONLY"
	})
	other := m
	other.TrustDomain = "other.example"
	if err := cp.srv.SetMesh(other); err == nil {
		t.Error("SetMesh accepted another trust domain")
	}
}

func TestNackIsReportedAndProxyKeepsLastGoodView(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", []config.Resource{strictMesh()}), time.Second)
	p := startProxy(t, ca, cp.addr, frontendSpec())
	p.waitSynced(t)
	eventually(t, 2*time.Second, "synced", func() bool {
		st, ok := statusOf(cp.srv, "web/frontend")
		return ok && st.Synced && p.c.View() != nil && len(p.c.View().Services) == 1
	})
	good := p.c.View()

	p.setApplyErr("authz: policy web/bad: unsupported field")
	cp.srv.Update(config.NewSnapshot("2", []config.Resource{strictMesh(), allowFrom("web", "bad", "frontend", "x")}))
	eventually(t, 2*time.Second, "NACK reported", func() bool {
		st, _ := statusOf(cp.srv, "web/frontend")
		return strings.Contains(st.LastNack, "unsupported field")
	})
	st, _ := statusOf(cp.srv, "web/frontend")
	if st.Synced || st.AckedVersion != good.Version || st.SentVersion == good.Version {
		t.Errorf("after NACK status = %+v, want not synced, acked %s", st, good.Version)
	}
	if p.c.View() != good {
		t.Errorf("client view changed after a rejected push")
	}

	// A fixed config is applied and clears the NACK.
	p.setApplyErr("")
	cp.srv.Update(config.NewSnapshot("3", []config.Resource{strictMesh(), allowFrom("web", "good", "frontend", "x")}))
	eventually(t, 2*time.Second, "fixed config applied", func() bool {
		st, _ := statusOf(cp.srv, "web/frontend")
		return st.Synced && st.LastNack == "" && len(p.c.View().AuthorizationPolicies) == 1 && p.c.View().AuthorizationPolicies[0].Name == "good"
	})
}

func TestTwoProxiesSeeEachOthersEndpoints(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", nil), time.Second)
	front := startProxy(t, ca, cp.addr, frontendSpec())
	back := startProxy(t, ca, cp.addr, backendSpec())

	want := map[string]registry.Endpoint{
		"frontend.web.svc.cluster.local": {Address: "127.0.0.1:16001", Identity: "spiffe://cluster.local/ns/web/sa/frontend", HasProxy: true, Workload: "web/frontend"},
		"backend.api.svc.cluster.local":  {Address: "127.0.0.1:16002", Identity: "spiffe://cluster.local/ns/api/sa/backend", HasProxy: true, Workload: "api/backend"},
	}
	for _, p := range []*testProxy{front, back} {
		eventually(t, 3*time.Second, "both services in view", func() bool {
			v := p.c.View()
			return v != nil && len(v.Services) == 2
		})
		for _, svc := range p.c.View().Services {
			w, ok := want[svc.Hostname]
			if !ok || len(svc.Endpoints) != 1 {
				t.Fatalf("unexpected service %+v", svc)
			}
			got := svc.Endpoints[0]
			if got.Address != w.Address || got.Identity != w.Identity || got.HasProxy != w.HasProxy || got.Workload != w.Workload || got.Labels[registry.LabelTLSMode] != "istio" {
				t.Errorf("%s endpoint = %+v, want %+v", svc.Hostname, got, w)
			}
		}
	}
}

func TestDisconnectedProxyLeavesRegistryAfterGrace(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	const grace = 500 * time.Millisecond
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", nil), grace)
	front := startProxy(t, ca, cp.addr, frontendSpec())
	back := startProxy(t, ca, cp.addr, backendSpec())
	eventually(t, 3*time.Second, "backend visible to frontend", func() bool {
		v := front.c.View()
		return v != nil && len(v.Services) == 2
	})

	stopped := time.Now()
	back.stop()
	if _, ok := cp.store.Workload("api/backend"); !ok && time.Since(stopped) < grace/2 {
		t.Fatal("backend removed before its grace period")
	}
	eventually(t, grace+2*time.Second, "backend gone from frontend's view", func() bool {
		v := front.c.View()
		return len(v.Services) == 1 && v.Services[0].Hostname == "frontend.web.svc.cluster.local"
	})
	if d := time.Since(stopped); d < grace {
		t.Errorf("backend removed after %v, before the grace period %v", d, grace)
	}
}

func TestControlPlaneRestartProxyResyncs(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", []config.Resource{strictMesh()}), time.Second)
	p := startProxy(t, ca, cp.addr, frontendSpec())
	p.waitSynced(t)
	eventually(t, 2*time.Second, "registered", func() bool { return len(p.c.View().Services) == 1 })
	good := p.c.View()

	cp.stop()
	time.Sleep(100 * time.Millisecond) // the absence of a change under test, not synchronization
	if p.c.View() != good {
		t.Fatal("proxy lost its view while the control plane was away")
	}
	// The new control plane has a new config: the proxy gets it without restarting.
	cp2 := startControlPlane(t, ca, cp.addr, config.NewSnapshot("2", []config.Resource{strictMesh(), allowFrom("web", "allow", "frontend", "x")}), time.Second)
	eventually(t, 5*time.Second, "resynced with the new control plane", func() bool {
		st, ok := statusOf(cp2.srv, "web/frontend")
		v := p.c.View()
		return ok && st.Synced && len(v.AuthorizationPolicies) == 1 && len(v.Services) == 1
	})
	if _, ok := cp2.store.Workload("web/frontend"); !ok {
		t.Error("proxy did not register again with the new control plane")
	}
}

// rawStream opens an ADS stream as a proxy with cert (nil: none) and
// sends one request with node, returning the error that ends the stream.
func rawStream(t *testing.T, ca *meshtest.CA, addr string, cert *tls.Certificate, node *core.Node) error {
	t.Helper()
	var get func() *tls.Certificate
	if cert != nil {
		get = func() *tls.Certificate { return cert }
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.ClientTLS(get))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: xds.TypeMeshConfig, Node: node}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	// On io.EOF the server already ended the stream; Recv has its status.
	_, err = st.Recv()
	return err
}

func node(id string, w registry.Workload) *core.Node {
	return &core.Node{Id: id, Metadata: xds.NodeMetadata(w)}
}

func TestStreamsThatMustBeRefused(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	other := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", nil), time.Second)
	frontendCert := ca.Issue(t, "web", "frontend", time.Hour)
	foreignTD := ca.IssueURI(t, "spiffe://evil.example/ns/web/sa/frontend", time.Hour)
	noSPIFFE := ca.IssueURI(t, "", time.Hour)
	untrusted := other.Issue(t, "web", "frontend", time.Hour)
	okWorkload := registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "frontend", Address: "127.0.0.1:1", Services: []string{"frontend"}}

	tests := []struct {
		name string
		cert *tls.Certificate
		node *core.Node
		want codes.Code
	}{
		{name: "no client certificate", cert: nil, node: node("web/frontend", okWorkload), want: codes.Unauthenticated},
		{name: "certificate in another trust domain", cert: &foreignTD, node: node("web/frontend", okWorkload), want: codes.Unauthenticated},
		{name: "certificate without SPIFFE ID", cert: &noSPIFFE, node: node("web/frontend", okWorkload), want: codes.Unauthenticated},
		{name: "node ID in another namespace than the certificate", cert: &frontendCert, node: node("api/backend", registry.Workload{Name: "backend", Namespace: "api", Address: "127.0.0.1:1", Services: []string{"backend"}}), want: codes.PermissionDenied},
		{name: "metadata claims another namespace", cert: &frontendCert, node: node("web/frontend", registry.Workload{Name: "frontend", Namespace: "api", Address: "127.0.0.1:1"}), want: codes.PermissionDenied},
		{name: "metadata claims another service account", cert: &frontendCert, node: node("web/frontend", registry.Workload{Name: "frontend", Namespace: "web", ServiceAccount: "admin", Address: "127.0.0.1:1"}), want: codes.PermissionDenied},
		{name: "service hostname outside its namespace", cert: &frontendCert, node: node("web/frontend", registry.Workload{Name: "frontend", Namespace: "web", Address: "127.0.0.1:1", Services: []string{"backend.api"}}), want: codes.InvalidArgument},
		{name: "no node", cert: &frontendCert, node: nil, want: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rawStream(t, ca, cp.addr, tt.cert, tt.node)
			if status.Code(err) != tt.want {
				t.Errorf("stream error = %v, want code %v", err, tt.want)
			}
		})
	}
	t.Run("certificate from another CA fails the handshake", func(t *testing.T) {
		if err := rawStream(t, ca, cp.addr, &untrusted, node("web/frontend", okWorkload)); err == nil {
			t.Error("stream with an untrusted certificate succeeded")
		}
	})
	if got := cp.store.Services(); len(got) != 0 {
		t.Errorf("refused streams registered services: %+v", got)
	}
}

func TestNodeIDOfAnotherIdentityIsRefused(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", nil), time.Second)
	front := startProxy(t, ca, cp.addr, frontendSpec())
	front.waitSynced(t)

	stranger := ca.Issue(t, "web", "stranger", time.Hour)
	err := rawStream(t, ca, cp.addr, &stranger, node("web/frontend", registry.Workload{Name: "frontend", Namespace: "web", Address: "127.0.0.1:9", Services: []string{"frontend"}}))
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("stream error = %v, want PermissionDenied", err)
	}
	w, _ := cp.store.Workload("web/frontend")
	if w.Identity != "spiffe://cluster.local/ns/web/sa/frontend" || w.Address != "127.0.0.1:16001" {
		t.Errorf("registration replaced: %+v", w)
	}
}

func keys(rs []config.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Key())
	}
	return out
}

func TestExpiringCertificateEndsStreamAndRotatedOneIsUsed(t *testing.T) {
	ca := meshtest.NewCA(t, trustDomain)
	cp := startControlPlane(t, ca, "", config.NewSnapshot("1", nil), 2*time.Second)
	spec := frontendSpec()
	spec.certTTL = 2 * time.Second
	p := startProxy(t, ca, cp.addr, spec)
	p.waitSynced(t)
	p.mu.Lock()
	expiry := p.cert.Leaf.NotAfter
	// The agent rotates the certificate; the server ends the stream when
	// the old one expires, and the client reconnects with the new one.
	p.cert = ca.Issue(t, "web", "frontend", time.Hour)
	p.mu.Unlock()
	eventually(t, 6*time.Second, "connected again after the old certificate expired", func() bool {
		st, ok := statusOf(cp.srv, "web/frontend")
		return ok && st.ConnectedAt.After(expiry) && st.Synced
	})
	if _, ok := cp.store.Workload("web/frontend"); !ok {
		t.Error("a reconnect within the grace period dropped the registration")
	}
}

func TestRunReportsAnInvalidConfig(t *testing.T) {
	srv := server.New(server.Config{Mesh: testMesh})
	if err := srv.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Registry") {
		t.Errorf("Run = %v, want an error naming the missing Registry", err)
	}
}
