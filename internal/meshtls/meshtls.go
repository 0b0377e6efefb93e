// Package meshtls is MeshConfig meshMTLS as zmesh reads it: the least TLS
// version, cipher suites and key-exchange groups of the mutual TLS between
// proxies. Pure: the control plane validates a mesh config with Parse,
// the proxies apply what it returns, and neither imports the other.
package meshtls

import (
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

// Policy is MeshConfig meshMTLS as the proxies apply it to the mutual
// TLS between them, on both sides: the least protocol version, and for
// TLS 1.2 the cipher suites; the key exchange groups for every version.
// The zero value is zmesh's default: TLS 1.3 only, Go's groups.
//
// zmesh's default is stricter than Istio's (whose least version for mesh
// traffic is TLS 1.2): a mesh whose proxies are all zmesh's has no TLS 1.2
// peer to wait for. An operator with such peers (workloads doing mTLS
// without a proxy) sets minProtocolVersion: TLSV1_2.
type Policy struct {
	minVersion uint16 // 0: TLS 1.3
	suites     []uint16
	curves     []tls.CurveID
}

// cipherSuites maps the names Istio and Envoy use (BoringSSL's) to Go's
// suites. Only forward-secret AEAD suites are here: Istio's default list
// also names AES128-GCM-SHA256 and AES256-GCM-SHA384 (RSA key exchange,
// no forward secrecy), which zmesh refuses rather than silently drops.
var cipherSuites = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// curves maps Envoy's ECDH curve names to Go's groups.
var curves = map[string]tls.CurveID{
	"P-256":          tls.CurveP256,
	"P-384":          tls.CurveP384,
	"P-521":          tls.CurveP521,
	"X25519":         tls.X25519,
	"X25519MLKEM768": tls.X25519MLKEM768,
}

// Parse compiles meshMTLS. Anything it cannot honour exactly is an
// error, so that the push is refused and the last good policy stays:
// a cipher list the operator restricted must not quietly widen.
func Parse(c *meshv1alpha1.MeshConfig_TLSConfig) (Policy, error) {
	var tp Policy
	if c == nil {
		return tp, nil
	}
	switch c.GetMinProtocolVersion() {
	case meshv1alpha1.MeshConfig_TLSConfig_TLS_AUTO, meshv1alpha1.MeshConfig_TLSConfig_TLSV1_3:
	case meshv1alpha1.MeshConfig_TLSConfig_TLSV1_2:
		tp.minVersion = tls.VersionTLS12
	default:
		return tp, fmt.Errorf("meshMTLS: minProtocolVersion %v is not supported (TLSV1_2 or TLSV1_3)", c.GetMinProtocolVersion())
	}
	for _, entry := range c.GetCipherSuites() {
		// Envoy's "[A|B]" is a group of equally preferred suites; Go
		// orders suites itself, so a group is its members.
		for name := range strings.SplitSeq(strings.Trim(entry, "[]"), "|") {
			id, ok := cipherSuites[name]
			if !ok {
				return tp, fmt.Errorf("meshMTLS: cipher suite %q is not supported (want forward-secret AEAD suites: %s)", name, strings.Join(slices.Sorted(maps.Keys(cipherSuites)), ", "))
			}
			tp.suites = append(tp.suites, id)
		}
	}
	for _, name := range c.GetEcdhCurves() {
		id, ok := curves[name]
		if !ok {
			return tp, fmt.Errorf("meshMTLS: ECDH curve %q is not supported (want one of %s)", name, strings.Join(slices.Sorted(maps.Keys(curves)), ", "))
		}
		tp.curves = append(tp.curves, id)
	}
	return tp, nil
}

// IsDefault reports whether tp leaves the proxies' TLS settings alone.
func (tp Policy) IsDefault() bool {
	return tp.minVersion == 0 && len(tp.suites) == 0 && len(tp.curves) == 0
}

// Apply returns base with tp applied: base itself when tp is the
// default, else a copy.
func (tp Policy) Apply(base *tls.Config) *tls.Config {
	if tp.IsDefault() {
		return base
	}
	c := base.Clone()
	if tp.minVersion != 0 {
		c.MinVersion = tp.minVersion
	}
	if len(tp.suites) > 0 {
		c.CipherSuites = tp.suites
	}
	if len(tp.curves) > 0 {
		c.CurvePreferences = tp.curves
	}
	return c
}
