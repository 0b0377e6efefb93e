package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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
// another namespace (the Gateway's own). A DestinationRule's
// credentialName, a Secret as well, is the client certificate the
// gateway originates mutual TLS with to a server outside the mesh.
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
	// Origination: the gateway's plain port 8080 routes
	// external.example.test to a server outside the mesh, with mutual TLS
	// from a DestinationRule's credentialName, a Secret too.
	ext := meshtest.NewTLSServer(t, "external.example.test")
	_, extPort, _ := strings.Cut(ext.Addr, ":")
	clientChain, clientKey := meshtest.PEM(t, ext.CA.IssueLeaf(t, "gateway-client-from-secret"))
	if _, err := cs.CoreV1().Secrets("istio-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "client-cred", Namespace: "istio-system"},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": clientChain, "tls.key": clientKey, "ca.crt": ext.CA.RootPEM()}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []map[string]any{
		{"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": map[string]any{"name": "external", "namespace": "apps"},
			"spec": map[string]any{"hosts": []any{"external.example.test"}, "location": "MESH_EXTERNAL", "resolution": "STATIC",
				"ports":     []any{map[string]any{"number": int64(443), "name": "http-tls", "protocol": "HTTP", "targetPort": mustAtoi(t, extPort)}},
				"endpoints": []any{map[string]any{"address": "127.0.0.1"}}}},
		{"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": map[string]any{"name": "out", "namespace": "apps"},
			"spec": map[string]any{"selector": map[string]any{"istio": "ingressgateway"}, "servers": []any{
				map[string]any{"port": map[string]any{"number": int64(8080), "name": "http", "protocol": "HTTP"}, "hosts": []any{"external.example.test"}}}}},
		{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": map[string]any{"name": "out", "namespace": "apps"},
			"spec": map[string]any{"hosts": []any{"external.example.test"}, "gateways": []any{"out"},
				"http": []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "external.example.test", "port": map[string]any{"number": int64(443)}}}}}}}},
		{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": map[string]any{"name": "out", "namespace": "apps"},
			"spec": map[string]any{"host": "external.example.test", "trafficPolicy": map[string]any{"tls": map[string]any{"mode": "MUTUAL", "credentialName": "client-cred"}}}},
	} {
		u := &unstructured.Unstructured{Object: o}
		gvr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: map[string]string{"ServiceEntry": "serviceentries", "Gateway": "gateways", "VirtualService": "virtualservices", "DestinationRule": "destinationrules"}[u.GetKind()]}
		if _, err := dyn.Resource(gvr).Namespace("apps").Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", u.GetKind(), err)
		}
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
	webAddr, apiAddr, outAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	gwp := startProcess(t, "ingress gateway", zmeshBin, "proxy", "--gateway",
		"--controlplane", cpAddr, "--root-cert", root, "--token-file", tokenFile,
		"--name", "istio-ingressgateway", "--namespace", "istio-system", "--service-account", "istio-ingressgateway",
		"--labels", "istio=ingressgateway", "--inbound", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--gateway-port", fmt.Sprintf("443=%s,8443=%s,8080=%s", webAddr, apiAddr, outAddr))
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

	waitFor(t, "origination with the DestinationRule's Secret", 10*time.Second, logs, func() bool {
		req, _ := http.NewRequest("GET", "http://"+outAddr+"/out", nil)
		req.Host = "external.example.test"
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.Contains(string(b), "client=gateway-client-from-secret")
	})

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

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
