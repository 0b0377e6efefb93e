package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpStartsGateway: a mesh directory that declares a gateway workload
// (a zmesh.dev Workload with spec.gateway and no command) gets it from
// `zmesh up`: a `zmesh: gateway` line, and an ingress gateway serving its
// Gateway's port at the mapped address, routing to the backend over
// mutual TLS with the gateway's own identity, which the backend's policy
// names.
func TestUpStartsGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh")
	}
	addr := freeAddr(t)
	m := startMeshWith(t, gatewayFiles(addr))
	if !strings.Contains(m.Logs(), "stdout: zmesh: gateway istio-system/istio-ingressgateway inbound=") || !strings.Contains(m.Logs(), "ports=80="+addr) {
		t.Fatalf("no gateway line:\n%s", m.Logs())
	}
	expectBackendThroughGateway(t, m, addr)

	// A crash of the gateway refuses nobody: zmesh up kept its port's
	// listener (fdstore), where a client's connection waits for the
	// restarted gateway, which serves it once configured.
	pid := childPIDOrZero(zmeshBin, "proxy", "--gateway")
	if pid == 0 {
		t.Fatal("no gateway process")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, m, pid, 5*time.Second)
	req, _ := http.NewRequest("GET", "http://"+addr+"/after-crash", nil)
	req.Host = "shop.example.test"
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("request while the gateway restarts: %v\n%s", err, m.Logs())
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("request while the gateway restarts: %d\n%s", resp.StatusCode, m.Logs())
	}
	if next := childPIDOrZero(zmeshBin, "proxy", "--gateway"); next == pid || next == 0 {
		t.Fatalf("answered, but by no new gateway process (was %d, now %d)", pid, next)
	}
	if !strings.Contains(m.Logs(), "listener inherited from the previous process\" listener=gateway-80") {
		t.Errorf("the restarted gateway did not inherit its port's listener\n%s", m.Logs())
	}
}

// gatewayFiles declares an ingress gateway workload serving port 80 at
// addr, its Gateway, a route to the backend, and the backend's policy
// admitting the gateway's identity.
func gatewayFiles(addr string) map[string]string {
	return map[string]string{"gateway.yaml": fmt.Sprintf(`apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  serviceAccount: istio-ingressgateway
  labels: {istio: ingressgateway}
  services: [istio-ingressgateway]
  gateway:
    ports: {"80": "%s"}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.example.test]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: istio-system}
spec:
  hosts: [shop.example.test]
  gateways: [web]
  http:
  - route: [{destination: {host: backend.api.svc.cluster.local}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend-allow-ingress, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/istio-system/sa/istio-ingressgateway]}}]
`, addr)}
}

// TestCaptureStartsGateway: under `zmesh up --capture` a gateway runs on
// the host, as Istio's gateways run without interception: its port
// serves the host's clients, and it reaches the backend in its pod over
// mutual TLS (the pod's rules hand the connection to the backend's
// proxy), with its own identity.
func TestCaptureStartsGateway(t *testing.T) {
	args, _ := captureArgs(t)
	addr := freeAddr(t)
	m := startMeshWith(t, gatewayFiles(addr), args...)
	expectBackendThroughGateway(t, m, addr)
}

// expectBackendThroughGateway waits until a request to the gateway's port
// at addr reaches the backend, and checks that the backend saw the
// gateway's identity (XFCC).
func expectBackendThroughGateway(t *testing.T, m *mesh, addr string) {
	t.Helper()
	var e echoReply
	waitFor(t, "the backend through the gateway", 20*time.Second, m.Logs, func() bool {
		req, _ := http.NewRequest("GET", "http://"+addr+"/hello", nil)
		req.Host = "shop.example.test"
		resp, err := plain.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && json.Unmarshal(b, &e) == nil
	})
	if xfcc := strings.Join(e.Headers["X-Forwarded-Client-Cert"], ","); !strings.Contains(xfcc, "URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway") || e.Name != "backend" {
		t.Errorf("%s saw XFCC %q, want the gateway's identity", e.Name, xfcc)
	}
}
