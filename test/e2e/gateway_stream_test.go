package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
)

// TestIngressGatewayStreams runs an ingress gateway (`zmesh proxy
// --gateway`) beside the quickstart mesh with a TLS PASSTHROUGH server
// and a TCP server. The client's TLS to an HTTPS server outside the mesh
// passes the gateway untouched, routed by its SNI (the server sees the
// client's own certificate); the TCP server's stream reaches the
// backend's app over the mesh's mutual TLS with the gateway's identity,
// which the backend's policy admits. The gateway's AuthorizationPolicy
// refuses TCP from where its ipBlocks do not allow.
func TestIngressGatewayStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh and a gateway")
	}
	ext := meshtest.NewTLSServer(t, "secure.example.test")
	_, extPort, _ := strings.Cut(ext.Addr, ":")
	yaml := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: secure, namespace: istio-system}
spec:
  hosts: [secure.example.test]
  ports: [{number: 443, name: tls, protocol: TLS, targetPort: %s}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: streams, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: [secure.example.test]
    tls: {mode: PASSTHROUGH}
  - port: {number: 9000, name: tcp-backend, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: streams, namespace: istio-system}
spec:
  hosts: [secure.example.test]
  gateways: [streams]
  tls:
  - match: [{port: 9443, sniHosts: [secure.example.test]}]
    route: [{destination: {host: secure.example.test, port: {number: 443}}}]
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: backend.api.svc.cluster.local, port: {number: 80}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - to: [{operation: {ports: ["9443"]}}]
  - from: [{source: {ipBlocks: ["127.0.0.1/32"]}}]
    to: [{operation: {ports: ["9000"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend-allow-ingress, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/istio-system/sa/istio-ingressgateway]}}]
`, extPort)
	m := startMeshWith(t, map[string]string{"streams.yaml": yaml})
	data := meshDataDir(t, m)
	_, token := createToken(t, data, "istio-system", "istio-ingressgateway")
	tlsAddr, tcpAddr := freeAddr(t), freeAddr(t)
	gw := startProcess(t, "ingress gateway", zmeshBin, "proxy", "--gateway",
		"--controlplane", m.grpc, "--root-cert", filepath.Join(data, "root-cert.pem"), "--token-file", token,
		"--name", "istio-ingressgateway", "--namespace", "istio-system", "--service-account", "istio-ingressgateway",
		"--labels", "istio=ingressgateway", "--services", "istio-ingressgateway",
		"--inbound", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--access-log",
		"--gateway-port", fmt.Sprintf("9443=%s,9000=%s", tlsAddr, tcpAddr))
	logs := func() string { return gw.Logs() }

	client := ext.CA.IssueLeaf(t, "passthrough-client")
	passthrough := func() (string, error) {
		hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			Dial:            func(string, string) (net.Conn, error) { return net.Dial("tcp", tlsAddr) },
			TLSClientConfig: &tls.Config{ServerName: "secure.example.test", RootCAs: ext.CA.Pool(), Certificates: []tls.Certificate{client}},
		}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://secure.example.test/through?tls=passthrough")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	var body string
	waitFor(t, "TLS passed through the gateway", 20*time.Second, logs, func() bool {
		var err error
		body, err = passthrough()
		return err == nil
	})
	if !strings.Contains(body, "client=passthrough-client") || !strings.Contains(body, "sni=secure.example.test") || !strings.Contains(body, "path=/through?tls=passthrough") {
		t.Errorf("the server outside the mesh saw %q, want the client's own TLS", body)
	}

	tcp := func(source string) (string, error) {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
		c, err := d.Dial("tcp", tcpAddr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /over-tcp HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
		status, err := bufio.NewReader(c).ReadString('\n')
		return status, err
	}
	waitFor(t, "a TCP stream through the gateway to the backend", 10*time.Second, logs, func() bool {
		s, err := tcp("127.0.0.1")
		return err == nil && strings.HasPrefix(s, "HTTP/1.1 200")
	})
	if s, err := tcp("127.0.0.2"); err == nil {
		t.Errorf("a TCP stream from outside the policy's ipBlocks was relayed: %q", s)
	}
	waitFor(t, "the gateway's access log of both streams", 5*time.Second, logs, func() bool {
		l := logs()
		return strings.Contains(l, "destination=secure.example.test") && strings.Contains(l, "destination=backend.api.svc.cluster.local") &&
			strings.Contains(l, "source=127.0.0.2") && strings.Contains(l, "flags=RBAC")
	})
}
