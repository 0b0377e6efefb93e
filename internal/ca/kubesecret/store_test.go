package kubesecret_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/ca/kubesecret"
	"github.com/zmesh/zmesh/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.StopShared()
	os.Exit(code)
}

// namespace makes a namespace of the shared cluster for one test, standing
// in for istio-system.
func namespace(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func load(t *testing.T, cs kubernetes.Interface, ns string) *kubesecret.Store {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	s, err := kubesecret.Load(context.Background(), kubesecret.Config{Client: cs, Namespace: ns, CA: ca.Config{TrustDomain: catest.TrustDomain}, Logger: log})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

// issue has a sign a leaf and checks that the chain verifies against root.
func issue(t *testing.T, a *ca.Authority, root *x509.Certificate) []*x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(catest.CSR(t, catest.NewKey(t)))
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := a.Sign(req, workload, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("issued chain does not verify against the root: %v", err)
	}
	return chain
}

var workload = spiffeid.RequireFromString("spiffe://cluster.local/ns/foo/sa/bar")

// TestReplicasStartingAtOnceShareOneRoot starts several CAs at the same
// moment against a cluster with no CA: they race to create
// istio-ca-secret, and all must end with the one root that won, and each
// must sign chains that verify against it.
func TestReplicasStartingAtOnceShareOneRoot(t *testing.T) {
	cs := kubetest.Shared(t).Client(t)
	ns := namespace(t, cs, "kubesecret-race")
	const replicas = 4
	stores := make([]*kubesecret.Store, replicas)
	errs := make([]error, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = kubesecret.Load(context.Background(), kubesecret.Config{Client: cs, Namespace: ns, CA: ca.Config{TrustDomain: catest.TrustDomain}})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(context.Background(), kubesecret.CASecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != kubesecret.CASecretType || len(sec.Data[ca.CAKeyFile]) == 0 || len(sec.Data[ca.RootCertFile]) == 0 {
		t.Fatalf("istio-ca-secret is not laid out as Istio's: type %q, keys %v", sec.Type, keys(sec))
	}
	stored, err := x509.ParseCertificate(pemBlock(t, sec.Data[ca.CACertFile]))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		b := s.Authority().Bundle()
		if len(b) != 1 || !b[0].Equal(stored) {
			t.Fatalf("replica %d trusts another root than the stored one", i)
		}
		issue(t, s.Authority(), stored)
	}
	// They accept each other's bootstrap tokens: one key.
	tok, err := stores[0].Authority().IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stores[replicas-1].Authority().TokenVerifier().Verify(tok); err != nil {
		t.Errorf("replicas do not share the bootstrap-token key: %v", err)
	}
}

// TestRestartKeepsRoot loads the CA twice, as a control plane restarting.
func TestRestartKeepsRoot(t *testing.T) {
	cs := kubetest.Shared(t).Client(t)
	ns := namespace(t, cs, "kubesecret-restart")
	first := load(t, cs, ns).Authority()
	tok, err := first.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	second := load(t, cs, ns).Authority()
	if !second.Bundle()[0].Equal(first.Bundle()[0]) {
		t.Fatal("the root changed across a restart")
	}
	if _, err := second.TokenVerifier().Verify(tok); err != nil {
		t.Errorf("a bootstrap token from before the restart is refused: %v", err)
	}
	issue(t, second, first.Bundle()[0])
}

// TestPluggedInCACerts puts Istio's cacerts Secret in place: the CA signs
// with its intermediate and trusts its root, and creates no root of its own.
func TestPluggedInCACerts(t *testing.T) {
	cs := kubetest.Shared(t).Client(t)
	ns := namespace(t, cs, "kubesecret-cacerts")
	root, rootKey := newCA(t, "offline root", nil, nil)
	inter, interKey := newCA(t, "cluster intermediate", root, rootKey)
	createCACerts(t, cs, ns, inter, interKey, root)

	s := load(t, cs, ns)
	a := s.Authority()
	if !a.PluggedIn() || s.Source() != kubesecret.PluggedSecret {
		t.Fatalf("PluggedIn = %v, source %s", a.PluggedIn(), s.Source())
	}
	if b := a.Bundle(); len(b) != 1 || !b[0].Equal(root) {
		t.Fatal("bundle is not the cacerts root")
	}
	if chain := issue(t, a, root); !chain[1].Equal(inter) {
		t.Error("leaf not signed by ca-cert.pem")
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(context.Background(), kubesecret.CASecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("istio-ca-secret created although cacerts is used: %v", err)
	}
}

// TestBrokenCACertsIsAnError: a cacerts Secret whose key does not match
// must stop the start, not fall back to a self-signed root.
func TestBrokenCACertsIsAnError(t *testing.T) {
	cs := kubetest.Shared(t).Client(t)
	ns := namespace(t, cs, "kubesecret-broken")
	root, rootKey := newCA(t, "offline root", nil, nil)
	inter, _ := newCA(t, "cluster intermediate", root, rootKey)
	createCACerts(t, cs, ns, inter, catest.NewKey(t), root)
	if _, err := kubesecret.Load(context.Background(), kubesecret.Config{Client: cs, Namespace: ns, CA: ca.Config{TrustDomain: catest.TrustDomain}}); err == nil {
		t.Fatal("Load accepted a cacerts Secret whose key does not match")
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(context.Background(), kubesecret.CASecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a self-signed root was created instead: %v", err)
	}
}

// TestRunFollowsSecrets: a running CA plugs in a cacerts Secret that
// appears, refuses an edit that breaks it, and writes istio-ca-secret back
// if it is deleted.
func TestRunFollowsSecrets(t *testing.T) {
	cs := kubetest.Shared(t).Client(t)
	ns := namespace(t, cs, "kubesecret-run")
	s := load(t, cs, ns)
	a := s.Authority()
	selfRoot := a.Bundle()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Deleted while running: written back with the same root.
	if err := cs.CoreV1().Secrets(ns).Delete(context.Background(), kubesecret.CASecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "istio-ca-secret written back", func() bool {
		sec, err := cs.CoreV1().Secrets(ns).Get(context.Background(), kubesecret.CASecret, metav1.GetOptions{})
		if err != nil {
			return false
		}
		c, err := x509.ParseCertificate(pemBlock(t, sec.Data[ca.CACertFile]))
		return err == nil && c.Equal(selfRoot)
	})

	// cacerts appears: plugged in without a restart.
	updated := a.Updated()
	root, rootKey := newCA(t, "offline root", nil, nil)
	inter, interKey := newCA(t, "cluster intermediate", root, rootKey)
	createCACerts(t, cs, ns, inter, interKey, root)
	select {
	case <-updated:
	case <-time.After(10 * time.Second):
		t.Fatal("cacerts not plugged in within 10s")
	}
	if !a.PluggedIn() || !a.Bundle()[0].Equal(root) {
		t.Fatal("the running CA does not use cacerts")
	}

	// A broken edit is refused; the CA keeps signing with the good one.
	sec, err := cs.CoreV1().Secrets(ns).Get(context.Background(), kubesecret.PluggedSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data[ca.CAKeyFile] = pemKey(t, catest.NewKey(t))
	if _, err := cs.CoreV1().Secrets(ns).Update(context.Background(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A later good edit (a new intermediate) proves the broken one was
	// seen and skipped, not just not yet read.
	inter2, inter2Key := newCA(t, "second intermediate", root, rootKey)
	if sec, err = cs.CoreV1().Secrets(ns).Get(context.Background(), kubesecret.PluggedSecret, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	sec.Data[ca.CACertFile], sec.Data[ca.CAKeyFile], sec.Data[ca.CertChainFile] = pemCert(inter2), pemKey(t, inter2Key), pemCert(inter2, root)
	updated = a.Updated()
	if !a.SigningCertificate().Equal(inter) {
		t.Fatal("a broken cacerts edit replaced the CA")
	}
	if _, err := cs.CoreV1().Secrets(ns).Update(context.Background(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-updated:
	case <-time.After(10 * time.Second):
		t.Fatal("cacerts edit not applied within 10s")
	}
	if !a.SigningCertificate().Equal(inter2) {
		t.Fatal("the CA does not sign with the edited cacerts")
	}
	issue(t, a, root)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createCACerts(t *testing.T, cs kubernetes.Interface, ns string, inter *x509.Certificate, interKey crypto.Signer, root *x509.Certificate) {
	t.Helper()
	_, err := cs.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: kubesecret.PluggedSecret},
		Data: map[string][]byte{
			ca.CACertFile:    pemCert(inter),
			ca.CAKeyFile:     pemKey(t, interKey),
			ca.CertChainFile: pemCert(inter, root),
			ca.RootCertFile:  pemCert(root),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T, name string, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := catest.NewKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func pemCert(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func pemKey(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func pemBlock(t *testing.T, b []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}

func keys(sec *corev1.Secret) []string {
	var out []string
	for k := range sec.Data {
		out = append(out, k)
	}
	return out
}

// TestRotationReachesEveryReplica runs two replicas and rotates the root
// through the API: each step reaches both, and two replicas racing to take
// the same step apply it once.
func TestRotationReachesEveryReplica(t *testing.T) {
	cs := kubetest.Shared(t).Client(t)
	ns := namespace(t, cs, "kubesecret-rotate")
	stores := []*kubesecret.Store{load(t, cs, ns), load(t, cs, ns)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	old := stores[0].Authority().Bundle()[0]
	force := ca.RotateOptions{Force: true}

	// Both replicas try to prepare at once: one new root, not two.
	errs := make([]error, 2)
	var race sync.WaitGroup
	for i, s := range stores {
		race.Go(func() { errs[i] = s.Rotate(context.Background(), ca.StepPrepare, force) })
	}
	race.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("racing prepares: %v / %v; want exactly one to succeed", errs[0], errs[1])
	}
	for i, s := range stores {
		waitFor(t, "both roots trusted by every replica", func() bool { return len(s.Authority().Bundle()) == 2 })
		if !s.Authority().SigningCertificate().Equal(old) {
			t.Fatalf("replica %d signs with the new root before activate", i)
		}
	}
	newRoot := stores[0].Authority().Bundle()[1]

	if err := stores[1].Rotate(context.Background(), ca.StepActivate, force); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		waitFor(t, "every replica signs with the new root", func() bool { return s.Authority().SigningCertificate().Equal(newRoot) })
		issue(t, s.Authority(), newRoot)
		issue(t, s.Authority(), newRoot)
	}
	if err := stores[0].Rotate(context.Background(), ca.StepRetire, force); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		waitFor(t, "the old root retired everywhere", func() bool {
			b := s.Authority().Bundle()
			return len(b) == 1 && b[0].Equal(newRoot)
		})
	}
	// A restart after the rotation loads the new root.
	if b := load(t, cs, ns).Authority().Bundle(); len(b) != 1 || !b[0].Equal(newRoot) {
		t.Fatal("a restarted replica does not trust the new root alone")
	}
}
