package kubeauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/ca/csr"
	"github.com/zmesh/zmesh/internal/ca/kubeauth"
	"github.com/zmesh/zmesh/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.StopShared()
	os.Exit(code)
}

// fixture is a CSR service over TLS whose chain is the control plane's:
// client certificate, bootstrap token, then TokenReview against a real
// apiserver.
type fixture struct {
	cs      kubernetes.Interface
	cluster *kubetest.Cluster
	srv     *catest.Server
	metrics *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := kubetest.Shared(t)
	cs := c.Client(t)
	a := catest.NewAuthority(t, ca.Config{})
	reg := prometheus.NewRegistry()
	kauth, err := kubeauth.New(kubeauth.Config{
		Reviews:     cs.AuthenticationV1().TokenReviews(),
		TrustDomain: a.TrustDomain(),
		Registerer:  reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := catest.ServeService(t, csr.Config{Authority: a, Authenticators: []csr.Authenticator{
		csr.NewClientCertAuthenticator(a),
		&csr.TokenAuthenticator{Verifier: a.TokenVerifier()},
		kauth,
	}})
	return &fixture{cs: cs, cluster: c, srv: srv, metrics: reg}
}

// serviceAccount creates ns (if needed) and sa in it, and returns the
// account.
func (f *fixture) serviceAccount(t *testing.T, ns, sa string) *corev1.ServiceAccount {
	t.Helper()
	ctx := context.Background()
	_, err := f.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	acct, err := f.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return acct
}

// token asks TokenRequest for a token of ns/sa for audience.
func (f *fixture) token(t *testing.T, ns, sa, audience string) string {
	t.Helper()
	tr, err := f.cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// create calls CreateCertificate over a fresh TLS connection with token as
// bearer, and returns the SPIFFE ID of the issued leaf.
func (f *fixture) create(t *testing.T, token string) (string, error) {
	t.Helper()
	tlsCfg := &tls.Config{RootCAs: f.srv.RootPool(), ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12}
	conn, err := grpc.NewClient(f.srv.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	// The CSR names someone else: the identity must come from the token.
	req := &pb.IstioCertificateRequest{Csr: string(catest.CSR(t, catest.NewKey(t), "spiffe://cluster.local/ns/istio-system/sa/istiod"))}
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, req)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode([]byte(resp.GetCertChain()[0]))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 {
		t.Fatalf("leaf has %d URIs", len(leaf.URIs))
	}
	return leaf.URIs[0].String(), nil
}

func TestServiceAccountTokens(t *testing.T) {
	f := newFixture(t)
	f.serviceAccount(t, "kubeauth-a", "frontend")
	f.serviceAccount(t, "kubeauth-a", "stranger")
	f.serviceAccount(t, "kubeauth-a", "gone")

	good := f.token(t, "kubeauth-a", "frontend", "istio-ca")
	other := f.token(t, "kubeauth-a", "stranger", "istio-ca")
	wrongAudience := f.token(t, "kubeauth-a", "frontend", "https://kubernetes.default.svc")
	orphan := f.token(t, "kubeauth-a", "gone", "istio-ca")
	if err := f.cs.CoreV1().ServiceAccounts("kubeauth-a").Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	saKey := readSAKey(t, f.cluster)
	now := time.Now()
	// Tokens signed with the cluster's own service-account key: the first
	// is accepted (so the claims are right), the second differs only in
	// being expired.
	handMade := signToken(t, saKey, "kubeauth-a", "stranger", string(f.mustUID(t, "kubeauth-a", "stranger")), now.Add(-time.Minute), now.Add(time.Hour))
	expired := signToken(t, saKey, "kubeauth-a", "stranger", string(f.mustUID(t, "kubeauth-a", "stranger")), now.Add(-2*time.Hour), now.Add(-time.Hour))
	// Signed with a key the cluster does not know, for an account it does.
	forged := signToken(t, catest.NewKey(t), "kubeauth-a", "frontend", string(f.mustUID(t, "kubeauth-a", "frontend")), now.Add(-time.Minute), now.Add(time.Hour))
	// A real token with its payload swapped for another account's.
	spliced := strings.Split(good, ".")[0] + "." + strings.Split(other, ".")[1] + "." + strings.Split(good, ".")[2]

	tests := []struct {
		name  string
		token string
		want  string // SPIFFE ID, or "" for refused
	}{
		{name: "TokenRequest token for istio-ca", token: good, want: "spiffe://cluster.local/ns/kubeauth-a/sa/frontend"},
		{name: "another account's token names that account", token: other, want: "spiffe://cluster.local/ns/kubeauth-a/sa/stranger"},
		{name: "token signed with the cluster's key", token: handMade, want: "spiffe://cluster.local/ns/kubeauth-a/sa/stranger"},
		{name: "token for another audience", token: wrongAudience},
		{name: "token of a deleted service account", token: orphan},
		{name: "expired token", token: expired},
		{name: "token signed by another key", token: forged},
		{name: "token with a spliced payload", token: spliced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.create(t, tt.token)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("issued a certificate for %s", got)
				}
				if status.Code(err) != codes.Unauthenticated {
					t.Fatalf("refusal = %v, want Unauthenticated", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got != tt.want {
				t.Fatalf("certificate names %s, want %s", got, tt.want)
			}
		})
	}

	// A renewal within the cache's lifetime is answered without a review.
	before := reviews(t, f.metrics, "authenticated")
	for range 5 {
		if _, err := f.create(t, good); err != nil {
			t.Fatal(err)
		}
	}
	if after := reviews(t, f.metrics, "authenticated"); after != before {
		t.Errorf("%v reviews for 5 renewals with one cached token, want 0", after-before)
	}
	if got := reviews(t, f.metrics, "cached"); got < 5 {
		t.Errorf("cached = %v, want >= 5", got)
	}
}

func (f *fixture) mustUID(t *testing.T, ns, sa string) (uid string) {
	t.Helper()
	acct, err := f.cs.CoreV1().ServiceAccounts(ns).Get(context.Background(), sa, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(acct.UID)
}

func readSAKey(t *testing.T, c *kubetest.Cluster) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Dir, "sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signToken makes a bound service-account token as the apiserver would,
// signed with key.
func signToken(t *testing.T, key any, ns, sa, uid string, iat, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewBuilder().
		Issuer("https://kubernetes.default.svc").
		Subject("system:serviceaccount:"+ns+":"+sa).
		Audience([]string{"istio-ca"}).
		IssuedAt(iat).NotBefore(iat).Expiration(exp).
		Claim("kubernetes.io", map[string]any{
			"namespace":      ns,
			"serviceaccount": map[string]any{"name": sa, "uid": uid},
		}).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// reviews returns zmesh_ca_token_reviews_total{result}.
func reviews(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
