package meshtls

import (
	"crypto/tls"
	"maps"
	"slices"
	"strings"
	"testing"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      *meshv1alpha1.MeshConfig_TLSConfig
		want    Policy
		wantErr string
	}{
		{name: "unset: the defaults", in: nil, want: Policy{}},
		{name: "TLS_AUTO: the defaults", in: &meshv1alpha1.MeshConfig_TLSConfig{}, want: Policy{}},
		{name: "TLSV1_3", in: &meshv1alpha1.MeshConfig_TLSConfig{MinProtocolVersion: meshv1alpha1.MeshConfig_TLSConfig_TLSV1_3}, want: Policy{}},
		{
			name: "TLSV1_2 with suites, a group among them, and curves",
			in: &meshv1alpha1.MeshConfig_TLSConfig{
				MinProtocolVersion: meshv1alpha1.MeshConfig_TLSConfig_TLSV1_2,
				CipherSuites:       []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]"},
				EcdhCurves:         []string{"P-256", "X25519"},
			},
			want: Policy{
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
			got, err := Parse(tt.in)
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

func FuzzParse(f *testing.F) {
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
		tp, err := Parse(c)
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
		conf := tp.Apply(&tls.Config{MinVersion: tls.VersionTLS13})
		if conf.MinVersion < tls.VersionTLS12 {
			t.Fatalf("applied min version %x", conf.MinVersion)
		}
	})
}
