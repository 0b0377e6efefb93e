package agent

import (
	"encoding/pem"
	"testing"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

// FuzzParseAll checks the CA-response element parser never panics and
// stays bounded.
func FuzzParseAll(f *testing.F) {
	a := catest.NewAuthority(f, ca.Config{})
	f.Add(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Bundle()[0].Raw})))
	f.Add("garbage")
	f.Add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
	f.Fuzz(func(t *testing.T, p string) {
		certs, err := parseAll(p)
		if err == nil && (len(certs) == 0 || len(certs) > maxChain) {
			t.Fatalf("parseAll accepted %d certificates", len(certs))
		}
	})
}
