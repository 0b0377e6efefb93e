package kubesource

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/zmesh/zmesh/internal/crl"
	"github.com/zmesh/zmesh/internal/xds"
)

// Keys of a gateway credential Secret, as Istio reads them: a
// kubernetes.io/tls Secret (tls.crt, tls.key, and optionally ca.crt and
// ca.crl) or a generic one (cert, key, cacert, crl).
const (
	keyTLSCert    = "tls.crt"
	keyTLSKey     = "tls.key"
	keyTLSCA      = "ca.crt"
	keyTLSCRL     = "ca.crl"
	keyGenericCrt = "cert"
	keyGenericKey = "key"
	keyGenericCA  = "cacert"
	keyGenericCRL = "crl"
)

// maxCredentialBytes bounds what one credential Secret may hold. The API
// server caps a Secret at 1 MiB; a certificate chain, its key and a CA
// bundle fit in far less.
const maxCredentialBytes = 256 << 10

// ParseCredential turns the data of Secret ns/name into a gateway
// credential for use. A CACredential (NAME-cacert) is read for its CA
// certificates only (cacert or ca.crt) and their CRL (crl or ca.crl). A ServerCredential must hold a
// certificate chain and the matching private key (cert/key or
// tls.crt/tls.key, Istio's two layouts), and may hold CA certificates
// (and a CRL) for MUTUAL servers. A ClientCredential (a DestinationRule's) may hold
// either or both. Everything present is checked: a Secret that is not a
// usable credential is refused whole, so that no gateway is ever sent
// half of one.
func ParseCredential(ns, name string, data map[string][]byte, use xds.CredentialUse) (xds.Credential, error) {
	c := xds.Credential{Namespace: ns, Name: name}
	total := 0
	for _, v := range data {
		total += len(v)
	}
	if total > maxCredentialBytes {
		return c, fmt.Errorf("%d bytes of data, at most %d", total, maxCredentialBytes)
	}
	ca := data[keyGenericCA]
	if len(ca) == 0 {
		ca = data[keyTLSCA]
	}
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return c, errors.New("its CA certificates (cacert or ca.crt) hold no PEM certificate")
		}
		c.CA = ca
	}
	// The CRL of a MUTUAL server's clients (Istio's ca.crl or crl),
	// checked here so that a gateway is never sent one it cannot read; a
	// server then refuses the clients it lists. It is kept whatever the
	// use: a name both a server and a DestinationRule use is read as a
	// ClientCredential, and its server must not lose its CRL (TLS
	// origination does not use one).
	list := data[keyGenericCRL]
	if len(list) == 0 {
		list = data[keyTLSCRL]
	}
	if len(list) > 0 {
		if len(c.CA) == 0 {
			return c, errors.New("a CRL (crl or ca.crl) without CA certificates (cacert or ca.crt)")
		}
		if _, err := crl.Parse(list); err != nil {
			return c, fmt.Errorf("its CRL (crl or ca.crl): %w", err)
		}
		c.CRL = list
	}
	if use == xds.CACredential {
		if len(c.CA) == 0 {
			return c, fmt.Errorf("no CA certificates: want key cacert or ca.crt, found %s", keyList(data))
		}
		return c, nil
	}
	switch {
	case len(data[keyGenericCrt]) > 0 && len(data[keyGenericKey]) > 0:
		c.Cert, c.PrivateKey = data[keyGenericCrt], data[keyGenericKey]
	case len(data[keyTLSCert]) > 0 && len(data[keyTLSKey]) > 0:
		c.Cert, c.PrivateKey = data[keyTLSCert], data[keyTLSKey]
	case use == xds.ClientCredential && len(c.CA) > 0:
		return c, nil
	default:
		return c, fmt.Errorf("no certificate and key: want keys tls.crt and tls.key, or cert and key; found %s", keyList(data))
	}
	if _, err := tls.X509KeyPair(c.Cert, c.PrivateKey); err != nil {
		// The error of crypto/tls names no key material.
		return xds.Credential{Namespace: ns, Name: name}, fmt.Errorf("certificate and key: %w", err)
	}
	return c, nil
}

// keyList names the keys of data (never their values), for errors.
func keyList(data map[string][]byte) string {
	if len(data) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}
