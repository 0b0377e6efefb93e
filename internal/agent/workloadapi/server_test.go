package workloadapi_test

import (
	"context"
	"crypto"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/agenttest"
	"github.com/zmesh/zmesh/internal/agent/localsock"
	"github.com/zmesh/zmesh/internal/agent/workloadapi"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs a Workload API server for a on a fresh socket until cleanup
// and returns its address in go-spiffe's form.
func serve(t *testing.T, a *agent.Agent, policy localsock.Policy) string {
	t.Helper()
	path := agenttest.SocketPath(t, "agent.sock")
	srv, err := workloadapi.New(workloadapi.Config{SocketPath: path, Source: a, TrustDomain: a.ID().TrustDomain(), Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	agenttest.WaitSocket(t, path)
	return "unix://" + path
}

func rotatingCA(t *testing.T) *catest.Server {
	return catest.Serve(t, catest.NewAuthority(t, ca.Config{DefaultTTL: 2 * time.Second}))
}

func TestFetchX509SVIDServesTheAgentsIdentity(t *testing.T) {
	s := rotatingCA(t)
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	addr := serve(t, a, localsock.Policy{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	svid, err := spiffewl.FetchX509SVID(ctx, spiffewl.WithAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != a.ID() {
		t.Errorf("ID = %s, want %s", svid.ID, a.ID())
	}
	bundles, err := spiffewl.FetchX509Bundles(ctx, spiffewl.WithAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundles.GetX509BundleForTrustDomain(a.ID().TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasX509Authority(s.Authority.Bundle()[0]) {
		t.Error("bundle lacks the CA root")
	}
	// The fetched SVID verifies against the fetched bundle, key included.
	if _, _, err := x509svid.Verify(svid.Certificates, bundles); err != nil {
		t.Errorf("fetched SVID does not verify against fetched bundle: %v", err)
	}
	if !svid.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(svid.Certificates[0].PublicKey) {
		t.Error("fetched key does not match the certificate")
	}
}

// watcher records the serials of every X509Context update.
type watcher struct {
	mu      sync.Mutex
	serials []string
	ch      chan struct{}
}

func (w *watcher) OnX509ContextUpdate(c *spiffewl.X509Context) {
	w.mu.Lock()
	w.serials = append(w.serials, c.DefaultSVID().Certificates[0].SerialNumber.String())
	w.mu.Unlock()
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func (w *watcher) OnX509ContextWatchError(error) {}

func TestWatchX509ContextSeesRotations(t *testing.T) {
	s := rotatingCA(t)
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	addr := serve(t, a, localsock.Policy{})
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{ch: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() { done <- spiffewl.WatchX509Context(ctx, w, spiffewl.WithAddr(addr)) }()
	defer func() { cancel(); <-done }()

	deadline := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		distinct := map[string]bool{}
		for _, s := range w.serials {
			distinct[s] = true
		}
		n := len(w.serials)
		w.mu.Unlock()
		if len(distinct) >= 3 {
			if len(distinct) != n {
				t.Errorf("an update repeated a serial: %v", w.serials)
			}
			return
		}
		select {
		case <-w.ch:
		case <-deadline:
			t.Fatalf("saw %d certificates in 10s with 2s lifetimes, want 3", len(distinct))
		}
	}
}

// TestSPIFFETLSBetweenFetchedSVIDs makes mTLS connections with spiffetls
// between two workloads that each got their identity from their own agent's
// Workload API, across rotations of both.
func TestSPIFFETLSBetweenFetchedSVIDs(t *testing.T) {
	s := rotatingCA(t)
	server := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	client := agenttest.Start(t, s, "bar", "sleep", agent.Config{})
	serverAddr, clientAddr := serve(t, server, localsock.Policy{}), serve(t, client, localsock.Policy{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	serverSrc, err := spiffewl.NewX509Source(ctx, spiffewl.WithClientOptions(spiffewl.WithAddr(serverAddr)))
	if err != nil {
		t.Fatal(err)
	}
	defer serverSrc.Close()
	clientSrc, err := spiffewl.NewX509Source(ctx, spiffewl.WithClientOptions(spiffewl.WithAddr(clientAddr)))
	if err != nil {
		t.Fatal(err)
	}
	defer clientSrc.Close()

	lis, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0",
		spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeID(client.ID()), serverSrc))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	defer func() { lis.Close(); wg.Wait() }()

	// Connect across at least two rotations of each side.
	end := time.Now().Add(4500 * time.Millisecond)
	serials := map[string]bool{}
	for i := 0; time.Now().Before(end); i++ {
		conn, err := spiffetls.DialWithMode(ctx, "tcp", lis.Addr().String(),
			spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(server.ID()), clientSrc))
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		peer, err := spiffetls.PeerIDFromConn(conn)
		if err != nil || peer != server.ID() {
			t.Fatalf("peer = %v, %v; want %s", peer, err, server.ID())
		}
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q, %v", buf, err)
		}
		conn.Close()
		svid, _ := serverSrc.GetX509SVID()
		serials[svid.Certificates[0].SerialNumber.String()] = true
		time.Sleep(100 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Errorf("server presented %d certificates over 4.5s, want rotations", len(serials))
	}
}

func dialRaw(t *testing.T, addr string) pb.SpiffeWorkloadAPIClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewSpiffeWorkloadAPIClient(conn)
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

func TestRefusals(t *testing.T) {
	s := rotatingCA(t)
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	open := dialRaw(t, serve(t, a, localsock.Policy{}))
	closed := dialRaw(t, serve(t, a, localsock.Policy{UIDs: []int{os.Getuid() + 1}}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fetch := func(c pb.SpiffeWorkloadAPIClient, ctx context.Context) error {
		stream, err := c.FetchX509SVID(ctx, &pb.X509SVIDRequest{})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"a call without the security header is refused", func() error { return fetch(open, ctx) }, codes.InvalidArgument},
		{"a caller whose uid is not admitted is refused", func() error { return fetch(closed, withHeader(ctx)) }, codes.PermissionDenied},
		{"an admitted caller with the header is served", func() error { return fetch(open, withHeader(ctx)) }, codes.OK},
		{"JWT-SVIDs are unimplemented", func() error {
			_, err := open.FetchJWTSVID(withHeader(ctx), &pb.JWTSVIDRequest{Audience: []string{"x"}})
			return err
		}, codes.Unimplemented},
		{"JWT validation is unimplemented", func() error {
			_, err := open.ValidateJWTSVID(withHeader(ctx), &pb.ValidateJWTSVIDRequest{Audience: "x", Svid: "y"})
			return err
		}, codes.Unimplemented},
		{"JWT bundles are an empty set", func() error {
			stream, err := open.FetchJWTBundles(withHeader(ctx), &pb.JWTBundlesRequest{})
			if err != nil {
				return err
			}
			resp, err := stream.Recv()
			if err == nil && len(resp.Bundles) != 0 {
				t.Errorf("JWT bundles = %v", resp.Bundles)
			}
			return err
		}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.call()); got != tt.want {
				t.Errorf("code = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSocketIsPrivate(t *testing.T) {
	s := rotatingCA(t)
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	path := serve(t, a, localsock.Policy{})[len("unix://"):]
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode = %v, want 0700", di.Mode().Perm())
	}
	// Something that is not a socket is never removed to make room.
	plain := filepath.Join(filepath.Dir(path), "file")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := localsock.Listen(plain); err == nil {
		t.Error("Listen replaced a regular file")
	}
}
