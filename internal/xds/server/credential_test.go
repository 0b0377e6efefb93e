package server_test

import (
	"bytes"
	"reflect"
	"sync"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

// TestCredentialsGoOnlyToTheirGateway runs real xDS clients: the server
// asks for the Secrets that the connected gateways' Gateways name in
// the gateways' own namespaces, and pushes each only to the gateway of
// its namespace — a sidecar of that namespace with the gateway's labels
// gets none; a renewed Secret reaches the gateway.
func TestCredentialsGoOnlyToTheirGateway(t *testing.T) {
	ca := meshtest.NewCA(t, "cluster.local")
	web := meshtest.NewCA(t, "web.test")
	chain1, key1 := meshtest.PEM(t, web.IssueLeaf(t, "web-1"))
	chain2, key2 := meshtest.PEM(t, web.IssueLeaf(t, "web-2"))
	ingress := map[string]string{"istio": "ingressgateway"}
	gw := config.Resource{
		Meta: config.Meta{Kind: config.KindGateway, APIVersion: "networking.istio.io/v1", Name: "web", Namespace: "apps"},
		Spec: &networking.Gateway{Selector: ingress, Servers: []*networking.Server{{
			Port: &networking.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{"*"},
			Tls: &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_SIMPLE, CredentialName: "web-cert"},
		}}},
	}
	var (
		mu     sync.Mutex
		wanted []xds.CredentialRef
	)
	cp := startControlPlaneWith(t, ca, config.NewSnapshot("1", []config.Resource{strictMesh(), gw}), func(c *serverConfig) {
		c.WantCredentials = func(refs []xds.CredentialRef) {
			mu.Lock()
			wanted = refs
			mu.Unlock()
		}
	})
	gateway := startProxy(t, ca, cp.addr, proxySpec{ns: "istio-system", name: "ingress", sa: "ingress", labels: ingress, gateway: true})
	other := startProxy(t, ca, cp.addr, proxySpec{ns: "edge", name: "ingress", sa: "ingress", labels: ingress, gateway: true})
	sidecar := startProxy(t, ca, cp.addr, proxySpec{ns: "istio-system", name: "app", sa: "app", labels: ingress})
	for _, p := range []*testProxy{gateway, other, sidecar} {
		p.waitSynced(t)
	}
	want := []xds.CredentialRef{{Namespace: "edge", Name: "web-cert"}, {Namespace: "istio-system", Name: "web-cert"}}
	eventually(t, 5*time.Second, "the gateways' Secrets asked for", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return reflect.DeepEqual(wanted, want)
	})

	cp.srv.SetCredentials([]xds.Credential{
		{Namespace: "istio-system", Name: "web-cert", Cert: chain1, PrivateKey: key1},
		{Namespace: "istio-system", Name: "not-named", Cert: chain1, PrivateKey: key1},
	})
	holds := func(p *testProxy, chain []byte) func() bool {
		return func() bool {
			v := p.last()
			return v != nil && len(v.Credentials) == 1 && v.Credentials[0].Key() == "istio-system/web-cert" && bytes.Equal(v.Credentials[0].Cert, chain)
		}
	}
	eventually(t, 5*time.Second, "the credential at its gateway", holds(gateway, chain1))
	cp.srv.SetCredentials([]xds.Credential{{Namespace: "istio-system", Name: "web-cert", Cert: chain2, PrivateKey: key2}})
	eventually(t, 5*time.Second, "the renewed credential at its gateway", holds(gateway, chain2))
	for name, p := range map[string]*testProxy{"the sidecar with the gateway's labels": sidecar, "the gateway of another namespace": other} {
		p.mu.Lock()
		for _, v := range p.applied {
			if len(v.Credentials) != 0 {
				t.Errorf("%s was sent credentials (view %s)", name, v.Version)
			}
		}
		p.mu.Unlock()
	}
}
