package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/install"
	"github.com/zmesh/zmesh/internal/kubetest"
	"github.com/zmesh/zmesh/internal/validator"
)

// podScript imitates what the kubelet gives the control plane's
// container, in a private mount namespace: the service account's token,
// the cluster's CA and namespace where in-cluster clients read them, an
// empty directory at the data volume's path, the pod's non-root user.
// Arguments: the secrets directory, the data volume's path, the user, the
// binary, then the container's args.
const podScript = `set -e
sa=$1 data=$2 uid=$3 bin=$4; shift 4
mount -t tmpfs -o mode=0755 zmesh-pod-run /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount /run/zmesh
cp "$sa"/token "$sa"/ca.crt "$sa"/namespace /run/secrets/kubernetes.io/serviceaccount/
chmod 0644 /run/secrets/kubernetes.io/serviceaccount/*
cp "$bin" /run/zmesh/zmesh
mount -t tmpfs -o mode=0755 zmesh-pod-data "$(dirname "$data")"
mkdir -p "$data" && chown "$uid:$uid" "$data"
exec setpriv --reuid "$uid" --regid "$uid" --clear-groups --no-new-privs /run/zmesh/zmesh "$@"
`

// TestInstalledControlPlaneRunsInCluster runs the control plane exactly
// as `zmesh install` deploys it — the Deployment's container args and
// environment, its service account's token and nothing else, as its
// non-root user — against a real kube-apiserver: it must come up in
// Kubernetes mode (no --config-dir, no kubeconfig, the pod's cluster) and
// do its work within the install's least-privilege RBAC: keep the CA in
// istio-ca-secret, publish istio-ca-root-cert, issue certificates for
// service-account tokens checked by TokenReview, read Istio's resources
// and report a bad one with an Event. Only the listen addresses move to
// loopback ports; the pod's environment is what a kubelet gives a pod,
// imitated with a mount namespace (hence root).
func TestInstalledControlPlaneRunsInCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the pod's service-account mount is imitated in a private mount namespace")
	}
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux)", tool)
		}
	}
	c := kubetest.New(t)
	cs := c.Client(t)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if out, err := exec.Command(zmeshBin, "install", "--kubeconfig", c.Kubeconfig, "--image", "zmesh:test").CombinedOutput(); err != nil {
		t.Fatalf("zmesh install: %v\n%s", err, out)
	}
	d, err := cs.AppsV1().Deployments(install.Namespace).Get(ctx, install.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	ctr := spec.Containers[0]

	// What the kubelet mounts: a token of the pod's service account, the
	// cluster's CA, the namespace.
	sa := t.TempDir()
	rc := c.RESTConfig()
	ca := rc.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(rc.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string][]byte{
		"token":     []byte(podToken(t, cs, spec.ServiceAccountName)),
		"ca.crt":    ca,
		"namespace": []byte(install.Namespace),
	} {
		if err := os.WriteFile(filepath.Join(sa, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := ""
	for _, m := range ctr.VolumeMounts {
		if m.Name == "data" {
			dataDir = m.MountPath
		}
	}
	if dataDir == "" || filepath.Dir(dataDir) == "/" {
		t.Fatalf("the data volume's mount path %q cannot be imitated", dataDir)
	}

	// The pod's address: the apiserver's pod proxy (proxy-status's way to
	// each replica) refuses loopback, so the admin port listens on the
	// host end of a veth pair whose other end is in a network namespace
	// of the test's own.
	podIP := podAddress(t)

	// The container's args, listen addresses moved to loopback (the
	// admin port to the pod's address).
	ports := map[string]string{}
	args := make([]string, len(ctr.Args))
	listen := regexp.MustCompile(`^(--[a-z-]+=)0\.0\.0\.0:(\d+)$`)
	for i, a := range ctr.Args {
		args[i] = a
		if m := listen.FindStringSubmatch(a); m != nil {
			p := freeLoopbackAddr(t)
			if m[1] == "--admin=" {
				p = net.JoinHostPort(podIP, m[2])
			}
			ports[strings.Trim(m[1], "-=")] = p
			args[i] = m[1] + p
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--config-dir") || strings.HasPrefix(a, "--kubeconfig") || strings.HasPrefix(a, "--mesh-config") {
			t.Errorf("the Deployment passes %s: in a pod the config is the cluster's", a)
		}
	}
	if ports["listen"] == "" || ports["admin"] == "" {
		t.Fatalf("no gRPC or admin listen address in %q", ctr.Args)
	}
	apiHost, apiPort, err := net.SplitHostPort(strings.TrimPrefix(rc.Host, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "KUBERNETES_SERVICE_HOST=" + apiHost, "KUBERNETES_SERVICE_PORT=" + apiPort}
	for _, e := range ctr.Env {
		env = append(env, e.Name+"="+kubeletEnvValue(t, e, ctr))
	}
	uid := strconv.FormatInt(*spec.SecurityContext.RunAsUser, 10)
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", podScript, "sh", sa, dataDir, uid, zmeshBin}, args...)...)
	cmd.Env = env
	logs := &nsProcess{cmd: cmd}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("control plane logs:\n%s", logs.Logs())
		}
	})
	admin := "http://" + ports["admin"]
	waitFor(t, "the control plane ready", 60*time.Second, logs.Logs, func() bool { return httpStatus(&http.Client{Timeout: 2 * time.Second}, admin+"/ready") == 200 })
	metrics := get(t, admin+"/metrics")
	if !strings.Contains(metrics, `zmesh_config_source_valid{source="kubernetes"} 1`) {
		t.Errorf("not in Kubernetes mode, or its config not valid:\n%s", grepLines(metrics, "zmesh_config_source_valid"))
	}

	// The CA in its Secret, its root published in a new namespace.
	secret, err := cs.CoreV1().Secrets(install.Namespace).Get(ctx, "istio-ca-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the CA is not kept in istio-ca-secret: %v", err)
	}
	rootBlock, _ := pem.Decode(secret.Data["ca-cert.pem"])
	if rootBlock == nil {
		t.Fatalf("istio-ca-secret has no ca-cert.pem: keys %v", keys(secret.Data))
	}
	createNamespace(t, cs, "shop", nil)
	waitFor(t, "istio-ca-root-cert in a new namespace", 10*time.Second, logs.Logs, func() bool {
		cm, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		return err == nil && strings.Contains(cm.Data["root-cert.pem"], string(pem.EncodeToMemory(rootBlock)))
	})

	// A certificate for a service-account token, by TokenReview.
	if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	root := readPEMCertBytes(t, pem.EncodeToMemory(rootBlock))
	id, err := csrWithToken(t, ports["listen"], root, k8sToken(t, cs, "shop", "web", "istio-ca"))
	if err != nil || id != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Errorf("CSR with shop/web's token: %q, %v", id, err)
	}

	// Istio's resources from the cluster: a bad one is reported, with an
	// Event on it.
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"name": "bad-principal", "namespace": "shop"},
		"spec": map[string]any{"rules": []any{map[string]any{"from": []any{map[string]any{
			"source": map[string]any{"principals": []any{"cluster.local/ns/*/sa/x"}}}}}}},
	}}
	// The install's validating webhook, now Fail with the mesh's roots
	// (the control plane serves it): the apiserver, which cannot reach
	// the Service here (no kubelet, no endpoints), refuses the object.
	waitFor(t, "the validating webhook set to Fail with the mesh's roots", 10*time.Second, logs.Logs, func() bool {
		v, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, validator.ConfigurationName, metav1.GetOptions{})
		return err == nil && len(v.Webhooks) == 1 && v.Webhooks[0].FailurePolicy != nil && *v.Webhooks[0].FailurePolicy == admissionregistrationv1.Fail &&
			strings.Contains(string(v.Webhooks[0].ClientConfig.CABundle), string(pem.EncodeToMemory(rootBlock)))
	})
	if _, err := dyn.Resource(authzGVR).Namespace("shop").Create(ctx, bad, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("a policy applied while the validator is unreachable: %v, want refused", err)
	}
	storeBypassingValidator(t, cs, func() error {
		_, err := dyn.Resource(authzGVR).Namespace("shop").Create(ctx, bad, metav1.CreateOptions{})
		return err
	})
	want := `zmesh_config_rejected_resources{kind="AuthorizationPolicy",name="bad-principal",namespace="shop",reason="invalid"} 1`
	waitFor(t, "the bad policy reported rejected", 10*time.Second, logs.Logs, func() bool {
		return strings.Contains(get(t, admin+"/metrics"), want)
	})
	waitFor(t, "a Warning Event on the bad policy", 10*time.Second, logs.Logs, func() bool {
		evs, err := cs.CoreV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=bad-principal"})
		return err == nil && len(evs.Items) > 0 && evs.Items[0].Type == corev1.EventTypeWarning
	})

	// proxy-status --kubeconfig finds the replica by its pod and asks it
	// through the apiserver: a proxy of shop/web connects, and is listed
	// with the replica's name.
	podName := install.Name + "-test-0"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: install.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       corev1.PodSpec{ServiceAccountName: spec.ServiceAccountName, Containers: []corev1.Container{{Name: ctr.Name, Image: ctr.Image, Ports: ctr.Ports}}},
	}
	if pod, err = cs.CoreV1().Pods(install.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: podIP, PodIPs: []corev1.PodIP{{IP: podIP}}}
	if _, err := cs.CoreV1().Pods(install.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	writeFile(t, filepath.Join(work, "token"), k8sToken(t, cs, "shop", "web", "istio-ca"))
	writeFile(t, filepath.Join(work, "root.pem"), string(pem.EncodeToMemory(rootBlock)))
	px := startProcess(t, "proxy", zmeshBin, "proxy", "--controlplane", ports["listen"], "--root-cert", filepath.Join(work, "root.pem"),
		"--token-file", filepath.Join(work, "token"), "--name", "web", "--namespace", "shop", "--service-account", "web",
		"--app", freeLoopbackAddr(t), "--inbound", freeLoopbackAddr(t), "--outbound", freeLoopbackAddr(t), "--admin", freeLoopbackAddr(t))
	var rows []struct {
		ID, Identity, ControlPlane string
		Synced                     bool
	}
	waitFor(t, "the proxy listed by proxy-status --kubeconfig", 20*time.Second, func() string { return logs.Logs() + px.Logs() }, func() bool {
		out, err := exec.Command(zmeshBin, "proxy-status", "--kubeconfig", c.Kubeconfig, "-o", "json").Output()
		rows = nil
		return err == nil && json.Unmarshal(out, &rows) == nil && len(rows) == 1 && rows[0].Synced
	})
	if r := rows[0]; r.ID != "shop/web" || r.Identity != "spiffe://cluster.local/ns/shop/sa/web" || r.ControlPlane != podName {
		t.Errorf("proxy-status row %+v", r)
	}
	out, err := exec.Command(zmeshBin, "proxy-status", "--kubeconfig", c.Kubeconfig).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "CONTROL PLANE") || !strings.Contains(string(out), podName) {
		t.Errorf("proxy-status --kubeconfig: %v\n%s", err, out)
	}

	// Everything above within the install's RBAC: nothing was forbidden.
	if l := logs.Logs(); strings.Contains(l, "forbidden") {
		t.Errorf("the control plane was refused something by RBAC:\n%s", grepLines(l, "forbidden"))
	}
}

