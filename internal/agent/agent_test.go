package agent_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"go.uber.org/goleak"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var td = catest.TrustDomain

// run starts a's Run and stops it at cleanup, failing the test if Run errs.
func run(t *testing.T, a *agent.Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// newAgent returns an agent for ns/sa against s, with a token from s's
// authority for tokenNS/tokenSA; tokenCalls counts token reads.
func newAgent(t *testing.T, addr string, authority *ca.Authority, ns, sa string, tokenCalls *atomic.Int32) *agent.Agent {
	t.Helper()
	token, err := authority.IssueToken(ns, sa, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		CAAddress:      addr,
		CARoots:        authority.Bundle(),
		Token:          func() (string, error) { tokenCalls.Add(1); return token, nil },
		TrustDomain:    td,
		Namespace:      ns,
		ServiceAccount: sa,
		MinRetry:       20 * time.Millisecond,
		MaxRetry:       200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func waitReady(t *testing.T, a *agent.Agent, within time.Duration) {
	t.Helper()
	select {
	case <-a.Ready():
	case <-time.After(within):
		t.Fatalf("agent not ready after %s: %+v", within, a.Status())
	}
}

// TestRotation runs two agents against the real CSR service with 2 s
// certificates. It checks that each rotates at least twice, renews with its
// certificate rather than its token, presents the right identity to a peer
// verifying with go-spiffe, and that a connection opened before the
// rotations still works after them.
func TestRotation(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{DefaultTTL: 2 * time.Second})
	s := catest.Serve(t, authority)
	var serverTokens, clientTokens atomic.Int32
	server := newAgent(t, s.Addr, authority, "foo", "httpbin", &serverTokens)
	client := newAgent(t, s.Addr, authority, "bar", "sleep", &clientTokens)
	run(t, server)
	run(t, client)
	waitReady(t, server, 10*time.Second)
	waitReady(t, client, 10*time.Second)

	// An mTLS echo server whose certificate comes from the agent per
	// handshake, accepting only the client agent's identity.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvLis := tls.NewListener(lis, tlsconfig.MTLSServerConfig(server, server, tlsconfig.AuthorizeID(client.ID())))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := srvLis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		srvLis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})

	// dial opens an mTLS connection as the client agent, accepting only the
	// server agent's identity, and returns it with the server's leaf serial.
	dial := func() (*tls.Conn, string) {
		t.Helper()
		cfg := tlsconfig.MTLSClientConfig(client, client, tlsconfig.AuthorizeID(server.ID()))
		c, err := tls.Dial("tcp", lis.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("mTLS dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		echo(t, c, "hello")
		return c, c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	early, earlySerial := dial()
	first, _ := server.GetX509SVID()

	deadline := time.After(15 * time.Second)
	for server.Status().Rotations < 2 || client.Status().Rotations < 2 {
		ch := server.Updated()
		if server.Status().Rotations >= 2 && client.Status().Rotations >= 2 {
			break
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no 2 rotations within 15s: server %+v, client %+v", server.Status(), client.Status())
		}
	}
	now, _ := server.GetX509SVID()
	if now.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) == 0 {
		t.Error("serial unchanged after rotations")
	}
	if now.PrivateKey == first.PrivateKey {
		t.Error("key reused across rotations")
	}
	// The connection made before the rotations is still up, and a new one
	// sees a new certificate for the same identity.
	echo(t, early, "still there")
	if _, serial := dial(); serial == earlySerial {
		t.Error("new connection still presented the first certificate")
	}
	if n := serverTokens.Load(); n != 1 {
		t.Errorf("server agent read its token %d times, want once (renewals by certificate)", n)
	}
	st := server.Status()
	if st.SPIFFEID != "spiffe://cluster.local/ns/foo/sa/httpbin" || !st.Ready || st.Serial == "" || st.LastError != "" {
		t.Errorf("Status = %+v", st)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Errorf("Status is not JSON-able: %v", err)
	}
}

func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}

func TestUnreachableCAThenUp(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{})
	// Reserve an address, then free it: nothing listens there at first.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	var tokens atomic.Int32
	a := newAgent(t, addr, authority, "foo", "bar", &tokens)
	run(t, a)
	// Wait for the first failed attempt (recorded before its retry), not
	// for a guessed time.
	deadline := time.Now().Add(10 * time.Second)
	for a.RenewalFailures() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no failed attempt recorded within 10s: %+v", a.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-a.Ready():
		t.Fatal("ready without a CA")
	default:
	}
	if st := a.Status(); st.Ready || st.LastError == "" {
		t.Fatalf("Status while CA down = %+v, want not ready with an error", st)
	}
	if _, err := a.GetX509SVID(); !errors.Is(err, agent.ErrNoCertificate) {
		t.Fatalf("GetX509SVID before ready: %v", err)
	}

	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not rebind %s: %v", addr, err)
	}
	catest.ServeListener(t, authority, lis)
	waitReady(t, a, 10*time.Second)
	svid, err := a.GetX509SVID()
	if err != nil || svid.ID.String() != "spiffe://cluster.local/ns/foo/sa/bar" {
		t.Fatalf("GetX509SVID = %v, %v", svid, err)
	}
}

