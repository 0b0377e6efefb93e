package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// validateCA checks that cert can sign leaves with key at time now.
func validateCA(cert *x509.Certificate, key crypto.Signer, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("certificate is not a CA (basic constraints CA:TRUE missing)")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("certificate lacks the keyCertSign key usage")
	}
	if err := checkValidity(cert, now); err != nil {
		return err
	}
	if key != nil && !publicKeysEqual(key.Public(), cert.PublicKey) {
		return errors.New("private key does not match the certificate")
	}
	return nil
}

func checkValidity(cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate %q is not valid before %s", cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate %q expired at %s", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// publicKeysEqual compares public keys of any type the standard library knows.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
