package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrInvalidCSR reports a certificate request the CA will not sign: bad
// encoding or signature, an unsupported key, or a request for a CA. The CSR
// service maps it to codes.InvalidArgument.
var ErrInvalidCSR = errors.New("invalid certificate request")

// maxBackdate bounds how far a leaf's NotBefore is set into the past to
// tolerate clock skew between the CA and the peers that verify the leaf.
// Ten minutes covers the few minutes machines without working time
// synchronisation drift apart (a CA 5 minutes ahead of its proxies still
// issues 1 h certificates they accept at once); more would only lengthen
// the life of a certificate nobody held before it was issued.
const maxBackdate = 10 * time.Minute

// Sign issues a workload certificate for id with the public key of csr and
// returns the chain leaf, signing CA, intermediates, root.
//
// The CSR only contributes its public key: its subject, SANs and extensions
// are ignored, and the leaf's only SAN is the URI id, which the caller must
// have derived from authentication. The leaf is not a CA, has key usage
// digital signature (plus key encipherment for RSA keys) and extended key
// usage server and client auth. ttl 0 means Config.DefaultTTL; any ttl is
// capped by Config.MaxTTL. The leaf lies within the validity of every
// certificate of the signing chain: Sign cuts it at the chain's expiry, and
// refuses with ErrCAExpired or ErrCANotYetValid when the chain is not valid
// now or too little of it is left (see MinLeafTTL).
func (a *Authority) Sign(csr *x509.CertificateRequest, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	is, err := a.Issue(csr, id, ttl)
	if err != nil {
		return nil, err
	}
	return is.Chain, nil
}

// Issued is the result of an issuance: the chain and the trust bundle of the
// same signing state, so a caller never pairs a leaf with a bundle from
// before or after a rotation.
type Issued struct {
	// Chain is the leaf, the signing CA, intermediates, and the root last.
	Chain []*x509.Certificate
	// Bundle is every root peers must trust now (during a root rotation,
	// more than one).
	Bundle []*x509.Certificate
	// Truncated reports a leaf that ends before the lifetime asked for,
	// at the signing chain's expiry (see MinLeafTTL).
	Truncated bool
}

// Intermediates returns Chain without the leaf and without a root that is
// in Bundle: what a TLS peer sends after its leaf.
func (is *Issued) Intermediates() []*x509.Certificate {
	chain := is.Chain[1:]
	if n := len(chain); n > 0 && containsCert(is.Bundle, chain[n-1]) {
		chain = chain[:n-1]
	}
	return chain
}

// Issue is Sign returning the bundle of the signing state as well.
func (a *Authority) Issue(csr *x509.CertificateRequest, id spiffeid.ID, ttl time.Duration) (*Issued, error) {
	if id.IsZero() {
		return nil, errors.New("ca: sign: empty SPIFFE ID")
	}
	if !id.MemberOf(a.cfg.TrustDomain) {
		return nil, fmt.Errorf("ca: sign for %s: not in trust domain %s", id, a.cfg.TrustDomain)
	}
	if err := checkCSR(csr); err != nil {
		return nil, fmt.Errorf("ca: sign for %s: %w", id, err)
	}
	if ttl < 0 {
		return nil, fmt.Errorf("ca: sign for %s: negative lifetime %s", id, ttl)
	}
	if ttl == 0 {
		ttl = a.cfg.DefaultTTL
	}
	ttl = min(ttl, a.cfg.MaxTTL)

	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("ca: sign for %s: %w", id, err)
	}
	st := a.state.Load()
	if st.leaves == nil {
		return nil, fmt.Errorf("ca: sign for %s: %w", id, st.leavesErr)
	}
	l := lifetimeOf(st.chain)
	notBefore, notAfter, truncated, err := leafValidity(a.cfg.Clock(), ttl, l)
	if err != nil {
		return nil, fmt.Errorf("ca: sign for %s: %w", id, err)
	}
	leaf, err := st.leaves.issue(leafTemplate{serial: serial, notBefore: notBefore, notAfter: notAfter, pub: csr.PublicKey, rawKey: csr.RawSubjectPublicKeyInfo, id: id}, l)
	if err != nil {
		return nil, fmt.Errorf("ca: sign for %s: %w", id, err)
	}
	chain := make([]*x509.Certificate, 0, 1+len(st.chain))
	chain = append(append(chain, leaf), st.chain...)
	return &Issued{Chain: chain, Bundle: st.roots, Truncated: truncated}, nil
}

// checkCSR refuses requests the CA never signs whatever the identity.
func checkCSR(csr *x509.CertificateRequest) error {
	if csr == nil {
		return fmt.Errorf("%w: missing", ErrInvalidCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: bad signature: %v", ErrInvalidCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	isCA, err := requestsCA(csr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	if isCA {
		return fmt.Errorf("%w: requests a CA certificate (basic constraints CA:TRUE)", ErrInvalidCSR)
	}
	return nil
}

// checkPublicKey accepts the keys TLS peers in the mesh can all use.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > 4096 {
			return fmt.Errorf("unsupported RSA key size %d (want 2048 to 4096)", bits)
		}
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
	return nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// backdate is how far before "now" a certificate of lifetime ttl starts:
// a tenth of the lifetime, at most maxBackdate, so short test lifetimes
// keep most of their span in the future. A lifetime of an hour or more
// thus tolerates 6 to 10 minutes of CA clock ahead of its peers; a 10 s
// lifetime tolerates one second, and skew beyond that fails closed (peers
// refuse the certificate as not yet valid, the agent keeps its old one).
func backdate(ttl time.Duration) time.Duration {
	return min(ttl/10, maxBackdate)
}
