package sds

import (
	"crypto/sha256"
	"encoding/hex"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// Istio's resource names for the workload identity.
const (
	// DefaultName is the workload certificate: chain and private key.
	DefaultName = "default"
	// RootCAName is the trust bundle as a validation context.
	RootCAName = "ROOTCA"
)

// TypeURL is the xDS type of every resource this server sends.
const TypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// TLSCertificate returns a secret holding a certificate chain and its
// private key, both PEM, inline.
func TLSCertificate(name string, chainPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(chainPEM),
			PrivateKey:       inline(keyPEM),
		}},
	}
}

// ValidationContext returns a secret holding trusted CA certificates (PEM),
// inline.
func ValidationContext(name string, rootsPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(rootsPEM),
		}},
	}
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// version is a digest of a secret's content, so an unchanged secret keeps
// its version across restarts and is never pushed twice.
func version(s *tlsv3.Secret) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
