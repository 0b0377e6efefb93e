package server

import (
	"context"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/identity"
	"github.com/zmesh/zmesh/internal/xds"
)

// peerIdentity is who is at the other end of a stream, from its verified
// mesh certificate.
type peerIdentity struct {
	id        string // spiffe://TD/ns/NS/sa/SA
	namespace string
	sa        string
	notAfter  time.Time
}

// authenticate returns the identity of the verified client certificate of
// the stream. No certificate, an unverified one, or one outside the mesh's
// trust domain fail with Unauthenticated.
func (s *Server) authenticate(ctx context.Context) (peerIdentity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return peerIdentity{}, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return peerIdentity{}, status.Error(codes.Unauthenticated, "a TLS connection is required")
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return peerIdentity{}, status.Error(codes.Unauthenticated, "a verified mesh client certificate is required")
	}
	leaf := chains[0][0]
	if now := s.cfg.Now(); now.After(leaf.NotAfter) {
		// The certificate was valid at the handshake, but this stream is
		// opened later on the same connection.
		return peerIdentity{}, status.Error(codes.Unauthenticated, "client certificate expired; reconnect with a fresh one")
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return peerIdentity{}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	if id.TrustDomain().Name() != s.cfg.Mesh.TrustDomain {
		return peerIdentity{}, status.Errorf(codes.Unauthenticated, "client certificate %s is not in trust domain %s", id, s.cfg.Mesh.TrustDomain)
	}
	ns, sa, err := identity.ServiceAccountOf(id)
	if err != nil {
		return peerIdentity{}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	return peerIdentity{id: id.String(), namespace: ns, sa: sa, notAfter: leaf.NotAfter}, nil
}

// admit checks the node's registration against who authenticated: the
// node ID is NAMESPACE/NAME in the certificate's namespace, and what the
// metadata claims (namespace, name, service account) must agree. The
// workload's identity is always the certificate's.
func admit(node *core.Node, who peerIdentity) (xds.Proxy, error) {
	if node == nil {
		return xds.Proxy{}, status.Error(codes.InvalidArgument, "the first request must carry the node")
	}
	ns, name, ok := strings.Cut(node.GetId(), "/")
	if !ok || ns == "" || name == "" {
		return xds.Proxy{}, status.Errorf(codes.InvalidArgument, "node ID %q is not NAMESPACE/NAME", node.GetId())
	}
	w, err := xds.WorkloadFromMetadata(node.GetMetadata())
	if err != nil {
		return xds.Proxy{}, status.Error(codes.InvalidArgument, err.Error())
	}
	gateway, err := xds.GatewayFromMetadata(node.GetMetadata())
	if err != nil {
		return xds.Proxy{}, status.Error(codes.InvalidArgument, err.Error())
	}
	if ns != who.namespace {
		return xds.Proxy{}, status.Errorf(codes.PermissionDenied, "node %s is outside the namespace of its identity %s", node.GetId(), who.id)
	}
	if w.Namespace != "" && w.Namespace != who.namespace {
		return xds.Proxy{}, status.Errorf(codes.PermissionDenied, "node %s claims namespace %q, its identity is %s", node.GetId(), w.Namespace, who.id)
	}
	if w.ServiceAccount != "" && w.ServiceAccount != who.sa {
		return xds.Proxy{}, status.Errorf(codes.PermissionDenied, "node %s claims service account %q, its identity is %s", node.GetId(), w.ServiceAccount, who.id)
	}
	if w.Name != "" && w.Name != name {
		return xds.Proxy{}, status.Errorf(codes.InvalidArgument, "node %s claims workload name %q", node.GetId(), w.Name)
	}
	w.Name, w.Namespace, w.ServiceAccount = name, ns, who.sa
	w.Identity = who.id
	w.HasProxy = true
	if err := w.Validate(); err != nil {
		return xds.Proxy{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return xds.Proxy{ID: node.GetId(), Workload: w, Gateway: gateway}, nil
}
