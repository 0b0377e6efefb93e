package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// hbonePair is tcpPair with the server proxy's tunnel listener on and
// advertised in its endpoint (tunnelPort overrides the advertised port
// when non-zero: a tunnel that cannot be reached).
func hbonePair(t testing.TB, client, serverPolicies, appAddr string, tunnelPort uint32) (cli, srv *testProxy) {
	t.Helper()
	ca := meshtest.NewCA(t, testTD)
	w := registry.Workload{Name: "backend", Namespace: "api", ServiceAccount: "backend", Labels: map[string]string{"app": "backend"}, Services: []string{"backend"}}
	srv = startProxyFor(t, ca, w, appAddr, func(c *Config) { c.TunnelAddr = "127.0.0.1:0" })
	cli = startProxy(t, ca, "web", client, nil)
	mustApply(t, srv, policyView(t, "s1", mesh(), serverPolicies))
	svc := serviceOf(srv)
	if tunnelPort == 0 {
		tunnelPort = uint32(srv.TunnelAddr().(*net.TCPAddr).Port)
	}
	svc.Endpoints[0].TunnelPort = tunnelPort
	mustApply(t, cli, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{svc}})
	return cli, srv
}

// handshakes returns how many TLS handshakes p made or took as side.
func handshakes(t *testing.T, p *testProxy, side string) int {
	t.Helper()
	line := metricLine(scrape(t, p), "zmesh_tls_handshakes_total{", `side="`+side+`"`)
	if line == "" {
		return 0
	}
	n, err := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
	if err != nil {
		t.Fatalf("handshakes: %q", line)
	}
	return n
}

