package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// protoappBin is test/e2e/protoapp, built once by the first test that
// needs it.
var (
	protoappOnce sync.Once
	protoappBin  string
	protoappErr  error
)

func buildProtoapp(t *testing.T) string {
	t.Helper()
	protoappOnce.Do(func() {
		dir, err := os.MkdirTemp("", "zmesh-protoapp-")
		if err != nil {
			protoappErr = err
			return
		}
		protoappBin = filepath.Join(dir, "protoapp")
		out, err := exec.Command("go", "build", "-trimpath", "-o", protoappBin, "./protoapp").CombinedOutput()
		if err != nil {
			protoappErr = fmt.Errorf("build protoapp: %v\n%s", err, out)
		}
	})
	if protoappErr != nil {
		t.Fatal(protoappErr)
	}
	return protoappBin
}

// protoMesh is the mesh of the protocol tests, in namespace proto: caller
// runs `zmesh echo` and is where the clients run; every other workload
// serves one protocol on its port 8080. Everything is STRICT but web and
// tcpecho (PERMISSIVE); mysql's port is declared TCP by a ServiceEntry,
// banner's is not; outboundTrafficPolicy is REGISTRY_ONLY (meshConfig, a
// file the test may rewrite).
const protoMesh = `apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: caller, namespace: proto}
spec:
  serviceAccount: caller
  labels: {app: caller}
  services: [caller]
  command: [zmesh, echo, --listen, "127.0.0.1:$(PORT)", --name, caller]
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: proto}
spec:
  serviceAccount: web
  labels: {app: web}
  services: [web]
  command: [PROTOAPP, serve-http, "127.0.0.1:$(PORT)"]
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: grpc, namespace: proto}
spec:
  serviceAccount: grpc
  labels: {app: grpc}
  services: [grpc]
  command: [PROTOAPP, serve-grpc, "127.0.0.1:$(PORT)"]
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: tcpecho, namespace: proto}
spec:
  serviceAccount: tcpecho
  labels: {app: tcpecho}
  services: [tcpecho]
  command: [PROTOAPP, serve-tcpecho, "127.0.0.1:$(PORT)"]
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: banner, namespace: proto}
spec:
  serviceAccount: banner
  labels: {app: banner}
  services: [banner]
  command: [PROTOAPP, serve-banner, "127.0.0.1:$(PORT)"]
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: mysql, namespace: proto}
spec:
  serviceAccount: mysql
  labels: {app: mysql}
  services: [mysql]
  command: [PROTOAPP, serve-banner, "127.0.0.1:$(PORT)"]
---
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: tls, namespace: proto}
spec:
  serviceAccount: tls
  labels: {app: tls}
  services: [tls]
  command: [PROTOAPP, serve-tls, "127.0.0.1:$(PORT)", TLSDIR/cert.pem, TLSDIR/key.pem]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: proto}
spec:
  selector:
    matchLabels: {app: web}
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: tcpecho, namespace: proto}
spec:
  selector:
    matchLabels: {app: tcpecho}
  mtls: {mode: PERMISSIVE}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mysql-port, namespace: proto}
spec:
  hosts: [mysql.proto.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: tcp-mysql, protocol: TCP}
`

