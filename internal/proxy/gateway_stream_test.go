package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// streamGatewayConfig is an ingress gateway with a TLS PASSTHROUGH
// server (routed by SNI) and a TCP server (routed by port), and the
// AuthorizationPolicy policy on it.
func streamGatewayConfig(policy string) string {
	return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: streams, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: [secure.example.com, unrouted.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: istio-system}
spec:
  hosts: [secure.example.com]
  gateways: [streams]
  tls:
  - match: [{port: 9443, sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure.example.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [streams]
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: echo.example.com, port: {number: 7}}}]
---
` + policy
}

// TestGatewayStreams: a TLS PASSTHROUGH server relays the client's own
// TLS by its SNI (the client completes its handshake with the
// destination, which sees the client's certificate: nothing was
// terminated), refuses a name no tls route takes and a ClientHello
// without SNI; a TCP server relays by its tcp route. The gateway's
// AuthorizationPolicy decides each connection with Istio's TCP
// semantics: an ALLOW rule that needs an HTTP attribute (paths) matches
// no TCP connection, so the stream is refused and logged.
func TestGatewayStreams(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	secure := meshtest.NewTLSServer(t, "secure.example.com")
	echoAddr, _ := tcpApp(t)
	var logs syncBuffer
	gw := startGateway(t, ca, "ingressgateway", "", slog.New(slog.NewTextHandler(&logs, nil)), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{9443: "127.0.0.1:0", 9000: "127.0.0.1:0"}
	})
	svcs := []registry.Service{
		{Hostname: "secure.example.com", Namespace: "istio-system", Ports: []registry.Port{{Number: 443, Name: "tls", Protocol: "TLS"}},
			Endpoints: []registry.Endpoint{{Address: secure.Addr, Workload: "istio-system/secure"}}},
		{Hostname: "echo.example.com", Namespace: "istio-system", Ports: []registry.Port{{Number: 7, Name: "tcp", Protocol: "TCP"}},
			Endpoints: []registry.Endpoint{{Address: echoAddr, Workload: "istio-system/echo"}}},
	}
	apply := func(policy string) {
		t.Helper()
		snap := config.NewSnapshot(fmt.Sprint(time.Now().UnixNano()), parse(t, streamGatewayConfig(policy)))
		mustApply(t, gw, xds.Build(snap, svcs, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))
	}
	const allowBoth = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ports, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - to: [{operation: {ports: ["9443"]}}]
  - to: [{operation: {ports: ["9000"]}}]
`
	apply(allowBoth)
	var tlsAddr, tcpAddr net.Addr
	waitFor(t, func() bool {
		tlsAddr, tcpAddr = gw.GatewayAddr(9443), gw.GatewayAddr(9000)
		return tlsAddr != nil && tcpAddr != nil
	})

	client := secure.CA.IssueLeaf(t, "passthrough-client")
	passthrough := func(sni string) (string, error) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx2 context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx2, "tcp", tlsAddr.String())
			},
			TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: secure.CA.Pool(), Certificates: []tls.Certificate{client}},
		}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + sni + "/passed?x=1")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	body, err := passthrough("secure.example.com")
	if err != nil {
		t.Fatalf("TLS passthrough: %v\n%s", err, logs.String())
	}
	if echoField(body, "client") != "passthrough-client" || echoField(body, "sni") != "secure.example.com" || echoField(body, "path") != "/passed?x=1" {
		t.Errorf("the destination saw %q; want the client's own TLS, untouched", body)
	}
	if _, err := passthrough("unrouted.example.com"); err == nil {
		t.Error("a server name no tls route takes was relayed")
	}
	if c, err := tls.Dial("tcp", tlsAddr.String(), &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Error("a ClientHello without SNI was relayed")
	}

	echo := func() (string, error) {
		c, err := net.DialTimeout("tcp", tcpAddr.String(), 2*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		r := bufio.NewReader(c)
		banner, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		fmt.Fprintf(c, "hello gateway\n")
		line, err := r.ReadString('\n')
		return banner + line, err
	}
	if got, err := echo(); err != nil || got != "220 line-echo ready\nhello gateway\n" {
		t.Fatalf("TCP through the gateway: %q, %v\n%s", got, err, logs.String())
	}

	// An ALLOW rule with an HTTP-only attribute matches no TCP stream.
	apply(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ports, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - to: [{operation: {ports: ["9443"]}}]
  - to: [{operation: {ports: ["9000"], paths: ["/admin"]}}]
`)
	if got, err := echo(); err == nil {
		t.Errorf("TCP allowed by a rule that needs a path: %q", got)
	}
	if _, err := passthrough("secure.example.com"); err != nil {
		t.Errorf("TLS passthrough after the policy edit: %v", err)
	}
	waitFor(t, func() bool {
		return strings.Contains(logs.String(), "direction=gateway") && strings.Contains(logs.String(), "flags=RBAC") && strings.Contains(logs.String(), "protocol=tcp")
	})
	// A stream's entry is written when the stream ends, after the client
	// has gone: wait for it rather than race it.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "destination=secure.example.com"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the access log lacks the passthrough's destination:\n%s", logs.String())
		}
	}
}

// TestGatewayTerminatesTLSForTCP: a TLS server in SIMPLE mode completes
// the client's handshake with its credential (here pushed as a Secret)
// and relays the plaintext by the VirtualService's tcp route: the
// destination, a plain TCP server, talks with the client through it.
func TestGatewayTerminatesTLSForTCP(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	web := meshtest.NewCA(t, "web.test")
	chain, key := meshtest.PEM(t, web.IssueLeaf(t, "db", "db.example.com"))
	echoAddr, _ := tcpApp(t)
	gw := startGateway(t, ca, "ingressgateway", "", testLogger(t), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{9445: "127.0.0.1:0"}
	})
	svcs := []registry.Service{{Hostname: "echo.example.com", Namespace: "istio-system", Ports: []registry.Port{{Number: 7, Name: "tcp", Protocol: "TCP"}},
		Endpoints: []registry.Endpoint{{Address: echoAddr, Workload: "istio-system/echo"}}}}
	snap := config.NewSnapshot("1", parse(t, `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: db, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9445, name: tls-db, protocol: TLS}
    hosts: [db.example.com]
    tls: {mode: SIMPLE, credentialName: db-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: istio-system}
spec:
  hosts: [db.example.com]
  gateways: [db]
  tcp:
  - match: [{port: 9445}]
    route: [{destination: {host: echo.example.com, port: {number: 7}}}]
`))
	v := xds.Build(snap, svcs, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true})
	v.Credentials = []xds.Credential{{Namespace: "istio-system", Name: "db-cert", Cert: chain, PrivateKey: key}}
	mustApply(t, gw, v)
	var addr net.Addr
	waitFor(t, func() bool { addr = gw.GatewayAddr(9445); return addr != nil })

	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr.String(),
		&tls.Config{ServerName: "db.example.com", RootCAs: web.Pool(), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("handshake with the gateway: %v", err)
	}
	defer c.Close()
	if cs := c.ConnectionState(); cs.PeerCertificates[0].Subject.CommonName != "db" || cs.NegotiatedProtocol != "" {
		t.Errorf("the gateway presented %q and negotiated ALPN %q; want its credential and no ALPN", cs.PeerCertificates[0].Subject.CommonName, cs.NegotiatedProtocol)
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	banner, err := r.ReadString('\n')
	if err != nil || banner != "220 line-echo ready\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	fmt.Fprintf(c, "over terminated TLS\n")
	if line, err := r.ReadString('\n'); err != nil || line != "over terminated TLS\n" {
		t.Errorf("echo %q, %v", line, err)
	}
}

// TestGatewayStreamEndsWithItsPort: when a push takes a TCP server's
// port away, the streams relayed through it end at once, even toward an
// upstream that ignores the client's half-close.
func TestGatewayStreamEndsWithItsPort(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The sink never answers and never closes, until after the gateway
	// has stopped (cleanups run last first): a relay toward it that the
	// port's end did not close would hold the gateway's shutdown.
	var mu sync.Mutex
	var sunk []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range sunk {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			sunk = append(sunk, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	gw := startGateway(t, ca, "ingressgateway", "", testLogger(t), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{9000: "127.0.0.1:0"}
	})
	svcs := []registry.Service{{Hostname: "echo.example.com", Namespace: "istio-system", Ports: []registry.Port{{Number: 7, Name: "tcp", Protocol: "TCP"}},
		Endpoints: []registry.Endpoint{{Address: ln.Addr().String(), Workload: "istio-system/sink"}}}}
	allow := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ports, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - to: [{operation: {ports: ["9000"]}}]
`
	snap := config.NewSnapshot("1", parse(t, streamGatewayConfig(allow)))
	mustApply(t, gw, xds.Build(snap, svcs, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))
	var addr net.Addr
	waitFor(t, func() bool { addr = gw.GatewayAddr(9000); return addr != nil })
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "hello\n")
	time.Sleep(100 * time.Millisecond) // relayed by now

	mustApply(t, gw, xds.Build(config.NewSnapshot("2", parse(t, allow)), svcs, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the stream outlived its port: %v", err)
	}
}
