package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// ServingTTL is the lifetime of the control plane's serving certificate.
// ServerTLSConfig replaces it at half that lifetime, so a long-running
// control plane never serves an expired one.
const ServingTTL = 7 * 24 * time.Hour

// DefaultServingNames are the names every serving certificate carries: what
// a local agent dials, and the name Istio agents expect of istiod.
var DefaultServingNames = []string{"localhost", "127.0.0.1", "::1", "istiod.istio-system.svc"}

// ServingCertificate issues a fresh certificate for the control plane's own
// TLS port, with a new in-memory ECDSA P-256 key. It chains to Bundle and
// names DefaultServingNames plus hosts (IP literals become IP SANs). The
// returned chain holds the leaf and intermediates, not the root. During a
// root rotation it is signed by the oldest root still in the bundle, not
// by the new signing root, so that agents which have not learnt the new
// root yet can still reach the control plane to learn it.
func (a *Authority) ServingCertificate(hosts ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: serving certificate: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: serving certificate: %w", err)
	}
	var dns []string
	var ips []net.IP
	for _, h := range append(slices.Clone(DefaultServingNames), hosts...) {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	st := a.state.Load()
	issuer, signer, chainTail, lifetime := st.caCert, st.signer, st.intermediates(), lifetimeOf(st.chain)
	if st.servingCA != nil {
		// A root: nothing follows.
		issuer, signer, chainTail, lifetime = st.servingCA, st.servingSigner, nil, lifetimeOf([]*x509.Certificate{st.servingCA})
	}
	notBefore, notAfter, _, err := leafValidity(a.cfg.Clock(), ServingTTL, lifetime)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: serving certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{a.cfg.TrustDomain.Name()}, CommonName: "zmesh control plane"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: serving certificate: %w", err)
	}
	chain := [][]byte{der}
	for _, c := range chainTail {
		chain = append(chain, c.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// intermediates is the issued chain without its self-signed root.
func (st *signingState) intermediates() []*x509.Certificate {
	chain := st.chain
	if n := len(chain); n > 0 && containsCert(st.roots, chain[n-1]) {
		chain = chain[:n-1]
	}
	return chain
}

// ServerTLSConfig returns the TLS configuration of the control plane's gRPC
// port: a serving certificate from a (renewed at half its lifetime, and as
// soon as a root rotation changes the signing CA), client certificates
// verified against the current bundle when given (renewal by mesh
// certificate) but not required (bootstrap by token), TLS 1.2 minimum for
// Istio agents. The CSR service checks the peer certificate again itself, so
// a looser config elsewhere cannot turn into an identity.
func ServerTLSConfig(a *Authority, hosts ...string) (*tls.Config, error) {
	s := &servingCache{a: a, hosts: hosts}
	if _, err := s.get(); err != nil {
		return nil, err
	}
	base := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.get() },
		ClientAuth:     tls.VerifyClientCertIfGiven,
		MinVersion:     tls.VersionTLS12,
		// Client certificates (renewals) are checked against the CA's
		// clock, the one it issued them by, so a CA run with a clock
		// offset (a test hook) is consistent with itself.
		Time: a.cfg.Clock,
	}
	cfg := base.Clone()
	cfg.ClientCAs = a.BundlePool()
	// The bundle changes during a root rotation: each handshake takes the
	// pool of the moment.
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = a.BundlePool()
		return c, nil
	}
	return cfg, nil
}

// servingCache holds the current serving certificate and replaces it once
// half its lifetime has passed.
type servingCache struct {
	a     *Authority
	hosts []string

	mu     sync.Mutex
	cert   *tls.Certificate
	issuer *x509.Certificate // the serving certificate's CA when cert was issued
}

// servingIssuer is the CA that signs serving certificates now.
func (a *Authority) servingIssuer() *x509.Certificate {
	st := a.state.Load()
	if st.servingCA != nil {
		return st.servingCA
	}
	return st.caCert
}

func (s *servingCache) get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.a.cfg.Clock()
	signing := s.a.servingIssuer()
	if c := s.cert; c != nil && s.issuer == signing {
		half := c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) / 2)
		if now.Before(half) {
			return c, nil
		}
	}
	c, err := s.a.ServingCertificate(s.hosts...)
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			return s.cert, nil // keep serving the still-valid one
		}
		return nil, err
	}
	s.cert, s.issuer = &c, signing
	return s.cert, nil
}
