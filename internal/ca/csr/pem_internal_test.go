package csr

import (
	"crypto/rand"
	"encoding/pem"
	"testing"
)

// TestCertificatePEM compares certificatePEM with encoding/pem for every
// length around the line breaks and typical certificate sizes.
func TestCertificatePEM(t *testing.T) {
	der := make([]byte, 2100)
	if _, err := rand.Read(der); err != nil {
		t.Fatal(err)
	}
	for n := range len(der) {
		want := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der[:n]}))
		if got := certificatePEM(der[:n]); got != want {
			t.Fatalf("%d bytes:\n got %q\nwant %q", n, got, want)
		}
	}
}

// FuzzCertificatePEM: whatever the bytes, the block decodes back to them.
func FuzzCertificatePEM(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, der []byte) {
		block, rest := pem.Decode([]byte(certificatePEM(der)))
		if block == nil || len(rest) != 0 || block.Type != "CERTIFICATE" || string(block.Bytes) != string(der) {
			t.Fatalf("certificatePEM(%x) does not decode back", der)
		}
	})
}
