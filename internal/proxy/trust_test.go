package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// The trust-domain migration of these tests: the mesh moved from
// old.example to new.example, keeping old.example as an alias. The CA (and
// so the roots) is the mesh's either way.
const (
	newTD = "new.example"
	oldTD = "old.example"
)

func migratedMesh(aliases ...string) xds.Mesh {
	return xds.Mesh{TrustDomain: newTD, TrustDomainAliases: aliases, RootNamespace: "istio-system", DNSDomain: "cluster.local"}
}

func allowPrincipal(principal string) string {
	return strictMesh + `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: api}
spec:
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["` + principal + `"]}
`
}

// callInbound makes one request on a new mTLS connection to p's inbound
// listener, presenting cert. A refused handshake is an error.
func callInbound(t *testing.T, p *testProxy, cert tls.Certificate) (int, string, error) {
	t.Helper()
	tr := &http2.Transport{TLSClientConfig: &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // the server's SPIFFE ID is not under test here
		MinVersion:         tls.VersionTLS13,
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + p.InboundAddr().String() + "/x")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// TestTrustDomainAliasAtHandshake: a peer whose certificate (from the
// mesh's CA) names an aliased trust domain is accepted exactly while the
// configuration in force lists the alias; another trust domain never is.
func TestTrustDomainAliasAtHandshake(t *testing.T) {
	ca := meshtest.NewCA(t, newTD)
	p := newPairIn(t, ca, migratedMesh(), migratedMesh(), allowPrincipal(newTD+"/ns/web/sa/frontend"), echoApp(t))
	oldPeer := ca.IssueURI(t, "spiffe://"+oldTD+"/ns/web/sa/frontend", time.Hour)
	otherPeer := ca.IssueURI(t, "spiffe://other.example/ns/web/sa/frontend", time.Hour)

	if _, _, err := callInbound(t, p.server, oldPeer); err == nil {
		t.Fatal("peer from old.example accepted with no alias configured")
	}

	mustApply(t, p.server, policyView(t, "s2", migratedMesh(oldTD), allowPrincipal(newTD+"/ns/web/sa/frontend")))
	code, body, err := callInbound(t, p.server, oldPeer)
	if err != nil || code != 200 {
		t.Fatalf("peer from alias old.example: %d %v %s", code, err, body)
	}
	if xfcc := echoField(body, "xfcc"); !strings.Contains(xfcc, "URI=spiffe://old.example/ns/web/sa/frontend") {
		t.Errorf("app saw XFCC %q, want the peer's own (aliased) ID", xfcc)
	}
	if _, _, err := callInbound(t, p.server, otherPeer); err == nil {
		t.Error("peer from other.example accepted: only the mesh's domain and its aliases may be")
	}
	if got := p.server.debugConfig().TrustDomainAliases; len(got) != 1 || got[0] != oldTD {
		t.Errorf("/debug/config trustDomainAliases = %v", got)
	}

	// The alias removed: the next handshake is refused again.
	mustApply(t, p.server, policyView(t, "s3", migratedMesh(), allowPrincipal(newTD+"/ns/web/sa/frontend")))
	if _, _, err := callInbound(t, p.server, oldPeer); err == nil {
		t.Error("peer from old.example accepted after the alias was removed")
	}
	// The mesh's own domain is unaffected throughout.
	if code, body, err := callInbound(t, p.server, ca.Issue(t, "web", "frontend", time.Hour)); err != nil || code != 200 {
		t.Errorf("peer from new.example: %d %v %s", code, err, body)
	}
}

// TestPoliciesMatchAcrossAliases: an AuthorizationPolicy written for
// either trust domain matches the same workload in the other, once the
// alias is configured (Istio's migration semantics, end to end).
func TestPoliciesMatchAcrossAliases(t *testing.T) {
	tests := []struct {
		name      string
		principal string // in the policy
		peer      string // the peer certificate's SPIFFE ID
		aliases   []string
		want      int
	}{
		{"policy for the old domain, peer in the new", oldTD + "/ns/web/sa/frontend", "spiffe://new.example/ns/web/sa/frontend", []string{oldTD}, 200},
		{"policy for the new domain, peer in the old", newTD + "/ns/web/sa/frontend", "spiffe://old.example/ns/web/sa/frontend", []string{oldTD}, 200},
		{"cluster.local stands for the mesh, peer in the old", "cluster.local/ns/web/sa/frontend", "spiffe://old.example/ns/web/sa/frontend", []string{oldTD}, 200},
		{"policy for the old domain without the alias", oldTD + "/ns/web/sa/frontend", "spiffe://new.example/ns/web/sa/frontend", nil, 403},
		{"another workload in the old domain", newTD + "/ns/web/sa/frontend", "spiffe://old.example/ns/web/sa/intruder", []string{oldTD}, 403},
	}
	ca := meshtest.NewCA(t, newTD)
	server := startProxy(t, ca, "api", "backend", echoApp(t))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustApply(t, server, policyView(t, "v"+string(rune('a'+i)), migratedMesh(tt.aliases...), allowPrincipal(tt.principal)))
			code, body, err := callInbound(t, server, ca.IssueURI(t, tt.peer, time.Hour))
			if err != nil || code != tt.want {
				t.Fatalf("got %d %v %s, want %d", code, err, body, tt.want)
			}
		})
	}
}

// TestSecureNamingAcrossAliases: the client proxy accepts a server whose
// certificate names the expected workload in another trust domain of the
// mesh, and nothing else.
func TestSecureNamingAcrossAliases(t *testing.T) {
	tests := []struct {
		name     string
		expected string // the endpoint's identity in the registry
		serves   string // the server's certificate
		aliases  []string
		want     int
	}{
		{"expected in the new domain, serves the old", "spiffe://new.example/ns/api/sa/backend", "spiffe://old.example/ns/api/sa/backend", []string{oldTD}, 200},
		{"expected in the old domain, serves the new", "spiffe://old.example/ns/api/sa/backend", "spiffe://new.example/ns/api/sa/backend", []string{oldTD}, 200},
		{"expected in the old domain, serves it", "spiffe://old.example/ns/api/sa/backend", "spiffe://old.example/ns/api/sa/backend", []string{oldTD}, 200},
		{"serves the old domain, no alias", "spiffe://new.example/ns/api/sa/backend", "spiffe://old.example/ns/api/sa/backend", nil, 503},
		{"another workload in the alias domain", "spiffe://new.example/ns/api/sa/backend", "spiffe://old.example/ns/api/sa/impostor", []string{oldTD}, 503},
		{"same path in a foreign domain", "spiffe://new.example/ns/api/sa/backend", "spiffe://other.example/ns/api/sa/backend", []string{oldTD}, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := meshtest.NewCA(t, newTD)
			p := newPairIn(t, ca, migratedMesh(), migratedMesh(), "", echoApp(t))
			p.server.certs.issue(t, tt.serves, time.Hour)
			svc := serviceOf(p.server)
			svc.Endpoints[0].Identity = tt.expected
			mustApply(t, p.client, &xds.View{Version: "c2", Mesh: migratedMesh(tt.aliases...), Services: []registry.Service{svc}})
			if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != tt.want {
				t.Fatalf("status %d %q, want %d", code, body, tt.want)
			}
		})
	}
}
