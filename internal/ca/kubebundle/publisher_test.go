package kubebundle_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/ca/kubebundle"
	"github.com/zmesh/zmesh/internal/kubetest"
	"github.com/zmesh/zmesh/internal/pemcert"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.StopShared()
	os.Exit(code)
}

func memoryCA(t *testing.T) *ca.Authority {
	t.Helper()
	m, err := ca.NewRootMaterial(ca.Config{TrustDomain: catest.TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ca.NewTokenKey()
	a, err := ca.New(ca.Config{TrustDomain: catest.TrustDomain}, m, key)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func run(t *testing.T, cs kubernetes.Interface, a *ca.Authority) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	p, err := kubebundle.New(kubebundle.Config{Client: cs, Roots: a.Bundle, Updated: a.Updated, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventually polls cond for up to 5 s: the time a new namespace may wait
// for its bundle.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s (%s)", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasBundle(cs kubernetes.Interface, ns, want string) func() (bool, string) {
	return func() (bool, string) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), kubebundle.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return cm.Data[kubebundle.ConfigMapKey] == want, "content differs"
	}
}

func TestPublishesToEveryNamespace(t *testing.T) {
	cs := kubetest.Shared(t).Client(t)
	ctx := context.Background()
	mk := func(name string) {
		t.Helper()
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("bundle-before")
	a := memoryCA(t)
	want := string(pemcert.Encode(a.Bundle()...))
	run(t, cs, a)

	eventually(t, "bundle in a namespace that existed before", hasBundle(cs, "bundle-before", want))
	eventually(t, "bundle in default", hasBundle(cs, "default", want))
	mk("bundle-new")
	eventually(t, "bundle in a new namespace", hasBundle(cs, "bundle-new", want))
	if _, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, kubebundle.ConfigMapName, metav1.GetOptions{}); err == nil {
		t.Error("published to kube-system, which istiod skips")
	}

	// Deleted, then edited: put back each time.
	if err := cs.CoreV1().ConfigMaps("bundle-new").Delete(ctx, kubebundle.ConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bundle repaired after deletion", hasBundle(cs, "bundle-new", want))
	cm, err := cs.CoreV1().ConfigMaps("bundle-new").Get(ctx, kubebundle.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[kubebundle.ConfigMapKey] = "-----BEGIN CERTIFICATE-----\nforged\n-----END CERTIFICATE-----\n"
	if _, err := cs.CoreV1().ConfigMaps("bundle-new").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bundle repaired after an edit", hasBundle(cs, "bundle-new", want))

	// The ClusterTrustBundle, served by this apiserver.
	eventually(t, "ClusterTrustBundle", func() (bool, string) {
		ctb, err := cs.CertificatesV1().ClusterTrustBundles().Get(ctx, kubebundle.DefaultClusterTrustBundle, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ctb.Spec.TrustBundle == want && ctb.Spec.SignerName == "", "content differs"
	})

	// A new bundle (a rotation's second root, say) reaches them all.
	old := a.Bundle()[0]
	next, err := ca.NewRootMaterial(ca.Config{TrustDomain: catest.TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	next.RootCert = append(next.RootCert, pemcert.Encode(old)...)
	if _, err := a.SetMaterial(next); err != nil {
		t.Fatal(err)
	}
	want2 := string(pemcert.Encode(a.Bundle()...))
	if len(a.Bundle()) != 2 {
		t.Fatalf("bundle holds %d roots, want 2", len(a.Bundle()))
	}
	for _, ns := range []string{"bundle-before", "bundle-new", "default"} {
		eventually(t, "both roots in "+ns, hasBundle(cs, ns, want2))
	}
	eventually(t, "both roots in the ClusterTrustBundle", func() (bool, string) {
		ctb, err := cs.CertificatesV1().ClusterTrustBundles().Get(ctx, kubebundle.DefaultClusterTrustBundle, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ctb.Spec.TrustBundle == want2, "content differs"
	})
}
