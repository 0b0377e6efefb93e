package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/check"
	"github.com/zmesh/zmesh/internal/check/conformance"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// conformanceNow is the suite's clock (see internal/check): its tokens are
// valid from 2024 to 2100, the expired one ended in 2020.
var conformanceNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// TestConformanceThroughProxy sends the requests of the conformance suite
// (internal/check/testdata/conformance) through a real proxy, over real
// mutual TLS or plaintext from a client holding the request's identity, and
// checks the answer the caller gets: 200 from the app for ALLOW, Envoy's
// status for DENY (403, 401 for a bad token, 400 for a rejected request),
// and no HTTP answer at all for a connection that peer authentication
// refuses. `zmesh check` runs the same suite through the same policy.Set;
// this proves that what the proxy does with the wire (the request line,
// headers, the peer certificate, the token) matches what check assumes.
//
// The subset is every request whose attributes the test can give on
// loopback: HTTP requests, and TCP connections over mutual TLS (a stream
// as a client proxy opens it; denied, it is closed before the app sees
// it). The rest is skipped with the reason (plaintext TCP, which the
// inbound listener does not carry; addresses outside 127/8; pre-validated
// JWT attributes). CUSTOM policies meet providers that cannot be reached,
// as check assumes; real providers are tested in the ext_authz tests.
func TestConformanceThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a proxy per request")
	}
	files, err := conformance.Load("../check/testdata/conformance")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, f := range files {
		if f.Error != "" {
			continue // a load failure: nothing reaches a proxy
		}
		if why := fileSkip(f); why != "" {
			t.Logf("%s: skipped: %s", f.Name, why)
			continue
		}
		snap, _, err := config.Load(map[string][]byte{f.Name + ".yaml": []byte(f.Resources)})
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		td := f.Options.TrustDomain
		if td == "" {
			td = testTD
		}
		root := f.Options.RootNamespace
		if root == "" {
			root = "istio-system"
		}
		// CUSTOM policies name providers that check cannot consult,
		// which it treats as a provider that cannot be reached: the
		// proxies get each named provider at an address where nothing
		// listens, so they fail closed the same way.
		var providers []*meshv1alpha1.MeshConfig_ExtensionProvider
		for _, name := range customProviders(snap) {
			providers = append(providers, grpcProvider(name, closedAddr(t), 0, false, time.Second))
		}
		view := func() *xds.View {
			return &xds.View{
				Version: "conformance",
				Mesh: xds.Mesh{
					TrustDomain: td, TrustDomainAliases: f.Options.TrustDomainAliases,
					RootNamespace: root, DNSDomain: "cluster.local", PathNormalization: f.Options.PathNormalization,
					ExtensionProviders: providers,
				},
				PeerAuthentications:    snap.List(config.KindPeerAuthentication),
				RequestAuthentications: snap.List(config.KindRequestAuthentication),
				AuthorizationPolicies:  snap.List(config.KindAuthorizationPolicy),
			}
		}
		for i := range f.Requests {
			r := &f.Requests[i]
			in, err := check.ParseInput(r.Request)
			if err != nil {
				t.Fatalf("%s/%s: %v", f.Name, r.Name, err)
			}
			if why := requestSkip(r, in); why != "" {
				continue
			}
			ran++
			t.Run(f.Name+"/"+r.Name, func(t *testing.T) {
				t.Parallel()
				runThroughProxy(t, td, view(), in, r.Expect, f.Citation(r))
			})
		}
	}
	t.Logf("%d conformance requests sent through real proxies", ran)
	if ran < 100 {
		t.Errorf("only %d requests of the suite ran through a proxy; the filters skip too much", ran)
	}
}

// fileSkip says why no request of f can go through a proxy here.
func fileSkip(f *conformance.File) string {
	switch {
	case strings.Contains(f.Resources, "jwksUri"):
		return "a remote JWKS"
	case strings.Contains(f.Resources, "destination.ip"), strings.Contains(f.Resources, "connection.sni"),
		strings.Contains(f.Resources, "remoteIpBlocks"), strings.Contains(f.Resources, "remote.ip"):
		return "attributes a loopback client cannot set (destination address, SNI, original client address)"
	}
	return ""
}

