package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

const denyAdmin = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: api}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
`

// TestMeshPathNormalization: the mesh's pathNormalization decides which
// spellings of a path a DENY catches, as in Istio: BASE leaves "//admin"
// alone, MERGE_SLASHES catches it, DECODE_AND_MERGE_SLASHES also "%2Fadmin".
func TestMeshPathNormalization(t *testing.T) {
	tests := []struct {
		norm   string
		path   string
		denied bool
	}{
		{"", "/./admin", true},
		{"", "/%61dmin", true},
		{"", "//admin", false},
		{"BASE", "/x/../admin", true},
		{"MERGE_SLASHES", "//admin", true},
		{"MERGE_SLASHES", "/%2Fadmin", false},
		{"DECODE_AND_MERGE_SLASHES", "/%2Fadmin", true},
		{"DECODE_AND_MERGE_SLASHES", "//admin", true},
		{"NONE", "/./admin", false},
	}
	ca := meshtest.NewCA(t, testTD)
	server := startProxy(t, ca, "api", "backend", echoApp(t))
	cert := ca.Issue(t, "web", "frontend", time.Hour)
	for i, tc := range tests {
		m := mesh()
		m.PathNormalization = tc.norm
		mustApply(t, server, &xds.View{Version: "v" + string(rune('a'+i)), Mesh: m, AuthorizationPolicies: parse(t, denyAdmin)})
		// The request line is written by hand: net/http's client would
		// read "//admin" as an authority.
		conn, err := tls.Dial("tcp", server.InboundAddr().String(), &tls.Config{
			Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: backend.api\r\nConnection: close\r\n\r\n", tc.path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conn.Close()
		if got := resp.StatusCode == 403; got != tc.denied {
			t.Errorf("%s %s: status %d, denied=%v want %v", tc.norm, tc.path, resp.StatusCode, got, tc.denied)
		}
	}
}

func TestBadMeshConfigIsRejected(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	server := startProxy(t, ca, "api", "backend", echoApp(t))
	m := mesh()
	m.PathNormalization = "SOMETIMES"
	if err := server.Apply(&xds.View{Version: "bad", Mesh: m}); err == nil {
		t.Fatal("Apply accepted an unknown path normalization")
	}
}

// BenchmarkInboundDecide measures the per-request decision (path
// normalization, request authentication, authorization) of an allowed
// request under a STRICT mesh and one ALLOW policy.
func BenchmarkInboundDecide(b *testing.B) {
	ca := meshtest.NewCA(b, testTD)
	server := startProxy(b, ca, "api", "backend", echoApp(b))
	mustApply(b, server, &xds.View{Version: "s1", Mesh: mesh(), PeerAuthentications: parse(b, strictMesh), AuthorizationPolicies: parse(b, allowFrontend+"---\n"+denyAdmin)})
	st := server.state.Load()
	r, _ := http.NewRequest("GET", "http://backend.api.svc.cluster.local/data?x=1", nil)
	r.RequestURI = "/data?x=1"
	pr := &peer{mtls: true, principal: "cluster.local/ns/web/sa/frontend", uri: "spiffe://cluster.local/ns/web/sa/frontend",
		ip: netip.MustParseAddr("10.0.0.1"), local: netip.MustParseAddrPort("10.0.0.2:15006")}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v := server.in.decide(ctx, st, r, pr); !v.res.Allow {
			b.Fatal(v.res.Reason)
		}
	}
}
