package crl

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
)

func mustCRLs(t *testing.T, pems ...[]byte) []*x509.RevocationList {
	t.Helper()
	var all []byte
	for _, p := range pems {
		all = append(all, p...)
	}
	crls, err := Parse(all)
	if err != nil {
		t.Fatal(err)
	}
	return crls
}

// TestCheckRevocation is the CRL decision as Envoy makes it for Istio's
// caCrl: every certificate of the chain needs a current CRL of its
// issuer that does not list it.
func TestCheckRevocation(t *testing.T) {
	now := time.Now()
	root := meshtest.NewCRLIssuer(t, "root", nil)
	impostor := meshtest.NewCRLIssuer(t, "root", nil) // same name, another key
	inter := meshtest.NewCRLIssuer(t, "intermediate", root)
	_, alice := root.Leaf(t, "alice")
	_, bob := root.Leaf(t, "bob")
	_, carol := inter.Leaf(t, "carol")
	later := now.Add(time.Hour)
	direct := [][]*x509.Certificate{{alice, root.Cert}}
	viaInter := [][]*x509.Certificate{{carol, inter.Cert, root.Cert}}
	for _, tc := range []struct {
		name    string
		chains  [][]*x509.Certificate
		crls    [][]byte
		wantErr string
	}{
		{name: "listed elsewhere, not this one", chains: direct, crls: [][]byte{root.CRL(t, later, bob)}},
		{name: "an empty CRL", chains: direct, crls: [][]byte{root.CRL(t, later)}},
		{name: "listed", chains: direct, crls: [][]byte{root.CRL(t, later, alice)}, wantErr: "revoked"},
		{name: "expired CRL", chains: direct, crls: [][]byte{root.CRL(t, now.Add(-time.Second))}, wantErr: "expired"},
		{name: "a CRL of the same name, another key", chains: direct, crls: [][]byte{impostor.CRL(t, later)}, wantErr: "no CRL of"},
		{name: "the impostor's CRL cannot revoke", chains: direct, crls: [][]byte{impostor.CRL(t, later, alice), root.CRL(t, later)}},
		{name: "an intermediate without its CRL", chains: viaInter, crls: [][]byte{root.CRL(t, later)}, wantErr: `no CRL of "CN=intermediate"`},
		{name: "an intermediate with its CRL", chains: viaInter, crls: [][]byte{root.CRL(t, later), inter.CRL(t, later)}},
		{name: "a revoked intermediate", chains: viaInter, crls: [][]byte{root.CRL(t, later, inter.Cert), inter.CRL(t, later)}, wantErr: "revoked"},
		{name: "a leaf revoked by its intermediate", chains: viaInter, crls: [][]byte{root.CRL(t, later), inter.CRL(t, later, carol)}, wantErr: "revoked"},
		{name: "no chain", crls: [][]byte{root.CRL(t, later)}, wantErr: "no verified chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.chains, mustCRLs(t, tc.crls...), now)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Check = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParse(t *testing.T) {
	root := meshtest.NewCRLIssuer(t, "root", nil)
	p := root.CRL(t, time.Now().Add(time.Hour))
	b, _ := pem.Decode(p)
	for _, tc := range []struct {
		name    string
		data    []byte
		want    int
		wantErr string
	}{
		{name: "PEM", data: p, want: 1},
		{name: "two PEM, a certificate between", data: append(append(append([]byte{}, p...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw})...), p...), want: 2},
		{name: "DER", data: b.Bytes, want: 1},
		{name: "empty", data: nil, wantErr: "not a CRL"},
		{name: "PEM without a CRL", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}), wantErr: "no X509 CRL"},
		{name: "a broken CRL block", data: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte("x")}), wantErr: "CRL 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crls, err := Parse(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse = %d, %v; want %q", len(crls), err, tc.wantErr)
				}
				return
			}
			if err != nil || len(crls) != tc.want {
				t.Fatalf("Parse = %d, %v; want %d", len(crls), err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := Parse(data)
		if err == nil && len(crls) == 0 {
			t.Fatal("no CRL and no error")
		}
	})
}