func TestRefusesCertificateForAnotherIdentity(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{})
	s := catest.Serve(t, authority)
	// The token names other/thing, but the agent expects foo/bar.
	token, _ := authority.IssueToken("other", "thing", time.Hour)
	a, err := agent.New(agent.Config{
		CAAddress: s.Addr, CARoots: authority.Bundle(), TrustDomain: td, Namespace: "foo", ServiceAccount: "bar",
		Token:    func() (string, error) { return token, nil },
		MinRetry: 20 * time.Millisecond, MaxRetry: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, a)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.Status().LastError, "want spiffe://cluster.local/ns/foo/sa/bar") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal recorded: %+v", a.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := a.GetX509SVID(); err == nil {
		t.Fatal("agent holds a certificate for another identity")
	}
}

func TestServerNameChecked(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{})
	s := catest.Serve(t, authority)
	token, _ := authority.IssueToken("foo", "bar", time.Hour)
	a, err := agent.New(agent.Config{
		CAAddress: s.Addr, CARoots: authority.Bundle(), CAServerName: "impostor.example",
		TrustDomain: td, Namespace: "foo", ServiceAccount: "bar",
		Token:    func() (string, error) { return token, nil },
		MinRetry: 20 * time.Millisecond, MaxRetry: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, a)
	deadline := time.Now().Add(5 * time.Second)
	for a.Status().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("no error recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a.Status().Ready {
		t.Fatal("agent accepted a control plane serving another name")
	}
}

func TestBundle(t *testing.T) {
	authority := catest.NewAuthority(t, ca.Config{})
	other := catest.NewAuthority(t, ca.Config{})
	a, err := agent.New(agent.Config{CAAddress: "127.0.0.1:1", CARoots: authority.Bundle(), TrustDomain: td, Namespace: "foo", ServiceAccount: "bar"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.GetX509BundleForTrustDomain(td)
	if err != nil || len(b.X509Authorities()) != 1 || !b.X509Authorities()[0].Equal(authority.Bundle()[0]) {
		t.Fatalf("initial bundle = %v, %v", b, err)
	}
	if _, err := a.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.org")); err == nil {
		t.Fatal("bundle for a foreign trust domain")
	}
	ch := a.Updated()
	a.SetBundle(append(authority.Bundle(), other.Bundle()...))
	select {
	case <-ch:
	default:
		t.Fatal("SetBundle did not signal Updated")
	}
	if b, _ := a.GetX509BundleForTrustDomain(td); len(b.X509Authorities()) != 2 {
		t.Fatalf("bundle after SetBundle has %d roots", len(b.X509Authorities()))
	}
	a.SetBundle(nil)
	if b, _ := a.GetX509BundleForTrustDomain(td); len(b.X509Authorities()) != 2 {
		t.Fatal("empty SetBundle replaced the bundle")
	}
	if got := len(a.Status().Roots); got != 2 {
		t.Fatalf("Status roots = %d", got)
	}
}

func TestNewValidates(t *testing.T) {
	roots := catest.NewAuthority(t, ca.Config{}).Bundle()
	good := agent.Config{CAAddress: "127.0.0.1:15012", CARoots: roots, TrustDomain: td, Namespace: "foo", ServiceAccount: "bar"}
	tests := []struct {
		name   string
		mutate func(*agent.Config)
		want   string
	}{
		{name: "no CA address", mutate: func(c *agent.Config) { c.CAAddress = "" }, want: "CA address"},
		{name: "no roots", mutate: func(c *agent.Config) { c.CARoots = nil }, want: "CA roots"},
		{name: "no trust domain", mutate: func(c *agent.Config) { c.TrustDomain = spiffeid.TrustDomain{} }, want: "trust domain"},
		{name: "bad namespace", mutate: func(c *agent.Config) { c.Namespace = "Foo" }, want: "namespace"},
		{name: "no service account", mutate: func(c *agent.Config) { c.ServiceAccount = "" }, want: "service account"},
		{name: "renew-at of one", mutate: func(c *agent.Config) { c.RenewAt = 1 }, want: "renew-at"},
		{name: "negative TTL", mutate: func(c *agent.Config) { c.RequestedTTL = -time.Second }, want: "TTL"},
		{name: "expiry warning of one", mutate: func(c *agent.Config) { c.ExpiryWarning = 1 }, want: "expiry-warning"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mutate(&cfg)
			_, err := agent.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want error containing %q", err, tt.want)
			}
		})
	}
	if _, err := agent.New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
}
