package sds_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"go.uber.org/goleak"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/agenttest"
	"github.com/zmesh/zmesh/internal/agent/localsock"
	"github.com/zmesh/zmesh/internal/agent/sds"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/identity"
	"github.com/zmesh/zmesh/internal/pemcert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs an SDS server on a fresh socket until cleanup and returns a
// client connected to it.
func serve(t *testing.T, cfg sds.Config) secretv3.SecretDiscoveryServiceClient {
	t.Helper()
	cfg.SocketPath = agenttest.SocketPath(t, "sds.sock")
	srv, err := sds.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	agenttest.WaitSocket(t, cfg.SocketPath)
	conn, err := grpc.NewClient("unix://"+cfg.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return secretv3.NewSecretDiscoveryServiceClient(conn)
}

func streamCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func recvTimeout[T any](t *testing.T, recv func() (T, error), within time.Duration) T {
	t.Helper()
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() { v, err := recv(); ch <- res{v, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("recv: %v", r.err)
		}
		return r.v
	case <-time.After(within):
		t.Fatalf("no response within %s", within)
	}
	panic("unreachable")
}

func secrets(t *testing.T, resources []*anypb.Any) map[string]*tlsv3.Secret {
	t.Helper()
	out := map[string]*tlsv3.Secret{}
	for _, r := range resources {
		var s tlsv3.Secret
		if err := r.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		out[s.Name] = &s
	}
	return out
}

// leafOf checks a TLS certificate secret (chain and key belong together)
// and returns its leaf.
func leafOf(t *testing.T, s *tlsv3.Secret) *x509.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	if tc == nil {
		t.Fatalf("secret %q is not a TLS certificate", s.Name)
	}
	pair, err := tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
	if err != nil {
		t.Fatalf("secret %q: %v", s.Name, err)
	}
	return pair.Leaf
}

func TestStreamSecretsServesIdentityAndPushesRotations(t *testing.T) {
	s := catest.Serve(t, catest.NewAuthority(t, ca.Config{DefaultTTL: 2 * time.Second}))
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	client := serve(t, sds.Config{Sources: []sds.Source{sds.AgentSecrets(a, a.ID().TrustDomain())}})
	stream, err := client.StreamSecrets(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *discoveryv3.DiscoveryRequest) {
		t.Helper()
		req.TypeUrl = sds.TypeURL
		req.ResourceNames = []string{sds.DefaultName, sds.RootCAName}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	send(&discoveryv3.DiscoveryRequest{})
	first := recvTimeout(t, stream.Recv, 5*time.Second)
	got := secrets(t, first.Resources)
	leaf := leafOf(t, got[sds.DefaultName])
	if id := leaf.URIs[0].String(); id != a.ID().String() {
		t.Errorf("default names %s, want %s", id, a.ID())
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(got[sds.RootCAName].GetValidationContext().GetTrustedCa().GetInlineBytes()) {
		t.Fatal("ROOTCA holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("default does not verify against ROOTCA: %v", err)
	}

	// ACK, then the rotation is pushed without asking.
	send(&discoveryv3.DiscoveryRequest{VersionInfo: first.VersionInfo, ResponseNonce: first.Nonce})
	second := recvTimeout(t, stream.Recv, 5*time.Second)
	leaf2 := leafOf(t, secrets(t, second.Resources)[sds.DefaultName])
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) == 0 || second.VersionInfo == first.VersionInfo {
		t.Fatal("push after rotation carries the old certificate")
	}

	// A NACK is not answered with the same content; the next push is the
	// next rotation.
	send(&discoveryv3.DiscoveryRequest{VersionInfo: first.VersionInfo, ResponseNonce: second.Nonce,
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "bad"}})
	third := recvTimeout(t, stream.Recv, 5*time.Second)
	leaf3 := leafOf(t, secrets(t, third.Resources)[sds.DefaultName])
	if leaf3.SerialNumber.Cmp(leaf2.SerialNumber) == 0 {
		t.Error("the NACKed certificate was sent again")
	}
}

func TestDeltaSecrets(t *testing.T) {
	s := catest.Serve(t, catest.NewAuthority(t, ca.Config{DefaultTTL: 2 * time.Second}))
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	client := serve(t, sds.Config{Sources: []sds.Source{sds.AgentSecrets(a, a.ID().TrustDomain())}})
	stream, err := client.DeltaSecrets(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: sds.TypeURL,
		ResourceNamesSubscribe: []string{sds.DefaultName, sds.RootCAName}}); err != nil {
		t.Fatal(err)
	}
	first := recvTimeout(t, stream.Recv, 5*time.Second)
	if len(first.Resources) != 2 {
		t.Fatalf("first delta has %d resources, want 2", len(first.Resources))
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: sds.TypeURL, ResponseNonce: first.Nonce}); err != nil {
		t.Fatal(err)
	}
	// The rotation sends only the certificate: the bundle did not change.
	next := recvTimeout(t, stream.Recv, 5*time.Second)
	if len(next.Resources) != 1 || next.Resources[0].Name != sds.DefaultName {
		names := []string{}
		for _, r := range next.Resources {
			names = append(names, r.Name)
		}
		t.Fatalf("rotation delta = %v, want [default]", names)
	}
}