// tlsAppCerts writes a CA and a server certificate for
// tls.proto.svc.cluster.local (CN protoapp-tls) into dir: the TLS app's
// own, which no proxy holds.
func tlsAppCerts(t *testing.T, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "protoapp test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "protoapp-tls"},
		DNSNames:  []string{"tls.proto.svc.cluster.local"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
	writeFile(t, filepath.Join(dir, "cert.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(dir, "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
}

// inPod runs protoapp with args in the network namespace ns, as an app of
// that pod would run (no proxy setting), and returns what it printed.
func inPod(ns string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, protoappBin}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// TestCaptureProtocols sends every kind of traffic Istio's sidecar carries
// through `zmesh up --capture`, from clients that know nothing of the mesh
// (no proxy setting, mesh names resolved by the pod's DNS): HTTP/1.1,
// h2c, gRPC unary and server streaming, WebSocket, opaque TCP, the app's
// own TLS (passed through: the client verifies the app's certificate),
// server-first TCP on a declared and an undeclared port; PERMISSIVE
// serving the host's plaintext HTTP and raw TCP and a pod's mTLS on one
// port, STRICT refusing the host; REGISTRY_ONLY blocking an address
// outside the mesh until the mesh config allows it.
func TestCaptureProtocols(t *testing.T) {
	args, prefix := captureArgs(t)
	bin := buildProtoapp(t)
	dir, tlsDir := t.TempDir(), t.TempDir()
	tlsAppCerts(t, tlsDir)
	writeFile(t, filepath.Join(dir, "mesh.yaml"),
		strings.NewReplacer("PROTOAPP", bin, "TLSDIR", tlsDir).Replace(protoMesh))
	meshConfig := filepath.Join(t.TempDir(), "mesh.yaml")
	writeFile(t, meshConfig, "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
	m := startMeshIn(t, dir, append(args, "--mesh-config", meshConfig)...)
	caller := prefix + "-proto-caller"
	const callerID = "spiffe://cluster.local/ns/proto/sa/caller"
	fail := func(t *testing.T, format string, a ...any) {
		t.Helper()
		t.Fatalf("%s\n%s", fmt.Sprintf(format, a...), m.Logs())
	}

	// httpReply checks a serve-http answer: "PROTO {json}".
	httpReply := func(t *testing.T, out, wantProto, wantXFCC string) {
		t.Helper()
		proto, body, _ := strings.Cut(out, " ")
		var r struct{ Proto, XFCC string }
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("reply %q: %v", out, err)
		}
		if proto != wantProto {
			t.Errorf("client spoke %s, want %s", proto, wantProto)
		}
		if wantXFCC == "" && r.XFCC != "" {
			t.Errorf("app saw X-Forwarded-Client-Cert %q, want none", r.XFCC)
		}
		if !strings.Contains(r.XFCC, wantXFCC) {
			t.Errorf("app saw X-Forwarded-Client-Cert %q, want %s in it", r.XFCC, wantXFCC)
		}
	}

	t.Run("HTTP/1.1", func(t *testing.T) {
		out, err := inPod(caller, "get", "http://web.proto.svc.cluster.local:8080/")
		if err != nil {
			fail(t, "GET: %v", err)
		}
		httpReply(t, out, "HTTP/1.1", "URI="+callerID)
	})
	t.Run("HTTP/2 prior knowledge", func(t *testing.T) {
		out, err := inPod(caller, "h2c", "http://web.proto:8080/")
		if err != nil {
			fail(t, "h2c GET: %v", err)
		}
		httpReply(t, out, "HTTP/2.0", "URI="+callerID)
	})
	t.Run("gRPC unary", func(t *testing.T) {
		out, err := inPod(caller, "grpc-unary", "grpc.proto.svc.cluster.local:8080")
		if err != nil || out != "SERVING" {
			fail(t, "Check: %q %v", out, err)
		}
	})
	t.Run("gRPC server stream", func(t *testing.T) {
		// The server sends a message at each change of "flip" (every
		// 50ms): alternating statuses arrive one by one, so the proxies
		// neither buffer the stream nor end it after the first message.
		out, err := inPod(caller, "grpc-stream", "grpc.proto:8080", "4")
		if err != nil || len(strings.Fields(out)) != 4 {
			fail(t, "Watch: %q %v", out, err)
		}
	})
	t.Run("WebSocket", func(t *testing.T) {
		out, err := inPod(caller, "ws", "ws://web.proto.svc.cluster.local:8080/ws")
		if err != nil {
			fail(t, "WebSocket: %q %v", out, err)
		}
	})
	t.Run("opaque TCP", func(t *testing.T) {
		out, err := inPod(caller, "tcp", "tcpecho.proto.svc.cluster.local:8080")
		if err != nil {
			fail(t, "TCP echo: %q %v", out, err)
		}
		// 4 MiB each way, then the client's half-close must reach the
		// app and the app's close come back: nothing lost or left open.
		out, err = inPod(caller, "tcp-bulk", "tcpecho.proto:8080", "4194304")
		if err != nil {
			fail(t, "4 MiB TCP echo with a half-close: %q %v", out, err)
		}
		// Both streams rode tcpecho's HBONE tunnel (15008 in its pod):
		// one handshake on its proxy, not one per stream.
		line := metricWith(t, m.w("proto/tcpecho").admin, "zmesh_tls_handshakes_total{", `result="ok",side="server"`)
		if !strings.HasSuffix(line, " 1") {
			fail(t, "tcpecho's proxy: %q, want one server handshake (both streams on the tunnel)", line)
		}
	})
	t.Run("the app's own TLS passes through", func(t *testing.T) {
		// The client verifies the app's certificate against the app's own
		// CA, which no proxy has: a proxy that terminated TLS would fail
		// the handshake.
		const sni = "tls.proto.svc.cluster.local"
		out, err := inPod(caller, "tls", sni+":8080", sni, filepath.Join(tlsDir, "ca.pem"))
		if err != nil || out != "verified protoapp-tls" {
			fail(t, "TLS by name: %q %v", out, err)
		}
		// Routed by SNI: nothing listens at 127.0.0.9:8443 in the caller's
		// pod, only the server name says where to go.
		out, err = inPod(caller, "tls", "127.0.0.9:8443", sni, filepath.Join(tlsDir, "ca.pem"))
		if err != nil || out != "verified protoapp-tls" {
			fail(t, "TLS to a loopback-looking address with SNI %s: %q %v", sni, out, err)
		}
	})
	t.Run("server-first TCP on an undeclared port", func(t *testing.T) {
		out, err := inPod(caller, "banner", "banner.proto.svc.cluster.local:8080")
		if err != nil {
			fail(t, "banner: %q %v", out, err)
		}
	})
	t.Run("server-first TCP on a port declared TCP", func(t *testing.T) {
		out, err := inPod(caller, "banner", "mysql.proto.svc.cluster.local:8080")
		if err != nil {
			fail(t, "banner: %q %v", out, err)
		}
		// A declared TCP port is not sniffed: bytes that look like HTTP
		// are carried as they are. On the undeclared port they are
		// taken for HTTP, as Istio's sniffing does, and the banner app
		// does not answer HTTP.
		if out, err := inPod(caller, "banner-early", "mysql.proto.svc.cluster.local:8080"); err != nil {
			fail(t, "HTTP-looking bytes to the port declared TCP: %q %v", out, err)
		}
		if out, err := inPod(caller, "banner-early", "banner.proto.svc.cluster.local:8080"); err == nil {
			t.Errorf("HTTP-looking bytes to the undeclared port came back as opaque TCP (%q): the port declared TCP proves nothing", out)
		}
	})
	t.Run("PERMISSIVE: the host's plaintext and a pod's mTLS on one port", func(t *testing.T) {
		web := m.w("proto/web").app
		out, err := exec.Command(bin, "get", "http://"+web+"/").Output()
		if err != nil {
			fail(t, "plaintext GET from the host to %s: %v", web, err)
		}
		httpReply(t, strings.TrimSpace(string(out)), "HTTP/1.1", "")
		out2, err := inPod(caller, "get", "http://"+web+"/")
		if err != nil {
			fail(t, "GET from caller's pod to %s: %v", web, err)
		}
		httpReply(t, out2, "HTTP/1.1", "URI="+callerID)
		// Raw TCP in plaintext too (the opaque TCP subtest is the same
		// port's mTLS client).
		tcpecho := m.w("proto/tcpecho").app
		if out, err := exec.Command(bin, "tcp", tcpecho).CombinedOutput(); err != nil {
			fail(t, "plaintext TCP from the host to %s: %v %s", tcpecho, err, out)
		}
	})
	t.Run("STRICT refuses the host's plaintext", func(t *testing.T) {
		grpcApp := m.w("proto/grpc").app
		out, err := exec.Command(bin, "grpc-unary", grpcApp).CombinedOutput()
		if err == nil {
			t.Fatalf("plaintext gRPC from the host to %s under STRICT answered: %s", grpcApp, out)
		}
		web := m.w("proto/web").app // PERMISSIVE: the same request passes
		if out, err := exec.Command(bin, "get", "http://"+web+"/").CombinedOutput(); err != nil {
			fail(t, "plaintext GET from the host to PERMISSIVE %s: %v %s", web, err, out)
		}
		// The STRICT port serves the mesh.
		if out, err := inPod(caller, "grpc-unary", grpcApp); err != nil {
			fail(t, "gRPC from caller's pod to %s: %q %v", grpcApp, out, err)
		}
	})
	t.Run("REGISTRY_ONLY blocks an address outside the mesh", func(t *testing.T) {
		// A listener on the host's side of the pod bridge: the pods can
		// route to it, and it is no mesh service.
		gw := bridgeAddr(t, prefix+"0")
		ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan struct{}, 16)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- struct{}{}
				go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
			}
		}()
		out, err := inPod(caller, "tcp", ln.Addr().String())
		if err == nil {
			t.Fatalf("TCP from caller's pod to %s under REGISTRY_ONLY echoed %q", ln.Addr(), out)
		}
		select {
		case <-accepted:
			t.Fatalf("REGISTRY_ONLY: a connection from caller's pod reached %s", ln.Addr())
		default:
		}
		// The block is the policy's: with ALLOW_ANY the same call passes
		// through once the proxies have the new mesh config.
		writeFile(t, meshConfig, "outboundTrafficPolicy: {mode: ALLOW_ANY}\n")
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err = inPod(caller, "tcp", ln.Addr().String())
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fail(t, "ALLOW_ANY: TCP from caller's pod to %s still fails after 30s: %v %s", ln.Addr(), err, out)
			}
			time.Sleep(200 * time.Millisecond) // polling a config push that has no event to await from here
		}
	})
}

// bridgeAddr returns the IPv4 address of link (the pod bridge on the
// host).
func bridgeAddr(t *testing.T, link string) string {
	t.Helper()
	ifc, err := net.InterfaceByName(link)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Fatalf("%s has no IPv4 address", link)
	return ""
}
