package xds_test

import (
	"reflect"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

// tlsGateway is a Gateway with one server per credential: SIMPLE for
// simple, MUTUAL for mutual.
func tlsGateway(ns, name string, selector map[string]string, simple, mutual string) config.Resource {
	gw := &networking.Gateway{Selector: selector}
	if simple != "" {
		gw.Servers = append(gw.Servers, &networking.Server{
			Port: &networking.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{"*"},
			Tls: &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_SIMPLE, CredentialName: simple},
		})
	}
	if mutual != "" {
		gw.Servers = append(gw.Servers, &networking.Server{
			Port: &networking.Port{Number: 8443, Name: "https-mtls", Protocol: "HTTPS"}, Hosts: []string{"*"},
			Tls: &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_MUTUAL, CredentialName: mutual},
		})
	}
	return config.Resource{Meta: config.Meta{Kind: config.KindGateway, APIVersion: "networking.istio.io/v1", Name: name, Namespace: ns}, Spec: gw}
}

// originationRule is a DestinationRule originating MUTUAL TLS with
// credential port-level, and with subsetCred in a subset (if set).
func originationRule(ns, name, credential, subsetCred string) config.Resource {
	dr := &networking.DestinationRule{Host: "ext.example.com", TrafficPolicy: &networking.TrafficPolicy{
		PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{{
			Port: &networking.PortSelector{Number: 443},
			Tls:  &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_MUTUAL, CredentialName: credential},
		}},
	}}
	if subsetCred != "" {
		dr.Subsets = []*networking.Subset{{Name: "v2", Labels: map[string]string{"v": "2"}, TrafficPolicy: &networking.TrafficPolicy{
			Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_SIMPLE, CredentialName: subsetCred},
		}}}
	}
	return config.Resource{Meta: config.Meta{Kind: config.KindDestinationRule, APIVersion: "networking.istio.io/v1", Name: name, Namespace: ns}, Spec: dr}
}

