package csr

import (
	"encoding/base64"
	"strings"
)

// certificatePEM returns der as one PEM CERTIFICATE block, byte for byte as
// pem.EncodeToMemory writes it, built in a single allocation: the leaf's
// PEM is made for every issuance, and encoding/pem's buffered writers were
// a few percent of one.
func certificatePEM(der []byte) string {
	const (
		head    = "-----BEGIN CERTIFICATE-----\n"
		tail    = "-----END CERTIFICATE-----\n"
		perLine = 48 // bytes of DER in a 64-character line
	)
	n := base64.StdEncoding.EncodedLen(len(der))
	lines := (len(der) + perLine - 1) / perLine
	var sb strings.Builder
	sb.Grow(len(head) + n + lines + len(tail))
	sb.WriteString(head)
	var line [64]byte
	for i := 0; i < len(der); i += perLine {
		chunk := der[i:min(i+perLine, len(der))]
		m := base64.StdEncoding.EncodedLen(len(chunk))
		base64.StdEncoding.Encode(line[:m], chunk)
		sb.Write(line[:m])
		sb.WriteByte('\n')
	}
	sb.WriteString(tail)
	return sb.String()
}