// customProviders returns the names of the providers the CUSTOM
// AuthorizationPolicies of snap delegate to.
func customProviders(snap *config.Snapshot) []string {
	var names []string
	for _, r := range snap.List(config.KindAuthorizationPolicy) {
		ap, ok := r.Spec.(*securityv1beta1.AuthorizationPolicy)
		if !ok || ap.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
			continue
		}
		if name := ap.GetProvider().GetName(); name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// requestSkip says why one request cannot go through a proxy here.
func requestSkip(r *conformance.Request, in *check.Input) string {
	switch {
	case r.KnownIssue != "":
		return "known issue"
	case in.Request.Method == "" && in.Source.Principal == "", in.Request.Method == "" && in.TLS != nil && !*in.TLS:
		return "a plaintext TCP connection (the inbound listener carries TCP only from client proxies, over mutual TLS)"
	case in.Request.Auth != nil:
		return "pre-validated JWT attributes"
	case in.Source.RemoteIP != "", in.Request.DestinationIP != "", in.Connection.SNI != "":
		return "attributes a loopback client cannot set"
	case in.Request.Port == 0:
		return "no port"
	}
	if in.Source.IP != "" {
		ip, err := netip.ParseAddr(in.Source.IP)
		if err != nil || !ip.Is4() || !ip.IsLoopback() {
			return "a source address outside 127/8"
		}
	}
	return ""
}

func runThroughProxy(t *testing.T, td string, v *xds.View, in *check.Input, want conformance.Expect, cite string) {
	ca := meshtest.NewCA(t, td)
	app := listenLoopbackPort(t, in.Request.Port)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app reached")
	})}
	go srv.Serve(app)
	t.Cleanup(func() { srv.Close() })

	ns := in.Workload.Namespace
	sa := in.Workload.ServiceAccount
	if sa == "" {
		sa = "workload"
	}
	p := startProxyFor(t, ca, registry.Workload{Name: sa, Namespace: ns, ServiceAccount: sa, Labels: in.Workload.Labels},
		app.Addr().String(), func(c *Config) { c.Now = func() time.Time { return conformanceNow } })
	if err := p.Apply(v); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	status, body, err := sendRaw(t, ca, p.InboundAddr().String(), in)
	switch {
	case want.Decision == "DENY" && (want.Stage == "peer-authentication" || in.Request.Method == ""):
		// Refused at the handshake, or a TCP connection closed by
		// authorization: either way nothing reaches the app.
		if err == nil {
			t.Errorf("got HTTP %d %q, want the connection refused\ncite: %s", status, body, cite)
		}
		return
	case err != nil:
		t.Fatalf("no answer: %v\ncite: %s", err, cite)
	}
	wantStatus := http.StatusOK
	switch {
	case want.Status != nil && *want.Status != 0:
		wantStatus = *want.Status
	case want.Decision == "DENY" && want.Stage == "request-authentication":
		wantStatus = http.StatusUnauthorized
	case want.Decision == "DENY":
		wantStatus = http.StatusForbidden
	}
	if status != wantStatus {
		t.Errorf("status %d %q, want %d (%s at %q by %q)\ncite: %s", status, body, wantStatus, want.Decision, want.Stage, want.Policy, cite)
	}
	if wantStatus == http.StatusOK && in.Request.Method != http.MethodHead && body != "app reached" {
		t.Errorf("allowed, but the body is %q, not the app's", body)
	}
	if want.Policy != "" && strings.Contains(body, want.Policy) {
		t.Errorf("the response names the deciding policy: %q", body)
	}
}

// listenLoopbackPort listens on port of a random 127/8 address, so that
// tests running at once, and other programs on the usual 127.0.0.1, do not
// collide on the ports the suite's policies name.
func listenLoopbackPort(t *testing.T, port uint32) net.Listener {
	t.Helper()
	var last error
	for range 10 {
		addr := fmt.Sprintf("127.%d.%d.%d:%d", 1+rand.IntN(250), rand.IntN(256), 1+rand.IntN(250), port)
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l
		}
		last = err
	}
	t.Skipf("cannot listen on port %d of a loopback address: %v", port, last)
	return nil
}

// sendRaw writes the request exactly as given (the request line is not
// cleaned up by an HTTP client library: dot segments, double slashes,
// escapes and lower-case methods reach the proxy as written) and reads
// the answer. err is set when the proxy answered nothing.
func sendRaw(t *testing.T, ca *meshtest.CA, addr string, in *check.Input) (int, string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if in.Source.IP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(in.Source.IP)}
	}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	conn := raw
	principal := strings.TrimPrefix(in.Source.Principal, "spiffe://")
	mtls := principal != ""
	if in.TLS != nil {
		mtls = *in.TLS
	}
	if mtls {
		cert := ca.IssueURI(t, "spiffe://"+principal, time.Hour)
		proto := "http/1.1"
		if in.Request.Method == "" {
			proto = alpnTCP // a TCP stream, as a client proxy opens for CONNECT
		}
		tc := tls.Client(raw, &tls.Config{
			Certificates:       []tls.Certificate{cert},
			InsecureSkipVerify: true, // the server's identity is not what this test checks
			NextProtos:         []string{proto},
			MinVersion:         tls.VersionTLS13,
		})
		if err := tc.Handshake(); err != nil {
			return 0, "", err
		}
		conn = tc
	}
	path := in.Request.Path
	if path == "" {
		path = "/"
	}
	host := in.Request.Host
	if host == "" {
		host = "workload"
	}
	method := in.Request.Method
	if method == "" {
		// A TCP connection: the bytes are opaque to the proxies; an
		// HTTP request is simply what this test's app understands.
		method = http.MethodGet
	}
	var b strings.Builder
	if in.Request.Method == "" && mtls {
		b.WriteString(tcpPreamble + "conformance-client\n") // what a client proxy sends first
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, host)
	for k, v := range in.Request.Headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if in.Request.JWT != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", in.Request.JWT)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}
