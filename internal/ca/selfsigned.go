package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
)

// loadOrCreateSelfSigned reuses the root in DataDir, or creates one on first
// start. A cert without its key (or the reverse) is an error: regenerating
// would silently invalidate every certificate already issued.
func (a *Authority) loadOrCreateSelfSigned() error {
	certPath, keyPath := a.path(SelfSignedCertFile), a.path(SelfSignedKeyFile)
	haveCert, err := exists(certPath)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	haveKey, err := exists(keyPath)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	switch {
	case haveCert && haveKey:
		if err := a.loadSelfSigned(certPath, keyPath); err != nil {
			return err
		}
	case haveCert != haveKey:
		return fmt.Errorf("ca: data dir %s holds only one of %s and %s; restore the other or remove both to create a new root",
			a.cfg.DataDir, SelfSignedCertFile, SelfSignedKeyFile)
	default:
		if err := a.createSelfSigned(certPath, keyPath); err != nil {
			return err
		}
	}
	return a.writeBundle()
}

func (a *Authority) loadSelfSigned(certPath, keyPath string) error {
	certs, err := readCertificates(certPath)
	if err != nil {
		return fmt.Errorf("ca: load root: %w", err)
	}
	key, err := readPrivateKey(keyPath)
	if err != nil {
		return fmt.Errorf("ca: load root key: %w", err)
	}
	root := certs[0]
	if err := validateCA(root, key, a.cfg.Clock()); err != nil {
		return fmt.Errorf("ca: root in %s: %w", certPath, err)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("ca: root in %s is not self-signed: %w", certPath, err)
	}
	a.signer, a.caCert = key, root
	a.chain = []*x509.Certificate{root}
	a.roots = []*x509.Certificate{root}
	return nil
}

func (a *Authority) createSelfSigned(certPath, keyPath string) error {
	key, err := newKey(a.cfg.KeyType)
	if err != nil {
		return fmt.Errorf("ca: generate root key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	now := a.cfg.Clock()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{a.cfg.TrustDomain.Name()},
			CommonName:   "zmesh root CA",
		},
		NotBefore:             now.Add(-backdate(a.cfg.RootTTL)),
		NotAfter:              now.Add(a.cfg.RootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{a.cfg.TrustDomain.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("ca: create root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("ca: parse new root: %w", err)
	}
	keyPEM, err := encodePrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: encode root key: %w", err)
	}
	// Key first: a crash between the two writes leaves a key without a cert,
	// which the next start reports instead of trusting a cert without a key.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("ca: write root key: %w", err)
	}
	if err := writeFileAtomic(certPath, encodeCertificates(root), 0o644); err != nil {
		return fmt.Errorf("ca: write root: %w", err)
	}
	a.signer, a.caCert = key, root
	a.chain = []*x509.Certificate{root}
	a.roots = []*x509.Certificate{root}
	return nil
}

func newKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}
