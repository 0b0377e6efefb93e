// Package agenttest runs real agents against a real CA for tests of the
// servers built on the agent (Workload API, SDS) and of rotation.
package agenttest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

// Start runs an agent for ns/sa against the CSR service s, authenticated
// first with a bootstrap token from s's authority, and waits until it holds
// a certificate. cfg may preset options (RequestedTTL, KeyType...); the CA
// fields and identity are filled in. The agent stops at test cleanup.
func Start(t testing.TB, s *catest.Server, ns, sa string, cfg agent.Config) *agent.Agent {
	t.Helper()
	token, err := s.Authority.IssueToken(ns, sa, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CAAddress = s.Addr
	cfg.CARoots = s.Authority.Bundle()
	cfg.Token = func() (string, error) { return token, nil }
	cfg.TrustDomain = s.Authority.TrustDomain()
	cfg.Namespace, cfg.ServiceAccount = ns, sa
	if cfg.MinRetry == 0 {
		cfg.MinRetry, cfg.MaxRetry = 20*time.Millisecond, 200*time.Millisecond
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	select {
	case <-a.Ready():
	case <-time.After(15 * time.Second):
		t.Fatalf("agent %s/%s not ready: %+v", ns, sa, a.Status())
	}
	return a
}

// SocketPath returns a path for a unix socket in a fresh short directory
// (removed at cleanup): t.TempDir paths can exceed the 108-byte limit of
// socket addresses.
func SocketPath(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "zm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "sock", name)
}

// WaitUpdate waits for a change of a's certificate or bundle.
func WaitUpdate(t testing.TB, a *agent.Agent, within time.Duration) {
	t.Helper()
	select {
	case <-a.Updated():
	case <-time.After(within):
		t.Fatalf("no agent update within %s", within)
	}
}

// WaitSocket waits until a server has created the socket at path.
func WaitSocket(t testing.TB, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Type() == os.ModeSocket {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s never appeared", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
