package xds

import (
	"crypto/sha256"
	"fmt"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// TypeCredential is the type URL of gateway credentials: the TLS Secrets
// that Gateway servers name by credentialName, pushed to the gateway
// proxies allowed to serve them (Istio serves them over SDS). Each is an
// MCP Resource NAMESPACE/NAME whose body is Envoy's SDS Secret message.
const TypeCredential = "core/v1/Secret"

// CACredentialSuffix names the Secret that holds only the CA of a MUTUAL
// server's credential NAME: NAME-cacert, as in Istio.
const CACredentialSuffix = "-cacert"

// Credential is a gateway's TLS credential, the content of a Secret that
// a Gateway server names by credentialName: a certificate chain and its
// key (both or neither), and CA certificates to verify clients with
// (MUTUAL), with the CRL of those clients' certificates (a Secret's
// ca.crl or crl). Everything is PEM. It holds a private key: it goes only to
// gateway proxies of its namespace, and never to a log.
type Credential struct {
	Namespace, Name  string
	Cert, PrivateKey []byte
	CA               []byte
	CRL              []byte
}

// Key is NAMESPACE/NAME.
func (c Credential) Key() string { return c.Namespace + "/" + c.Name }

// CredentialUse is what a gateway needs of a credential Secret, which
// decides what the Secret must hold.
type CredentialUse int

const (
	// ServerCredential is a Gateway server's credentialName: a
	// certificate and its key, and optionally CA certificates.
	ServerCredential CredentialUse = iota
	// CACredential is NAME-cacert: CA certificates only.
	CACredential
	// ClientCredential is a DestinationRule's credentialName (TLS
	// origination at the gateway): CA certificates, a client certificate
	// and key, or both.
	ClientCredential
)

// CredentialRef names a Secret a gateway proxy needs, and for what.
type CredentialRef struct {
	Namespace, Name string
	Use             CredentialUse
}

// Key is NAMESPACE/NAME.
func (r CredentialRef) Key() string { return r.Namespace + "/" + r.Name }

// GatewayCredentials returns the Secrets a gateway proxy of namespace ns
// governed by the Gateways gws may be sent, sorted by name: for every
// SIMPLE, MUTUAL or OPTIONAL_MUTUAL server, its credentialName (or
// credentialNames), and for the last two also NAME-cacert and its
// caCertCredentialName; for every DestinationRule of drs (those visible to the
// gateway) that originates TLS with a credentialName, that name and
// NAME-cacert. All are in ns: Istio's rule, a gateway reads credentials
// from its own namespace, whatever the Gateway's or the rule's. This is
// the whole authorization of a credential push: a proxy gets no Secret
// of another namespace, and none that its configuration does not name.
func GatewayCredentials(ns string, gws, drs []config.Resource) []CredentialRef {
	uses := map[string]CredentialUse{}
	add := func(name string, use CredentialUse) {
		if name == "" {
			return
		}
		if old, ok := uses[name]; ok && old != use {
			// A name wanted for two uses is read as a client credential,
			// the most permissive (a key pair, a CA, or both, each
			// checked): every consumer checks that its part is there.
			use = ClientCredential
		}
		uses[name] = use
	}
	for _, r := range gws {
		gw, ok := r.Spec.(*networking.Gateway)
		if !ok {
			continue
		}
		for _, s := range gw.GetServers() {
			t := s.GetTls()
			switch t.GetMode() {
			case networking.ServerTLSSettings_SIMPLE:
				for _, n := range config.ServerCredentialNames(t) {
					add(n, ServerCredential)
				}
			case networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
				for _, n := range config.ServerCredentialNames(t) {
					add(n, ServerCredential)
					add(n+CACredentialSuffix, CACredential)
				}
				add(t.GetCaCertCredentialName(), CACredential)
			}
		}
	}
	for _, r := range drs {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if !ok {
			continue
		}
		for _, name := range originationCredentials(dr) {
			add(name, ClientCredential)
			add(name+CACredentialSuffix, CACredential)
		}
	}
	out := make([]CredentialRef, 0, len(uses))
	for name, use := range uses {
		out = append(out, CredentialRef{Namespace: ns, Name: name, Use: use})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(out) == 0 {
		return nil
	}
	return out
}

// originationCredentials lists the credentialNames of dr's TLS settings:
// its traffic policy's, its ports', and its subsets'.
func originationCredentials(dr *networking.DestinationRule) []string {
	var out []string
	policy := func(tp *networking.TrafficPolicy) {
		if n := tp.GetTls().GetCredentialName(); n != "" {
			out = append(out, n)
		}
		for _, pl := range tp.GetPortLevelSettings() {
			if n := pl.GetTls().GetCredentialName(); n != "" {
				out = append(out, n)
			}
		}
	}
	policy(dr.GetTrafficPolicy())
	for _, s := range dr.GetSubsets() {
		policy(s.GetTrafficPolicy())
	}
	return out
}

// sdsName is the name Istio gives a credential in SDS.
func sdsName(name string) string { return "kubernetes://" + name }

// encodeCredential is the resource of c.
func encodeCredential(c Credential) (Resource, error) {
	sec := &tlsv3.Secret{Name: sdsName(c.Name)}
	if len(c.Cert) > 0 || len(c.PrivateKey) > 0 {
		sec.Type = &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(c.Cert),
			PrivateKey:       inline(c.PrivateKey),
		}}
	} else {
		sec.Type = &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(c.CA), Crl: inline(c.CRL)}}
	}
	var ann map[string]string
	if len(c.Cert) > 0 || len(c.PrivateKey) > 0 {
		// A Secret with both a key pair and a CA (and its CRL): Envoy's
		// Secret holds one of them, so the CA rides in the metadata.
		if len(c.CA) > 0 {
			ann = map[string]string{annotationCredentialCA: string(c.CA)}
		}
		if len(c.CRL) > 0 {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[annotationCredentialCRL] = string(c.CRL)
		}
	}
	r, err := encodeOne(c.Key(), nil, ann, sec)
	if err != nil {
		return Resource{}, fmt.Errorf("xds: encode credential %s: %w", c.Key(), err)
	}
	return r, nil
}

