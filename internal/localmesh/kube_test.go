package localmesh

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// tokenCluster issues numbered tokens that live for life; the first
// failures calls after the first one fail.
type tokenCluster struct {
	n        atomic.Int64
	life     time.Duration
	failures atomic.Int64
}

func (c *tokenCluster) Kubeconfig() string { return "kubeconfig" }
func (c *tokenCluster) Prepare(context.Context, string, []Workload, []byte) error {
	return nil
}
func (c *tokenCluster) Token(_ context.Context, ns, sa string) (string, time.Time, error) {
	if c.n.Load() > 0 && c.failures.Add(-1) >= 0 {
		return "", time.Time{}, errors.New("apiserver away")
	}
	return ns + "/" + sa + "#" + strconv.FormatInt(c.n.Add(1), 10), time.Now().Add(c.life), nil
}

// TestKubeTokensRefresh: the token file is written 0600 before the proxy
// starts and replaced before the token expires.
func TestKubeTokensRefresh(t *testing.T) {
	cl := &tokenCluster{life: 200 * time.Millisecond}
	cfg := Config{Logger: slog.New(slog.DiscardHandler)}
	kt := &kubeTokens{cluster: cl, dir: t.TempDir() + "/tokens", cfg: &cfg}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	m := member{Workload: Workload{Name: "a", Namespace: "web", ServiceAccount: "sa"}}
	files, err := kt.start(ctx, &wg, []member{m})
	if err != nil {
		t.Fatal(err)
	}
	path := files["web/a"]
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", info.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != "web/sa#1" {
		t.Fatalf("first token %q", b)
	}
	// Several refreshes, each within the previous token's lifetime.
	deadline := time.Now().Add(5 * time.Second)
	last, lastAt := "web/sa#1", time.Now()
	for last != "web/sa#4" {
		b, _ := os.ReadFile(path)
		if string(b) != last {
			if gap := time.Since(lastAt); gap > cl.life {
				t.Errorf("token %s replaced after %s, past its lifetime", last, gap)
			}
			last, lastAt = string(b), time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("token file still %q after 5s", last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKubeTokensRetry: a failed refresh keeps the token in place and is
// tried again.
func TestKubeTokensRetry(t *testing.T) {
	cl := &tokenCluster{life: 100 * time.Millisecond}
	cl.failures.Store(1)
	cfg := Config{Logger: slog.New(slog.DiscardHandler)}
	kt := &kubeTokens{cluster: cl, dir: t.TempDir(), cfg: &cfg}
	m := member{Workload: Workload{Name: "a", Namespace: "web", ServiceAccount: "sa"}}
	exp, err := kt.write(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { kt.refresh(ctx, m, exp) })
	defer func() { cancel(); wg.Wait() }()
	// The attempt at half-life fails; the next one waits tokenRetry (10s).
	deadline := time.Now().Add(5 * time.Second)
	for cl.failures.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("no refresh attempted within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if b, _ := os.ReadFile(kt.path(m)); string(b) != "web/sa#1" {
		t.Errorf("after a failed refresh the file holds %q, want the token in place", b)
	}
}

// TestKubeTokensOwnedByTheProxy: under capture every token file, the
// refreshed ones too, belongs to the proxy's user, which reads it at each
// CSR; needs root to give a file away.
func TestKubeTokensOwnedByTheProxy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
	cl := &tokenCluster{life: time.Hour}
	cfg := Config{Logger: slog.New(slog.DiscardHandler)}
	kt := &kubeTokens{cluster: cl, dir: t.TempDir(), cfg: &cfg, owner: &[2]int{4242, 4343}}
	m := member{Workload: Workload{Name: "a", Namespace: "web", ServiceAccount: "sa"}}
	for i := range 2 { // the first token and a refresh
		if _, err := kt.write(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(kt.path(m))
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid != 4242 || st.Gid != 4343 || info.Mode().Perm() != 0o600 {
			t.Errorf("token #%d: owner %d:%d mode %v, want 4242:4343 0600", i+1, st.Uid, st.Gid, info.Mode().Perm())
		}
	}
}
