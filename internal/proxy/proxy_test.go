package proxy

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

const strictMesh = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`

const permissiveMesh = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: PERMISSIVE}
`

const allowFrontend = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/web/sa/frontend"]}
`

// pair is a client proxy (web/frontend) that knows the service of a server
// proxy (api/backend) in front of an echo app.
type pair struct {
	ca             *meshtest.CA
	client, server *testProxy
	http           *http.Client // the client app's HTTP client, via the client proxy
}

func newPair(t testing.TB, serverPolicies string) *pair {
	t.Helper()
	return newPairWith(t, mesh(), serverPolicies, echoApp(t))
}

// newPairWith is newPair with the server's mesh settings and app given.
func newPairWith(t testing.TB, m xds.Mesh, serverPolicies string, app *httptest.Server) *pair {
	t.Helper()
	return newPairIn(t, meshtest.NewCA(t, testTD), m, mesh(), serverPolicies, app)
}

// newPairIn is newPair with the CA (whose trust domain is the proxies'),
// the server's and the client's mesh settings given.
func newPairIn(t testing.TB, ca *meshtest.CA, serverMesh, clientMesh xds.Mesh, serverPolicies string, app *httptest.Server) *pair {
	t.Helper()
	server := startProxy(t, ca, "api", "backend", app)
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	mustApply(t, server, policyView(t, "s1", serverMesh, serverPolicies))
	mustApply(t, client, &xds.View{Version: "c1", Mesh: clientMesh, Services: []registry.Service{serviceOf(server)}})
	return &pair{ca: ca, client: client, server: server, http: proxyClient(t, client)}
}

// policyView returns a view of the Istio policies in yaml under mesh m.
func policyView(t testing.TB, version string, m xds.Mesh, yaml string) *xds.View {
	t.Helper()
	v := &xds.View{Version: version, Mesh: m}
	if yaml == "" {
		return v
	}
	for _, r := range parse(t, yaml) {
		switch r.Kind {
		case "PeerAuthentication":
			v.PeerAuthentications = append(v.PeerAuthentications, r)
		case "AuthorizationPolicy":
			v.AuthorizationPolicies = append(v.AuthorizationPolicies, r)
		case "RequestAuthentication":
			v.RequestAuthentications = append(v.RequestAuthentications, r)
		}
	}
	return v
}

func echoField(body, key string) string {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

func TestMeshRequestCarriesCallerIdentity(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+allowFrontend)

	req, _ := http.NewRequest("GET", "http://backend.api.svc.cluster.local/hello?x=1", nil)
	req.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://evil;URI=spiffe://cluster.local/ns/kube-system/sa/admin")
	req.Header.Set(headerSourceWorkload, "forged")
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	xfcc := echoField(string(body), "xfcc")
	clientLeaf, _ := p.client.certs.GetX509SVID()
	sum := sha256.Sum256(clientLeaf.Certificates[0].Raw)
	want := "By=spiffe://cluster.local/ns/api/sa/backend;Hash=" + hex.EncodeToString(sum[:]) + ";URI=spiffe://cluster.local/ns/web/sa/frontend"
	if xfcc != want {
		t.Errorf("app saw XFCC %q, want %q", xfcc, want)
	}
	if got := echoField(string(body), "host"); got != "backend.api.svc.cluster.local" {
		t.Errorf("app saw Host %q", got)
	}
	if got := echoField(string(body), "path"); got != "/hello?x=1" {
		t.Errorf("app saw path %q", got)
	}
	if got := echoField(string(body), "source"); got != "" {
		t.Errorf("app saw the internal source header %q", got)
	}
}

func TestShortNamesResolveRelativeToNamespace(t *testing.T) {
	p := newPair(t, "")
	for _, host := range []string{"backend.api", "backend.api.svc", "backend.api.svc.cluster.local", "BACKEND.api.svc.cluster.local.", "backend.api:8000"} {
		code, body := get(t, p.http, "http://"+host+"/")
		if code != 200 {
			t.Errorf("%s: status %d %s", host, code, body)
		}
	}
	// "backend" alone names a service in the caller's namespace (web), not api:
	// it is not a mesh service, so it passes through, and fails to resolve.
	if rt := p.client.state.Load().routes.lookup("backend"); rt != nil {
		t.Errorf("short name resolved across namespaces to %s", rt.hostname)
	}
}

func TestOriginFormRoutedByHost(t *testing.T) {
	p := newPair(t, "")
	req, _ := http.NewRequest("GET", "http://"+p.client.OutboundAddr().String()+"/origin", nil)
	req.Host = "backend.api.svc.cluster.local"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "URI=spiffe://cluster.local/ns/web/sa/frontend") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

func TestStrictRefusesPlaintext(t *testing.T) {
	p := newPair(t, strictMesh)
	c := dialRaw(t, p.server.InboundAddr())
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("plaintext request in STRICT: read %d bytes, err %v; want the connection closed", n, err)
	}
}

func TestTLSWithoutClientCertFails(t *testing.T) {
	p := newPair(t, strictMesh)
	conf := &tls.Config{RootCAs: p.ca.Pool(), InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	c, err := tls.Dial("tcp", p.server.InboundAddr().String(), conf)
	if err == nil {
		// TLS 1.3: the client learns of the rejection at its first read.
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = http.ReadResponse(bufio.NewReader(c), nil)
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("TLS client without a certificate: err %v, want a certificate-required failure", err)
	}
}

func TestTLSFromAnotherCAFails(t *testing.T) {
	p := newPair(t, strictMesh)
	other := meshtest.NewCA(t, testTD)
	cert := other.Issue(t, "web", "frontend", time.Hour)
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	c, err := tls.Dial("tcp", p.server.InboundAddr().String(), conf)
	if err == nil {
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = http.ReadResponse(bufio.NewReader(c), nil)
	}
	if err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
}

func TestPermissiveAcceptsBoth(t *testing.T) {
	p := newPair(t, permissiveMesh)
	// mTLS through the client proxy.
	if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 || !strings.Contains(body, "URI=spiffe://") {
		t.Fatalf("mTLS: %d %s", code, body)
	}
	// Plaintext straight to the inbound port, with a forged XFCC.
	req, _ := http.NewRequest("GET", "http://"+p.server.InboundAddr().String()+"/plain", nil)
	req.Header.Set("X-Forwarded-Client-Cert", "URI=spiffe://cluster.local/ns/web/sa/frontend")
	req.Header.Set(headerSourceWorkload, "forged")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || echoField(string(body), "xfcc") != "" {
		t.Fatalf("plaintext: %d %s", resp.StatusCode, body)
	}
}

func TestDisableRefusesTLS(t *testing.T) {
	p := newPair(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: DISABLE}
`)
	// The client proxy still speaks mTLS to an endpoint with a proxy: the
	// server refuses the handshake, and the client answers 503.
	if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 503 {
		t.Fatalf("mTLS to a DISABLE workload: status %d, want 503", code)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + p.server.InboundAddr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("plaintext to a DISABLE workload: status %d", resp.StatusCode)
	}
}

