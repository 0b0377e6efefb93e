package pemcert

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// blockType is the PEM type of an X.509 certificate (RFC 7468).
const blockType = "CERTIFICATE"

// Encode returns certs as concatenated CERTIFICATE blocks, in order: a chain
// stays leaf first, a bundle keeps its roots' order. No certificates give
// no bytes.
func Encode(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: c.Raw})...)
	}
	return out
}

// Parse returns the certificates of every CERTIFICATE block of data, in
// order. Blocks of other types (a private key in the same file) are skipped
// and never echoed in an error. It fails on a block that is not a valid
// certificate, naming its 1-based index, and when data holds no certificate.
// Parse does not bound data: callers read it through a size limit.
func Parse(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != blockType {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// ParseStrict returns the certificates of data, which must be one to max
// CERTIFICATE blocks and nothing else: a block of another type is an error,
// as is anything but whitespace after the last block. Like encoding/pem, it
// passes over text before a block. It stops at the first certificate past
// max, without parsing it.
func ParseStrict(data []byte, max int) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != blockType {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		if len(out) >= max {
			return nil, fmt.Errorf("more than %d certificates", max)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out, data = append(out, c), rest
	}
	if len(bytes.TrimSpace(data)) != 0 || len(out) == 0 {
		return nil, errors.New("not PEM certificates")
	}
	return out, nil
}
