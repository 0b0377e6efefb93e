// Package crl reads certificate revocation lists and decides whether a
// verified certificate chain passes them. It serves the gateway's
// MUTUAL servers (Istio's caCrl, and a credential's ca.crl) and the
// control plane's check of a Secret's CRL: one parser, one decision, no
// I/O (the caller reads the files and the clock).
package crl

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// maxLists bounds the revocation lists one caCrl file may hold.
const maxLists = 64

// Parse reads certificate revocation lists: PEM ("X509 CRL" blocks,
// other blocks skipped) or one DER list. None is an error: a caCrl that
// revokes nothing because it could not be read must not pass for one
// that revokes nothing because nothing is revoked.
func Parse(data []byte) ([]*x509.RevocationList, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("not a CRL: %w", err)
		}
		return []*x509.RevocationList{crl}, nil
	}
	var out []*x509.RevocationList
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			continue
		}
		if len(out) == maxLists {
			return nil, fmt.Errorf("more than %d CRLs", maxLists)
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", len(out)+1, err)
		}
		out = append(out, crl)
	}
	if len(out) == 0 {
		return nil, errors.New("no X509 CRL block")
	}
	return out, nil
}

// ErrRevoked is wrapped by Check's error when a CRL lists a certificate
// of the chain.
var ErrRevoked = errors.New("revoked")

// Check decides whether a peer's verified chains pass crls,
// Envoy's semantics for a validation context with a CRL (which Istio's
// caCrl becomes): every certificate of the chain, its CA's included,
// needs a CRL of its issuer (issuer name and signature) that is current
// and does not list it. A CA without a CRL fails the chain rather than
// pass unchecked; one chain that passes is enough. A pure function of
// its inputs: the caller reads the files and the clock.
func Check(chains [][]*x509.Certificate, crls []*x509.RevocationList, now time.Time) error {
	if len(chains) == 0 {
		return errors.New("no verified chain")
	}
	var err error
	for _, chain := range chains {
		if err = checkChain(chain, crls, now); err == nil {
			return nil
		}
	}
	return err
}

func checkChain(chain []*x509.Certificate, crls []*x509.RevocationList, now time.Time) error {
	for i, c := range chain {
		issuer := c // the trust anchor is its own issuer
		if i+1 < len(chain) {
			issuer = chain[i+1]
		}
		covered := false
		for _, crl := range crls {
			if !bytes.Equal(crl.RawIssuer, c.RawIssuer) || crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
				return fmt.Errorf("the CRL of %q expired at %s", issuer.Subject, crl.NextUpdate.UTC().Format(time.RFC3339))
			}
			covered = true
			for _, r := range crl.RevokedCertificateEntries {
				if r.SerialNumber != nil && r.SerialNumber.Cmp(c.SerialNumber) == 0 {
					return fmt.Errorf("certificate %q (serial %s): %w by %q", c.Subject, c.SerialNumber, ErrRevoked, issuer.Subject)
				}
			}
		}
		if !covered {
			return fmt.Errorf("no CRL of %q, the issuer of %q", issuer.Subject, c.Subject)
		}
	}
	return nil
}
