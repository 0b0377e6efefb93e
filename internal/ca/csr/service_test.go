package csr_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/ca/csr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	fooBar   = spiffeid.RequireFromString("spiffe://cluster.local/ns/foo/sa/bar")
	admin    = spiffeid.RequireFromString("spiffe://cluster.local/ns/istio-system/sa/admin")
	anything = spiffeid.RequireFromString("spiffe://cluster.local/ns/other/sa/thing")
)

// call is one CreateCertificate over a fresh loopback TLS connection, as an
// agent makes it.
type call struct {
	token      string           // sent as authorization: Bearer
	clientCert *tls.Certificate // presented in the handshake
	csr        string
	validity   int64
}

func (c call) do(t *testing.T, s *catest.Server) (*pb.IstioCertificateResponse, error) {
	t.Helper()
	tlsCfg := &tls.Config{RootCAs: s.RootPool(), ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12}
	if c.clientCert != nil {
		tlsCfg.Certificates = []tls.Certificate{*c.clientCert}
	}
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	return pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: c.csr, ValidityDuration: c.validity})
}

// svid parses a response into a verified X509-SVID with key, checking the
// chain order (leaf first, root last) on the way.
func svid(t *testing.T, s *catest.Server, resp *pb.IstioCertificateResponse, key crypto.Signer) (*x509svid.SVID, *tls.Certificate) {
	t.Helper()
	var certs []*x509.Certificate
	for i, p := range resp.GetCertChain() {
		block, rest := pem.Decode([]byte(p))
		if block == nil || len(strings.TrimSpace(string(rest))) != 0 {
			t.Fatalf("CertChain[%d] is not exactly one PEM certificate", i)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) < 2 || !certs[len(certs)-1].Equal(s.Authority.Bundle()[0]) {
		t.Fatalf("chain of %d certificates does not end with the root", len(certs))
	}
	bundle := x509bundle.FromX509Authorities(catest.TrustDomain, s.Authority.Bundle())
	id, _, err := x509svid.Verify(certs[:len(certs)-1], bundle)
	if err != nil {
		t.Fatalf("issued chain is not a valid SVID: %v", err)
	}
	tc := &tls.Certificate{Certificate: [][]byte{certs[0].Raw}, PrivateKey: key, Leaf: certs[0]}
	return &x509svid.SVID{ID: id, Certificates: certs[:len(certs)-1], PrivateKey: key}, tc
}

func TestCreateCertificate(t *testing.T) {
	a := catest.NewAuthority(t, ca.Config{DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour})
	s := catest.Serve(t, a)
	token, err := a.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherToken, _ := a.IssueToken("other", "thing", time.Hour)

	// A certificate for foo/bar obtained with the token, used below to renew.
	key := catest.NewKey(t)
	resp, err := call{token: token, csr: string(catest.CSR(t, key))}.do(t, s)
	if err != nil {
		t.Fatal(err)
	}
	_, fooBarCert := svid(t, s, resp, key)

	// A token minted three hours ago with the same key: a second CA in the
	// past sharing only the token key.
	past := t.TempDir()
	keyFile, err := os.ReadFile(filepath.Join(a.DataDir(), ca.TokenKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(past, ca.TokenKeyFile), keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	pastAuthority := catest.NewAuthority(t, ca.Config{DataDir: past, Clock: func() time.Time { return time.Now().Add(-3 * time.Hour) }})
	expiredToken, err := pastAuthority.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		call     call
		wantID   spiffeid.ID
		wantTTL  time.Duration
		wantCode codes.Code
	}{
		{name: "token yields the token's identity", call: call{token: token}, wantID: fooBar, wantTTL: time.Hour},
		{name: "CSR naming another identity gets the token's", call: call{token: token, csr: "spiffe://cluster.local/ns/istio-system/sa/admin"}, wantID: fooBar, wantTTL: time.Hour},
		{name: "renewal with the current certificate and no token", call: call{clientCert: fooBarCert}, wantID: fooBar, wantTTL: time.Hour},
		{name: "certificate outranks a token for someone else", call: call{clientCert: fooBarCert, token: otherToken}, wantID: fooBar, wantTTL: time.Hour},
		{name: "requested validity is kept", call: call{token: token, validity: 60}, wantID: fooBar, wantTTL: time.Minute},
		{name: "requested validity is capped", call: call{token: token, validity: 10 * 365 * 24 * 3600}, wantID: fooBar, wantTTL: 2 * time.Hour},
		{name: "absurd validity is capped, not overflowed", call: call{token: token, validity: 1 << 62}, wantID: fooBar, wantTTL: 2 * time.Hour},
		{name: "other token, other identity", call: call{token: otherToken}, wantID: anything, wantTTL: time.Hour},
		{name: "no credentials", call: call{}, wantCode: codes.Unauthenticated},
		{name: "non-bearer authorization", call: call{token: "x"}, wantCode: codes.Unauthenticated},
		{name: "forged token", call: call{token: token[:len(token)-2] + "AA"}, wantCode: codes.Unauthenticated},
		{name: "expired token", call: call{token: expiredToken}, wantCode: codes.Unauthenticated},
		{name: "kubernetes JWT with no TokenReview configured", call: call{token: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}, wantCode: codes.Unauthenticated},
		{name: "unauthenticated garbage CSR is still unauthenticated", call: call{csr: "garbage"}, wantCode: codes.Unauthenticated},
		{name: "garbage CSR", call: call{token: token, csr: "garbage"}, wantCode: codes.InvalidArgument},
		{name: "empty CSR", call: call{token: token, csr: "-"}, wantCode: codes.InvalidArgument},
		{name: "CA request", call: call{token: token, csr: "ca"}, wantCode: codes.InvalidArgument},
		{name: "oversized CSR", call: call{token: token, csr: strings.Repeat("A", ca.MaxCSRSize+1)}, wantCode: codes.InvalidArgument},
		{name: "negative validity", call: call{token: token, validity: -1}, wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := catest.NewKey(t)
			switch tt.call.csr {
			case "":
				tt.call.csr = string(catest.CSR(t, key))
			case "-":
				tt.call.csr = ""
			case "ca":
				tt.call.csr = caRequest(t)
			case admin.String():
				tt.call.csr = string(catest.CSR(t, key, admin.String()))
			}
			resp, err := tt.call.do(t, s)
			if tt.wantCode != codes.OK {
				if got := status.Code(err); got != tt.wantCode {
					t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
				}
				if err != nil && strings.Contains(err.Error(), tt.call.token) && tt.call.token != "" {
					t.Error("error repeats the token")
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateCertificate: %v", err)
			}
			got, _ := svid(t, s, resp, key)
			if got.ID != tt.wantID {
				t.Errorf("issued for %s, want %s", got.ID, tt.wantID)
			}
			leaf := got.Certificates[0]
			if lifetime := time.Until(leaf.NotAfter); lifetime > tt.wantTTL || lifetime < tt.wantTTL-time.Minute {
				t.Errorf("lifetime %s, want about %s", lifetime, tt.wantTTL)
			}
		})
	}

	if got := metricValue(t, s, "zmesh_ca_certificates_issued_total", ""); got < 8 {
		t.Errorf("issued counter = %v, want at least 8", got)
	}
	for reason, want := range map[string]float64{"no_credentials": 4, "token_invalid": 1, "token_expired": 1, "invalid_csr": 4} {
		if got := metricValue(t, s, "zmesh_ca_certificate_refusals_total", reason); got != want {
			t.Errorf("refusals for %s = %v, want %v", reason, got, want)
		}
	}
}

// TestRenewalWithCertificateOfAnotherCA checks the TLS layer refuses a client
// certificate that does not chain to the bundle, so it never reaches the
// service as an identity.
func TestRenewalWithCertificateOfAnotherCA(t *testing.T) {
	s := catest.Serve(t, catest.NewAuthority(t, ca.Config{}))
	rogue := catest.NewAuthority(t, ca.Config{})
	key := catest.NewKey(t)
	chain, err := rogue.Sign(mustParse(t, catest.CSR(t, key)), fooBar, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key}
	_, err = call{clientCert: cert, csr: string(catest.CSR(t, catest.NewKey(t)))}.do(t, s)
	if err == nil {
		t.Fatal("renewal with a certificate from another CA succeeded")
	}
}

func TestNewService(t *testing.T) {
	if _, err := csr.NewService(csr.Config{}); err == nil {
		t.Fatal("want error without an authority")
	}
	a := catest.NewAuthority(t, ca.Config{})
	reg := prometheus.NewRegistry()
	if _, err := csr.NewService(csr.Config{Authority: a, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := csr.NewService(csr.Config{Authority: a, Registerer: reg}); err == nil {
		t.Fatal("want error registering the metrics twice")
	}
}

// metricValue reads a counter from the server's registry; reason "" means
// the unlabelled counter.
func metricValue(t *testing.T, s *catest.Server, name, reason string) float64 {
	t.Helper()
	families, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := reason == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// caRequest is a PEM CSR asking for basic constraints CA:TRUE.
func caRequest(t *testing.T) string {
	t.Helper()
	val, err := asn1.Marshal(struct{ IsCA bool }{true})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: val}},
	}, catest.NewKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func mustParse(t *testing.T, p []byte) *x509.CertificateRequest {
	t.Helper()
	csr, err := ca.ParseCSR(p)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
