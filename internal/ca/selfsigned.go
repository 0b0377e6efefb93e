package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// loadOrCreateSelfSigned reads the self-signed root in DataDir, or creates
// one on first start when create is set. A cert without its key (or the
// reverse) is an error: regenerating would silently invalidate every
// certificate already issued. Roots of a rotation in progress (see Rotate)
// join the bundle, which is written to root-cert.pem.
func (a *Authority) loadOrCreateSelfSigned(create bool) (*signingState, error) {
	if create {
		if err := a.recoverActivation(); err != nil {
			return nil, err
		}
	}
	certPath, keyPath := a.path(SelfSignedCertFile), a.path(SelfSignedKeyFile)
	haveCert, err := exists(certPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	haveKey, err := exists(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	var root *x509.Certificate
	var key crypto.Signer
	switch {
	case haveCert && haveKey:
		if root, key, err = a.loadRoot(certPath, keyPath); err != nil {
			return nil, err
		}
	case haveCert != haveKey:
		return nil, fmt.Errorf("ca: data dir %s holds only one of %s and %s; restore the other or remove both to create a new root",
			a.cfg.DataDir, SelfSignedCertFile, SelfSignedKeyFile)
	case !create:
		return nil, fmt.Errorf("ca: data dir %s holds no CA", a.cfg.DataDir)
	default:
		if root, key, err = a.createRoot(certPath, keyPath); err != nil {
			return nil, err
		}
	}
	roots := []*x509.Certificate{root}
	for _, name := range []string{NextCertFile, PreviousCertFile} {
		c, err := a.optionalRoot(name)
		if err != nil {
			return nil, err
		}
		if c != nil && !containsCert(roots, c) {
			roots = append(roots, c)
		}
	}
	if err := a.writeBundle(roots); err != nil {
		return nil, err
	}
	st := newState(key, root, []*x509.Certificate{root}, roots, false)
	st.servingCA, st.servingSigner = a.previousRoot(root)
	return st, nil
}

// previousRoot returns the root being retired and its key, between a
// rotation's activate and retire, to sign the control plane's serving
// certificate with; nil when there is none or it cannot be used (then the
// signing root serves, which is also right once every agent trusts it).
//
// Why: an agent trusts the control plane only through its bundle, and it
// learns a new bundle only from the control plane. If the serving
// certificate moved to the new root at activate, an agent that had not
// yet learnt the new root (an operator who forced activate, an agent that
// was down during prepare) could never reach the control plane again to
// learn it, and would lose its identity when its certificate expires. The
// previous root stays in every bundle until retire, so serving from it
// keeps every agent able to renew and catch up.
func (a *Authority) previousRoot(signing *x509.Certificate) (*x509.Certificate, crypto.Signer) {
	certPath, keyPath := a.path(PreviousCertFile), a.path(PreviousKeyFile)
	if ok, _ := exists(keyPath); !ok {
		return nil, nil
	}
	prev, key, err := a.loadRoot(certPath, keyPath)
	if err != nil || prev.Equal(signing) {
		return nil, nil
	}
	return prev, key
}

// loadRoot reads and checks a self-signed root and its key.
func (a *Authority) loadRoot(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := readCertificates(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: load root: %w", err)
	}
	key, err := readPrivateKey(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: load root key: %w", err)
	}
	root := certs[0]
	if err := validateCA(root, key, a.cfg.Clock()); err != nil {
		return nil, nil, fmt.Errorf("ca: root in %s: %w", certPath, err)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, nil, fmt.Errorf("ca: root in %s is not self-signed: %w", certPath, err)
	}
	return root, key, nil
}

// optionalRoot reads the root certificate in name if the file exists.
func (a *Authority) optionalRoot(name string) (*x509.Certificate, error) {
	certs, err := readCertificates(a.path(name))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	c := certs[0]
	if !c.IsCA || c.CheckSignatureFrom(c) != nil {
		return nil, fmt.Errorf("ca: %s is not a self-signed CA", name)
	}
	if err := checkValidity(c, a.cfg.Clock()); err != nil {
		return nil, fmt.Errorf("ca: %s: %w", name, err)
	}
	return c, nil
}

// createRoot makes a new self-signed root and writes it to certPath and its
// key (0600) to keyPath.
func (a *Authority) createRoot(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	root, key, err := newSelfSignedRoot(a.cfg)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := encodePrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: encode root key: %w", err)
	}
	// Key first: a crash between the two writes leaves a key without a cert,
	// which the next start reports instead of trusting a cert without a key.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("ca: write root key: %w", err)
	}
	if err := writeFileAtomic(certPath, pemcert.Encode(root), 0o644); err != nil {
		return nil, nil, fmt.Errorf("ca: write root: %w", err)
	}
	return root, key, nil
}

func newKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}
