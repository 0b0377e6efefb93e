// Command ca measures the CA's throughput as a fleet sees it: a real
// `zmesh controlplane` process (built with -tags grpcnotrace, as `make
// build`) and a fleet of identities, each with its own bootstrap token
// and its own CSR (a P-256 key of its own), calling Istio's
// IstioCertificateService.CreateCertificate over gRPC/TLS on loopback from
// --callers concurrent callers, each on its own connection. The CSR
// service's per-identity rate limit stays at its default (10/s, burst
// 100): the fleet is large enough (--identities) that no identity needs
// more, and any refusal is counted and fails the run.
//
//	go run ./bench/ca [--identities 1024] [--callers 64] [--duration 10s] [--fresh-connections [--resume]]
//
// The load generator runs on the same cores as the control plane; its
// CPU time is reported beside the control plane's. The last line is
//
//	ca: identities=I callers=C issued=N rate=R/s p50=MS p99=MS cp_cpu_per_cert_us=U refused=F
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/ca"
)

type options struct {
	identities, callers int
	duration            time.Duration
	zmesh, profile      string
	fresh, resume       bool
}

func main() {
	var o options
	flag.IntVar(&o.identities, "identities", 1024, "identities in the fleet, each with its own token and CSR")
	flag.IntVar(&o.callers, "callers", 64, "concurrent callers, each on its own connection")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long to measure (after a 1 s warm-up)")
	flag.StringVar(&o.zmesh, "zmesh", "", "zmesh binary (default: built from ./cmd/zmesh with -tags grpcnotrace)")
	flag.StringVar(&o.profile, "profile", "", "write the control plane's CPU profile of the measurement to this file")
	flag.BoolVar(&o.fresh, "fresh-connections", false, "a new TLS connection per request, as zmesh agents dial for each CSR")
	flag.BoolVar(&o.resume, "resume", false, "with --fresh-connections, each caller resumes its previous TLS session (a session cache per caller)")
	flag.Parse()
	if o.identities < 1 || o.callers < 1 || o.identities < o.callers {
		fmt.Fprintln(os.Stderr, "ca: need identities >= callers >= 1")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ca:", err)
		os.Exit(1)
	}
}

// caller is one identity: its token and its CSR.
type caller struct {
	token string
	csr   string
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "zmesh-bench-ca-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dataDir, configDir := filepath.Join(dir, "data"), filepath.Join(dir, "config")
	if err := os.Mkdir(configDir, 0o700); err != nil {
		return err
	}
	authority, err := ca.Load(ca.Config{DataDir: dataDir, TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local")})
	if err != nil {
		return err
	}
	fleet := make([]caller, o.identities)
	for i := range fleet {
		tok, err := authority.IssueToken(fmt.Sprintf("ns-%d", i%100), fmt.Sprintf("sa-%d", i), time.Hour)
		if err != nil {
			return err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"bench"}}}, key)
		if err != nil {
			return err
		}
		fleet[i] = caller{token: tok, csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
	}

	bin := o.zmesh
	if bin == "" {
		bin = filepath.Join(dir, "zmesh")
		build := exec.Command("go", "build", "-tags", "grpcnotrace", "-trimpath", "-o", bin, "./cmd/zmesh")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build zmesh (run from the module root, or give --zmesh): %w", err)
		}
	}
	grpcAddr, adminAddr := freePort(), freePort()
	logf, err := os.Create(filepath.Join(dir, "controlplane.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"controlplane", "--config-dir", configDir, "--data-dir", dataDir, "--listen", grpcAddr, "--admin", adminAddr}
	if o.profile != "" {
		args = append(args, "--profiling")
	}
	cp := exec.Command(bin, args...)
	cp.Stdout, cp.Stderr = logf, logf
	if err := cp.Start(); err != nil {
		return err
	}
	defer func() { _ = cp.Process.Signal(syscall.SIGTERM); _ = cp.Wait() }()
	if err := waitReady(adminAddr); err != nil {
		return err
	}

	tlsCfg := &tls.Config{RootCAs: authority.BundlePool(), ServerName: agent.DefaultCAServerName, MinVersion: tls.VersionTLS12}
	dial := func(tlsCfg *tls.Config) (*grpc.ClientConn, pb.IstioCertificateServiceClient, error) {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			return nil, nil, err
		}
		return conn, pb.NewIstioCertificateServiceClient(conn), nil
	}

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		issued    atomic.Int64
		refused   atomic.Int64
		mu        sync.Mutex
		lat       []time.Duration
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	for c := range o.callers {
		wg.Go(func() {
			tlsCfg := tlsCfg.Clone()
			if o.resume {
				tlsCfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			conn, client, err := dial(tlsCfg)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			defer func() { conn.Close() }()
			var mine []time.Duration
			// Caller c speaks for identities c, c+callers, c+2*callers...
			for i := c; !stop.Load(); i += o.callers {
				if i >= len(fleet) {
					i = c
				}
				if o.fresh {
					conn.Close()
					if conn, client, err = dial(tlsCfg); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
				ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+fleet[i].token), 10*time.Second)
				start := time.Now()
				_, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: fleet[i].csr, ValidityDuration: 3600})
				d := time.Since(start)
				cancel()
				if err != nil {
					if status.Code(err) == codes.ResourceExhausted {
						refused.Add(1)
						continue
					}
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if measuring.Load() {
					issued.Add(1)
					mine = append(mine, d)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	time.Sleep(time.Second) // warm-up: connections made, code paths hot
	cpu0, self0 := cpuSeconds(cp.Process.Pid), cpuSeconds(os.Getpid())
	var profDone chan error
	if o.profile != "" {
		profDone = make(chan error, 1)
		go func() {
			profDone <- fetch(adminAddr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(o.duration.Seconds())), o.profile)
		}()
	}
	measuring.Store(true)
	start := time.Now()
	time.Sleep(o.duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpuCP, cpuSelf := cpuSeconds(cp.Process.Pid)-cpu0, cpuSeconds(os.Getpid())-self0
	stop.Store(true)
	wg.Wait()
	if profDone != nil {
		if err := <-profDone; err != nil {
			fmt.Println("ca: profile:", err)
		}
	}
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	n := issued.Load()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))]) / 1e6
	}
	fmt.Printf("ca: control plane cpu=%.2fs (%.2f cores), load generator cpu=%.2fs (%.2f cores), over %s\n",
		cpuCP, cpuCP/elapsed.Seconds(), cpuSelf, cpuSelf/elapsed.Seconds(), elapsed.Round(time.Millisecond))
	fmt.Printf("ca: identities=%d callers=%d issued=%d rate=%.0f/s p50=%.2f p99=%.2f cp_cpu_per_cert_us=%.0f refused=%d\n",
		o.identities, o.callers, n, float64(n)/elapsed.Seconds(), pct(0.5), pct(0.99), cpuCP/float64(max(n, 1))*1e6, refused.Load())
	if refused.Load() > 0 {
		return fmt.Errorf("%d requests rate limited: use more identities", refused.Load())
	}
	return nil
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(admin string) error {
	for range 600 {
		if resp, err := http.Get("http://" + admin + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("control plane not ready after 30s")
}

func fetch(admin, url, path string) error {
	resp, err := http.Get("http://" + admin + url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadFrom(resp.Body)
	return err
}

// cpuSeconds is a process's user plus system CPU time.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}
