package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/zmesh/zmesh/internal/ca/catest"
)

// startParts runs a control plane on loopback ports with lim, stopped at
// test cleanup as Run stops it.
func startParts(t *testing.T, lim Limits) *parts {
	t.Helper()
	cfg := Config{ConfigDir: t.TempDir(), DataDir: t.TempDir(), Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), Limits: lim}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := build(cfg, spiffeid.RequireTrustDomainFromString(cfg.TrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	p.start(ctx, &wg, errc)
	t.Cleanup(func() {
		cancel()
		p.stopServers()
		wg.Wait()
	})
	return p
}

// dialerFrom dials from the loopback address src, to stand for another host.
func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
}

// createCertificate makes one CSR from src with a bootstrap token, as an
// agent does, and returns how long it took.
func createCertificate(t *testing.T, p *parts, src string) (time.Duration, error) {
	t.Helper()
	token, err := p.authority.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return createCertificateWith(t, p, src, token)
}

func createCertificateWith(t *testing.T, p *parts, src, token string) (time.Duration, error) {
	t.Helper()
	tlsCfg := &tls.Config{RootCAs: p.authority.BundlePool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	conn, err := grpc.NewClient(p.lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialerFrom(src).DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	start := time.Now()
	_, err = pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx,
		&pb.IstioCertificateRequest{Csr: string(catest.CSR(t, catest.NewKey(t)))})
	return time.Since(start), err
}

// adminGet fetches path from the admin port, from src.
func adminGet(t *testing.T, p *parts, src, path string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialerFrom(src).DialContext}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + p.adminLis.Addr().String() + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", path, resp.Status)
	}
	return string(b), err
}

const floodEnv = "ZMESH_TEST_FLOOD" // TARGET,SOURCE,COUNT for TestHelperIdleFlood

// TestHelperIdleFlood is not a test: run by TestIdleFloodDoesNotStarveTheCA
// in a child process, it opens COUNT idle TCP connections from SOURCE to
// TARGET, prints "flooded", and holds them until its stdin closes. In its
// own process, its file descriptors are not the control plane's.
func TestHelperIdleFlood(t *testing.T) {
	spec := os.Getenv(floodEnv)
	if spec == "" {
		t.Skip("helper process for TestIdleFloodDoesNotStarveTheCA")
	}
	parts := strings.Split(spec, ",")
	n, _ := strconv.Atoi(parts[2])
	var conns []net.Conn
	for range n {
		c, err := dialerFrom(parts[1]).Dial("tcp", parts[0])
		if err != nil {
			continue // refused: reset before connect returned
		}
		conns = append(conns, c)
	}
	fmt.Println("flooded")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// TestIdleFloodDoesNotStarveTheCA: with the control plane's open-file limit
// at 512, another process opens 1,500 idle connections from one address.
// The gRPC port admits only that source's share and resets the rest, so a
// CSR from another address is still answered at once, and so is the admin
// port, which counts the refusals. Unbounded (before connlimit), the flood
// took every descriptor: accept failed with EMFILE, the CSR timed out and
// the admin port could not accept either.
func TestIdleFloodDoesNotStarveTheCA(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,500 connections")
	}
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skipf("cannot read the open-file limit: %v", err)
	}
	low := orig
	low.Cur = 512
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower the open-file limit: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })

	p := startParts(t, Limits{}) // bounds derived from the limit of 512
	if p.limits.Total >= 512 || p.limits.PerSource > p.limits.Total/4 {
		t.Fatalf("limits %+v not sized below the open-file limit", p.limits)
	}

	flood := exec.Command(os.Args[0], "-test.run=^TestHelperIdleFlood$", "-test.count=1")
	flood.Env = append(os.Environ(), floodEnv+"="+p.lis.Addr().String()+",127.0.0.2,1500")
	stdin, err := flood.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := flood.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	flood.Stderr = os.Stderr
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = flood.Wait()
	}()
	buf := make([]byte, 64)
	if n, err := io.ReadAtLeast(stdout, buf, len("flooded")); err != nil || !strings.Contains(string(buf[:n]), "flooded") {
		t.Fatalf("flood helper: %q, %v", buf[:n], err)
	}

	took, err := createCertificate(t, p, "127.0.0.9")
	if err != nil {
		t.Fatalf("CSR from another address during the flood: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("CSR took %s during the flood", took)
	}
	if _, err := adminGet(t, p, "127.0.0.9", "/ready"); err != nil {
		t.Fatalf("admin port during the flood: %v", err)
	}
	metrics, err := adminGet(t, p, "127.0.0.9", "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metrics, `zmesh_listener_connections_refused_total{listener="grpc",reason="per_source"}`) {
		t.Error("/metrics does not count the refused connections")
	}
	if open := p.lis.(interface{ Open() int }).Open(); open > p.limits.PerSource+1 {
		t.Errorf("%d gRPC connections open, want at most the flood's share %d and the CSR's", open, p.limits.PerSource)
	}
}

// TestSilentConnectionsAreCut: a connection that never starts its TLS
// handshake, and one that completes TLS and HTTP/2 setup but never sends
// an RPC, are closed by the server within their time-outs (plus gRPC's 5s
// goodbye for the idle one), not after gRPC's default two minutes or never.
func TestSilentConnectionsAreCut(t *testing.T) {
	p := startParts(t, Limits{HandshakeTimeout: time.Second, IdleTimeout: time.Second})
	addr := p.lis.Addr().String()

	// waitClosed reads until the server closes c and returns how long that
	// took; it fails the test past limit.
	waitClosed := func(c net.Conn, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(limit))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s", limit)
		}
		return time.Since(start)
	}

	silent, err := dialerFrom("127.0.0.3").Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if took := waitClosed(silent, 4*time.Second); took < 500*time.Millisecond {
		t.Errorf("silent connection closed after %s, before its time-out", took)
	}

	idle, err := tls.DialWithDialer(dialerFrom("127.0.0.4"), "tcp", addr, &tls.Config{
		RootCAs: p.authority.BundlePool(), ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// The HTTP/2 client preface and an empty SETTINGS frame: the connection
	// is set up, then nothing.
	if _, err := idle.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	waitClosed(idle, 12*time.Second)
}

// TestHugeHeadersRefused: a request with a 10 MB bearer token is refused
// by the gRPC layer, never reaching the CSR service, and the port goes on
// serving. The server advertises its bound in its HTTP/2 settings, so a
// gRPC client refuses to send; a client that sends anyway has its headers
// cut at the bound by the server's framer and its stream reset.
func TestHugeHeadersRefused(t *testing.T) {
	p := startParts(t, Limits{})
	took, err := createCertificateWith(t, p, "127.0.0.5", strings.Repeat("A", 10<<20))
	// Unauthenticated would mean the header reached the CSR service.
	if code := status.Code(err); code == codes.OK || code == codes.Unauthenticated {
		t.Fatalf("a 10 MB header reached the service: %v", err)
	}
	t.Logf("refused with %v", err)
	if took > 3*time.Second {
		t.Errorf("refusing a 10 MB header took %s", took)
	}
	if _, err := createCertificate(t, p, "127.0.0.5"); err != nil {
		t.Fatalf("CSR after the huge header: %v", err)
	}
}
