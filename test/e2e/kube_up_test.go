package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/kubetest"
	"github.com/zmesh/zmesh/internal/validator"
)

var authzGVR = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}

// TestKubeUp runs `zmesh up --kubeconfig` on the quickstart against a
// real kube-apiserver (no kubelet): the quickstart is applied to the
// cluster and the mesh behaves as from files; policy changes made through
// the API reach the proxies within 2 s, a malformed object is left out
// alone; the apiserver calls the control plane's webhook; the CA takes
// only tokens for istio-ca of live service accounts; the root is
// published in new namespaces and survives a control-plane restart.
func TestKubeUp(t *testing.T) {
	c := kubetest.New(t)
	cs := c.Client(t)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	copyDir(t, "../../examples/quickstart", dir)
	// A --data-dir that does not exist yet: zmesh up creates it (the
	// control plane in Kubernetes mode would not).
	m := startMeshIn(t, dir, "--kubeconfig", c.Kubeconfig, "--data-dir", filepath.Join(t.TempDir(), "data"))
	frontend, stranger := m.w("web/frontend"), m.w("web/stranger")
	webhook := lineField(t, m, "zmesh: controlplane ", "webhook")
	dataDir := lineField(t, m, "zmesh: controlplane ", "data")
	defer func() {
		if t.Failed() {
			t.Logf("zmesh up logs:\n%s", m.Logs())
		}
	}()

	t.Run("the quickstart is applied to the cluster", func(t *testing.T) {
		if _, err := dyn.Resource(authzGVR).Namespace("api").Get(ctx, "backend-allow-frontend", metav1.GetOptions{}); err != nil {
			t.Errorf("AuthorizationPolicy api/backend-allow-frontend: %v", err)
		}
		for _, sa := range []string{"web/frontend", "web/stranger", "api/backend"} {
			ns, name, _ := strings.Cut(sa, "/")
			if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Errorf("ServiceAccount %s: %v", sa, err)
			}
		}
		// No bootstrap token: each proxy's token file is a TokenRequest JWT.
		tok, err := os.ReadFile(filepath.Join(dataDir, "tokens", "web.frontend.token"))
		if err != nil {
			t.Fatal(err)
		}
		if aud := jwtAudience(t, string(tok)); aud != "istio-ca" {
			t.Errorf("frontend's token has audience %q, want istio-ca", aud)
		}
	})

	t.Run("frontend calls backend with its SPIFFE ID, stranger is denied", func(t *testing.T) {
		r := call(t, frontend.app, "backend.api.svc.cluster.local/hello")
		if r.Status != 200 {
			t.Fatalf("frontend: status %d body %q", r.Status, r.Body)
		}
		var e echoReply
		if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
			t.Fatal(err)
		}
		if xfcc := strings.Join(e.Headers["X-Forwarded-Client-Cert"], ","); !strings.Contains(xfcc, "URI=spiffe://cluster.local/ns/web/sa/frontend") {
			t.Fatalf("backend saw XFCC %q, want the frontend's SPIFFE ID", xfcc)
		}
		if r := call(t, stranger.app, "backend.api/"); r.Status != 403 {
			t.Fatalf("stranger: status %d body %q, want 403", r.Status, r.Body)
		}
	})

	t.Run("a policy changed through the API reaches the proxies within 2s", func(t *testing.T) {
		start := time.Now()
		setPrincipals(t, dyn, "backend-allow-frontend", "cluster.local/ns/web/sa/stranger")
		waitStatus(t, stranger.app, "backend.api/", 200, 2*time.Second)
		waitStatus(t, frontend.app, "backend.api/", 403, 2*time.Second-time.Since(start))
		t.Logf("API change to behaviour change at both callers: %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("a malformed object is rejected alone", func(t *testing.T) {
		// The CRD schema admits a wildcard inside a principal; zmesh does not.
		bad := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
			"metadata": map[string]any{"name": "bad-principal", "namespace": "api"},
			"spec": map[string]any{"rules": []any{map[string]any{"from": []any{map[string]any{
				"source": map[string]any{"principals": []any{"cluster.local/ns/*/sa/x"}}}}}}},
		}}
		// The control plane's validating webhook refuses it at apply
		// time, with zmesh's reason...
		_, err := dyn.Resource(authzGVR).Namespace("api").Create(ctx, bad, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "zmesh: configuration is invalid") || !strings.Contains(err.Error(), "wildcard") {
			t.Fatalf("the malformed policy was not refused by the validating webhook: %v", err)
		}
		// ...and once stored anyway (the webhook is Ignore'd when no control
		// plane answers; here it is removed), the mesh leaves it out alone.
		storeBypassingValidator(t, cs, func() error {
			_, err := dyn.Resource(authzGVR).Namespace("api").Create(ctx, bad, metav1.CreateOptions{})
			return err
		})
		start := time.Now()
		setPrincipals(t, dyn, "backend-allow-frontend", "cluster.local/ns/web/sa/frontend")
		waitStatus(t, frontend.app, "backend.api/", 200, 2*time.Second)
		waitStatus(t, stranger.app, "backend.api/", 403, 2*time.Second-time.Since(start))
		want := `zmesh_config_rejected_resources{kind="AuthorizationPolicy",name="bad-principal",namespace="api",reason="invalid"} 1`
		waitFor(t, "the bad policy reported rejected", 5*time.Second, m.Logs, func() bool {
			return strings.Contains(get(t, "http://"+m.cpAdmin+"/metrics"), want)
		})
	})

	t.Run("the apiserver calls the webhook and stores the pod with its sidecar", func(t *testing.T) {
		waitFor(t, "the webhook registered at "+webhook, 10*time.Second, m.Logs, func() bool {
			wh, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "zmesh-sidecar-injector", metav1.GetOptions{})
			return err == nil && len(wh.Webhooks) > 0 && wh.Webhooks[0].ClientConfig.URL != nil &&
				strings.Contains(*wh.Webhooks[0].ClientConfig.URL, "://"+webhook+"/")
		})
		createNamespace(t, cs, "shop", map[string]string{"istio-injection": "enabled"})
		// No controller manager here creates the namespace's default account.
		if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "shop"},
			Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}},
		}
		got, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var sidecar *corev1.Container
		for i := range got.Spec.InitContainers {
			if got.Spec.InitContainers[i].Name == "zmesh-proxy" {
				sidecar = &got.Spec.InitContainers[i]
			}
		}
		if sidecar == nil || sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("stored pod's init containers %+v, want zmesh-proxy with restartPolicy Always", got.Spec.InitContainers)
		}
	})

	root := readPEMCert(t, filepath.Join(dataDir, "root-cert.pem"))
	t.Run("the CA refuses a token for another audience or a deleted service account", func(t *testing.T) {
		if id, err := csrWithToken(t, m.grpc, root, k8sToken(t, cs, "web", "frontend", "istio-ca")); err != nil || id != "spiffe://cluster.local/ns/web/sa/frontend" {
			t.Fatalf("a good token: id %q err %v, want the frontend's identity", id, err)
		}
		if _, err := csrWithToken(t, m.grpc, root, k8sToken(t, cs, "web", "frontend", "https://kubernetes.default.svc")); err == nil {
			t.Error("a token for the apiserver's audience got a certificate")
		}
		if _, err := cs.CoreV1().ServiceAccounts("web").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "gone"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		orphan := k8sToken(t, cs, "web", "gone", "istio-ca")
		if err := cs.CoreV1().ServiceAccounts("web").Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := csrWithToken(t, m.grpc, root, orphan); err == nil {
			t.Error("a token of a deleted service account got a certificate")
		}
	})

	t.Run("istio-ca-root-cert appears in a new namespace", func(t *testing.T) {
		createNamespace(t, cs, "fresh", nil)
		waitFor(t, "istio-ca-root-cert in fresh", 10*time.Second, m.Logs, func() bool {
			cm, err := cs.CoreV1().ConfigMaps("fresh").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
			return err == nil && strings.Contains(cm.Data["root-cert.pem"], string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})))
		})
	})

	t.Run("a restarted control plane keeps the root", func(t *testing.T) {
		cp := childPID(t, zmeshBin, "controlplane", c.Kubeconfig)
		if err := syscall.Kill(cp, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the control plane restarted and ready", 20*time.Second, m.Logs, func() bool {
			pid := childPIDOrZero(zmeshBin, "controlplane", c.Kubeconfig)
			return pid != 0 && pid != cp && httpStatus(plain, "http://"+m.cpAdmin+"/ready") == 200
		})
		// The restarted CA signs under the same root (the TLS handshake
		// itself is verified against it too).
		if _, err := csrWithToken(t, m.grpc, root, k8sToken(t, cs, "api", "backend", "istio-ca")); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
		if after := readPEMCert(t, filepath.Join(dataDir, "root-cert.pem")); !after.Equal(root) {
			t.Errorf("root changed across the restart: %s -> %s", root.Subject, after.Subject)
		}
		if r := call(t, frontend.app, "backend.api/"); r.Status != 200 {
			t.Errorf("frontend after the restart: %d", r.Status)
		}
	})

	t.Run("proxy-status --kubeconfig lists the mesh's proxies", func(t *testing.T) {
		// After the restart above, each proxy is listed once it is back.
		var out []byte
		waitFor(t, "every proxy in proxy-status", 15*time.Second, func() string { return string(out) }, func() bool {
			var err error
			out, err = exec.Command(zmeshBin, "proxy-status", "--kubeconfig", c.Kubeconfig, "-o", "json").CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			var rows []struct{ Identity string }
			if err := json.Unmarshal(out, &rows); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			ids := map[string]bool{}
			for _, r := range rows {
				ids[r.Identity] = true
			}
			return ids["spiffe://cluster.local/ns/web/sa/frontend"] && ids["spiffe://cluster.local/ns/web/sa/stranger"] && ids["spiffe://cluster.local/ns/api/sa/backend"]
		})
		// Another cluster's kubeconfig finds no mesh, rather than the default address.
		other := filepath.Join(t.TempDir(), "kubeconfig")
		kc, _ := os.ReadFile(c.Kubeconfig)
		writeFile(t, other, strings.Replace(string(kc), c.Host, "https://127.0.0.1:1", 1))
		if out, err := exec.Command(zmeshBin, "proxy-status", "--kubeconfig", other).CombinedOutput(); err == nil || !strings.Contains(string(out), "no running `zmesh up` against https://127.0.0.1:1") {
			t.Errorf("proxy-status for another cluster: err %v, output %s", err, out)
		}
	})
}

