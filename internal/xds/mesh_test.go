package xds_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/xds"
)

func TestMeshSettingsRoundTrip(t *testing.T) {
	v := sampleView()
	v.Mesh.PathNormalization = "MERGE_SLASHES"
	v.Mesh.OutboundTrafficPolicy = "REGISTRY_ONLY"
	v.Mesh.H2UpgradePolicy = "UPGRADE"
	v.Mesh.MeshMTLS = &meshv1alpha1.MeshConfig_TLSConfig{
		MinProtocolVersion: meshv1alpha1.MeshConfig_TLSConfig_TLSV1_2,
		CipherSuites:       []string{"ECDHE-ECDSA-AES128-GCM-SHA256"},
		EcdhCurves:         []string{"P-256"},
	}
	v.Mesh.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{{
		Name: "authz",
		Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc{
			EnvoyExtAuthzGrpc: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{
				Service: "ext-authz.foo.svc.cluster.local", Port: 9000, FailOpen: true, Timeout: durationpb.New(2e9),
			},
		},
	}}
	before := xds.Version(v)
	v.Version = before
	enc, err := xds.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := xds.Decode(v.Version, received(enc))
	if err != nil {
		t.Fatal(err)
	}
	if got.Mesh.PathNormalization != "MERGE_SLASHES" || got.Mesh.OutboundTrafficPolicy != "REGISTRY_ONLY" || got.Mesh.H2UpgradePolicy != "UPGRADE" {
		t.Errorf("mesh = %+v", got.Mesh)
	}
	if !proto.Equal(got.Mesh.MeshMTLS, v.Mesh.MeshMTLS) {
		t.Errorf("meshMTLS = %v, want %v", got.Mesh.MeshMTLS, v.Mesh.MeshMTLS)
	}
	if len(got.Mesh.ExtensionProviders) != 1 || !proto.Equal(got.Mesh.ExtensionProviders[0], v.Mesh.ExtensionProviders[0]) {
		t.Errorf("providers = %v", got.Mesh.ExtensionProviders)
	}
	if xds.Version(got) != before {
		t.Errorf("decoded view hashes to %s, want %s", xds.Version(got), before)
	}
	if xds.Version(sampleView()) == before {
		t.Error("mesh settings do not change the view version")
	}

	v.Mesh.PathNormalization = "SOMETIMES"
	if _, err := xds.Encode(v); err == nil {
		t.Error("Encode accepted an unknown path normalization")
	}
	v.Mesh.PathNormalization = ""
	v.Mesh.H2UpgradePolicy = "SIDEWAYS"
	if _, err := xds.Encode(v); err == nil {
		t.Error("Encode accepted an unknown h2 upgrade policy")
	}
}
