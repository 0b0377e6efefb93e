package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/client"
	"github.com/zmesh/zmesh/internal/xds/server"
)

const trustDomain = "cluster.local"

var testMesh = xds.Mesh{TrustDomain: trustDomain, RootNamespace: "istio-system", DNSDomain: "cluster.local"}

func quietLogger() *slog.Logger {
	if os.Getenv("XDS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// controlPlane is a real xDS server on a loopback TLS port.
type controlPlane struct {
	srv      *server.Server
	store    *registry.Store
	addr     string
	gs       *grpc.Server
	cancel   context.CancelFunc
	runDone  chan error
	stopOnce sync.Once
}

func startControlPlane(t *testing.T, ca *meshtest.CA, addr string, snap *config.Snapshot, grace time.Duration) *controlPlane {
	t.Helper()
	return startControlPlaneOn(t, ca, addr, snap, func(c *serverConfig) { c.Grace = grace })
}

type serverConfig = server.Config

// startControlPlaneWith starts a control plane on a new port with its
// config changed by edit.
func startControlPlaneWith(t *testing.T, ca *meshtest.CA, snap *config.Snapshot, edit func(*serverConfig)) *controlPlane {
	t.Helper()
	return startControlPlaneOn(t, ca, "", snap, edit)
}

func startControlPlaneOn(t *testing.T, ca *meshtest.CA, addr string, snap *config.Snapshot, edit func(*serverConfig)) *controlPlane {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	var err error
	for i := 0; i < 50; i++ { // a restarted server reuses its port
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	store := registry.NewStore("cluster.local")
	cfg := server.Config{Registry: store, Mesh: testMesh, Snapshot: snap, Grace: time.Second, Debounce: 10 * time.Millisecond, Logger: quietLogger()}
	edit(&cfg)
	srv := server.New(cfg)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServerTLS(t))))
	srv.Register(gs)
	go gs.Serve(lis)
	ctx, cancel := context.WithCancel(context.Background())
	cp := &controlPlane{srv: srv, store: store, addr: lis.Addr().String(), gs: gs, cancel: cancel, runDone: make(chan error, 1)}
	go func() { cp.runDone <- srv.Run(ctx) }()
	t.Cleanup(cp.stop)
	return cp
}

func (cp *controlPlane) stop() {
	cp.stopOnce.Do(func() {
		cp.cancel()
		<-cp.runDone
		cp.gs.Stop()
	})
}

// testProxy is a real xDS client whose Apply records views.
type testProxy struct {
	c      *client.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	applied  []*xds.View
	applyErr error
	cert     tls.Certificate
}

type proxySpec struct {
	ns, name, sa string
	labels       map[string]string
	services     []string
	address      string
	nodeID       string        // default ns/name
	certTTL      time.Duration // default 1h
	bytesIn      *atomic.Int64 // if set, counts the bytes read from the control plane
	gateway      bool          // registers as a gateway proxy
}

func startProxy(t *testing.T, ca *meshtest.CA, addr string, spec proxySpec) *testProxy {
	t.Helper()
	if spec.certTTL == 0 {
		spec.certTTL = time.Hour
	}
	p := &testProxy{done: make(chan struct{}), cert: ca.Issue(t, spec.ns, spec.sa, spec.certTTL)}
	c, err := client.New(client.Config{
		Address: addr,
		TLS: ca.ClientTLS(func() *tls.Certificate {
			p.mu.Lock()
			defer p.mu.Unlock()
			c := p.cert
			return &c
		}),
		Proxy: xds.Proxy{ID: spec.nodeID, Workload: registry.Workload{
			Name: spec.name, Namespace: spec.ns, ServiceAccount: spec.sa, Labels: spec.labels,
			Address: spec.address, Services: spec.services,
		}, Gateway: spec.gateway},
		Apply:      p.apply,
		Dial:       countingDial(spec.bytesIn),
		BackoffMin: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond,
		Logger:     quietLogger(),
	})
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	p.c = c
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		defer close(p.done)
		if err := c.Run(ctx); err != nil {
			t.Errorf("client Run: %v", err)
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// countingDial dials TCP and counts the bytes read into n; nil n: the
// client's own dialer.
func countingDial(n *atomic.Int64) func(context.Context, string) (net.Conn, error) {
	if n == nil {
		return nil
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, n: n}, nil
	}
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (p *testProxy) stop() {
	p.cancel()
	<-p.done
}

func (p *testProxy) apply(v *xds.View) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.applyErr != nil {
		return p.applyErr
	}
	// What a real proxy refuses (its route table's rules).
	if err := registry.Check(v.Services); err != nil {
		return err
	}
	p.applied = append(p.applied, v)
	return nil
}

func (p *testProxy) setApplyErr(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applyErr = nil
	if msg != "" {
		p.applyErr = errors.New(msg)
	}
}

func (p *testProxy) last() *xds.View {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.applied) == 0 {
		return nil
	}
	return p.applied[len(p.applied)-1]
}

func (p *testProxy) waitSynced(t *testing.T) {
	t.Helper()
	select {
	case <-p.c.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("proxy did not sync within 5s")
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusOf(srv *server.Server, id string) (server.ProxyStatus, bool) {
	for _, s := range srv.Status() {
		if s.ID == id {
			return s, true
		}
	}
	return server.ProxyStatus{}, false
}
