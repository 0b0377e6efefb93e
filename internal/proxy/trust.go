package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// trustBundles is the x509bundle.Source of every TLS handshake the proxy
// verifies a peer in. It gives the Certs bundle for the mesh trust domain
// and, under Istio's trust-domain migration semantics, the same bundle for
// each trust domain alias of the configuration in force: a certificate
// naming spiffe://old.example/... in a mesh that moved to new.example with
// old.example as an alias is issued by the mesh's own CA, so it must chain
// to the mesh's roots and to nothing else. The aliases are read from the
// state at each handshake, so an Apply that changes them governs the next
// handshake; established connections are not re-examined.
type trustBundles struct{ p *Proxy }

// GetX509BundleForTrustDomain returns the bundle peers in td are verified
// against. Trust domains that are neither the mesh's nor an alias are left
// to Certs (which knows no other today, so they fail closed).
func (b trustBundles) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	certs := b.p.cfg.Certs
	if td == b.p.td {
		return certs.GetX509BundleForTrustDomain(td)
	}
	st := b.p.state.Load()
	if st == nil || !st.trusts(td) {
		return certs.GetX509BundleForTrustDomain(td)
	}
	mesh, err := certs.GetX509BundleForTrustDomain(b.p.td)
	if err != nil {
		return nil, fmt.Errorf("proxy: bundle for alias %s of %s: %w", td, b.p.td, err)
	}
	// Named for td, as go-spiffe's verifiers expect of a bundle for td.
	return x509bundle.FromX509Authorities(td, mesh.X509Authorities()), nil
}

// authorizeServer returns the secure-naming check of a client handshake
// with a server that must prove want. The server passes when it presents
// want itself, or, when want is in a trust domain of the mesh (its own or
// an alias), the same workload path in another trust domain of the mesh:
// Istio treats an identity and its aliases as one for secure naming, so an
// endpoint registered as spiffe://new.example/ns/a/sa/b may still serve a
// certificate for spiffe://old.example/ns/a/sa/b during a migration (and
// the other way round). Which trust domains count is read from the state
// at the handshake.
func (p *Proxy) authorizeServer(want spiffeid.ID) tlsconfig.Authorizer {
	return func(got spiffeid.ID, _ [][]*x509.Certificate) error {
		if got == want {
			return nil
		}
		if got.Path() == want.Path() {
			st := p.state.Load()
			if st != nil && st.trusts(want.TrustDomain()) && st.trusts(got.TrustDomain()) {
				return nil
			}
		}
		return fmt.Errorf("secure naming: server is %s, want %s", got, want)
	}
}

// meshClientTLS is the TLS configuration of a client handshake with a
// mesh endpoint that must prove id, offering alpn: the workload's
// certificate (read at each handshake, so rotation needs nothing here),
// the mesh's trust bundles and aliases, secure naming (authorizeServer),
// verification at the proxy's clock, TLS 1.3 as between proxies.
func (p *Proxy) meshClientTLS(id spiffeid.ID, alpn ...string) *tls.Config {
	authorize := p.authorizeServer(id)
	conf := tlsconfig.MTLSClientConfig(p.cfg.Certs, trustBundles{p}, authorize)
	p.verifyAtProxyTime(conf, authorize)
	conf.MinVersion = tls.VersionTLS13
	conf.NextProtos = alpn
	return conf
}

// verifyAtProxyTime replaces go-spiffe's peer verification in conf (one of
// its mTLS configurations, which verify against the machine's clock) with
// the same checks at Config.PeerClock: chain to trustBundles, SPIFFE ID,
// then authorize. With the machine's clock this changes nothing; a proxy
// run with a clock offset (`zmesh proxy --clock-offset`, a test hook for
// skew) judges its peers' certificates by its own notion of now, as a
// machine whose clock is off would.
func (p *Proxy) verifyAtProxyTime(conf *tls.Config, authorize tlsconfig.Authorizer) {
	conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		id, chains, err := x509svid.ParseAndVerify(raw, trustBundles{p}, x509svid.WithTime(p.peerNow()))
		if err != nil {
			return err
		}
		return authorize(id, chains)
	}
	// Go's own verification is off in these configurations
	// (InsecureSkipVerify, ClientAuth RequireAnyClientCert); Time still
	// governs session ticket ages.
	conf.Time = p.peerNow
}

// peerNow is the time peers' certificates are judged at.
func (p *Proxy) peerNow() time.Time {
	if p.cfg.PeerClock != nil {
		return p.cfg.PeerClock()
	}
	return time.Now()
}

var _ x509bundle.Source = trustBundles{}
