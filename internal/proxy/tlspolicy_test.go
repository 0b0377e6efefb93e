package proxy

import (
	"crypto/tls"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

func TestParseMeshMTLS(t *testing.T) {
	tests := []struct {
		name    string
		in      *meshv1alpha1.MeshConfig_TLSConfig
		want    tlsPolicy
		wantErr string
	}{
		{name: "unset: the defaults", in: nil, want: tlsPolicy{}},
		{name: "TLS_AUTO: the defaults", in: &meshv1alpha1.MeshConfig_TLSConfig{}, want: tlsPolicy{}},
		{name: "TLSV1_3", in: &meshv1alpha1.MeshConfig_TLSConfig{MinProtocolVersion: meshv1alpha1.MeshConfig_TLSConfig_TLSV1_3}, want: tlsPolicy{}},
		{
			name: "TLSV1_2 with suites, a group among them, and curves",
			in: &meshv1alpha1.MeshConfig_TLSConfig{
				MinProtocolVersion: meshv1alpha1.MeshConfig_TLSConfig_TLSV1_2,
				CipherSuites:       []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]"},
				EcdhCurves:         []string{"P-256", "X25519"},
			},
			want: tlsPolicy{
				minVersion: tls.VersionTLS12,
				suites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
				curves:     []tls.CurveID{tls.CurveP256, tls.X25519},
			},
		},
		{name: "a suite without forward secrecy is refused", in: &meshv1alpha1.MeshConfig_TLSConfig{CipherSuites: []string{"AES128-GCM-SHA256"}}, wantErr: `cipher suite "AES128-GCM-SHA256"`},
		{name: "an unknown suite is refused", in: &meshv1alpha1.MeshConfig_TLSConfig{CipherSuites: []string{"ECDHE-ECDSA-AES128-SHA"}}, wantErr: "not supported"},
		{name: "an unknown curve is refused", in: &meshv1alpha1.MeshConfig_TLSConfig{EcdhCurves: []string{"P-224"}}, wantErr: `ECDH curve "P-224"`},
		{name: "an unknown version is refused", in: &meshv1alpha1.MeshConfig_TLSConfig{MinProtocolVersion: 7}, wantErr: "minProtocolVersion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMeshMTLS(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.minVersion != tt.want.minVersion || !slices.Equal(got.suites, tt.want.suites) || !slices.Equal(got.curves, tt.want.curves) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

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
func FuzzParseMeshMTLS(f *testing.F) {
	f.Add(int32(1), "ECDHE-ECDSA-AES128-GCM-SHA256", "P-256")
	f.Add(int32(2), "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-RSA-AES128-GCM-SHA256]", "X25519")
	f.Add(int32(0), "AES128-GCM-SHA256", "P-224")
	f.Add(int32(-1), "[|]", "")
	f.Fuzz(func(t *testing.T, version int32, suite, curve string) {
		c := &meshv1alpha1.MeshConfig_TLSConfig{
			MinProtocolVersion: meshv1alpha1.MeshConfig_TLSConfig_TLSProtocol(version),
			CipherSuites:       []string{suite},
			EcdhCurves:         []string{curve},
		}
		tp, err := parseMeshMTLS(c)
		if err != nil {
			return
		}
		if tp.minVersion != 0 && tp.minVersion != tls.VersionTLS12 {
			t.Fatalf("min version %x", tp.minVersion)
		}
		for _, id := range tp.suites {
			if !slices.Contains(slices.Collect(maps.Values(cipherSuites)), id) {
				t.Fatalf("suite %x not from the table", id)
			}
		}
		for _, id := range tp.curves {
			if !slices.Contains(slices.Collect(maps.Values(curves)), id) {
				t.Fatalf("curve %v not from the table", id)
			}
		}
		conf := tp.applied(&tls.Config{MinVersion: tls.VersionTLS13})
		if conf.MinVersion < tls.VersionTLS12 {
			t.Fatalf("applied min version %x", conf.MinVersion)
		}
	})
}