// podToken is a token of the control plane's service account for the
// apiserver's own audience, as the kubelet projects into every pod.
func podToken(t *testing.T, cs kubernetes.Interface, sa string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(install.Namespace).CreateToken(context.Background(), sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// kubeletEnvValue is the value a kubelet gives the container's env var e.
func kubeletEnvValue(t *testing.T, e corev1.EnvVar, ctr corev1.Container) string {
	t.Helper()
	switch {
	case e.ValueFrom == nil:
		return e.Value
	case e.ValueFrom.FieldRef != nil:
		switch e.ValueFrom.FieldRef.FieldPath {
		case "metadata.name":
			return install.Name + "-test-0"
		case "metadata.namespace":
			return install.Namespace
		}
	case e.ValueFrom.ResourceFieldRef != nil:
		r := e.ValueFrom.ResourceFieldRef
		if r.Resource == "limits.memory" && r.ContainerName == ctr.Name {
			lim := ctr.Resources.Limits.Memory()
			div := r.Divisor.Value()
			if lim.IsZero() || div == 0 {
				t.Fatalf("env %s: limits.memory %v with divisor %v", e.Name, lim, r.Divisor.String())
			}
			return strconv.FormatInt(lim.Value()/div, 10)
		}
	}
	t.Fatalf("env %s: a source this test does not imitate: %+v", e.Name, e.ValueFrom)
	return ""
}

// podAddress gives the test an address the apiserver may proxy to (not
// loopback): the host end of a veth pair whose peer sits in a network
// namespace the test creates; both go when the test ends.
func podAddress(t *testing.T) string {
	t.Helper()
	n := os.Getpid() % 250
	ns, host, peer := fmt.Sprintf("zmesh-pod-%d", n), fmt.Sprintf("zmpod%dh", n), fmt.Sprintf("zmpod%dn", n)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "netns", "del", ns).Run() // a killed run's leftover
	exec.Command("ip", "link", "del", host).Run()
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	addr := fmt.Sprintf("10.251.%d.1", n)
	ip("addr", "add", addr+"/30", "dev", host)
	ip("-n", ns, "addr", "add", fmt.Sprintf("10.251.%d.2/30", n), "dev", peer)
	ip("-n", ns, "link", "set", peer, "up")
	ip("link", "set", host, "up")
	return addr
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func readPEMCertBytes(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	certs, err := parsePEMCerts(string(data))
	if err != nil || len(certs) == 0 {
		t.Fatalf("root: %v", err)
	}
	return certs[0]
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
