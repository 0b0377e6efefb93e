package ca

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// hasPluggedCerts reports whether DataDir holds Istio cacerts. Any of the
// signing files present means the operator meant to plug in a CA, so a
// missing companion is reported by loadPluggedCerts, not ignored.
func hasPluggedCerts(dir string) (bool, error) {
	for _, name := range []string{CACertFile, CAKeyFile, CertChainFile} {
		ok, err := exists(filepath.Join(dir, name))
		if err != nil {
			return false, fmt.Errorf("ca: %w", err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// loadPluggedCerts uses Istio's cacerts files as the signing CA: ca-cert.pem
// (an intermediate, or the root itself) with ca-key.pem, cert-chain.pem from
// ca-cert up to the root, and root-cert.pem the trust bundle. Issued chains
// are leaf, ca-cert, the rest of cert-chain.pem, and the root last.
func (a *Authority) loadPluggedCerts() (*signingState, error) {
	var missing []string
	for _, name := range []string{CACertFile, CAKeyFile, CertChainFile, RootCertFile} {
		ok, err := exists(a.path(name))
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("ca: data dir %s holds Istio cacerts files but lacks %s", a.cfg.DataDir, strings.Join(missing, ", "))
	}

	var m Material
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{CACertFile, &m.CACert}, {CAKeyFile, &m.CAKey}, {CertChainFile, &m.CertChain}, {RootCertFile, &m.RootCert}} {
		b, err := readBounded(a.path(f.name))
		if err != nil {
			return nil, fmt.Errorf("ca: cacerts: %w", err)
		}
		*f.dst = b
	}
	m.PluggedIn = true
	st, err := parseMaterial(m, a.cfg.Clock())
	if err != nil {
		return nil, fmt.Errorf("ca: cacerts: %w", err)
	}
	return st, nil
}

// buildChain returns caCert, the rest of cert-chain.pem, and the root, each
// certificate signed by the next. Istio's cert-chain.pem usually starts with
// ca-cert and ends with the root; either may be missing and is filled in.
func buildChain(caCert *x509.Certificate, file, roots []*x509.Certificate) ([]*x509.Certificate, error) {
	chain := []*x509.Certificate{caCert}
	rest := file
	if len(rest) > 0 && rest[0].Equal(caCert) {
		rest = rest[1:]
	}
	chain = append(chain, rest...)
	last := chain[len(chain)-1]
	if !containsCert(roots, last) {
		root := issuerIn(last, roots)
		if root == nil {
			return nil, fmt.Errorf("%s does not lead to a root in %s (last certificate %q is issued by %q)",
				CertChainFile, RootCertFile, last.Subject, last.Issuer)
		}
		chain = append(chain, root)
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("%s is out of order: %q is not signed by %q: %w",
				CertChainFile, chain[i].Subject, chain[i+1].Subject, err)
		}
	}
	return chain, nil
}

// verifyChain checks the chain with the standard verifier at time now, so
// expiry, path length and name constraints are enforced as a peer would.
func verifyChain(chain, roots []*x509.Certificate, now time.Time) error {
	rootPool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%s does not verify against %s: %w", CACertFile, RootCertFile, err)
	}
	return nil
}

func containsCert(set []*x509.Certificate, c *x509.Certificate) bool {
	for _, s := range set {
		if s.Equal(c) {
			return true
		}
	}
	return false
}

func issuerIn(c *x509.Certificate, candidates []*x509.Certificate) *x509.Certificate {
	for _, r := range candidates {
		if bytes.Equal(c.RawIssuer, r.RawSubject) && c.CheckSignatureFrom(r) == nil {
			return r
		}
	}
	return nil
}
