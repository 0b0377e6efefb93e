package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
)

// MaxCSRSize bounds a PEM certificate request; real ones are under 2 KiB.
const MaxCSRSize = 64 << 10

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// ParseCSR decodes one PEM "CERTIFICATE REQUEST" and checks it as Sign does
// (signature, key type, no CA request). Every failure wraps ErrInvalidCSR.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	csr, err := DecodeCSR(data)
	if err != nil {
		return nil, err
	}
	if err := checkCSR(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

// DecodeCSR is ParseCSR without the checks, for a caller that passes the
// request straight to Sign or Issue, which check it: the signature check is
// most of a CSR's cost, and is done once. Every failure wraps ErrInvalidCSR.
func DecodeCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidCSR, MaxCSRSize)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrInvalidCSR)
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrInvalidCSR, block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the PEM block", ErrInvalidCSR)
	}
	csr, err := parseRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	return csr, nil
}

// requestsCA reports whether csr carries a basic constraints extension with
// CA:TRUE. Sign ignores extensions anyway; refusing such a request makes a
// confused or hostile caller visible instead of quietly downgrading it.
func requestsCA(csr *x509.CertificateRequest) (bool, error) {
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		rest, err := asn1.Unmarshal(ext.Value, &bc)
		if err != nil || len(rest) != 0 {
			return false, fmt.Errorf("malformed basic constraints extension")
		}
		if bc.IsCA {
			return true, nil
		}
	}
	return false, nil
}
