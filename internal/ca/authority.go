package ca

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authority is the mesh CA. It is immutable after Load and safe for
// concurrent use.
type Authority struct {
	cfg Config

	signer crypto.Signer
	// caCert signs leaves; it is the root itself when self-signed.
	caCert *x509.Certificate
	// chain is what follows a leaf in an issued chain: caCert, any
	// intermediates, and the root last.
	chain []*x509.Certificate
	// roots is the trust bundle (root-cert.pem).
	roots []*x509.Certificate
	// pluggedIn reports whether the signing CA came from Istio cacerts files.
	pluggedIn bool

	tokens *TokenVerifier
}

// Load opens the CA in cfg.DataDir, creating a self-signed root (and the
// bootstrap-token key) on first start. If the directory holds Istio cacerts
// files, they become the signing CA instead; a partial or inconsistent set is
// an error rather than a silent fallback to a new root, since that would
// split the mesh into two trust domains. Either way the trust bundle is
// (re)written to DataDir/root-cert.pem when it differs.
func Load(cfg Config) (*Authority, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: create data dir: %w", err)
	}
	a := &Authority{cfg: cfg}

	plugged, err := hasPluggedCerts(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if plugged {
		err = a.loadPluggedCerts()
	} else {
		err = a.loadOrCreateSelfSigned()
	}
	if err != nil {
		return nil, err
	}

	key, err := loadOrCreateTokenKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.tokens, err = NewTokenVerifier(key, cfg.TrustDomain, cfg.Clock)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// TrustDomain returns the trust domain the Authority signs for.
func (a *Authority) TrustDomain() spiffeid.TrustDomain { return a.cfg.TrustDomain }

// Bundle returns the trusted roots. The slice is a copy; the certificates
// must not be modified.
func (a *Authority) Bundle() []*x509.Certificate {
	return append([]*x509.Certificate(nil), a.roots...)
}

// BundlePool returns the trusted roots as a pool, for TLS verification.
func (a *Authority) BundlePool() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, r := range a.roots {
		pool.AddCert(r)
	}
	return pool
}

// SigningCertificate returns the certificate that signs leaves: the
// self-signed root, or the plugged-in ca-cert.pem.
func (a *Authority) SigningCertificate() *x509.Certificate { return a.caCert }

// PluggedIn reports whether the signing CA came from Istio cacerts files.
func (a *Authority) PluggedIn() bool { return a.pluggedIn }

// TokenVerifier returns the verifier of bootstrap tokens issued for this
// Authority's data dir.
func (a *Authority) TokenVerifier() *TokenVerifier { return a.tokens }

// DataDir returns the directory holding the CA's key material.
func (a *Authority) DataDir() string { return a.cfg.DataDir }

// Clock returns the Authority's clock, so that code verifying what it issued
// agrees with it about the time.
func (a *Authority) Clock() func() time.Time { return a.cfg.Clock }

func (a *Authority) path(name string) string { return filepath.Join(a.cfg.DataDir, name) }

// writeBundle writes root-cert.pem when its content differs from the roots.
func (a *Authority) writeBundle() error {
	want := encodeCertificates(a.roots...)
	if have, err := os.ReadFile(a.path(RootCertFile)); err == nil && string(have) == string(want) {
		return nil
	}
	if err := writeFileAtomic(a.path(RootCertFile), want, 0o644); err != nil {
		return fmt.Errorf("ca: write trust bundle: %w", err)
	}
	return nil
}
