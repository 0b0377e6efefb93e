package sds

import (
	"crypto/x509"
	"encoding/pem"
	"sync"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// Source supplies named secrets. Its methods are called concurrently from
// every stream and must not block on I/O.
type Source interface {
	// Names lists the secrets the source can serve now, for wildcard
	// requests.
	Names() []string
	// Secret returns the current secret named name, or nil if the source
	// has none by that name (yet).
	Secret(name string) *tlsv3.Secret
	// Updated returns a channel closed at the source's next change.
	Updated() <-chan struct{}
}

// Agent is what AgentSecrets needs of the agent (agent.Agent satisfies it).
type Agent interface {
	x509svid.Source
	x509bundle.Source
	Updated() <-chan struct{}
}

// AgentSecrets serves the agent's identity as "default" and its trust
// domain's bundle as "ROOTCA".
func AgentSecrets(a Agent, td spiffeid.TrustDomain) Source {
	return &agentSource{a: a, td: td}
}

type agentSource struct {
	a  Agent
	td spiffeid.TrustDomain

	mu      sync.Mutex
	svid    *x509svid.SVID // the SVID cached encodes
	encoded *tlsv3.Secret
}

func (s *agentSource) Names() []string { return []string{DefaultName, RootCAName} }

func (s *agentSource) Updated() <-chan struct{} { return s.a.Updated() }

func (s *agentSource) Secret(name string) *tlsv3.Secret {
	switch name {
	case DefaultName:
		svid, err := s.a.GetX509SVID()
		if err != nil {
			return nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if svid != s.svid {
			// Encoding the key on every stream wake-up would be waste; the
			// SVID pointer changes exactly when the agent rotates.
			key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
			if err != nil {
				return nil
			}
			keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
			s.svid, s.encoded = svid, TLSCertificate(DefaultName, pemcert.Encode(svid.Certificates...), keyPEM)
		}
		return s.encoded
	case RootCAName:
		b, err := s.a.GetX509BundleForTrustDomain(s.td)
		if err != nil || b.Empty() {
			return nil
		}
		return ValidationContext(RootCAName, pemcert.Encode(b.X509Authorities()...))
	}
	return nil
}

var _ Source = (*agentSource)(nil)
