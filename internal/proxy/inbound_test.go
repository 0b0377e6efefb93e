package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// meshClient returns a client that speaks mTLS straight to an inbound
// listener with a certificate for ns/sa, over HTTP/2 or HTTP/1.1.
func meshClient(t *testing.T, ca *meshtest.CA, ns, sa string, h2 bool) *http.Client {
	cert := ca.Issue(t, ns, sa, time.Hour)
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		// The inbound certificate names a SPIFFE ID, not a host name; a
		// real client verifies it as the proxy does (tlsconfig).
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
	}
	if h2 {
		tr := &http2.Transport{TLSClientConfig: conf}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	conf.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{TLSClientConfig: conf}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestInboundServesHTTP1AndHTTP2OverMTLS(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+allowFrontend)
	for _, h2 := range []bool{true, false} {
		c := meshClient(t, p.ca, "web", "frontend", h2)
		resp, err := c.Get("https://" + p.server.InboundAddr().String() + "/x")
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if wantProto := map[bool]int{true: 2, false: 1}[h2]; resp.ProtoMajor != wantProto {
			t.Errorf("h2=%v: protocol %s", h2, resp.Proto)
		}
		if resp.StatusCode != 200 || !strings.Contains(echoField(string(body), "xfcc"), "URI=spiffe://cluster.local/ns/web/sa/frontend") {
			t.Errorf("h2=%v: %d %s", h2, resp.StatusCode, body)
		}
	}
}

func TestPathNormalizedBeforeAuthorization(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: api}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
`)
	c := meshClient(t, p.ca, "web", "frontend", true)
	for _, path := range []string{"/x/../admin", "/%61dmin", "/./admin/"} {
		req, _ := http.NewRequest("GET", "https://"+p.server.InboundAddr().String()+"/", nil)
		req.URL.Opaque = path
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("%s: status %d, want 403", path, resp.StatusCode)
		}
	}
	// The app receives the normalized path.
	req, _ := http.NewRequest("GET", "https://"+p.server.InboundAddr().String()+"/", nil)
	req.URL.Opaque = "/a/./b/../c%7e?q=1"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := echoField(string(body), "path"); got != "/a/c~?q=1" {
		t.Errorf("app saw %q, want /a/c~?q=1", got)
	}
	// A path that cannot be normalized safely is rejected.
	req, _ = http.NewRequest("GET", "https://"+p.server.InboundAddr().String()+"/", nil)
	req.URL.Opaque = "/a%00b"
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("%%00: status %d, want 400", resp.StatusCode)
	}
	// So is a method that is not upper case: "delete" must not slip past
	// a policy written for "DELETE".
	req, _ = http.NewRequest("delete", "https://"+p.server.InboundAddr().String()+"/x", nil)
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("lower-case method: status %d, want 400", resp.StatusCode)
	}
}

func TestAccessLogNamesPolicyOnlyInLog(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	var logs syncBuffer
	server := startProxyLog(t, ca, "api", "backend", echoApp(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	stranger := startProxy(t, ca, "web", "stranger", echoApp(t))
	mustApply(t, server, &xds.View{Version: "s1", Mesh: mesh(), AuthorizationPolicies: parse(t, allowFrontend)})
	mustApply(t, stranger, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(server)}})
	code, body := get(t, proxyClient(t, stranger), "http://backend.api.svc.cluster.local/secret")
	if code != 403 || strings.Contains(body, "allow-frontend") {
		t.Fatalf("got %d %q", code, body)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"access"`) {
			line = l
		}
	}
	for _, want := range []string{`"direction":"inbound"`, `"path":"/secret"`, `"status":403`, `"peer":"spiffe://cluster.local/ns/web/sa/stranger"`, `"flags":"RBAC"`, `"reason":"no ALLOW policy matched (policies in force: api/allow-frontend)"`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log line %s lacks %s", line, want)
		}
	}
}

// TestHostileInput: bytes that are neither TLS nor HTTP. Oversized heads,
// smuggling, slow clients and TLS tricks are in hostile_test.go.
func TestHostileInput(t *testing.T) {
	p := newPair(t, permissiveMesh)
	// Garbage that is neither TLS nor HTTP gets a 400, not a panic.
	c := dialRaw(t, p.server.InboundAddr())
	c.Write([]byte("\x00\x01\x02 garbage\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 400") {
		t.Errorf("garbage answered %.40q", b)
	}
	// A truncated ClientHello is dropped.
	c = dialRaw(t, p.server.InboundAddr())
	c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01})
	c.(interface{ CloseWrite() error }).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("truncated ClientHello: %v", err)
	}
}

func TestNoConfigRefusesInbound(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	tp := startProxy(t, ca, "api", "backend", echoApp(t))
	c := dialRaw(t, tp.InboundAddr())
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Fatalf("a proxy without configuration answered %q", b)
	}
}

// TestTightenedModeClosesKeptAliveConnections: a plaintext keep-alive
// connection admitted under PERMISSIVE is not served once STRICT applies.
func TestTightenedModeClosesKeptAliveConnections(t *testing.T) {
	p := newPair(t, permissiveMesh)
	c := dialRaw(t, p.server.InboundAddr())
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET /1 HTTP/1.1\r\nHost: backend\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("under PERMISSIVE: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	mustApply(t, p.server, &xds.View{Version: "s2", Mesh: mesh(), PeerAuthentications: parse(t, strictMesh)})
	fmt.Fprintf(c, "GET /2 HTTP/1.1\r\nHost: backend\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Fatalf("under STRICT the kept-alive plaintext connection got %d", resp.StatusCode)
	}
}
