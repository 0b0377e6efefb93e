package xds_test

import (
	"strconv"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

func peerMode(ns, name string, sel map[string]string, mode securityv1beta1.PeerAuthentication_MutualTLS_Mode, ports map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode) config.Resource {
	spec := &securityv1beta1.PeerAuthentication{Mtls: &securityv1beta1.PeerAuthentication_MutualTLS{Mode: mode}}
	if len(sel) > 0 {
		spec.Selector = selector()
		spec.Selector.MatchLabels = sel
	}
	for p, m := range ports {
		if spec.PortLevelMtls == nil {
			spec.PortLevelMtls = map[uint32]*securityv1beta1.PeerAuthentication_MutualTLS{}
		}
		spec.PortLevelMtls[p] = &securityv1beta1.PeerAuthentication_MutualTLS{Mode: m}
	}
	return config.Resource{Meta: config.Meta{Kind: config.KindPeerAuthentication, Name: name, Namespace: ns}, Spec: spec}
}

// TestBuildGivesEachEndpointItsServersMTLSMode checks the mode the control
// plane tells client proxies (automatic mTLS) against the mode the server
// proxy itself enforces (authn.CompilePeer), case by case.
func TestBuildGivesEachEndpointItsServersMTLSMode(t *testing.T) {
	const (
		unset      = securityv1beta1.PeerAuthentication_MutualTLS_UNSET
		strict     = securityv1beta1.PeerAuthentication_MutualTLS_STRICT
		permissive = securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE
		disable    = securityv1beta1.PeerAuthentication_MutualTLS_DISABLE
	)
	backend := map[string]string{"app": "backend"}
	tests := []struct {
		name string
		pas  []config.Resource
		port uint32
		want string
	}{
		{name: "no policy: PERMISSIVE", want: "PERMISSIVE"},
		{name: "mesh STRICT", pas: []config.Resource{peerMode("istio-system", "default", nil, strict, nil)}, want: "STRICT"},
		{name: "namespace DISABLE over mesh STRICT", pas: []config.Resource{
			peerMode("istio-system", "default", nil, strict, nil),
			peerMode("api", "ns", nil, disable, nil),
		}, want: "DISABLE"},
		{name: "workload DISABLE over namespace STRICT", pas: []config.Resource{
			peerMode("api", "ns", nil, strict, nil),
			peerMode("api", "backend", backend, disable, nil),
		}, want: "DISABLE"},
		{name: "workload UNSET inherits the namespace's", pas: []config.Resource{
			peerMode("api", "ns", nil, disable, nil),
			peerMode("api", "backend", backend, unset, nil),
		}, want: "DISABLE"},
		{name: "a selector that does not match", pas: []config.Resource{
			peerMode("api", "other", map[string]string{"app": "other"}, disable, nil),
		}, want: "PERMISSIVE"},
		{name: "a selector in another namespace", pas: []config.Resource{
			peerMode("web", "backend", backend, disable, nil),
		}, want: "PERMISSIVE"},
		{name: "a selector in the root namespace is ignored", pas: []config.Resource{
			peerMode("istio-system", "sel", backend, disable, nil),
		}, want: "PERMISSIVE"},
		{name: "port-level DISABLE at the endpoint's port", port: 8080, pas: []config.Resource{
			peerMode("api", "backend", backend, strict, map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode{8080: disable}),
		}, want: "DISABLE"},
		{name: "port-level DISABLE at another port", port: 9090, pas: []config.Resource{
			peerMode("api", "backend", backend, strict, map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode{8080: disable}),
		}, want: "STRICT"},
		{name: "port-level UNSET inherits", port: 8080, pas: []config.Resource{
			peerMode("api", "ns", nil, disable, nil),
			peerMode("api", "backend", backend, unset, map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode{8080: unset}),
		}, want: "DISABLE"},
		{name: "two namespace policies: the first by name wins", pas: []config.Resource{
			peerMode("api", "b", nil, strict, nil),
			peerMode("api", "a", nil, disable, nil),
		}, want: "DISABLE"},
		{name: "mesh PERMISSIVE, namespace UNSET", pas: []config.Resource{
			peerMode("istio-system", "default", nil, permissive, nil),
			peerMode("api", "ns", nil, unset, nil),
		}, want: "PERMISSIVE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := tt.port
			if port == 0 {
				port = 15006
			}
			svc := registry.Service{Hostname: "backend.api.svc.cluster.local", Namespace: "api", Endpoints: []registry.Endpoint{
				{Address: "10.0.0.1:" + strconv.Itoa(int(port)), HasProxy: true, Identity: "spiffe://cluster.local/ns/api/sa/backend", Workload: "api/backend", Labels: backend},
				{Address: "10.0.0.2:80", Workload: "api/legacy"},
			}}
			snap := config.NewSnapshot("1", tt.pas)
			v := xds.Build(snap, []registry.Service{svc}, mesh, proxy("web", nil))
			got := v.Services[0].Endpoints[0].MTLSMode
			if got != tt.want {
				t.Errorf("MTLSMode = %q, want %q", got, tt.want)
			}
			if enforced := authn.CompilePeer(tt.pas, authn.Workload{Namespace: "api", Labels: backend}, "istio-system").Mode(port).String(); enforced != got {
				t.Errorf("the server proxy enforces %s, the control plane tells clients %s", enforced, got)
			}
			if m := v.Services[0].Endpoints[1].MTLSMode; m != "" {
				t.Errorf("an endpoint without a proxy got mode %q", m)
			}
			if svc.Endpoints[0].MTLSMode != "" {
				t.Error("Build modified its input")
			}
		})
	}
}