func TestSecureNaming(t *testing.T) {
	p := newPair(t, "")
	// The registry expects another identity at the server's address.
	svc := serviceOf(p.server)
	svc.Endpoints[0].Identity = "spiffe://cluster.local/ns/api/sa/someone-else"
	mustApply(t, p.client, &xds.View{Version: "c2", Mesh: mesh(), Services: []registry.Service{svc}})
	code, body := get(t, p.http, "http://backend.api.svc.cluster.local/")
	if code != 503 {
		t.Fatalf("status %d %q, want 503", code, body)
	}
	// A failed connection is retried (Istio's default: 2 retries on
	// connect failure), each time with a full handshake.
	if got := counter(t, p.client, "zmesh_tls_handshakes_total", `result="error",side="client"`); got != 1+connectRetries {
		t.Errorf("failed client handshakes: %v, want %d", got, 1+connectRetries)
	}
	// The refused request is not counted as mutual TLS with the identity
	// that was expected and never proved.
	m := scrape(t, p.client)
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `response_code="503"`) &&
			(strings.Contains(line, `connection_security_policy="mutual_tls"`) || strings.Contains(line, "someone-else")) {
			t.Errorf("refused request counted as mutual TLS with the expected principal: %s", line)
		}
	}
}

func TestAuthorizationDenied(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	server := startProxy(t, ca, "api", "backend", echoApp(t))
	stranger := startProxy(t, ca, "web", "stranger", echoApp(t))
	v := &xds.View{Version: "s1", Mesh: mesh(), AuthorizationPolicies: parse(t, allowFrontend)}
	mustApply(t, server, v)
	mustApply(t, stranger, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(server)}})
	code, body := get(t, proxyClient(t, stranger), "http://backend.api.svc.cluster.local/")
	if code != 403 || body != "RBAC: access denied" {
		t.Fatalf("got %d %q, want 403 %q", code, body, "RBAC: access denied")
	}
}

