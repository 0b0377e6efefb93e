package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/kubetest"
	"github.com/zmesh/zmesh/internal/meshtest"
)

var gatewayGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "gateways"}

// freeAddr returns a loopback address free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// putTLSSecret creates or replaces the kubernetes.io/tls Secret ns/name.
func putTLSSecret(t *testing.T, cs kubernetes.Interface, ns, name string, chain, key []byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": chain, "tls.key": key}}
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err == nil {
		return
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// servedCN is the common name of the certificate the server at addr
// presents for sni, or the handshake's error.
func servedCN(addr, sni string, roots *meshtest.CA) (string, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: roots.Pool()})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// TestKubeGatewayCredential runs the control plane against a real
// kube-apiserver and an ingress gateway (`zmesh proxy --gateway`, its
// identity from a service-account token) that has no credential files:
// its Gateway's credentialNames come from Secrets of its own namespace,
// pushed over its xDS stream. The gateway serves the Secret's
// certificate, serves the renewed one after the Secret is edited,
// refuses handshakes on that server (and only that one) while the Secret
// is malformed or gone, and never serves the Secret of the same name in
// another namespace (the Gateway's own).
func TestKubeGatewayCredential(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an apiserver, a control plane and a gateway")
	}
	c := kubetest.New(t)
	cs := c.Client(t)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := kubecrd.Apply(ctx, dyn); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"istio-system", "apps"} {
		createNamespace(t, cs, ns, nil)
	}
	if _, err := cs.CoreV1().ServiceAccounts("istio-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	web := meshtest.NewCA(t, "web.test")
	chain1, key1 := meshtest.PEM(t, web.IssueLeaf(t, "web-1", "web.example.test"))
	chain2, key2 := meshtest.PEM(t, web.IssueLeaf(t, "web-2", "web.example.test"))
	chainApps, keyApps := meshtest.PEM(t, web.IssueLeaf(t, "apps-namespace", "web.example.test"))
	chainAPI, keyAPI := meshtest.PEM(t, web.IssueLeaf(t, "api", "api.example.test"))
	putTLSSecret(t, cs, "istio-system", "web-cert", chain1, key1)
	putTLSSecret(t, cs, "istio-system", "api-cert", chainAPI, keyAPI)
	// The Gateway's namespace holds a Secret of the same name: a gateway
	// reads its own namespace's, never this one.
	putTLSSecret(t, cs, "apps", "web-cert", chainApps, keyApps)
	gw := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": "web", "namespace": "apps"},
		"spec": map[string]any{
			"selector": map[string]any{"istio": "ingressgateway"},
			"servers": []any{
				map[string]any{"port": map[string]any{"number": int64(443), "name": "https", "protocol": "HTTPS"},
					"hosts": []any{"web.example.test"}, "tls": map[string]any{"mode": "SIMPLE", "credentialName": "web-cert"}},
				map[string]any{"port": map[string]any{"number": int64(8443), "name": "https-api", "protocol": "HTTPS"},
					"hosts": []any{"api.example.test"}, "tls": map[string]any{"mode": "SIMPLE", "credentialName": "api-cert"}},
			},
		},
	}}
	if _, err := dyn.Resource(gatewayGVR).Namespace("apps").Create(ctx, gw, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	data := filepath.Join(t.TempDir(), "data")
	cpAddr := freeAddr(t)
	cp := startProcess(t, "control plane", zmeshBin, "controlplane", "--kubeconfig", c.Kubeconfig, "--data-dir", data,
		"--listen", cpAddr, "--admin", "")
	root := filepath.Join(data, "root-cert.pem")
	waitFor(t, "the control plane's root-cert.pem", 30*time.Second, cp.Logs, func() bool {
		_, err := os.Stat(root)
		return err == nil
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(k8sToken(t, cs, "istio-system", "istio-ingressgateway", "istio-ca")), 0o600); err != nil {
		t.Fatal(err)
	}
	webAddr, apiAddr := freeAddr(t), freeAddr(t)
	gwp := startProcess(t, "ingress gateway", zmeshBin, "proxy", "--gateway",
		"--controlplane", cpAddr, "--root-cert", root, "--token-file", tokenFile,
		"--name", "istio-ingressgateway", "--namespace", "istio-system", "--service-account", "istio-ingressgateway",
		"--labels", "istio=ingressgateway", "--inbound", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--gateway-port", fmt.Sprintf("443=%s,8443=%s", webAddr, apiAddr))
	logs := func() string { return "control plane:\n" + cp.Logs() + "\ngateway:\n" + gwp.Logs() }
	defer func() {
		if t.Failed() {
			t.Log(logs())
		}
	}()

	// Every handshake of the test goes through served: the apps
	// namespace's certificate must never be presented.
	served := func(addr, sni string) (string, error) {
		cn, err := servedCN(addr, sni, web)
		if cn == "apps-namespace" {
			t.Fatalf("the gateway served the Secret of another namespace")
		}
		return cn, err
	}
	serves := func(addr, sni, want string) func() bool {
		return func() bool { cn, err := served(addr, sni); return err == nil && cn == want }
	}
	refuses := func(addr, sni string) func() bool {
		return func() bool { _, err := served(addr, sni); return err != nil }
	}
	waitFor(t, "the Secret's certificate served", 30*time.Second, logs, serves(webAddr, "web.example.test", "web-1"))
	waitFor(t, "the second server's certificate served", 5*time.Second, logs, serves(apiAddr, "api.example.test", "api"))

	putTLSSecret(t, cs, "istio-system", "web-cert", chain2, key2)
	waitFor(t, "the renewed certificate served", 10*time.Second, logs, serves(webAddr, "web.example.test", "web-2"))

	// A key that does not match: refused (fail closed), the other server
	// unaffected, and the control plane says why.
	putTLSSecret(t, cs, "istio-system", "web-cert", chain2, key1)
	waitFor(t, "handshakes refused with a malformed Secret", 10*time.Second, logs, refuses(webAddr, "web.example.test"))
	if cn, err := served(apiAddr, "api.example.test"); err != nil || cn != "api" {
		t.Errorf("the other server: %q, %v", cn, err)
	}
	waitFor(t, "the control plane's log of the refused Secret", 5*time.Second, logs, func() bool {
		return strings.Contains(cp.Logs(), "gateway credential refused") && strings.Contains(cp.Logs(), "istio-system/web-cert")
	})
	if strings.Contains(logs(), "PRIVATE KEY") {
		t.Error("a private key reached a log")
	}

	putTLSSecret(t, cs, "istio-system", "web-cert", chain1, key1)
	waitFor(t, "the fixed Secret served", 10*time.Second, logs, serves(webAddr, "web.example.test", "web-1"))
	if err := cs.CoreV1().Secrets("istio-system").Delete(ctx, "web-cert", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "handshakes refused once the Secret is gone", 10*time.Second, logs, refuses(webAddr, "web.example.test"))
	if cn, err := served(apiAddr, "api.example.test"); err != nil || cn != "api" {
		t.Errorf("the other server after the deletion: %q, %v", cn, err)
	}
}