// annotationCredentialCA carries the CA of a credential that also has a
// key pair.
const annotationCredentialCA = "zmesh.io/ca"

// annotationCredentialCRL carries the CRL of a credential that also has
// a key pair.
const annotationCredentialCRL = "zmesh.io/crl"

func inline(b []byte) *corev3.DataSource {
	if len(b) == 0 {
		return nil
	}
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func inlineBytes(d *corev3.DataSource) ([]byte, error) {
	if d == nil {
		return nil, nil
	}
	b, ok := d.GetSpecifier().(*corev3.DataSource_InlineBytes)
	if !ok {
		return nil, fmt.Errorf("a data source other than inline bytes")
	}
	return b.InlineBytes, nil
}

// decodeCredentials reads the credentials of a view. Anything malformed
// fails the view, as for every other type.
func decodeCredentials(in map[string]*anypb.Any) ([]Credential, error) {
	var out []Credential
	for _, name := range sortedKeys(in) {
		res, err := unwrap(name, in[name])
		if err != nil {
			return nil, err
		}
		ns, n, err := splitName(name)
		if err != nil {
			return nil, err
		}
		sec := &tlsv3.Secret{}
		if err := res.GetBody().UnmarshalTo(sec); err != nil {
			return nil, fmt.Errorf("xds: credential %s: %w", name, err)
		}
		if sec.GetName() != sdsName(n) {
			return nil, fmt.Errorf("xds: credential %s: body names %q", name, sec.GetName())
		}
		c := Credential{Namespace: ns, Name: n}
		if tc := sec.GetTlsCertificate(); tc != nil {
			if c.Cert, err = inlineBytes(tc.GetCertificateChain()); err == nil {
				c.PrivateKey, err = inlineBytes(tc.GetPrivateKey())
			}
			if ca, ok := res.GetMetadata().GetAnnotations()[annotationCredentialCA]; ok {
				c.CA = []byte(ca)
			}
			if crl, ok := res.GetMetadata().GetAnnotations()[annotationCredentialCRL]; ok {
				c.CRL = []byte(crl)
			}
		} else if vc := sec.GetValidationContext(); vc != nil {
			if c.CA, err = inlineBytes(vc.GetTrustedCa()); err == nil {
				c.CRL, err = inlineBytes(vc.GetCrl())
			}
		} else {
			err = fmt.Errorf("neither a certificate nor a validation context")
		}
		if err != nil {
			return nil, fmt.Errorf("xds: credential %s: %w", name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// credentialSum hashes c.
func credentialSum(c Credential) sum {
	h := sha256.New()
	str(h, c.Namespace)
	str(h, c.Name)
	str(h, string(c.Cert))
	str(h, string(c.PrivateKey))
	str(h, string(c.CA))
	str(h, string(c.CRL))
	return sum(h.Sum(nil))
}

// credentialsOf returns the credentials of creds that a gateway proxy of
// namespace ns governed by gws and drs is sent (GatewayCredentials), in
// name order.
func credentialsOf(ns string, gws, drs []config.Resource, creds map[string]credentialEntry) []credentialEntry {
	var out []credentialEntry
	for _, ref := range GatewayCredentials(ns, gws, drs) {
		if e, ok := creds[ref.Key()]; ok {
			out = append(out, e)
		}
	}
	return out
}

// credentialEntry is one credential with its hash and encoding.
type credentialEntry struct {
	c   Credential
	sum sum
	enc Resource
}
