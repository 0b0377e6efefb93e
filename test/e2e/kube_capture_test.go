package e2e

import (
	"testing"

	"github.com/zmesh/zmesh/internal/kubetest"
)

// TestKubeUpCapture runs `zmesh up --kubeconfig --capture` on the
// quickstart against a real kube-apiserver: the config and the proxies'
// service-account tokens come from the cluster, and each workload runs in
// its own network namespace with its traffic captured — by name, with no
// proxy setting, its own SPIFFE ID seen by the backend, the stranger
// refused by the policy read from the cluster.
func TestKubeUpCapture(t *testing.T) {
	args, prefix := captureArgs(t)
	c := kubetest.New(t)
	dir := t.TempDir()
	copyDir(t, "../../examples/quickstart", dir)
	m := startMeshIn(t, dir, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	defer func() {
		if t.Failed() {
			t.Logf("zmesh up logs:\n%s", m.Logs())
		}
	}()
	backend := m.w("api/backend")
	const host = "backend.api.svc.cluster.local"
	status, body, err := podGet(prefix+"-web-frontend", backend.app, host, "/hello")
	if err != nil || status != 200 {
		t.Fatalf("GET from frontend's netns: %d %v %s", status, err, body)
	}
	if got := xfccURI(t, body); got != "spiffe://cluster.local/ns/web/sa/frontend" {
		t.Errorf("backend saw client %q, want frontend's SPIFFE ID", got)
	}
	if status, body, err := podGet(prefix+"-web-stranger", backend.app, host, "/"); err != nil || status != 403 {
		t.Errorf("GET from stranger's netns: %d %v %s, want 403", status, err, body)
	}
}
