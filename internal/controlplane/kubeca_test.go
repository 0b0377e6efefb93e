package controlplane

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/ca/kubebundle"
	"github.com/zmesh/zmesh/internal/kubetest"
)

// runKube starts a control plane in Kubernetes mode with a fresh data dir
// and returns its gRPC address, its data dir and a function that stops it.
func runKube(t *testing.T, c *kubetest.Cluster) (addr, dataDir string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	// Not there yet: the control plane creates it (the bundle file is
	// awaited below).
	dataDir = filepath.Join(t.TempDir(), "data", "dir")
	cfg := Config{
		DataDir:    dataDir,
		Listen:     addr,
		Kubeconfig: c.Kubeconfig,
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	waitUntil(t, 30*time.Second, "control plane wrote root-cert.pem", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run: %v", err)
		default:
		}
		_, err := os.Stat(filepath.Join(dataDir, "root-cert.pem"))
		return err == nil
	})
	return addr, dataDir, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ensureNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !errorsIsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func errorsIsAlreadyExists(err error) bool {
	var s interface{ Status() metav1.Status }
	return errors.As(err, &s) && s.Status().Reason == metav1.StatusReasonAlreadyExists
}

func tokenFor(t *testing.T, cs kubernetes.Interface, ns, sa, audience string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// TestKubernetesIdentity runs the control plane against a real apiserver
// as a pod's proxy would meet it: an agent reading its projected token
// from a file gets a certificate for exactly its service account, the
// trust bundle is in the namespace's istio-ca-root-cert, and a restarted
// control plane keeps the same root.
func TestKubernetesIdentity(t *testing.T) {
	c, cs := kubeCluster(t)
	ensureNamespace(t, cs, "istio-system")
	ensureNamespace(t, cs, "web")
	if _, err := cs.CoreV1().ServiceAccounts("web").Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "frontend"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addr, dataDir, stop := runKube(t, c)
	rootPEM, err := os.ReadFile(filepath.Join(dataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	roots, err := x509bundle.Parse(td, rootPEM)
	if err != nil {
		t.Fatal(err)
	}

	// The projected token file, first holding a token for another
	// audience: refused. The agent reads the file again at its next try,
	// after the "kubelet" replaced it.
	tokenFile := filepath.Join(t.TempDir(), "istio-token")
	if err := os.WriteFile(tokenFile, []byte(tokenFor(t, cs, "web", "frontend", "https://kubernetes.default.svc")), 0o600); err != nil {
		t.Fatal(err)
	}
	ag, err := agent.New(agent.Config{
		CAAddress:      addr,
		CARoots:        roots.X509Authorities(),
		Token:          func() (string, error) { b, err := os.ReadFile(tokenFile); return string(bytes.TrimSpace(b)), err },
		TrustDomain:    td,
		Namespace:      "web",
		ServiceAccount: "frontend",
		MinRetry:       100 * time.Millisecond,
		MaxRetry:       300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(ctx) }()
	defer func() {
		cancel()
		<-agentDone
	}()
	waitUntil(t, 10*time.Second, "a refused first request", func() bool { return ag.RenewalFailures() > 0 })
	select {
	case <-ag.Ready():
		t.Fatal("a token for another audience got a certificate")
	default:
	}
	if err := os.WriteFile(tokenFile, []byte(tokenFor(t, cs, "web", "frontend", "istio-ca")), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ag.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no certificate within 10s of a valid token")
	}
	svid, err := ag.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if got := svid.ID.String(); got != "spiffe://cluster.local/ns/web/sa/frontend" {
		t.Fatalf("certificate for %s", got)
	}

	// The root is published in the workload's namespace.
	waitUntil(t, 10*time.Second, "istio-ca-root-cert in web", func() bool {
		cm, err := cs.CoreV1().ConfigMaps("web").Get(context.Background(), kubebundle.ConfigMapName, metav1.GetOptions{})
		return err == nil && cm.Data[kubebundle.ConfigMapKey] == string(rootPEM)
	})

	// A restart, even with an empty data dir, keeps the root.
	stop()
	_, dataDir2, _ := runKube(t, c)
	rootPEM2, err := os.ReadFile(filepath.Join(dataDir2, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rootPEM, rootPEM2) {
		t.Fatal("the root changed across a control-plane restart")
	}
}