func TestGatewayCredentials(t *testing.T) {
	ingress := map[string]string{"istio": "ingressgateway"}
	tests := []struct {
		name string
		ns   string
		gws  []config.Resource
		drs  []config.Resource
		want []xds.CredentialRef
	}{
		{"none", "istio-system", nil, nil, nil},
		{"plain HTTP and ISTIO_MUTUAL name none", "istio-system", []config.Resource{gatewayResource("istio-system", "plain", ingress)}, nil, nil},
		{"SIMPLE: the credential in the gateway's namespace, not the Gateway's", "edge",
			[]config.Resource{tlsGateway("apps", "web", ingress, "web-cert", "")}, nil,
			[]xds.CredentialRef{{Namespace: "edge", Name: "web-cert"}}},
		{"MUTUAL: also NAME-cacert, for its CA only", "istio-system",
			[]config.Resource{tlsGateway("istio-system", "web", ingress, "", "m")}, nil,
			[]xds.CredentialRef{{Namespace: "istio-system", Name: "m"}, {Namespace: "istio-system", Name: "m-cacert", Use: xds.CACredential}}},
		{"one credential named twice is wanted once", "istio-system",
			[]config.Resource{tlsGateway("istio-system", "a", ingress, "c", ""), tlsGateway("apps", "b", ingress, "c", "")}, nil,
			[]xds.CredentialRef{{Namespace: "istio-system", Name: "c"}}},
		{"a DestinationRule's credentialName, at port level and in a subset, with NAME-cacert", "istio-system", nil,
			[]config.Resource{originationRule("apps", "ext", "client-cert", "subset-cert")},
			[]xds.CredentialRef{{Namespace: "istio-system", Name: "client-cert", Use: xds.ClientCredential}, {Namespace: "istio-system", Name: "client-cert-cacert", Use: xds.CACredential},
				{Namespace: "istio-system", Name: "subset-cert", Use: xds.ClientCredential}, {Namespace: "istio-system", Name: "subset-cert-cacert", Use: xds.CACredential}}},
		{"a name both a server's and a DestinationRule's is read as the rule's", "istio-system",
			[]config.Resource{tlsGateway("istio-system", "a", ingress, "both", "")}, []config.Resource{originationRule("apps", "ext", "both", "")},
			[]xds.CredentialRef{{Namespace: "istio-system", Name: "both", Use: xds.ClientCredential}, {Namespace: "istio-system", Name: "both-cacert", Use: xds.CACredential}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := xds.GatewayCredentials(tt.ns, tt.gws, tt.drs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("GatewayCredentials = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestCredentialsReachOnlyTheirGateways: a credential goes to a gateway
// proxy of its namespace whose Gateways name it, and to nothing else —
// not to a sidecar with the same labels, not to a gateway of another
// namespace selected by the same Gateway, not to a gateway no Gateway
// naming it selects; a rotated credential changes only the views of its
// namespace; credentials, their CA and CRL included, survive Encode and
// Decode.
func TestCredentialsReachOnlyTheirGateways(t *testing.T) {
	ca := meshtest.NewCA(t, "web.test")
	chain, key := meshtest.PEM(t, ca.IssueLeaf(t, "web", "web.example.test"))
	chain2, key2 := meshtest.PEM(t, ca.IssueLeaf(t, "web-renewed", "web.example.test"))
	ingress := map[string]string{"istio": "ingressgateway"}
	snap, svcs := indexFixture()
	snap = config.NewSnapshot("2", append(snap.All(), tlsGateway("apps", "web", ingress, "web-cert", "mtls"), originationRule("apps", "ext", "client-cert", "")))
	creds := []xds.Credential{
		{Namespace: "istio-system", Name: "web-cert", Cert: chain, PrivateKey: key},
		{Namespace: "istio-system", Name: "mtls", Cert: chain, PrivateKey: key, CA: ca.RootPEM(), CRL: []byte("a CRL beside a key pair")},
		{Namespace: "istio-system", Name: "mtls-cacert", CA: ca.RootPEM(), CRL: []byte("a CRL beside a CA")},
		{Namespace: "istio-system", Name: "unnamed", Cert: chain, PrivateKey: key},
		{Namespace: "istio-system", Name: "client-cert", Cert: chain, PrivateKey: key},
		{Namespace: "apps", Name: "web-cert", Cert: chain2, PrivateKey: key2},
	}
	ix, err := xds.NewIndexWithCredentials(snap, svcs, mesh, creds, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := func(v *xds.View) []string {
		var out []string
		for _, c := range v.Credentials {
			out = append(out, c.Key())
		}
		return out
	}
	gw := gatewayProxy("istio-system", ingress)
	tests := []struct {
		name string
		p    xds.Proxy
		want []string
	}{
		{"the gateway of the Secrets' namespace", gw, []string{"istio-system/client-cert", "istio-system/mtls", "istio-system/mtls-cacert", "istio-system/web-cert"}},
		{"a sidecar with the gateway's labels", proxy("istio-system", ingress), nil},
		{"a gateway of another namespace", gatewayProxy("edge", ingress), nil},
		{"a gateway of the Gateway's namespace gets that namespace's Secret", gatewayProxy("apps", ingress), []string{"apps/web-cert"}},
		{"a gateway the Gateway does not select gets only the DestinationRule's", gatewayProxy("istio-system", map[string]string{"istio": "egressgateway"}), []string{"istio-system/client-cert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, enc := ix.Build(tt.p)
			if got := names(v); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("credentials %v, want %v", got, tt.want)
			}
			if len(enc[xds.TypeCredential]) != len(tt.want) {
				t.Errorf("%d credential resources encoded, want %d", len(enc[xds.TypeCredential]), len(tt.want))
			}
		})
	}

	// Round trip.
	v, enc := ix.Build(gw)
	got, err := xds.Decode(v.Version, received(enc))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Credentials, v.Credentials) {
		t.Errorf("decoded credentials differ:\n%+v\nwant\n%+v", got.Credentials, v.Credentials)
	}

	// Rotation: istio-system's web-cert renewed.
	rotated := append([]xds.Credential(nil), creds...)
	rotated[0].Cert, rotated[0].PrivateKey = chain2, key2
	ix2, err := xds.NewIndexWithCredentials(snap, svcs, mesh, rotated, ix)
	if err != nil {
		t.Fatal(err)
	}
	all, nss := ix2.Changes(ix)
	if all || !reflect.DeepEqual(nss, map[string]bool{"istio-system": true}) {
		t.Errorf("Changes = %v %v, want istio-system only", all, nss)
	}
	v2, _ := ix2.Build(gw)
	if v2.Version == v.Version {
		t.Error("the gateway's view version did not change with its credential")
	}
	for _, p := range []xds.Proxy{gatewayProxy("apps", ingress), proxy("istio-system", ingress)} {
		a, _ := ix.Build(p)
		b, _ := ix2.Build(p)
		if a.Version != b.Version {
			t.Errorf("%s: view changed with another namespace's credential", p.ID)
		}
	}
}
