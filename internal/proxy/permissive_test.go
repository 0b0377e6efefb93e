package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// dualApp serves HTTP (the echo handler) and raw TCP on one port, as an
// app whose port carries both might: a connection whose first bytes are
// an HTTP request goes to the HTTP server; one that sends other bytes is
// echoed; one that stays silent first gets a banner (a server-first
// protocol), then is echoed. Every byte it receives outside HTTP is kept
// in raw.
func dualApp(t *testing.T) (addr string, raw *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raw = &syncBuffer{}
	httpConns := newConnListener(ln.Addr())
	srv := &http.Server{Handler: echoApp(t).Config.Handler}
	go srv.Serve(httpConns)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); ln.Close(); srv.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				p, _, early, err := detect(c, 50*time.Millisecond)
				if err != nil {
					c.Close()
					return
				}
				if p.isHTTP() {
					httpConns.push(&replayConn{Conn: c, early: early})
					return
				}
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				if len(early) == 0 {
					io.WriteString(c, "220 dual ready\n")
				}
				raw.Write(early)
				c.Write(early)
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					raw.Write(buf[:n])
					c.Write(buf[:n])
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), raw
}

// TestPermissiveTakesMTLSPlaintextHTTPAndPlaintextTCPOnOnePort: one
// inbound port, PERMISSIVE, serves a client proxy's mTLS, a plaintext
// HTTP client and plaintext raw TCP clients (client-first and
// server-first); none of the plaintext ones can pass an identity on.
func TestPermissiveTakesMTLSPlaintextHTTPAndPlaintextTCPOnOnePort(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	appAddr, raw := dualApp(t)
	srv := startProxyAt(t, ca, "api", "backend", appAddr, testLogger(t))
	cli := startProxy(t, ca, "web", "frontend", nil)
	mustApply(t, srv, policyView(t, "s1", mesh(), permissiveMesh))
	mustApply(t, cli, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(srv)}})
	inbound := srv.InboundAddr()

	t.Run("mTLS from a client proxy", func(t *testing.T) {
		code, body := get(t, proxyClient(t, cli), "http://backend.api.svc.cluster.local/")
		if code != 200 || !strings.Contains(echoField(body, "xfcc"), "URI=spiffe://cluster.local/ns/web/sa/frontend") {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("plaintext HTTP with a forged XFCC", func(t *testing.T) {
		c := dialRaw(t, inbound)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: backend\r\nX-Forwarded-Client-Cert: URI=spiffe://cluster.local/ns/web/sa/admin\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || echoField(string(b), "xfcc") != "" {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("plaintext raw TCP, client first", func(t *testing.T) {
		c := dialRaw(t, inbound)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "SET k v\r\n")
		br := bufio.NewReader(c)
		expectLine(t, br, "SET k v\r")
	})
	t.Run("plaintext raw TCP, server first", func(t *testing.T) {
		c := dialRaw(t, inbound)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		expectLine(t, br, "220 dual ready")
		io.WriteString(c, "hello\n")
		expectLine(t, br, "hello")
	})
	t.Run("HTTP after silence is cut, not relayed", func(t *testing.T) {
		c := dialRaw(t, inbound)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		expectLine(t, br, "220 dual ready") // taken for a server-first protocol
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: backend\r\nX-Forwarded-Client-Cert: URI=spiffe://cluster.local/ns/web/sa/admin\r\n\r\n")
		if b, err := io.ReadAll(br); err != nil && !isClosedErr(err) || len(b) != 0 {
			t.Fatalf("after an HTTP request on a raw stream: read %q, %v", b, err)
		}
		if strings.Contains(raw.String(), "X-Forwarded-Client-Cert") {
			t.Fatalf("the app received the forged header as raw bytes: %q", raw.String())
		}
	})
	t.Run("STRICT refuses plaintext raw TCP", func(t *testing.T) {
		mustApply(t, srv, policyView(t, "s2", mesh(), strictMesh))
		c := dialRaw(t, inbound)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "SET k v\r\n")
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Fatalf("STRICT relayed plaintext: %q", b)
		}
	})
}

func isClosedErr(err error) bool {
	return err == io.EOF || strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed")
}

// TestPermissiveSlowClients: a client that is silent past the detection
// time-out, then speaks before the app does, is detected from its bytes
// after all: a slow mTLS client gets mutual TLS, a slow plaintext HTTP
// client the HTTP path (its forged XFCC replaced).
func TestPermissiveSlowClients(t *testing.T) {
	p := newPair(t, permissiveMesh)
	inbound := p.server.InboundAddr()
	wait := 3 * DefaultProtocolDetection

	t.Run("mTLS", func(t *testing.T) { slowMTLSGet(t, p.ca, inbound, wait) })
	t.Run("plaintext HTTP with a forged XFCC", func(t *testing.T) {
		c := dialRaw(t, inbound)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		time.Sleep(wait)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: backend\r\nX-Forwarded-Client-Cert: URI=spiffe://cluster.local/ns/web/sa/admin\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || echoField(string(b), "xfcc") != "" {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
}

// TestPermissiveSlowMTLSClientWhenPlaintextIsDenied: on a PERMISSIVE port
// whose policy admits only namespace web, a client proxy slow to send its
// ClientHello (past the detection time-out) is judged by its certificate,
// not cut as an identity-less plaintext stream; a slow plaintext TCP
// client is still denied and the app never sees its bytes.
func TestPermissiveSlowMTLSClientWhenPlaintextIsDenied(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	appAddr, raw := dualApp(t)
	srv := startProxyAt(t, ca, "api", "backend", appAddr, testLogger(t))
	mustApply(t, srv, policyView(t, "s1", mesh(), permissiveMesh+`---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-only, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules:
  - from:
    - source: {namespaces: ["web"]}
`))
	inbound := srv.InboundAddr()
	wait := 3 * DefaultProtocolDetection

	t.Run("slow mTLS from web", func(t *testing.T) { slowMTLSGet(t, ca, inbound, wait) })
	t.Run("slow plaintext TCP is denied", func(t *testing.T) {
		c := dialRaw(t, inbound)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		time.Sleep(wait)
		io.WriteString(c, "SET secret v\r\n")
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Fatalf("a denied plaintext stream got %q", b)
		}
		if strings.Contains(raw.String(), "secret") {
			t.Fatalf("the app received a denied stream's bytes: %q", raw.String())
		}
	})
}

// slowMTLSGet connects to inbound, stays silent for wait (past the
// detection time-out), then speaks mutual TLS as web/slow and GETs /: it
// must get 200 with its identity in the app's X-Forwarded-Client-Cert.
func slowMTLSGet(t *testing.T, ca *meshtest.CA, inbound net.Addr, wait time.Duration) {
	t.Helper()
	c := dialRaw(t, inbound)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	time.Sleep(wait) // the silence under test, not synchronization
	cert := ca.IssueURI(t, "spiffe://cluster.local/ns/web/sa/slow", time.Hour)
	tc := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS13})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after silence: %v", err)
	}
	io.WriteString(tc, "GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(echoField(string(b), "xfcc"), "URI=spiffe://cluster.local/ns/web/sa/slow") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
