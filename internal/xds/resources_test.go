package xds_test

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

func sampleView() *xds.View {
	pa := peerAuthn("istio-system", "default", nil)
	pa.APIVersion = "security.istio.io/v1"
	pa.Source = "quickstart/mesh.yaml#0"
	pa.Spec = &securityv1beta1.PeerAuthentication{Mtls: &securityv1beta1.PeerAuthentication_MutualTLS{Mode: securityv1beta1.PeerAuthentication_MutualTLS_STRICT}}
	ap := authz("api", "allow-frontend", selector("app", "backend"))
	ap.Labels = map[string]string{"team": "a"}
	ap.Annotations = map[string]string{"note": "x"}
	dr := destRule("egress", "originate", ".")
	dr.APIVersion = "networking.istio.io/v1"
	v := &xds.View{
		Mesh:                   xds.Mesh{TrustDomain: "cluster.local", TrustDomainAliases: []string{"old.local"}, RootNamespace: "istio-system", DNSDomain: "cluster.local"},
		PeerAuthentications:    []config.Resource{pa},
		AuthorizationPolicies:  []config.Resource{ap},
		RequestAuthentications: []config.Resource{requestAuthn("api", "jwt", nil)},
		DestinationRules:       []config.Resource{dr},
		Services: []registry.Service{
			{Hostname: "api.example.com", Namespace: "egress", Endpoints: []registry.Endpoint{{Address: "api.example.com:443", Workload: "egress/example"}}},
			{Hostname: "backend.api.svc.cluster.local", Namespace: "api", Addresses: []string{"10.96.0.20"},
				Ports: []registry.Port{{Number: 80, Name: "http-web", TargetPort: 8080}, {Number: 3306, Name: "db", Protocol: "TCP"}}, Endpoints: []registry.Endpoint{
					{Address: "127.0.0.1:15006", Identity: "spiffe://cluster.local/ns/api/sa/backend", HasProxy: true, Workload: "api/backend", Labels: map[string]string{"app": "backend", registry.LabelTLSMode: "istio"}, MTLSMode: "DISABLE", TunnelPort: 15008},
					{Address: "[::1]:8080", Identity: "spiffe://other.domain/custom", HasProxy: true, Workload: "api/v6", Labels: map[string]string{registry.LabelTLSMode: "istio"}},
				}},
		},
	}
	v.Version = xds.Version(v)
	return v
}

// received turns encoded resources into what a client holds.
func received(enc map[string][]xds.Resource) map[string]map[string]*anypb.Any {
	out := map[string]map[string]*anypb.Any{}
	for t, list := range enc {
		out[t] = map[string]*anypb.Any{}
		for _, r := range list {
			out[t][r.Name] = r.Body
		}
	}
	return out
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	v := sampleView()
	enc, err := xds.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range xds.TypeURLs() {
		if _, ok := enc[typ]; !ok {
			t.Errorf("type %s missing from the encoding", typ)
		}
	}
	got, err := xds.Decode(v.Version, received(enc))
	if err != nil {
		t.Fatal(err)
	}
	if xds.Version(got) != v.Version {
		t.Errorf("decoded content hash %s, want %s", xds.Version(got), v.Version)
	}
	if !reflect.DeepEqual(got.Mesh, v.Mesh) || !reflect.DeepEqual(got.Services, v.Services) {
		t.Errorf("decoded mesh/services differ:\n got %+v\nwant %+v", got.Services, v.Services)
	}
	for i, r := range got.AuthorizationPolicies {
		w := v.AuthorizationPolicies[i]
		if !reflect.DeepEqual(r.Meta, w.Meta) || !proto.Equal(r.Spec, w.Spec) {
			t.Errorf("policy %d = %+v, want %+v", i, r, w)
		}
	}
	if got.PeerAuthentications[0].Source != "quickstart/mesh.yaml#0" || got.PeerAuthentications[0].APIVersion != "security.istio.io/v1" {
		t.Errorf("peer authentication meta = %+v", got.PeerAuthentications[0].Meta)
	}
}

func TestEncodeResourceVersionsChangeOnlyWithContent(t *testing.T) {
	a, _ := xds.Encode(sampleView())
	v := sampleView()
	v.AuthorizationPolicies[0].Spec = &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY}
	b, _ := xds.Encode(v)
	if a[xds.TypeAuthorizationPolicy][0].Version == b[xds.TypeAuthorizationPolicy][0].Version {
		t.Error("changed policy kept its resource version")
	}
	for _, typ := range []string{xds.TypePeerAuthentication, xds.TypeServiceEntry, xds.TypeMeshConfig} {
		for i := range a[typ] {
			if a[typ][i].Version != b[typ][i].Version {
				t.Errorf("unchanged %s %s changed version", typ, a[typ][i].Name)
			}
		}
	}
}

func TestDecodeRejectsIncompleteOrMalformedSets(t *testing.T) {
	enc, _ := xds.Encode(sampleView())
	tests := []struct {
		name    string
		mutate  func(map[string]map[string]*anypb.Any)
		wantErr string
	}{
		{name: "no MeshConfig", mutate: func(m map[string]map[string]*anypb.Any) { m[xds.TypeMeshConfig] = nil }, wantErr: "MeshConfig"},
		{name: "body of another type", mutate: func(m map[string]map[string]*anypb.Any) {
			m[xds.TypeAuthorizationPolicy]["api/allow-frontend"] = m[xds.TypeServiceEntry]["api/backend.api.svc.cluster.local"]
		}, wantErr: "names"},
		{name: "not an MCP resource", mutate: func(m map[string]map[string]*anypb.Any) {
			a, _ := anypb.New(&securityv1beta1.AuthorizationPolicy{})
			m[xds.TypeAuthorizationPolicy]["api/allow-frontend"] = a
		}, wantErr: "api/allow-frontend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := received(enc)
			tt.mutate(m)
			_, err := xds.Decode("v", m)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Decode error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestNodeMetadataRoundTrip(t *testing.T) {
	w := registry.Workload{Name: "backend", Namespace: "api", ServiceAccount: "backend", Labels: map[string]string{"app": "backend"}, Address: "127.0.0.1:15006", AdminAddress: "127.0.0.1:15020", TunnelPort: 15008, Services: []string{"backend", "backend-v2"}}
	got, err := xds.WorkloadFromMetadata(xds.NodeMetadata(w))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, w) {
		t.Errorf("round trip = %+v, want %+v", got, w)
	}
}