// lineField returns key's value on the stdout line of m that starts with
// prefix.
func lineField(t *testing.T, m *mesh, prefix, key string) string {
	t.Helper()
	for _, l := range strings.Split(m.Logs(), "\n") {
		l = strings.TrimPrefix(l, "stdout: ")
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				return v
			}
		}
	}
	t.Fatalf("no %s= on the %q line", key, prefix)
	return ""
}

// setPrincipals sets the principals of the one rule of api/NAME with a
// merge patch, as `kubectl patch` would.
func setPrincipals(t *testing.T, dyn dynamic.Interface, name string, principals ...string) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"rules": []any{map[string]any{"from": []any{
		map[string]any{"source": map[string]any{"principals": principals}}}}}}})
	if _, err := dyn.Resource(authzGVR).Namespace("api").Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// storeBypassingValidator runs create with zmesh's validating webhook
// configuration deleted, as an object stored while no control plane
// answered would be; a control plane registering it again in between
// (it does every minute) makes it try again.
func storeBypassingValidator(t *testing.T, cs kubernetes.Interface, create func() error) {
	t.Helper()
	var err error
	for range 5 {
		if derr := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), validator.ConfigurationName, metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) {
			t.Fatal(derr)
		}
		if err = create(); err == nil {
			return
		}
	}
	t.Fatalf("the apiserver refused the object the test means it to store: %v", err)
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// k8sToken asks TokenRequest for a token of ns/sa for audience.
func k8sToken(t *testing.T, cs kubernetes.Interface, ns, sa, audience string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// jwtAudience returns the first audience of a JWT's payload (unverified).
func jwtAudience(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Aud []string `json:"aud"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || len(claims.Aud) == 0 {
		t.Fatalf("JWT payload %s: %v", payload, err)
	}
	return claims.Aud[0]
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parsePEMCerts(string(data))
	if err != nil || len(certs) == 0 {
		t.Fatalf("%s: %v", path, err)
	}
	return certs[0]
}

// csrWithToken calls the CA's CreateCertificate at addr, over TLS
// verified against root, with token as bearer, and returns the SPIFFE ID
// of the issued leaf after checking that the chain leads to root.
func csrWithToken(t *testing.T, addr string, root *x509.Certificate, token string) (string, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(root)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr: string(catest.CSR(t, catest.NewKey(t), "spiffe://cluster.local/ns/istio-system/sa/istiod"))})
	if err != nil {
		return "", err
	}
	certs, err := parsePEMCerts(strings.Join(resp.GetCertChain(), ""))
	if err != nil || len(certs) == 0 {
		t.Fatalf("chain: %v", err)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("issued chain does not lead to the root: %v", err)
	}
	if len(certs[0].URIs) != 1 {
		t.Fatalf("leaf has %d URIs", len(certs[0].URIs))
	}
	return certs[0].URIs[0].String(), nil
}
