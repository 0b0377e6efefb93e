package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/identity"
	"github.com/zmesh/zmesh/internal/pemcert"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/client"
)

// sim is one simulated proxy: the proxy's own xDS client, with what it
// applied and what it read from the wire recorded.
type sim struct {
	i      int
	id     string // node ID
	client *client.Client

	applies   atomic.Int64
	lastApply atomic.Int64 // unix nanos
	// changedAt is when the first view applied after the edit arrived
	// (unix nanos), and sawEdit whether that view had the edited policy.
	changedAt atomic.Int64
	sawEdit   atomic.Bool
	bytesIn   atomic.Int64 // bytes read from the control plane, TLS records included
	dials     atomic.Int64
}

// fleet is every simulated proxy.
type fleet struct {
	m    mesh
	sims []*sim
	// editAt is when the edit was made (unix nanos); 0 before.
	editAt atomic.Int64
	// lastAnyApply is the latest apply of any proxy (unix nanos).
	lastAnyApply atomic.Int64
}

// signDirect issues certificates for proxies [from, to) with the CA's key
// read from the data dir, in the benchmark's process: each proxy has its
// own key and its own SPIFFE ID, as the CSR service would issue, without
// N round trips that would measure the CA instead of the config server.
func signDirect(a *ca.Authority, m mesh, from, to int) ([]*tls.Certificate, error) {
	out := make([]*tls.Certificate, to-from)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	next := atomic.Int64{}
	next.Store(int64(from))
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				key, csr, err := newKeyAndCSR()
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				ns, _, name := m.proxy(i)
				id, err := identity.ForServiceAccount(a.TrustDomain(), m.namespace(ns), "sa-"+name)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				parsed, err := x509.ParseCertificateRequest(csr)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				issued, err := a.Issue(parsed, id, 24*time.Hour)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				c := &tls.Certificate{PrivateKey: key, Leaf: issued.Chain[0]}
				for _, x := range issued.Chain[:1+len(issued.Intermediates())] {
					c.Certificate = append(c.Certificate, x.Raw)
				}
				out[i-from] = c
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return out, nil
}

func newKeyAndCSR() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"zmesh-scale"}}}, key)
	if err != nil {
		return nil, nil, err
	}
	return key, der, nil
}

// signByCSR gets certificates for proxies [0, n) the way a proxy outside
// Kubernetes does: a bootstrap token for its identity, a CSR to the
// control plane's IstioCertificateService over gRPC/TLS.
func signByCSR(ctx context.Context, a *ca.Authority, m mesh, addr string, roots *x509.CertPool, n int) ([]*tls.Certificate, error) {
	out := make([]*tls.Certificate, n)
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: agent.DefaultCAServerName, MinVersion: tls.VersionTLS12}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cs := pb.NewIstioCertificateServiceClient(conn)
	for i := range n {
		ns, _, name := m.proxy(i)
		token, err := a.IssueToken(m.namespace(ns), "sa-"+name, time.Hour)
		if err != nil {
			return nil, err
		}
		key, der, err := newKeyAndCSR()
		if err != nil {
			return nil, err
		}
		csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), 30*time.Second)
		resp, err := cs.CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: string(csrPEM), ValidityDuration: int64((24 * time.Hour).Seconds())})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("CSR for %s: %w", name, err)
		}
		chain := resp.GetCertChain()
		if len(chain) < 2 {
			return nil, fmt.Errorf("CSR for %s: chain of %d elements", name, len(chain))
		}
		c := &tls.Certificate{PrivateKey: key}
		for _, p := range chain[:len(chain)-1] {
			certs, err := pemcert.Parse([]byte(p))
			if err != nil {
				return nil, err
			}
			for _, x := range certs {
				c.Certificate = append(c.Certificate, x.Raw)
			}
		}
		out[i] = c
	}
	return out, nil
}

// perSource is how many simulated proxies share one source address: below
// the control plane's default per-source connection bound (1,024), so the
// default limits stay in force, as behind real nodes.
const perSource = 500

// sourceAddr is the loopback address proxy i connects from.
func sourceAddr(i int) net.IP {
	k := i / perSource
	return net.IPv4(127, 1, byte(k/250), byte(k%250+1))
}

// newFleet makes the clients, not yet running.
func newFleet(m mesh, addr string, roots *x509.CertPool, certs []*tls.Certificate) (*fleet, error) {
	f := &fleet{m: m, sims: make([]*sim, m.proxies)}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range m.proxies {
		nsIdx, app, name := m.proxy(i)
		ns := m.namespace(nsIdx)
		s := &sim{i: i, id: ns + "/" + name}
		w := registry.Workload{
			Name: name, Namespace: ns, ServiceAccount: "sa-" + name,
			Labels: map[string]string{"app": fmt.Sprintf("app-%d", app), "version": "v1"},
			// A distinct address per proxy, as pods have.
			Address: fmt.Sprintf("10.%d.%d.%d:15006", i>>16, (i>>8)&255, i&255),
		}
		if i < m.services {
			w.Services = []string{fmt.Sprintf("svc-%d", i)}
		}
		cert := certs[i]
		tlsCfg := &tls.Config{
			RootCAs:    roots,
			ServerName: agent.DefaultCAServerName,
			MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return cert, nil
			},
		}
		src := sourceAddr(i)
		c, err := client.New(client.Config{
			Address: addr,
			TLS:     tlsCfg,
			Proxy:   xds.Proxy{Workload: w},
			Apply:   func(v *xds.View) error { f.applied(s, v); return nil },
			Logger:  quiet,
			Dial: func(ctx context.Context, address string) (net.Conn, error) {
				s.dials.Add(1)
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
				conn, err := d.DialContext(ctx, "tcp", address)
				if err != nil {
					return nil, err
				}
				return &countingConn{Conn: conn, n: &s.bytesIn}, nil
			},
		})
		if err != nil {
			return nil, err
		}
		s.client = c
		f.sims[i] = s
	}
	return f, nil
}

// applied records one view applied by proxy s.
func (f *fleet) applied(s *sim, v *xds.View) {
	now := time.Now().UnixNano()
	s.applies.Add(1)
	s.lastApply.Store(now)
	f.lastAnyApply.Store(now)
	if f.editAt.Load() != 0 && s.changedAt.Load() == 0 {
		s.changedAt.Store(now)
		s.sawEdit.Store(hasEdit(v, f.m.editedPolicy()))
	}
}

// hasEdit reports whether v holds the edited version of policy key.
func hasEdit(v *xds.View, key string) bool {
	for _, r := range v.AuthorizationPolicies {
		if r.Key() != key {
			continue
		}
		ap, ok := r.Spec.(*securityv1beta1.AuthorizationPolicy)
		if !ok {
			return false
		}
		for _, rule := range ap.GetRules() {
			for _, to := range rule.GetTo() {
				for _, p := range to.GetOperation().GetPaths() {
					if p == editedPath {
						return true
					}
				}
			}
		}
	}
	return false
}

// countingConn counts the bytes read from the control plane.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}
