package csr_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	pb "istio.io/api/security/v1alpha1"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/ca/csr"
)

// peerContext is what gRPC hands the service for a TLS caller presenting certs.
func peerContext(certs ...*x509.Certificate) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: certs}},
	})
}

func TestClientCertAuthenticator(t *testing.T) {
	clock := catest.NewClock(time.Now())
	a := catest.NewAuthority(t, ca.Config{Clock: clock.Now})
	rogue := catest.NewAuthority(t, ca.Config{})
	issue := func(by *ca.Authority, id spiffeid.ID) []*x509.Certificate {
		t.Helper()
		chain, err := by.Sign(mustParse(t, catest.CSR(t, catest.NewKey(t))), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return chain
	}
	good := issue(a, fooBar)
	notSA := issue(a, spiffeid.RequireFromString("spiffe://cluster.local/control-plane"))
	auth := csr.NewClientCertAuthenticator(a)

	tests := []struct {
		name    string
		ctx     context.Context
		advance time.Duration
		want    spiffeid.ID
		noCreds bool
	}{
		{name: "mesh certificate", ctx: peerContext(good[0]), want: fooBar},
		{name: "mesh certificate with its chain", ctx: peerContext(good...), want: fooBar},
		{name: "no peer", ctx: context.Background(), noCreds: true},
		{name: "TLS without client certificate", ctx: peerContext(), noCreds: true},
		{name: "certificate of another CA", ctx: peerContext(issue(rogue, fooBar)[0])},
		{name: "expired certificate", ctx: peerContext(good[0]), advance: 2 * time.Hour},
		{name: "not a service account identity", ctx: peerContext(notSA[0])},
		{name: "the root itself", ctx: peerContext(a.Bundle()[0])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Add(tt.advance)
			defer clock.Add(-tt.advance)
			id, err := auth.Authenticate(tt.ctx)
			switch {
			case tt.noCreds:
				if !errors.Is(err, csr.ErrNoCredentials) {
					t.Fatalf("err = %v, want ErrNoCredentials", err)
				}
			case tt.want.IsZero():
				if err == nil || errors.Is(err, csr.ErrNoCredentials) {
					t.Fatalf("Authenticate = %s, %v; want a rejection", id, err)
				}
			default:
				if err != nil || id != tt.want {
					t.Fatalf("Authenticate = %s, %v; want %s", id, err, tt.want)
				}
			}
		})
	}
}

func TestTokenAuthenticator(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{})
	token, _ := a.IssueToken("foo", "bar", time.Hour)
	auth := &csr.TokenAuthenticator{Verifier: a.TokenVerifier()}
	md := func(vals ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(vals...))
	}
	tests := []struct {
		name    string
		ctx     context.Context
		want    spiffeid.ID
		noCreds bool
	}{
		{name: "bearer token", ctx: md("authorization", "Bearer "+token), want: fooBar},
		{name: "scheme is case-insensitive", ctx: md("authorization", "bearer "+token), want: fooBar},
		{name: "no metadata", ctx: context.Background(), noCreds: true},
		{name: "no authorization", ctx: md("x", "y"), noCreds: true},
		{name: "basic auth", ctx: md("authorization", "Basic Zm9vOmJhcg=="), noCreds: true},
		{name: "kubernetes JWT is left to others", ctx: md("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"), noCreds: true},
		{name: "zmesh token with a bad signature", ctx: md("authorization", "Bearer "+token[:len(token)-4]+"AAAA")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := auth.Authenticate(tt.ctx)
			switch {
			case tt.noCreds:
				if !errors.Is(err, csr.ErrNoCredentials) {
					t.Fatalf("err = %v, want ErrNoCredentials", err)
				}
			case tt.want.IsZero():
				if err == nil || errors.Is(err, csr.ErrNoCredentials) {
					t.Fatalf("Authenticate = %s, %v; want a rejection", id, err)
				}
			default:
				if err != nil || id != tt.want {
					t.Fatalf("Authenticate = %s, %v; want %s", id, err, tt.want)
				}
			}
		})
	}
}

// TestRejectionIsFinal checks that an authenticator that rejects a
// credential ends the chain: a later authenticator cannot rescue the caller.
func TestRejectionIsFinal(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{})
	rejected := errors.New("forged")
	svc, err := csr.NewService(csr.Config{Authority: a, Authenticators: []csr.Authenticator{
		csr.AuthenticatorFunc(func(context.Context) (spiffeid.ID, error) { return spiffeid.ID{}, rejected }),
		csr.AuthenticatorFunc(func(context.Context) (spiffeid.ID, error) { return fooBar, nil }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: string(catest.CSR(t, catest.NewKey(t)))})
	if err == nil {
		t.Fatal("second authenticator rescued a rejected caller")
	}
}