func TestFetchSecrets(t *testing.T) {
	s := catest.Serve(t, catest.NewAuthority(t, ca.Config{}))
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	client := serve(t, sds.Config{Sources: []sds.Source{sds.AgentSecrets(a, a.ID().TrustDomain())}})
	ctx := streamCtx(t)
	resp, err := client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{ResourceNames: []string{sds.RootCAName}})
	if err != nil || len(resp.Resources) != 1 {
		t.Fatalf("fetch ROOTCA: %v, %v", resp, err)
	}
	_, err = client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{ResourceNames: []string{"nope"}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("fetch unknown: %v, want NotFound", err)
	}
	_, err = client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("fetch of another type: %v, want InvalidArgument", err)
	}
}

func TestUIDPolicy(t *testing.T) {
	s := catest.Serve(t, catest.NewAuthority(t, ca.Config{}))
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	client := serve(t, sds.Config{
		Sources: []sds.Source{sds.AgentSecrets(a, a.ID().TrustDomain())},
		Policy:  localsock.Policy{UIDs: []int{os.Getuid() + 1}},
	})
	_, err := client.FetchSecrets(streamCtx(t), &discoveryv3.DiscoveryRequest{ResourceNames: []string{sds.DefaultName}})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("fetch from a uid not admitted: %v, want PermissionDenied", err)
	}
}

// issue writes a certificate for ns/sa from authority, its key, and the
// root into dir as cert-chain.pem, key.pem and root-cert.pem.
func issue(t *testing.T, authority *ca.Authority, dir, sa string) {
	t.Helper()
	key := catest.NewKey(t)
	block, _ := pem.Decode(catest.CSR(t, key))
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.ForServiceAccount(authority.TrustDomain(), "istio-system", sa)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := authority.Sign(csr, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		// Replace by rename, as a Secret volume update does.
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	write("cert-chain.pem", pemcert.Encode(chain[:len(chain)-1]...))
	write("root-cert.pem", pemcert.Encode(authority.Bundle()...))
}

func TestFileSourceServesAndRepushesMountedCertificates(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{})
	dir := t.TempDir()
	issue(t, authority, dir, "gateway-one")
	files, err := sds.NewFileSource([]sds.File{{
		Name:       "ingress-cert",
		CertChain:  filepath.Join(dir, "cert-chain.pem"),
		PrivateKey: filepath.Join(dir, "key.pem"),
		RootCert:   filepath.Join(dir, "root-cert.pem"),
	}}, 20*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, sds.Config{Sources: []sds.Source{files}})
	stream, err := client.StreamSecrets(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: sds.TypeURL,
		ResourceNames: []string{"ingress-cert", "ingress-cert-cacert"}}); err != nil {
		t.Fatal(err)
	}
	first := recvTimeout(t, stream.Recv, 5*time.Second)
	got := secrets(t, first.Resources)
	if leaf := leafOf(t, got["ingress-cert"]); leaf.URIs[0].Path != "/ns/istio-system/sa/gateway-one" {
		t.Errorf("served %s", leaf.URIs[0])
	}
	if got["ingress-cert-cacert"].GetValidationContext() == nil {
		t.Error("ingress-cert-cacert is not a validation context")
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: sds.TypeURL, VersionInfo: first.VersionInfo,
		ResponseNonce: first.Nonce, ResourceNames: []string{"ingress-cert", "ingress-cert-cacert"}}); err != nil {
		t.Fatal(err)
	}

	// A key that does not match its certificate (an update caught halfway)
	// is not served: the old secret stays until the set is whole again.
	otherKey, _ := x509.MarshalPKCS8PrivateKey(catest.NewKey(t))
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the absence of a change under test, not synchronization
	if leaf := leafOf(t, files.Secret("ingress-cert")); leaf.URIs[0].Path != "/ns/istio-system/sa/gateway-one" {
		t.Fatal("a half-updated file set replaced the secret")
	}
	issue(t, authority, dir, "gateway-two")
	next := recvTimeout(t, stream.Recv, 5*time.Second)
	if leaf := leafOf(t, secrets(t, next.Resources)["ingress-cert"]); leaf.URIs[0].Path != "/ns/istio-system/sa/gateway-two" {
		t.Errorf("after the file change, served %s", leaf.URIs[0])
	}
}

func TestFileSourceRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		files []sds.File
	}{
		{"a certificate without a key", []sds.File{{Name: "x", CertChain: filepath.Join(dir, "c")}}},
		{"no files", []sds.File{{Name: "x"}}},
		{"no name", []sds.File{{RootCert: filepath.Join(dir, "r")}}},
		{"missing files", []sds.File{{Name: "x", RootCert: filepath.Join(dir, "absent.pem")}}},
		{"a name twice", []sds.File{{Name: "x", RootCert: "a"}, {Name: "x", RootCert: "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := sds.NewFileSource(tt.files, 0, nil); err == nil {
				t.Error("accepted")
			}
		})
	}
}
