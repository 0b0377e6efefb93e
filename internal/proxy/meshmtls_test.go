package proxy

import (
	"crypto/tls"
	"testing"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// TestMeshMTLS: MeshConfig meshMTLS governs the mutual TLS between
// proxies, on the server side (which versions, suites and curves the
// inbound accepts) and on the client side (what the client proxy offers),
// and follows pushes.
func TestMeshMTLS(t *testing.T) {
	p := newPair(t, strictMesh)
	serverView := func(version string, c *meshv1alpha1.MeshConfig_TLSConfig) *xds.View {
		m := mesh()
		m.MeshMTLS = c
		return policyView(t, version, m, strictMesh)
	}
	clientView := func(version string, c *meshv1alpha1.MeshConfig_TLSConfig) *xds.View {
		m := mesh()
		m.MeshMTLS = c
		return &xds.View{Version: version, Mesh: m, Services: []registry.Service{serviceOf(p.server)}}
	}
	cert := p.ca.Issue(t, "web", "frontend", time.Hour)
	// handshake connects to the server proxy's inbound as a mesh client
	// limited to maxVersion (and suites and curves when given).
	handshake := func(maxVersion uint16, suites []uint16, curves []tls.CurveID) (tls.ConnectionState, error) {
		conf := &tls.Config{
			Certificates:       []tls.Certificate{cert},
			InsecureSkipVerify: true, // the server's SPIFFE ID is not what this test checks
			MinVersion:         tls.VersionTLS12,
			MaxVersion:         maxVersion,
			CipherSuites:       suites,
			CurvePreferences:   curves,
			NextProtos:         []string{"http/1.1"},
		}
		c, err := tls.Dial("tcp", p.server.InboundAddr().String(), conf)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.ConnectionState(), nil
	}

	// The default: TLS 1.3 only.
	if _, err := handshake(tls.VersionTLS12, nil, nil); err == nil {
		t.Error("default: a TLS 1.2 handshake succeeded, want TLS 1.3 only")
	}
	if st, err := handshake(tls.VersionTLS13, nil, nil); err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("default: TLS 1.3 handshake: %v", err)
	}

	mustApply(t, p.server, serverView("s2", &meshv1alpha1.MeshConfig_TLSConfig{
		MinProtocolVersion: meshv1alpha1.MeshConfig_TLSConfig_TLSV1_2,
		CipherSuites:       []string{"ECDHE-ECDSA-AES128-GCM-SHA256"},
		EcdhCurves:         []string{"P-384"},
	}))
	st, err := handshake(tls.VersionTLS12, nil, []tls.CurveID{tls.CurveP384})
	if err != nil || st.Version != tls.VersionTLS12 || st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
		t.Errorf("TLSV1_2: handshake version %x suite %s err %v, want TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256", st.Version, tls.CipherSuiteName(st.CipherSuite), err)
	}
	if _, err := handshake(tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, []tls.CurveID{tls.CurveP384}); err == nil {
		t.Error("a TLS 1.2 suite outside cipherSuites was accepted")
	}
	if _, err := handshake(tls.VersionTLS13, nil, []tls.CurveID{tls.X25519}); err == nil {
		t.Error("a curve outside ecdhCurves was accepted")
	}

	// The client proxy applies its own meshMTLS: offering only X25519 to a
	// server that takes only P-384, it cannot connect.
	mustApply(t, p.client, clientView("c2", &meshv1alpha1.MeshConfig_TLSConfig{EcdhCurves: []string{"X25519"}}))
	if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/curves"); code != 503 {
		t.Errorf("client X25519 against server P-384: %d, want 503", code)
	}
	mustApply(t, p.client, clientView("c3", &meshv1alpha1.MeshConfig_TLSConfig{EcdhCurves: []string{"P-384"}}))
	if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/curves"); code != 200 {
		t.Errorf("client P-384 against server P-384: %d, want 200", code)
	}

	// A setting the proxy cannot honour is a rejected push; the last good
	// one stays.
	err = p.server.Apply(serverView("s3", &meshv1alpha1.MeshConfig_TLSConfig{CipherSuites: []string{"AES128-GCM-SHA256"}}))
	if err == nil {
		t.Fatal("a cipher suite without forward secrecy was accepted")
	}
	if _, err := handshake(tls.VersionTLS13, nil, []tls.CurveID{tls.X25519}); err == nil {
		t.Error("after a rejected push the server accepted X25519: the last good meshMTLS was lost")
	}
}

// FuzzParseMeshMTLS: any meshMTLS compiles or is refused, never panics; a
// compiled policy names only suites and curves from the tables, and never
// allows less than TLS 1.2.
