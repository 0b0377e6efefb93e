package ca

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// checkLeaf checks that leaf, as parsed back from the DER that Issue hands
// out, is what the mesh relies on a workload certificate to be: issued by
// issuer for t's key, named only by t's SPIFFE ID, not a CA, usable for TLS
// client and server authentication and nothing more, and valid from
// t.notBefore to t.notAfter (to the second) within the lifetime l of the
// signing chain. Since leaves are encoded by hand (see leaf.go), this is the
// guard that an encoding slip cannot hand a workload more than its
// identity. It is a pure function.
func checkLeaf(leaf *x509.Certificate, t leafTemplate, issuer *x509.Certificate, l Lifetime) error {
	switch {
	case leaf.Version != 3:
		return fmt.Errorf("version %d, want 3", leaf.Version)
	case t.serial == nil || leaf.SerialNumber.Cmp(t.serial) != 0:
		return errors.New("serial number differs from the one drawn")
	case !bytes.Equal(leaf.RawIssuer, issuer.RawSubject):
		return errors.New("issuer is not the signing certificate's subject")
	case !bytes.Equal(leaf.RawSubject, emptyName):
		return errors.New("subject is not empty")
	case leaf.SignatureAlgorithm == x509.UnknownSignatureAlgorithm:
		return errors.New("unknown signature algorithm")
	case !publicKeysEqual(t.pub, leaf.PublicKey):
		return errors.New("public key is not the request's")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != t.id.String() {
		return fmt.Errorf("URI SANs %v, want only %s", leaf.URIs, t.id)
	}
	if len(leaf.DNSNames)+len(leaf.EmailAddresses)+len(leaf.IPAddresses) != 0 {
		return errors.New("carries names other than the SPIFFE ID")
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA || leaf.MaxPathLen != -1 {
		return errors.New("basic constraints are not CA:FALSE")
	}
	if leaf.KeyUsage != t.keyUsage() {
		return fmt.Errorf("key usage %#x, want %#x", leaf.KeyUsage, t.keyUsage())
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) || len(leaf.UnknownExtKeyUsage) != 0 {
		return fmt.Errorf("extended key usage %v %v, want server and client auth", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage)
	}
	if len(leaf.UnhandledCriticalExtensions) != 0 || len(leaf.PermittedDNSDomains)+len(leaf.PermittedURIDomains)+len(leaf.PermittedIPRanges)+len(leaf.PermittedEmailAddresses) != 0 {
		return errors.New("carries extensions a leaf must not")
	}
	wantExts := 4
	if len(issuer.SubjectKeyId) > 0 && !bytes.Equal(issuer.RawSubject, emptyName) {
		wantExts++
		if !bytes.Equal(leaf.AuthorityKeyId, issuer.SubjectKeyId) {
			return errors.New("authority key ID is not the signing certificate's key ID")
		}
	}
	if len(leaf.Extensions) != wantExts {
		return fmt.Errorf("%d extensions, want %d", len(leaf.Extensions), wantExts)
	}
	nb, na := t.notBefore.Truncate(time.Second), t.notAfter.Truncate(time.Second)
	switch {
	case !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na):
		return fmt.Errorf("validity %s to %s, want %s to %s", leaf.NotBefore, leaf.NotAfter, nb, na)
	case leaf.NotAfter.Before(leaf.NotBefore):
		return errors.New("ends before it starts")
	case leaf.NotBefore.Before(l.NotBefore) || leaf.NotAfter.After(l.NotAfter):
		return fmt.Errorf("validity %s to %s outside the signing chain's %s to %s", leaf.NotBefore, leaf.NotAfter, l.NotBefore, l.NotAfter)
	}
	return nil
}
