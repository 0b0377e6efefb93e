package proxy

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// maxCRLs bounds the revocation lists one caCrl file may hold.
const maxCRLs = 64

// parseCRLs reads certificate revocation lists: PEM ("X509 CRL" blocks,
// other blocks skipped) or one DER list. None is an error: a caCrl that
// revokes nothing because it could not be read must not pass for one
// that revokes nothing because nothing is revoked.
func parseCRLs(data []byte) ([]*x509.RevocationList, error) {
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
		if len(out) == maxCRLs {
			return nil, fmt.Errorf("more than %d CRLs", maxCRLs)
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

// errRevoked refuses a client certificate that a CRL lists.
var errRevoked = errors.New("revoked")

// checkRevocation decides whether a client's verified chains pass crls,
// Envoy's semantics for a validation context with a CRL (which Istio's
// caCrl becomes): every certificate of the chain, its CA's included,
// needs a CRL of its issuer (issuer name and signature) that is current
// and does not list it. A CA without a CRL fails the chain rather than
// pass unchecked; one chain that passes is enough. A pure function of
// its inputs: the caller reads the files and the clock.
func checkRevocation(chains [][]*x509.Certificate, crls []*x509.RevocationList, now time.Time) error {
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
					return fmt.Errorf("certificate %q (serial %s): %w by %q", c.Subject, c.SerialNumber, errRevoked, issuer.Subject)
				}
			}
		}
		if !covered {
			return fmt.Errorf("no CRL of %q, the issuer of %q", issuer.Subject, c.Subject)
		}
	}
	return nil
}
