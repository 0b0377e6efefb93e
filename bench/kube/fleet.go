package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/pemcert"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/client"
)

// sim is one simulated proxy: what change it last applied, and when it
// first applied each.
type sim struct {
	seen atomic.Int64 // the latest change applied; -1 before any
	mu   sync.Mutex
	at   map[int64]time.Time
}

type fleet struct {
	sims   []*sim
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startFleet gets n certificates through the CSR API with TokenRequest
// tokens and connects n xDS clients, waiting until each has applied the
// initial change.
func startFleet(ctx context.Context, cs kubernetes.Interface, cp *controlPlane, n int) (*fleet, error) {
	rootPEM, err := os.ReadFile(filepath.Join(cp.dataDir, "root-cert.pem"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, fmt.Errorf("no root in root-cert.pem")
	}
	certs, err := certificates(ctx, cs, cp.grpc, roots, n)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	f := &fleet{cancel: cancel}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range n {
		s := &sim{at: map[int64]time.Time{}}
		s.seen.Store(-1)
		cert := certs[i]
		c, err := client.New(client.Config{
			Address: cp.grpc,
			TLS: &tls.Config{RootCAs: roots, ServerName: agent.DefaultCAServerName, MinVersion: tls.VersionTLS12,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }},
			Proxy: xds.Proxy{Workload: registry.Workload{
				Name: fmt.Sprintf("proxy-%d", i), Namespace: benchNamespace, ServiceAccount: benchAccount,
				Labels:  map[string]string{"app": "bench"},
				Address: fmt.Sprintf("10.200.%d.%d:15006", i>>8, i&255),
			}},
			Apply:  func(v *xds.View) error { s.applied(v); return nil },
			Logger: quiet,
		})
		if err != nil {
			cancel()
			return nil, err
		}
		f.sims = append(f.sims, s)
		f.wg.Go(func() { _ = c.Run(rctx) })
	}
	if err := f.wait(ctx, 0, 2*time.Minute); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// applied records the change a view holds.
func (s *sim) applied(v *xds.View) {
	now := time.Now()
	i := changeIn(v)
	if i < 0 {
		return
	}
	s.mu.Lock()
	if _, ok := s.at[i]; !ok {
		s.at[i] = now
	}
	s.mu.Unlock()
	s.seen.Store(i)
}

// changeIn returns the change number of the bench policy in v, -1 if none.
func changeIn(v *xds.View) int64 {
	for _, r := range v.AuthorizationPolicies {
		if r.Key() != benchNamespace+"/"+benchPolicy {
			continue
		}
		ap, ok := r.Spec.(*securityv1beta1.AuthorizationPolicy)
		if !ok {
			return -1
		}
		for _, rule := range ap.GetRules() {
			for _, to := range rule.GetTo() {
				for _, p := range to.GetOperation().GetPaths() {
					var n int64
					if _, err := fmt.Sscanf(p, "/change-%d", &n); err == nil {
						return n
					}
				}
			}
		}
	}
	return -1
}

// wait waits until every proxy has applied change i.
func (f *fleet) wait(ctx context.Context, i int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		behind := 0
		for _, s := range f.sims {
			if s.seen.Load() < i {
				behind++
			}
		}
		if behind == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d proxies did not apply change %d within %s", behind, len(f.sims), i, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// changes updates the bench policy n times through the API, one at a
// time, and returns each change's latency: from the update call to the
// last proxy applying it.
func (f *fleet) changes(ctx context.Context, dyn dynamic.Interface, n int) ([]time.Duration, error) {
	api := dyn.Resource(authzGVR).Namespace(benchNamespace)
	var out []time.Duration
	for i := int64(1); i <= int64(n); i++ {
		cur, err := api.Get(ctx, benchPolicy, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		rules, _, _ := unstructured.NestedSlice(cur.Object, "spec", "rules")
		rule := rules[0].(map[string]any)
		rule["to"] = []any{map[string]any{"operation": map[string]any{"paths": []any{changePath(int(i))}, "methods": []any{"GET"}}}}
		if err := unstructured.SetNestedSlice(cur.Object, rules, "spec", "rules"); err != nil {
			return nil, err
		}
		start := time.Now()
		if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
		if err := f.wait(ctx, i, 30*time.Second); err != nil {
			return nil, err
		}
		var last time.Time
		for _, s := range f.sims {
			s.mu.Lock()
			at, ok := s.at[i]
			if !ok { // skipped straight to a later change: cannot happen one at a time
				for j := i + 1; !ok && j <= s.seen.Load(); j++ {
					at, ok = s.at[j]
				}
			}
			s.mu.Unlock()
			if at.After(last) {
				last = at
			}
		}
		out = append(out, last.Sub(start))
	}
	return out, nil
}

func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// certificates gets n certificates as a proxy in a pod does: a
// TokenRequest token of bench/proxy for istio-ca, and a CSR to the
// control plane, which checks the token with TokenReview.
func certificates(ctx context.Context, cs kubernetes.Interface, addr string, roots *x509.CertPool, n int) ([]*tls.Certificate, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: agent.DefaultCAServerName, MinVersion: tls.VersionTLS12})))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ca := pb.NewIstioCertificateServiceClient(conn)
	out := make([]*tls.Certificate, n)
	for i := range n {
		tr, err := cs.CoreV1().ServiceAccounts(benchNamespace).CreateToken(ctx, benchAccount, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{"istio-ca"}},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token), 30*time.Second)
		resp, err := ca.CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("CSR %d: %w", i, err)
		}
		chain := resp.GetCertChain()
		if len(chain) < 2 {
			return nil, fmt.Errorf("CSR %d: chain of %d", i, len(chain))
		}
		c := &tls.Certificate{PrivateKey: key}
		for _, p := range chain[:len(chain)-1] {
			xs, err := pemcert.Parse([]byte(p))
			if err != nil {
				return nil, err
			}
			for _, x := range xs {
				c.Certificate = append(c.Certificate, x.Raw)
			}
		}
		out[i] = c
	}
	return out, nil
}

// percentile returns the p-quantile (0..1) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
