package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// Material is a CA's signing material as PEM bytes in Istio's layout: the
// files of a cacerts data dir, or the keys of the Kubernetes Secrets
// istio-ca-secret and cacerts (ca-cert.pem, ca-key.pem, cert-chain.pem,
// root-cert.pem). It is how a CA kept outside a data dir reaches New and
// SetMaterial; the data dir's cacerts files go through the same parser, so
// both are checked alike.
type Material struct {
	// CACert is ca-cert.pem: the certificate that signs leaves.
	CACert []byte
	// CAKey is ca-key.pem: CACert's private key (PKCS#8, SEC 1 or PKCS#1).
	CAKey []byte
	// CertChain is cert-chain.pem: CACert up to the root. It may be empty
	// when CACert is itself a root in RootCert (Istio's self-signed
	// istio-ca-secret leaves it empty).
	CertChain []byte
	// RootCert is root-cert.pem: the trust bundle, one or more roots.
	RootCert []byte
	// PluggedIn marks an operator's cacerts, as opposed to a root the CA
	// made itself; Authority.PluggedIn reports it.
	PluggedIn bool
}

// ParseMaterial checks m as the CA would sign with it at time now, without
// building an Authority: for a caller that must refuse bad material before
// storing it. Errors name the key (ca-cert.pem, …), never its contents.
func ParseMaterial(m Material, now time.Time) error {
	_, err := parseMaterial(m, now)
	return err
}

// parseMaterial turns m into a signing state: ca-cert.pem must be a CA valid
// at now whose key is ca-key.pem, root-cert.pem only CAs, and ca-cert.pem,
// cert-chain.pem and a root must form a chain that verifies at now.
func parseMaterial(m Material, now time.Time) (*signingState, error) {
	caCerts, err := parseCertsNamed(CACertFile, m.CACert)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(CAKeyFile, m.CAKey)
	if err != nil {
		return nil, err
	}
	var chainFile []*x509.Certificate
	if len(bytes.TrimSpace(m.CertChain)) > 0 {
		if chainFile, err = parseCertsNamed(CertChainFile, m.CertChain); err != nil {
			return nil, err
		}
	}
	roots, err := parseCertsNamed(RootCertFile, m.RootCert)
	if err != nil {
		return nil, err
	}
	caCert := caCerts[0]
	if err := validateCA(caCert, key, now); err != nil {
		return nil, fmt.Errorf("%s: %w", CACertFile, err)
	}
	for i, r := range roots {
		if !r.IsCA {
			return nil, fmt.Errorf("%s: certificate %d is not a CA", RootCertFile, i+1)
		}
	}
	chain, err := buildChain(caCert, chainFile, roots)
	if err != nil {
		return nil, err
	}
	if err := verifyChain(chain, roots, now); err != nil {
		return nil, err
	}
	return newState(key, caCert, chain, roots, m.PluggedIn), nil
}

func parseCertsNamed(name string, data []byte) ([]*x509.Certificate, error) {
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxPEMFile)
	}
	certs, err := pemcert.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return certs, nil
}

// parsePrivateKey returns the first private key block of data (PKCS#8,
// SEC 1 or PKCS#1). Errors carry name, never the contents.
func parsePrivateKey(name string, data []byte) (crypto.Signer, error) {
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxPEMFile)
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM private key found", name)
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: parse %s: invalid key encoding", name, block.Type)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("%s: unsupported key type %T", name, key)
		}
	}
}

// NewRootMaterial makes a new self-signed root for cfg (its KeyType,
// RootTTL, TrustDomain and Clock) and returns it as Material laid out as
// Istio's istio-ca-secret: the root is both ca-cert.pem and root-cert.pem,
// cert-chain.pem is empty. Nothing is written anywhere: the caller stores
// it, and must store it only once (see package ca/kubesecret).
func NewRootMaterial(cfg Config) (Material, error) {
	if err := cfg.validate(false); err != nil {
		return Material{}, err
	}
	root, key, err := newSelfSignedRoot(cfg.withDefaults())
	if err != nil {
		return Material{}, err
	}
	keyPEM, err := encodePrivateKey(key)
	if err != nil {
		return Material{}, fmt.Errorf("ca: encode root key: %w", err)
	}
	certPEM := pemcert.Encode(root)
	return Material{CACert: certPEM, CAKey: keyPEM, RootCert: certPEM}, nil
}

// newSelfSignedRoot makes a root certificate and key for cfg, which must
// have its defaults filled in.
func newSelfSignedRoot(cfg Config) (*x509.Certificate, crypto.Signer, error) {
	key, err := newKey(cfg.KeyType)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: generate root key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	now := cfg.Clock()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{cfg.TrustDomain.Name()},
			CommonName:   "zmesh root CA",
			// Tells the roots of a rotation apart by name, for people.
			SerialNumber: serial.Text(16)[:8],
		},
		NotBefore:             now.Add(-backdate(cfg.RootTTL)),
		NotAfter:              now.Add(cfg.RootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{cfg.TrustDomain.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: create root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: parse new root: %w", err)
	}
	return root, key, nil
}

// NewTokenKey returns a fresh random bootstrap-token key, for a CA that
// keeps its key outside a data dir.
func NewTokenKey() ([]byte, error) {
	key := make([]byte, tokenKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("ca: generate token key: %w", err)
	}
	return key, nil
}

// errNoDataDir is returned by the data-dir operations (Reload, Rotate) of an
// Authority made by New.
var errNoDataDir = errors.New("ca: this CA has no data dir; its material changes only through SetMaterial")

// New returns an Authority that signs with m, held in memory rather than in
// a data dir: for a control plane whose CA material lives elsewhere (in
// Kubernetes Secrets, see package ca/kubesecret). cfg.DataDir must be
// empty. tokenKey is the bootstrap-token key (see NewTokenKey), shared by
// every replica that must accept the same tokens. Reload and Rotate are
// errors on such an Authority; SetMaterial replaces its material.
func New(cfg Config, m Material, tokenKey []byte) (*Authority, error) {
	if cfg.DataDir != "" {
		return nil, errors.New("ca: New takes its material in memory; leave DataDir empty or use Load")
	}
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	st, err := parseMaterial(m, cfg.Clock())
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	a := &Authority{cfg: cfg, updated: make(chan struct{})}
	a.state.Store(st)
	if a.tokens, err = NewTokenVerifier(tokenKey, cfg.TrustDomain, cfg.Clock); err != nil {
		return nil, err
	}
	return a, nil
}

// SetMaterial signs with m from now on if it differs from the current
// material, and reports whether it did. Material that does not parse or
// verify is an error and the Authority keeps what it had, as Reload does.
func (a *Authority) SetMaterial(m Material) (bool, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	st, err := parseMaterial(m, a.cfg.Clock())
	if err != nil {
		return false, fmt.Errorf("ca: %w", err)
	}
	return a.setState(st), nil
}

// setState stores st unless it equals the current state, and wakes those
// waiting on Updated. The caller holds reloadMu.
func (a *Authority) setState(st *signingState) bool {
	if st.equal(a.state.Load()) {
		return false
	}
	a.state.Store(st)
	a.updMu.Lock()
	close(a.updated)
	a.updated = make(chan struct{})
	a.updMu.Unlock()
	return true
}
