package kubesource_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/zmesh/zmesh/internal/config/kubesource"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

// published records what Credentials publishes.
type published struct {
	mu   sync.Mutex
	last map[string]xds.Credential
	n    int
}

func (p *published) set(cs []xds.Credential) {
	m := map[string]xds.Credential{}
	for _, c := range cs {
		m[c.Key()] = c
	}
	p.mu.Lock()
	p.last, p.n = m, p.n+1
	p.mu.Unlock()
}

func (p *published) wait(t *testing.T, what string, cond func(map[string]xds.Credential) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		ok := p.n > 0 && cond(p.last)
		last := p.last
		p.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			keys := []string{}
			for k := range last {
				keys = append(keys, k)
			}
			t.Fatalf("%s: not within 10s; published %v", what, keys)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restrictedREST is the cluster's REST config as a service account that
// may read Secrets in namespace ns only, as zmesh install grants the
// control plane in a gateway namespace.
func restrictedREST(t *testing.T, e *env, ns string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	e.namespace(t, "cred-cp")
	if _, err := e.kube.CoreV1().ServiceAccounts("cred-cp").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "cp"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-secrets"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-secrets"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-secrets"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "cp", Namespace: "cred-cp"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := e.kube.CoreV1().ServiceAccounts("cred-cp").CreateToken(ctx, "cp", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc := rest.CopyConfig(e.c.RESTConfig())
	rc.BearerToken, rc.BearerTokenFile = tr.Status.Token, ""
	return rc
}

func putSecret(t *testing.T, e *env, ns, name string, data map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: corev1.SecretTypeOpaque, Data: data}
	if _, err := e.kube.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err == nil {
		return
	}
	if _, err := e.kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialsFollowOnlyWantedSecrets runs Credentials against the
// real apiserver as a service account that may read Secrets in the
// gateway's namespace only: the wanted Secret is read, a renewal is
// published, a malformed edit takes it out (fail closed) and a fix
// brings it back, a NAME-cacert is read for its CA, a Secret of the same
// name in another namespace and an unwanted one beside it never are, and
// a Secret no longer wanted is dropped.
func TestCredentialsFollowOnlyWantedSecrets(t *testing.T) {
	e := newEnv(t)
	for _, ns := range []string{"cred-gw", "cred-other"} {
		e.namespace(t, ns)
	}
	ca := meshtest.NewCA(t, "web.test")
	chain1, key1 := meshtest.PEM(t, ca.IssueLeaf(t, "web-1", "web.example.test"))
	chain2, key2 := meshtest.PEM(t, ca.IssueLeaf(t, "web-2", "web.example.test"))
	putSecret(t, e, "cred-gw", "web-cert", map[string][]byte{"tls.crt": chain1, "tls.key": key1})
	putSecret(t, e, "cred-gw", "unwanted", map[string][]byte{"tls.crt": chain1, "tls.key": key1})
	putSecret(t, e, "cred-other", "web-cert", map[string][]byte{"tls.crt": chain2, "tls.key": key2})

	var pub published
	creds, err := kubesource.NewCredentials(kubesource.CredentialsConfig{REST: restrictedREST(t, e, "cred-gw"), Publish: pub.set, Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- creds.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	creds.Want([]xds.CredentialRef{{Namespace: "cred-gw", Name: "web-cert"}, {Namespace: "cred-gw", Name: "web-cert-cacert", Use: xds.CACredential}})

	only := func(keys ...string) func(map[string]xds.Credential) bool {
		return func(m map[string]xds.Credential) bool {
			if len(m) != len(keys) {
				return false
			}
			for _, k := range keys {
				if _, ok := m[k]; !ok {
					return false
				}
			}
			return true
		}
	}
	pub.wait(t, "the wanted Secret read", func(m map[string]xds.Credential) bool {
		return only("cred-gw/web-cert")(m) && bytes.Equal(m["cred-gw/web-cert"].Cert, chain1)
	})
	putSecret(t, e, "cred-gw", "web-cert", map[string][]byte{"tls.crt": chain2, "tls.key": key2})
	pub.wait(t, "the renewal published", func(m map[string]xds.Credential) bool {
		return only("cred-gw/web-cert")(m) && bytes.Equal(m["cred-gw/web-cert"].Cert, chain2) && bytes.Equal(m["cred-gw/web-cert"].PrivateKey, key2)
	})
	putSecret(t, e, "cred-gw", "web-cert", map[string][]byte{"tls.crt": chain1, "tls.key": key2})
	pub.wait(t, "a mismatched key pair withdrawn", only())
	putSecret(t, e, "cred-gw", "web-cert", map[string][]byte{"cert": chain1, "key": key1})
	pub.wait(t, "the fixed (generic) Secret back", only("cred-gw/web-cert"))
	putSecret(t, e, "cred-gw", "web-cert-cacert", map[string][]byte{"cacert": ca.RootPEM()})
	pub.wait(t, "the CA Secret read", func(m map[string]xds.Credential) bool {
		c := m["cred-gw/web-cert-cacert"]
		return only("cred-gw/web-cert", "cred-gw/web-cert-cacert")(m) && len(c.PrivateKey) == 0 && bytes.Equal(c.CA, ca.RootPEM())
	})
	if err := e.kube.CoreV1().Secrets("cred-gw").Delete(context.Background(), "web-cert-cacert", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pub.wait(t, "a deleted Secret withdrawn", only("cred-gw/web-cert"))
	creds.Want(nil)
	pub.wait(t, "nothing wanted, nothing held", only())
}

// testLog sends log lines to the test's log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}
