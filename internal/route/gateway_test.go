package route

import (
	"testing"

	"github.com/zmesh/zmesh/internal/config"
)

// egressVS is Istio's egress gateway VirtualService: one route for the
// sidecars (to the gateway), one for the gateway (to the external host).
const egressVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-nginx, namespace: default}
spec:
  hosts: [my-nginx.mesh-external.svc.cluster.local]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 443}}}]
  - match: [{gateways: [istio-egressgateway], port: 443}]
    route: [{destination: {host: my-nginx.mesh-external.svc.cluster.local, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ingress-only, namespace: default}
spec:
  hosts: [httpbin.example.com]
  gateways: [istio-system/ingress]
  http:
  - route: [{destination: {host: httpbin}}]
`

// TestGatewayBinding: a table compiled for a gateway takes the
// VirtualServices bound to it, and of their routes those whose match
// names it (or no gateway); a sidecar's takes "mesh" ones only.
func TestGatewayBinding(t *testing.T) {
	rs, _, err := config.Parse([]byte(egressVS), "vs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		gateways []string
		host     string
		port     uint32
		want     string // destination host, "" for no route, "-" for no VirtualService
	}{
		{"sidecar takes the mesh route", nil, "my-nginx.mesh-external.svc.cluster.local", 80, "istio-egressgateway.istio-system.svc.cluster.local"},
		{"sidecar skips the gateway route", nil, "my-nginx.mesh-external.svc.cluster.local", 443, ""},
		{"sidecar has no gateway-only VirtualService", nil, "httpbin.example.com", 80, "-"},
		{"egress gateway takes its route", []string{"default/istio-egressgateway"}, "my-nginx.mesh-external.svc.cluster.local", 443, "my-nginx.mesh-external.svc.cluster.local"},
		{"egress gateway skips the mesh route", []string{"default/istio-egressgateway"}, "my-nginx.mesh-external.svc.cluster.local", 80, ""},
		{"another namespace's gateway of that name is not bound", []string{"istio-system/istio-egressgateway"}, "my-nginx.mesh-external.svc.cluster.local", 443, "-"},
		{"ingress gateway", []string{"istio-system/ingress"}, "httpbin.example.com", 80, "httpbin.default.svc.cluster.local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Compile(rs, Config{Namespace: "istio-system", DNSDomain: "cluster.local", Gateways: tt.gateways})
			if err != nil {
				t.Fatal(err)
			}
			vs := tab.Lookup(tt.host)
			if vs == nil {
				if tt.want != "-" {
					t.Fatalf("no VirtualService for %s", tt.host)
				}
				return
			}
			if tt.want == "-" {
				t.Fatalf("VirtualService %s for %s, want none", vs.Name, tt.host)
			}
			hr, _ := vs.Match(&Request{Method: "GET", Scheme: "http", Authority: tt.host, Path: "/", Port: tt.port})
			got := ""
			if hr != nil {
				got = hr.Pick(0).Host
			}
			if got != tt.want {
				t.Errorf("destination %q, want %q", got, tt.want)
			}
		})
	}
}
