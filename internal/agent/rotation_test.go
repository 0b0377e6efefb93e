package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/agenttest"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

// TestRootRotationWithoutOutage rotates the mesh root (prepare, activate,
// retire) under steady mTLS traffic between two agents with 2 s
// certificates: every handshake must succeed, and both agents must end
// with certificates from the new root and a bundle of the new root alone.
func TestRootRotationWithoutOutage(t *testing.T) {
	const ttl = 2 * time.Second
	authority := catest.NewAuthority(t, ca.Config{DefaultTTL: ttl})
	s := catest.Serve(t, authority)
	server := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	client := agenttest.Start(t, s, "bar", "sleep", agent.Config{})

	traffic := startTraffic(t, server, client)
	old := authority.SigningCertificate()

	step := func(st ca.RotationStep) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			// Wait one lifetime between steps, as an operator would.
			err := authority.Rotate(st, ca.RotateOptions{Wait: ttl})
			if err == nil {
				return
			}
			if !errors.Is(err, ca.ErrRotationTooEarly) || time.Now().After(deadline) {
				t.Fatalf("%s: %v", st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor := func(what string, cond func(*agent.Agent) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(server) || !cond(client) {
			if time.Now().After(deadline) {
				t.Fatalf("agents never reached: %s (server %+v, client %+v)", what, server.Status(), client.Status())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	bundleOf := func(a *agent.Agent) []*x509.Certificate {
		b, err := a.GetX509BundleForTrustDomain(a.ID().TrustDomain())
		if err != nil {
			t.Fatal(err)
		}
		return b.X509Authorities()
	}
	leafFrom := func(root *x509.Certificate) func(*agent.Agent) bool {
		return func(a *agent.Agent) bool {
			svid, err := a.GetX509SVID()
			return err == nil && svid.Certificates[0].CheckSignatureFrom(root) == nil
		}
	}

	step(ca.StepPrepare)
	next := authority.Bundle()[1]
	waitFor("bundle holds old and new roots", func(a *agent.Agent) bool { return len(bundleOf(a)) == 2 })
	step(ca.StepActivate)
	waitFor("certificate from the new root", leafFrom(next))
	step(ca.StepRetire)
	waitFor("bundle is the new root alone", func(a *agent.Agent) bool {
		b := bundleOf(a)
		return len(b) == 1 && b[0].Equal(next)
	})
	// Traffic goes on until both agents have renewed once more, with the
	// new root alone in their bundles.
	renewed := map[*agent.Agent]uint64{server: server.Rotations(), client: client.Rotations()}
	waitFor("a renewal after the retire", func(a *agent.Agent) bool { return a.Rotations() > renewed[a] })

	ok, failed, errs := traffic.stop()
	if failed > 0 {
		t.Errorf("%d of %d connections failed during the rotation; first errors: %v", failed, ok+failed, errs)
	}
	if ok < 50 {
		t.Errorf("only %d connections made during the rotation", ok)
	}
	for _, a := range []*agent.Agent{server, client} {
		if leafFrom(old)(a) {
			t.Errorf("%s still holds a certificate from the old root", a.ID())
		}
	}
	t.Logf("%d connections, none failed, across prepare, activate and retire", ok)

	// The control plane now serves a certificate from the new root: a TLS
	// config that follows the agent's bundle reaches it, one built from the
	// roots of the start does not.
	live := server.ControlPlaneTLS()
	live.NextProtos = []string{"h2"}
	if err := dialTLS(s.Addr, live); err != nil {
		t.Errorf("ControlPlaneTLS after the rotation: %v", err)
	}
	static := &tls.Config{RootCAs: x509.NewCertPool(), ServerName: agent.DefaultCAServerName, NextProtos: []string{"h2"}}
	static.RootCAs.AddCert(old)
	if err := dialTLS(s.Addr, static); err == nil {
		t.Error("a pool of the old root still reaches the control plane after retire")
	}
}

// TestForcedActivationKeepsAgentsReachable is the operator's mistake the
// rotation waits guard against: prepare and activate forced back to back,
// before an agent has renewed. The agent knows only the old root, yet it
// must still reach the control plane (which keeps serving from the old
// root until retire), renew onto the new root and learn the new bundle.
func TestForcedActivationKeepsAgentsReachable(t *testing.T) {
	const ttl = 2 * time.Second
	authority := catest.NewAuthority(t, ca.Config{DefaultTTL: ttl})
	s := catest.Serve(t, authority)
	a := agenttest.Start(t, s, "foo", "httpbin", agent.Config{})
	old := authority.SigningCertificate()
	if b, _ := a.GetX509BundleForTrustDomain(a.ID().TrustDomain()); len(b.X509Authorities()) != 1 {
		t.Fatalf("agent starts with %d roots, want the old one alone", len(b.X509Authorities()))
	}
	for _, st := range []ca.RotationStep{ca.StepPrepare, ca.StepActivate} {
		if err := authority.Rotate(st, ca.RotateOptions{Force: true}); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	next := authority.SigningCertificate()
	if next.Equal(old) {
		t.Fatal("activate did not change the signing root")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		svid, err := a.GetX509SVID()
		b, _ := a.GetX509BundleForTrustDomain(a.ID().TrustDomain())
		if err == nil && svid.Certificates[0].CheckSignatureFrom(next) == nil && b.HasX509Authority(next) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never renewed onto the new root after a forced activation: %+v", a.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dialTLS(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	return conn.Close()
}

// traffic makes a fresh mTLS connection from client to server every few
// milliseconds, each a full handshake with the certificates and bundles of
// that moment, and counts failures on both sides.
type traffic struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup // server side: accept loop and connections
	client sync.WaitGroup // the dialing loop
	lis    net.Listener

	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []error
}

func startTraffic(t *testing.T, server, client *agent.Agent) *traffic {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &traffic{lis: inner}
	srvCfg := tlsconfig.MTLSServerConfig(server, server, tlsconfig.AuthorizeID(client.ID()))
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		for {
			c, err := inner.Accept()
			if err != nil {
				return
			}
			tr.wg.Add(1)
			go func() {
				defer tr.wg.Done()
				defer c.Close()
				tc := tls.Server(c, srvCfg)
				if err := tc.Handshake(); err != nil {
					tr.fail("server handshake", err)
					return
				}
				_, _ = io.Copy(tc, tc)
			}()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel = cancel
	cliCfg := tlsconfig.MTLSClientConfig(client, client, tlsconfig.AuthorizeID(server.ID()))
	tr.client.Add(1)
	go func() {
		defer tr.client.Done()
		for ctx.Err() == nil {
			if err := ping(inner.Addr().String(), cliCfg); err != nil {
				tr.fail("client", err)
			} else {
				tr.ok.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { tr.stop() })
	return tr
}

func ping(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err = io.ReadFull(conn, buf)
	return err
}

func (tr *traffic) fail(side string, err error) {
	tr.failed.Add(1)
	tr.mu.Lock()
	if len(tr.errs) < 5 {
		tr.errs = append(tr.errs, errors.New(side+": "+err.Error()))
	}
	tr.mu.Unlock()
}

// stop ends the traffic and returns its counts; safe to call twice. The
// dialing loop finishes its last connection before the listener closes:
// closing first would reset a connection still in the accept queue and
// count the test's own teardown as a failure.
func (tr *traffic) stop() (ok, failed int64, errs []error) {
	tr.cancel()
	tr.client.Wait()
	tr.lis.Close()
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ok.Load(), tr.failed.Load(), tr.errs
}