func TestBadViewKeepsOldPolicy(t *testing.T) {
	p := newPair(t, allowFrontend)
	bad := &xds.View{Version: "s2", Mesh: mesh(), AuthorizationPolicies: parse(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: api}
spec:
  rules:
  - from:
    - source: {ipBlocks: ["not-an-ip"]}
`)}
	if err := p.server.Apply(bad); err == nil {
		t.Fatal("Apply accepted a broken policy")
	}
	if v := p.server.state.Load().view.Version; v != "s1" {
		t.Fatalf("version in force %q, want s1", v)
	}
	if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 {
		t.Fatalf("frontend after a rejected push: %d", code)
	}
}

// TestPooledConnections checks how requests between two proxies share
// mutual TLS connections. HTTP/1.1 requests stay HTTP/1.1 on the mesh hop
// (Istio's default h2UpgradePolicy), one request per connection at a time,
// each connection reused: serial requests share one handshake, and a
// second round of concurrent callers reuses the first round's
// connections. Requests the HTTP/1.1 fast path leaves (bodies of unknown
// length here) share one multiplexed HTTP/2 connection.
func TestPooledConnections(t *testing.T) {
	p := newPair(t, strictMesh)
	handshakes := func(side string) float64 {
		return counter(t, p.client, "zmesh_tls_handshakes_total", `result="ok",side="`+side+`"`)
	}
	serverHandshakes := func() float64 {
		return counter(t, p.server, "zmesh_tls_handshakes_total", `result="ok",side="server"`)
	}
	burst := func(workers, each int, send func(i, j int) (*http.Response, error)) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for i := range workers {
			wg.Go(func() {
				for j := range each {
					resp, err := send(i, j)
					if err != nil {
						errs <- err
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs <- fmt.Errorf("status %d", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	getPath := func(i, j int) (*http.Response, error) {
		return p.http.Get(fmt.Sprintf("http://backend.api.svc.cluster.local/%d/%d", i, j))
	}

	burst(1, 20, getPath)
	if got := handshakes("client"); got != 1 {
		t.Fatalf("client handshakes for 20 serial requests: %v, want 1", got)
	}
	if got := serverHandshakes(); got != 1 {
		t.Fatalf("server handshakes for 20 serial requests: %v, want 1", got)
	}

	const workers = 20
	burst(workers, 10, getPath)
	first := handshakes("client")
	if first < 1 || first > workers {
		t.Fatalf("client handshakes after %d concurrent callers: %v, want 1 to %d", workers, first, workers)
	}
	burst(workers, 10, getPath)
	// The second round finds the first round's connections idle; one more
	// can open when a caller outruns a connection's return to the pool.
	if got := handshakes("client"); got > first+2 {
		t.Errorf("client handshakes after a second round: %v, want about %v (reused)", got, first)
	}

	// Bodies of unknown length go over HTTP/2: one more connection for
	// all of them.
	before := handshakes("client")
	burst(workers, 5, func(i, j int) (*http.Response, error) {
		body := io.MultiReader(strings.NewReader(fmt.Sprintf("%d-%d", i, j)))
		return p.http.Post("http://backend.api.svc.cluster.local/upload", "text/plain", body)
	})
	if got := handshakes("client") - before; got != 1 {
		t.Errorf("client handshakes for %d concurrent streamed uploads: %v, want 1 (one HTTP/2 connection)", workers, got)
	}

	// Pushes keep the pool: an unchanged one, and one that drops the
	// service and brings it back (a workload reconnecting to the control
	// plane) while a request is in flight.
	was := handshakes("client")
	mustApply(t, p.client, &xds.View{Version: "c2", Mesh: mesh(), Services: []registry.Service{serviceOf(p.server)}})
	if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 {
		t.Fatalf("after an unchanged push: %d", code)
	}
	if got := handshakes("client"); got != was {
		t.Errorf("client handshakes after an unchanged push: %v, want %v (pool kept)", got, was)
	}
	mustApply(t, p.client, &xds.View{Version: "c3", Mesh: mesh()})
	mustApply(t, p.client, &xds.View{Version: "c4", Mesh: mesh(), Services: []registry.Service{serviceOf(p.server)}})
	if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 {
		t.Fatalf("after the service came back: %d", code)
	}
	if got := handshakes("client"); got > was+1 {
		t.Errorf("client handshakes after the service came back: %v, want at most %v", got, was+1)
	}
}

// TestRotationMidTraffic swaps both proxies' certificates while requests
// flow: none may fail, and new connections use the new certificates.
func TestRotationMidTraffic(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+allowFrontend)
	stop := make(chan struct{})
	var failed, total atomicCount
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := p.http.Get("http://backend.api.svc.cluster.local/")
				total.add()
				if err != nil {
					failed.add()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.add()
				}
			}
		})
	}
	// Between rotations, wait for requests to have flowed rather than for
	// a guessed time: on a loaded machine 50 ms may pass with none.
	flowed := func(n int) bool {
		want := total.load() + n
		deadline := time.Now().Add(10 * time.Second)
		for total.load() < want {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(time.Millisecond)
		}
		return true
	}
	starved := false
	for range 3 {
		if starved = !flowed(20); starved {
			break
		}
		p.client.certs.rotate(t)
		p.server.certs.rotate(t)
		// Force new connections too, so both pooled and fresh ones are
		// exercised across the rotation.
		p.client.out.closeIdle()
	}
	starved = starved || !flowed(20)
	close(stop)
	wg.Wait()
	if starved {
		t.Fatalf("fewer than 20 requests within 10s between rotations (%d in all)", total.load())
	}
	if failed.load() != 0 || total.load() == 0 {
		t.Fatalf("%d of %d requests failed across rotation", failed.load(), total.load())
	}
	t.Logf("%d requests across 3 rotations", total.load())
}

func TestNoEndpoints(t *testing.T) {
	p := newPair(t, "")
	mustApply(t, p.client, &xds.View{Version: "c2", Mesh: mesh(), Services: []registry.Service{{Hostname: "empty.api.svc.cluster.local", Namespace: "api"}}})
	if code, body := get(t, p.http, "http://empty.api/"); code != 503 || body != "no healthy upstream" {
		t.Fatalf("got %d %q", code, body)
	}
}

func TestPassthroughAndPlaintextEndpoint(t *testing.T) {
	p := newPair(t, "")
	outside := echoApp(t)
	// Unknown host: forwarded as addressed.
	code, body := get(t, p.http, outside.URL+"/direct")
	if code != 200 || echoField(body, "path") != "/direct" {
		t.Fatalf("passthrough: %d %s", code, body)
	}
	// A mesh service whose endpoint has no proxy: plaintext, no identity.
	mustApply(t, p.client, &xds.View{Version: "c2", Mesh: mesh(), Services: []registry.Service{{
		Hostname: "legacy.web.svc.cluster.local", Namespace: "web",
		Endpoints: []registry.Endpoint{{Address: outside.Listener.Addr().String(), Workload: "web/legacy"}},
	}}})
	code, body = get(t, p.http, "http://legacy/x")
	if code != 200 || echoField(body, "host") != "legacy" || echoField(body, "source") != "" {
		t.Fatalf("plaintext endpoint: %d %s", code, body)
	}
}

func TestConnectTunnel(t *testing.T) {
	p := newPair(t, "")
	outside := echoApp(t)
	c := dialRaw(t, p.client.OutboundAddr())
	target := outside.Listener.Addr().String()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target, target)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if echoField(string(body), "path") != "/tunnelled" {
		t.Fatalf("through the tunnel: %s", body)
	}
}

func TestReady(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	tp := startProxy(t, ca, "api", "backend", echoApp(t))
	ready := func() int {
		resp, err := http.Get("http://" + tp.AdminAddr().String() + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		http.DefaultClient.CloseIdleConnections()
		return resp.StatusCode
	}
	tp.certs.svid.Store(nil)
	if got := ready(); got != 503 {
		t.Fatalf("no cert, no config: %d", got)
	}
	mustApply(t, tp, &xds.View{Version: "1", Mesh: mesh()})
	if got := ready(); got != 503 {
		t.Fatalf("config, no cert: %d", got)
	}
	tp.certs.rotate(t)
	if got := ready(); got != 200 {
		t.Fatalf("config and cert: %d", got)
	}
}

type atomicCount struct {
	mu sync.Mutex
	n  int
}

func (a *atomicCount) add() { a.mu.Lock(); a.n++; a.mu.Unlock() }
func (a *atomicCount) load() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// TestH2UpgradePolicy: under MeshConfig h2UpgradePolicy UPGRADE every
// request, HTTP/1.1 ones included, shares one multiplexed HTTP/2
// connection per server proxy; back on the default (DO_NOT_UPGRADE) they
// use pooled HTTP/1.1 connections. An unknown value is a rejected push.
func TestH2UpgradePolicy(t *testing.T) {
	p := newPair(t, strictMesh)
	view := func(version, policy string) *xds.View {
		m := mesh()
		m.H2UpgradePolicy = policy
		return &xds.View{Version: version, Mesh: m, Services: []registry.Service{serviceOf(p.server)}}
	}
	handshakes := func() float64 {
		return counter(t, p.client, "zmesh_tls_handshakes_total", `result="ok",side="client"`)
	}
	concurrentGets := func(workers int) {
		t.Helper()
		release := make(chan struct{})
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				<-release
				if code, _ := get(t, p.http, fmt.Sprintf("http://backend.api.svc.cluster.local/%d", i)); code != 200 {
					t.Errorf("request %d: %d", i, code)
				}
			})
		}
		close(release)
		wg.Wait()
	}

	mustApply(t, p.client, view("upgrade", "UPGRADE"))
	concurrentGets(20)
	if got := handshakes(); got != 1 {
		t.Errorf("UPGRADE: %v client handshakes for 20 concurrent requests, want 1 (one HTTP/2 connection)", got)
	}

	if err := p.client.Apply(view("bogus", "SOMETIMES")); err == nil {
		t.Fatal("an unknown h2UpgradePolicy was accepted")
	}
	concurrentGets(20)
	if got := handshakes(); got != 1 {
		t.Errorf("after a rejected push: %v client handshakes, want 1: the last good UPGRADE was lost", got)
	}

	mustApply(t, p.client, view("default", ""))
	// Serial requests: the first opens an HTTP/1.1 connection, the rest reuse it.
	for i := range 5 {
		if code, _ := get(t, p.http, fmt.Sprintf("http://backend.api.svc.cluster.local/serial/%d", i)); code != 200 {
			t.Fatalf("DO_NOT_UPGRADE request %d: %d", i, code)
		}
	}
	if got := handshakes(); got != 2 {
		t.Errorf("DO_NOT_UPGRADE: %v client handshakes, want 2 (the HTTP/2 one, then one HTTP/1.1 connection)", got)
	}
}

// TestServerProxyRestart: the server proxy restarts on the same address
// while the client proxy holds pooled HTTP/1.1 connections to it, now
// closed by the old server. The next requests must not fail on them: a
// GET that meets a dead connection is sent again on a new one, and a POST
// (which may not be sent twice) is only sent on a connection checked to
// be open.
func TestServerProxyRestart(t *testing.T) {
	p := newPair(t, strictMesh)
	send := func(round string) {
		t.Helper()
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				var resp *http.Response
				var err error
				if i%2 == 0 {
					resp, err = p.http.Get(fmt.Sprintf("http://backend.api.svc.cluster.local/%s/%d", round, i))
				} else {
					resp, err = p.http.Post("http://backend.api.svc.cluster.local/"+round, "text/plain", strings.NewReader(fmt.Sprintf("%s-%d", round, i)))
				}
				if err != nil {
					t.Errorf("%s request %d: %v", round, i, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("%s request %d: %d %s", round, i, resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
	}
	send("before")

	addr := p.server.InboundAddr().String()
	p.server.stop()
	// The same workload, certificate authority and app, on the same
	// address, as after a restart.
	w := p.server.reg
	w.Address, w.Identity, w.HasProxy = "", "", false
	restarted := startProxyFor(t, p.ca, w, p.server.app.Listener.Addr().String(), func(c *Config) { c.InboundAddr = addr })
	mustApply(t, restarted, policyView(t, "s2", mesh(), strictMesh))

	send("after")
	if got := counter(t, restarted, "istio_requests_total", `reporter="destination"`); got != 8 {
		t.Errorf("the restarted server proxy saw %v requests, want 8", got)
	}
}