// TestHBONECarriesStreamsOnOneConnection: TCP streams from a client proxy
// to a peer with a tunnel ride one mutual TLS connection, each stream a
// CONNECT; the server proxy sees the client's identity and workload on
// every one, and the streams are independent (each gets its own app
// connection and its own bytes).
func TestHBONECarriesStreamsOnOneConnection(t *testing.T) {
	appAddr, appConns := tcpApp(t)
	cli, srv := hbonePair(t, "frontend", strictMesh+"---\n"+allowFrontend, appAddr, 0)
	const streams = 12
	var wg sync.WaitGroup
	errs := make(chan string, streams)
	for i := range streams {
		wg.Go(func() {
			c, br := connect(t, cli, "backend.api.svc.cluster.local:9000")
			defer c.Close()
			if greet, err := br.ReadString('\n'); err != nil || greet != "220 line-echo ready\n" {
				errs <- "greeting: " + greet
				return
			}
			line := "stream " + strconv.Itoa(i) + "\n"
			io.WriteString(c, line)
			if got, err := br.ReadString('\n'); err != nil || got != line {
				errs <- "echo: " + got
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := appConns.Load(); n != streams {
		t.Errorf("app got %d connections, want %d", n, streams)
	}
	if n := handshakes(t, srv, "server"); n != 1 {
		t.Errorf("server proxy took %d TLS handshakes for %d streams, want 1 (the tunnel)", n, streams)
	}
	waitFor(t, func() bool {
		return strings.Contains(scrape(t, srv), `istio_tcp_connections_closed_total{`)
	})
	line := metricLine(scrape(t, srv), "istio_tcp_connections_opened_total{", `reporter="destination"`)
	for _, want := range []string{`connection_security_policy="mutual_tls"`, `source_principal="spiffe://cluster.local/ns/web/sa/frontend"`,
		`source_workload="frontend"`, "} " + strconv.Itoa(streams)} {
		if !strings.Contains(line, want) {
			t.Errorf("server's istio_tcp_connections_opened_total = %q, want %s", line, want)
		}
	}
}

// TestHBONEAuthorization: each stream is authorized with the tunnel's
// identity, under Istio's TCP semantics; a denied stream ends with no
// byte and never reaches the app.
func TestHBONEAuthorization(t *testing.T) {
	for _, tc := range []struct {
		client  string
		allowed bool
	}{{"frontend", true}, {"stranger", false}} {
		t.Run(tc.client, func(t *testing.T) {
			appAddr, appConns := tcpApp(t)
			cli, srv := hbonePair(t, tc.client, strictMesh+"---\n"+allowFrontend, appAddr, 0)
			_, br := connect(t, cli, "backend.api:7000")
			greet, err := br.ReadString('\n')
			if tc.allowed != (greet == "220 line-echo ready\n") {
				t.Fatalf("allowed=%v: greeting %q, %v", tc.allowed, greet, err)
			}
			if !tc.allowed && appConns.Load() != 0 {
				t.Errorf("app got %d connections from a denied stream", appConns.Load())
			}
			if n := handshakes(t, srv, "server"); n != 1 {
				t.Errorf("server took %d handshakes, want 1 (the stream rode the tunnel)", n)
			}
		})
	}
}

// TestHBONEFallsBackToAConnectionPerStream: a peer whose tunnel cannot be
// reached is still reached, with a mutual TLS connection per stream.
func TestHBONEFallsBackToAConnectionPerStream(t *testing.T) {
	appAddr, appConns := tcpApp(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint32(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()
	cli, srv := hbonePair(t, "frontend", strictMesh+"---\n"+allowFrontend, appAddr, port)
	for range 2 {
		c, br := connect(t, cli, "backend.api:7000")
		if greet, err := br.ReadString('\n'); err != nil || greet != "220 line-echo ready\n" {
			t.Fatalf("greeting %q, %v", greet, err)
		}
		c.Close()
	}
	if appConns.Load() != 2 {
		t.Errorf("app got %d connections, want 2", appConns.Load())
	}
	if n := handshakes(t, srv, "server"); n != 2 {
		t.Errorf("server took %d handshakes, want 2 (one per stream on its inbound listener)", n)
	}
}

// TestHBONEHalfClose: a stream passes each side's end on. A client that
// half-closes still reads the app's answer and then the end; an app that
// answers and closes ends the stream although the client never closed.
func TestHBONEHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				cmd, _ := br.ReadString('\n')
				switch cmd {
				case "upper-until-eof\n": // reads to the end, then answers
					b, _ := io.ReadAll(br)
					io.WriteString(c, strings.ToUpper(string(b)))
				case "bye\n": // answers and closes at once
					io.WriteString(c, "goodbye\n")
				}
			}()
		}
	}()
	cli, _ := hbonePair(t, "frontend", strictMesh+"---\n"+allowFrontend, ln.Addr().String(), 0)

	c, br := connect(t, cli, "backend.api:7000")
	io.WriteString(c, "upper-until-eof\nsome text")
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(br); err != nil || string(got) != "SOME TEXT" {
		t.Fatalf("after the client's half-close: %q, %v", got, err)
	}

	c, br = connect(t, cli, "backend.api:7000")
	io.WriteString(c, "bye\n")
	done := make(chan string, 1)
	go func() {
		got, _ := io.ReadAll(br)
		done <- string(got)
	}()
	select {
	case got := <-done:
		if got != "goodbye\n" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the app closed, the client's stream did not end")
	}
}

// TestHBONERefusesWithoutMeshIdentity: the tunnel listener takes only
// mesh peers: a client with no certificate, or one of another CA, gets
// no stream, even where PERMISSIVE takes plaintext on the inbound port.
func TestHBONERefusesWithoutMeshIdentity(t *testing.T) {
	appAddr, appConns := tcpApp(t)
	_, srv := hbonePair(t, "frontend", permissiveMesh, appAddr, 0)
	other := meshtest.NewCA(t, testTD)
	for name, certs := range map[string][]tls.Certificate{
		"no certificate": nil,
		"another CA":     {other.IssueURI(t, "spiffe://cluster.local/ns/web/sa/frontend", time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			conf := &tls.Config{Certificates: certs, InsecureSkipVerify: true, NextProtos: []string{http2.NextProtoTLS}, MinVersion: tls.VersionTLS13}
			tc, err := tls.Dial("tcp", srv.TunnelAddr().String(), conf)
			if err != nil {
				return // refused at the handshake
			}
			defer tc.Close()
			cc, err := (&http2.Transport{}).NewClientConn(tc)
			if err != nil {
				return
			}
			pr, pw := io.Pipe()
			defer pw.Close()
			req, _ := http.NewRequest(http.MethodConnect, "http://"+appAddr, pr)
			req.Host = appAddr
			resp, err := cc.RoundTrip(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				b := make([]byte, 64)
				n, _ := resp.Body.Read(b)
				t.Fatalf("a stream was opened: %s %q", resp.Status, b[:n])
			}
		})
	}
	if n := appConns.Load(); n != 0 {
		t.Errorf("app got %d connections", n)
	}
}

// BenchmarkTCPStreams measures one short app TCP connection through a
// proxy pair (CONNECT to the client proxy, the app's greeting, one line
// echoed, close), carried per connection (its own mTLS handshake) or
// over the server's HBONE tunnel. ns/op is per app connection.
//
//	go test -run '^$' -bench TCPStreams -benchmem ./internal/proxy/
func BenchmarkTCPStreams(b *testing.B) {
	for _, tc := range []struct {
		name   string
		tunnel bool
	}{{"per-connection", false}, {"hbone", true}} {
		b.Run(tc.name, func(b *testing.B) {
			appAddr, _ := tcpApp(b)
			var port uint32
			if !tc.tunnel {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				port = uint32(ln.Addr().(*net.TCPAddr).Port)
				ln.Close() // a tunnel that cannot be reached: per connection
			}
			cli, _ := hbonePair(b, "frontend", strictMesh+"---\n"+allowFrontend, appAddr, port)
			out := cli.OutboundAddr().String()
			stream := func() error {
				c, err := net.Dial("tcp", out)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "CONNECT backend.api:7000 HTTP/1.1\r\nHost: backend.api:7000\r\n\r\n")
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
				if err != nil || resp.StatusCode != 200 {
					return fmt.Errorf("CONNECT: %v", err)
				}
				if _, err := br.ReadString('\n'); err != nil {
					return err
				}
				io.WriteString(c, "ping\n")
				_, err = br.ReadString('\n')
				return err
			}
			if err := stream(); err != nil { // warm: the tunnel is up
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := stream(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestHBONETunnelTarget: what a CONNECT authority delivers to, with and
// without capture.
func TestHBONETunnelTarget(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	w := registry.Workload{Name: "backend", Namespace: "api", ServiceAccount: "backend"}
	plain := startProxyFor(t, ca, w, "127.0.0.1:8080", func(c *Config) { c.TunnelAddr = "127.0.0.1:0" })
	captured := startProxyFor(t, ca, w, "127.0.0.1:8080", func(c *Config) {
		c.TunnelAddr = "127.0.0.1:0"
		c.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return netip.AddrPort{}, errors.New("none") }
	})
	port := func(a net.Addr) string { return strconv.Itoa(a.(*net.TCPAddr).Port) }
	for _, tc := range []struct {
		name      string
		p         *Proxy
		authority string
		want      string // "" for the app's one port, "-" refused
	}{
		{"no capture: any host:port is the app", plain.Proxy, "10.0.0.5:9999", ""},
		{"no capture: a name", plain.Proxy, "backend.api:80", ""},
		{"no capture: not host:port", plain.Proxy, "backend", "-"},
		{"capture: the app's port", captured.Proxy, "10.0.0.5:8080", "10.0.0.5:8080"},
		{"capture: another app port", captured.Proxy, "10.0.0.5:9000", "10.0.0.5:9000"},
		{"capture: the inbound listener (no capture at the peer)", captured.Proxy, "127.0.0.1:" + port(captured.InboundAddr()), ""},
		{"capture: the admin port", captured.Proxy, "10.0.0.5:" + port(captured.AdminAddr()), "-"},
		{"capture: the tunnel port", captured.Proxy, "10.0.0.5:" + port(captured.TunnelAddr()), "-"},
		{"capture: a name", captured.Proxy, "backend.api:80", "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, ok := tc.p.tunnelTarget(tc.authority)
			got := "-"
			if ok {
				got = ""
				if dst.IsValid() {
					got = dst.String()
				}
			}
			if got != tc.want {
				t.Errorf("tunnelTarget(%q) = %q, want %q", tc.authority, got, tc.want)
			}
		})
	}
}
