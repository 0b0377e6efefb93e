package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTCPThroughMesh opens raw TCP streams to the backend through each
// caller's outbound listener (CONNECT, as an HTTP_PROXY-aware app does for
// non-HTTP traffic). The bytes are opaque to the proxies: the stream
// carries an HTTP request only because the echo app understands one. The
// quickstart policy allows frontend and no one else, and it holds for TCP
// too: frontend's stream reaches the app, stranger's is closed unread.
// The streams ride backend's HBONE tunnel (zmesh up gives every proxy
// one): as root, the bytes on the tunnel's port are captured, checked to
// be TLS, and to be there at all.
func TestTCPThroughMesh(t *testing.T) {
	m := startMesh(t)
	frontend, stranger, backend := m.w("web/frontend"), m.w("web/stranger"), m.w("api/backend")

	const marker = "zmesh-tcp-marker-51c9"
	var capture *loopbackCapture
	if os.Geteuid() == 0 {
		if backend.tunnel == "" {
			t.Fatal("zmesh up printed no tunnel= for backend")
		}
		_, portStr, _ := net.SplitHostPort(backend.tunnel)
		port, _ := strconv.Atoi(portStr)
		c, err := newLoopbackCapture(uint16(port))
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		capture = c
	} else {
		t.Log("not root: the wire is not captured (CI runs as root)")
	}

	resp, err := tcpGet(frontend.outbound, "backend.api.svc.cluster.local:8080", "/"+marker)
	if err != nil {
		t.Fatalf("frontend over TCP: %v", err)
	}
	if resp.status != 200 || !strings.Contains(resp.body, `"path":"/`+marker+`"`) {
		t.Fatalf("frontend over TCP: %d %q", resp.status, resp.body)
	}
	// The server proxy did not parse the stream: no header of its own.
	if strings.Contains(resp.body, "X-Forwarded-Client-Cert") {
		t.Errorf("the TCP stream was handled as HTTP: %s", resp.body)
	}

	if resp, err := tcpGet(stranger.outbound, "backend.api:8080", "/"+marker); err == nil {
		t.Errorf("stranger over TCP got %d %q, want the stream closed", resp.status, resp.body)
	}

	if capture != nil {
		flows := capture.stop()
		if len(flows) == 0 {
			t.Fatal("captured nothing on the backend's tunnel port: the stream did not ride HBONE")
		}
		for src, payload := range flows {
			if len(payload) < 5 || payload[0] < 0x14 || payload[0] > 0x17 || payload[1] != 0x03 {
				t.Errorf("connection from port %d starts with % x, not a TLS record", src, payload[:min(len(payload), 8)])
			}
			if strings.Contains(string(payload), marker) {
				t.Errorf("connection from port %d carried the stream in clear", src)
			}
		}
	}
	// Both sides count the frontend's stream as mutual TLS.
	for _, admin := range []string{frontend.admin, backend.admin} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			line := metricWith(t, admin, "istio_tcp_connections_closed_total{", `source_principal="spiffe://cluster.local/ns/web/sa/frontend"`)
			if strings.Contains(line, `connection_security_policy="mutual_tls"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: no mutual_tls istio_tcp_connections_closed_total from frontend (%q)", admin, line)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

type tcpAnswer struct {
	status int
	body   string
}

// tcpGet opens a CONNECT tunnel to target through the outbound listener
// at outbound and sends one HTTP request over it as raw bytes.
func tcpGet(outbound, target, path string) (tcpAnswer, error) {
	c, err := net.DialTimeout("tcp", outbound, 5*time.Second)
	if err != nil {
		return tcpAnswer{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return tcpAnswer{}, err
	}
	if resp.StatusCode != 200 {
		return tcpAnswer{status: resp.StatusCode}, nil
	}
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: backend.api.svc.cluster.local\r\nConnection: close\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		return tcpAnswer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return tcpAnswer{status: resp.StatusCode, body: string(b)}, nil
}

// metricWith returns the first line of the proxy's /metrics at admin that
// starts with prefix and contains contains.
func metricWith(t *testing.T, admin, prefix, contains string) string {
	t.Helper()
	resp, err := plain.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, contains) {
			return l
		}
	}
	return ""
}
