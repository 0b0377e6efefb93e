package csr

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/identity"
)

// ErrNoCredentials is returned by an Authenticator that found no credential
// of its kind in the request, so the next one may try. Any other error means
// the caller presented a credential of that kind and it was rejected.
var ErrNoCredentials = errors.New("no credentials")

// ErrUnavailable is wrapped by an Authenticator that could not decide
// because a system it relies on (the Kubernetes API for TokenReview) did not
// answer. The request is refused all the same, fail closed, but with
// codes.Unavailable, so the caller retries later and the operator sees an
// outage rather than a flood of bad credentials.
var ErrUnavailable = errors.New("authentication backend unavailable")

// reasonAuthUnavailable is the refusal reason of ErrUnavailable.
const reasonAuthUnavailable = "auth_unavailable"

// Authenticator decides who the caller of a gRPC request is. The returned ID
// is what the issued certificate will name.
type Authenticator interface {
	Authenticate(ctx context.Context) (spiffeid.ID, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context) (spiffeid.ID, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context) (spiffeid.ID, error) { return f(ctx) }

// ClientCertAuthenticator authenticates a renewal: the caller's mesh
// certificate, presented as TLS client certificate, must verify against the
// CA's bundle at the CA's time, be a client-auth leaf, and name a service
// account in the CA's trust domain. It does not rely on the TLS server having
// verified the certificate, so a server configured to only request client
// certificates still cannot be fooled.
type ClientCertAuthenticator struct {
	Roots       func() []*x509.Certificate
	TrustDomain spiffeid.TrustDomain
	Clock       func() time.Time
}

// NewClientCertAuthenticator returns a ClientCertAuthenticator for a's bundle,
// trust domain and clock.
func NewClientCertAuthenticator(a *ca.Authority) *ClientCertAuthenticator {
	return &ClientCertAuthenticator{Roots: a.Bundle, TrustDomain: a.TrustDomain(), Clock: a.Clock()}
}

// Authenticate returns the SPIFFE ID of the verified peer certificate.
func (c *ClientCertAuthenticator) Authenticate(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return spiffeid.ID{}, ErrNoCredentials
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, ErrNoCredentials
	}
	certs := info.State.PeerCertificates
	leaf := certs[0]
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range c.Roots() {
		roots.AddCert(r)
	}
	for _, i := range certs[1:] {
		inter.AddCert(i)
	}
	now := time.Now()
	if c.Clock != nil {
		now = c.Clock()
	}
	if leaf.IsCA {
		return spiffeid.ID{}, errors.New("client certificate is a CA")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return spiffeid.ID{}, fmt.Errorf("client certificate does not verify: %w", err)
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("client certificate: %w", err)
	}
	if !id.MemberOf(c.TrustDomain) {
		return spiffeid.ID{}, fmt.Errorf("client certificate names %s, outside trust domain %s", id, c.TrustDomain)
	}
	if _, _, err := identity.ServiceAccountOf(id); err != nil {
		return spiffeid.ID{}, fmt.Errorf("client certificate: %w", err)
	}
	return id, nil
}

// TokenAuthenticator authenticates a bootstrap token sent as gRPC metadata
// "authorization: Bearer TOKEN". A bearer value that is not a zmesh token
// (say a Kubernetes JWT) yields ErrNoCredentials, leaving it to another
// Authenticator.
type TokenAuthenticator struct {
	Verifier *ca.TokenVerifier
}

// Authenticate returns the identity the token grants.
func (t *TokenAuthenticator) Authenticate(ctx context.Context) (spiffeid.ID, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return spiffeid.ID{}, ErrNoCredentials
	}
	for _, v := range md.Get("authorization") {
		token, ok := bearer(v)
		if !ok || !ca.IsToken(token) {
			continue
		}
		return t.Verifier.Verify(token)
	}
	return spiffeid.ID{}, ErrNoCredentials
}

// BearerTokens returns the credentials of the request's
// "authorization: Bearer X" metadata values, for Authenticators of other
// token kinds.
func BearerTokens(ctx context.Context) []string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil
	}
	var out []string
	for _, v := range md.Get("authorization") {
		if token, ok := bearer(v); ok {
			out = append(out, token)
		}
	}
	return out
}

// bearer extracts the credential of an "authorization: Bearer X" value; the
// scheme is case-insensitive (RFC 9110).
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(v[len(scheme):]), true
}

// chain tries authenticators in order; the first that finds its kind of
// credential decides, whether it accepts or rejects. Falling through after a
// rejection would let a forged token be "rescued" by a weaker method.
type chain []Authenticator

func (c chain) Authenticate(ctx context.Context) (spiffeid.ID, error) {
	for _, a := range c {
		id, err := a.Authenticate(ctx)
		if errors.Is(err, ErrNoCredentials) {
			continue
		}
		return id, err
	}
	return spiffeid.ID{}, ErrNoCredentials
}

var (
	_ Authenticator = (*ClientCertAuthenticator)(nil)
	_ Authenticator = (*TokenAuthenticator)(nil)
	_ Authenticator = AuthenticatorFunc(nil)
	_ Authenticator = chain(nil)
)
