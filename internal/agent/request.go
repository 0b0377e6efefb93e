package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// maxChain bounds the certificates accepted in a CA response.
const maxChain = 10

// Authentication methods, as logged.
const (
	authCert  = "certificate"
	authToken = "token"
)

// request makes a fresh key and has the CA sign it. It authenticates with the
// current certificate while that is valid, else (or if that is refused) with
// the bootstrap token. It returns the SVID, the trust bundle the CA sent (nil
// if none), and the method that worked.
func (a *Agent) request(ctx context.Context) (*x509svid.SVID, []*x509.Certificate, string, error) {
	key, err := newKey(a.cfg.KeyType)
	if err != nil {
		return nil, nil, "", fmt.Errorf("agent: generate %s key: %w", a.cfg.KeyType, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{a.id.URL()}}, key)
	if err != nil {
		return nil, nil, "", fmt.Errorf("agent: create CSR: %w", err)
	}
	req := &pb.IstioCertificateRequest{
		Csr:              string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		ValidityDuration: int64(a.cfg.RequestedTTL.Seconds()),
	}

	var errs []error
	if cert := a.validCertificate(); cert != nil {
		chain, err := a.call(ctx, req, cert, "")
		if err == nil {
			return a.accept(chain, key, authCert)
		}
		errs = append(errs, fmt.Errorf("with certificate: %w", err))
		if ctx.Err() != nil || a.cfg.Token == nil {
			return nil, nil, "", fmt.Errorf("agent: %w", errors.Join(errs...))
		}
	}
	if a.cfg.Token == nil {
		return nil, nil, "", errors.New("agent: no valid certificate and no bootstrap token")
	}
	token, err := a.cfg.Token()
	if err != nil {
		errs = append(errs, fmt.Errorf("read bootstrap token: %w", err))
		return nil, nil, "", fmt.Errorf("agent: %w", errors.Join(errs...))
	}
	chain, err := a.call(ctx, req, nil, token)
	if err != nil {
		errs = append(errs, fmt.Errorf("with token: %w", err))
		return nil, nil, "", fmt.Errorf("agent: %w", errors.Join(errs...))
	}
	return a.accept(chain, key, authToken)
}

// validCertificate returns the current SVID as a TLS client certificate if it
// is valid now.
func (a *Agent) validCertificate() *tls.Certificate {
	c := a.currentCertificate()
	if c == nil || !validAt(c.Leaf, a.cfg.Clock()) {
		return nil
	}
	return c
}

// currentCertificate returns the current SVID as a TLS client certificate,
// valid now or not; nil before the first.
func (a *Agent) currentCertificate() *tls.Certificate {
	s := a.svid.Load()
	if s == nil {
		return nil
	}
	leaf := s.Certificates[0]
	c := &tls.Certificate{PrivateKey: s.PrivateKey, Leaf: leaf}
	for _, cert := range s.Certificates {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// call makes one CreateCertificate over a fresh connection: a connection
// kept open would keep authenticating with the certificate of its handshake.
func (a *Agent) call(ctx context.Context, req *pb.IstioCertificateRequest, cert *tls.Certificate, token string) ([]string, error) {
	roots := x509.NewCertPool()
	for _, r := range a.bundle.Load().X509Authorities() {
		roots.AddCert(r)
	}
	tlsCfg := &tls.Config{
		RootCAs:    roots,
		ServerName: a.cfg.CAServerName,
		MinVersion: tls.VersionTLS12,
		Time:       a.cfg.Clock,
	}
	if cert != nil {
		tlsCfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(a.cfg.CAAddress, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetCertChain(), nil
}

// accept checks a CA response before the agent serves it: the leaf must name
// exactly the expected identity, hold our key, and verify up to the bundle
// the response carries (or, from a CA that sends none, the agent's bundle).
//
// The response is laid out as Istio's CA does (see package ca/csr): leaf,
// intermediates, and last the trust bundle as one element that may hold
// several PEM roots. A last element made only of self-signed CAs is that
// bundle; it is returned so the agent adopts it, which is how proxies learn
// a new root, and lose a retired one, during a root rotation. The bundle is
// trusted because it came from the control plane whose serving certificate
// the agent verified with its current bundle.
func (a *Agent) accept(pemChain []string, key crypto.Signer, method string) (*x509svid.SVID, []*x509.Certificate, string, error) {
	if len(pemChain) == 0 || len(pemChain) > maxChain {
		return nil, nil, "", fmt.Errorf("agent: CA returned %d certificates", len(pemChain))
	}
	var certs []*x509.Certificate
	var roots []*x509.Certificate
	for i, p := range pemChain {
		parsed, err := pemcert.ParseStrict([]byte(p), maxChain)
		if err != nil {
			return nil, nil, "", fmt.Errorf("agent: CA response element %d: %w", i, err)
		}
		last := i == len(pemChain)-1
		if last && i > 0 && allSelfSigned(parsed) {
			roots = parsed
			break
		}
		if len(parsed) != 1 {
			return nil, nil, "", fmt.Errorf("agent: CA response element %d holds %d certificates, want 1", i, len(parsed))
		}
		certs = append(certs, parsed[0])
	}
	leaf := certs[0]
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		return nil, nil, "", errors.New("agent: CA returned a certificate for another key")
	}
	bundle := a.bundle.Load()
	if len(roots) > 0 {
		bundle = x509bundle.FromX509Authorities(a.cfg.TrustDomain, roots)
	}
	now := a.cfg.Clock()
	id, _, err := x509svid.Verify(certs, bundle, x509svid.WithTime(now))
	var skew error
	if err != nil && !validAt(leaf, now) {
		// Not valid now: if it verifies at the middle of its own validity,
		// the chain is sound and only the clocks disagree.
		mid := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
		if id, _, err = x509svid.Verify(certs, bundle, x509svid.WithTime(mid)); err == nil {
			skew = &SkewError{NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Now: now}
		}
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("agent: CA returned an invalid certificate: %w", err)
	}
	if id != a.id {
		return nil, nil, "", fmt.Errorf("agent: CA returned a certificate for %s, want %s", id, a.id)
	}
	// With a skew, the SVID comes back with the error: rotate decides
	// whether to keep the current certificate or install this one.
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}, roots, method, skew
}

func allSelfSigned(certs []*x509.Certificate) bool {
	for _, c := range certs {
		if !isSelfSigned(c) {
			return false
		}
	}
	return true
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.IsCA && string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// newKey makes a private key of type kt; it never leaves the process.
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
