package ca_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func TestConfigValidate(t *testing.T) {
	td := catest.TrustDomain
	tests := []struct {
		name    string
		cfg     ca.Config
		wantErr string
	}{
		{name: "minimal config is valid", cfg: ca.Config{DataDir: "d", TrustDomain: td}},
		{name: "data dir is required", cfg: ca.Config{TrustDomain: td}, wantErr: "empty data dir"},
		{name: "trust domain is required", cfg: ca.Config{DataDir: "d"}, wantErr: "empty trust domain"},
		{name: "unknown key type", cfg: ca.Config{DataDir: "d", TrustDomain: td, KeyType: "DSA"}, wantErr: "unsupported key type"},
		{name: "default above max", cfg: ca.Config{DataDir: "d", TrustDomain: td, DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour}, wantErr: "exceeds max"},
		{name: "small max lowers the default", cfg: ca.Config{DataDir: "d", TrustDomain: td, MaxTTL: time.Hour}},
		{name: "negative lifetime", cfg: ca.Config{DataDir: "d", TrustDomain: td, DefaultTTL: -1}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadCreatesRootOnFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // Load creates it
	a, err := ca.Load(ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	if a.PluggedIn() {
		t.Error("PluggedIn = true for a self-signed root")
	}
	bundle := a.Bundle()
	if len(bundle) != 1 || !bundle[0].IsCA || !bundle[0].Equal(a.SigningCertificate()) {
		t.Fatalf("bundle = %v, want the one self-signed root", bundle)
	}
	if err := bundle[0].CheckSignatureFrom(bundle[0]); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if got := bundle[0].NotAfter.Sub(bundle[0].NotBefore); got < 9*365*24*time.Hour {
		t.Errorf("root lifetime = %s, want about 10 years", got)
	}

	written, err := os.ReadFile(filepath.Join(dir, ca.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(written) != string(pemCerts(bundle...)) {
		t.Error("root-cert.pem does not hold the bundle")
	}
	for _, name := range []string{ca.SelfSignedKeyFile, ca.TokenKeyFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if mode := st.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s mode = %o, want 600", name, mode)
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o700 {
		t.Errorf("data dir mode = %o, want 700", mode)
	}
}

func TestLoadReusesRootOnRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain}
	first, err := ca.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := first.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A lost bundle file is rewritten from the root.
	if err := os.Remove(filepath.Join(dir, ca.RootCertFile)); err != nil {
		t.Fatal(err)
	}
	second, err := ca.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Bundle()[0].Equal(second.Bundle()[0]) {
		t.Fatal("restart created a new root")
	}
	if _, err := os.Stat(filepath.Join(dir, ca.RootCertFile)); err != nil {
		t.Fatalf("root-cert.pem not rewritten: %v", err)
	}
	if _, err := second.TokenVerifier().Verify(tok); err != nil {
		t.Fatalf("token from before the restart: %v", err)
	}
}

func TestLoadRSARoot(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{KeyType: ca.KeyRSA2048})
	if got := a.SigningCertificate().PublicKeyAlgorithm.String(); got != "RSA" {
		t.Fatalf("root key = %s, want RSA", got)
	}
	chain, err := a.Sign(parseCSR(t, catest.CSR(t, catest.NewKey(t))), workload, 0)
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, a, chain, workload)
}

func TestLoadRefusesBrokenSelfSignedRoot(t *testing.T) {
	tests := []struct {
		name    string
		break_  func(t *testing.T, dir string)
		clock   func() time.Time
		wantErr string
	}{
		{
			name:    "key without cert",
			break_:  func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ca.SelfSignedCertFile)) },
			wantErr: "only one of",
		},
		{
			name:    "cert without key",
			break_:  func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ca.SelfSignedKeyFile)) },
			wantErr: "only one of",
		},
		{
			name: "key of another root",
			break_: func(t *testing.T, dir string) {
				writeFile(t, dir, ca.SelfSignedKeyFile, pemKey(t, catest.NewKey(t)))
			},
			wantErr: "does not match",
		},
		{
			name:    "expired root",
			break_:  func(t *testing.T, dir string) {},
			clock:   func() time.Time { return time.Now().Add(20 * 365 * 24 * time.Hour) },
			wantErr: "expired",
		},
		{
			name:    "garbage cert",
			break_:  func(t *testing.T, dir string) { writeFile(t, dir, ca.SelfSignedCertFile, []byte("nope")) },
			wantErr: "no PEM certificate",
		},
		{
			name:    "garbage token key",
			break_:  func(t *testing.T, dir string) { writeFile(t, dir, ca.TokenKeyFile, []byte("short")) },
			wantErr: "token key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := ca.Load(ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain}); err != nil {
				t.Fatal(err)
			}
			tt.break_(t, dir)
			_, err := ca.Load(ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain, Clock: tt.clock})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
