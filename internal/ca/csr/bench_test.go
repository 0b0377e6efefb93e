package csr_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/ca/csr"
)

// BenchmarkCreateCertificateGRPC measures CSR round trips over loopback
// gRPC/TLS with many concurrent agents (8 per core, each on its own
// connection, authenticating with a bootstrap token), everything in one
// process on the same cores: authentication, CSR check, signing, encoding.
// The rate limit is off, as it would cap one identity.
func BenchmarkCreateCertificateGRPC(b *testing.B) {
	authority := catest.NewAuthority(b, ca.Config{})
	s := catest.ServeService(b, csr.Config{Authority: authority, RateLimit: csr.RateLimit{Rate: -1}})
	token, err := authority.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	// Agents make a new key per request; making them here would measure the
	// client. A few distinct CSRs stand in.
	var csrs []string
	for range 16 {
		csrs = append(csrs, string(catest.CSR(b, catest.NewKey(b))))
	}
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(p *testing.PB) {
		tlsCfg := &tls.Config{RootCAs: s.RootPool(), ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12}
		conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		client := pb.NewIstioCertificateServiceClient(conn)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
		for i := 0; p.Next(); i++ {
			if _, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csrs[i%len(csrs)]}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
}

// BenchmarkCreateCertificateFleet is a fleet of 1,024 identities, each with
// its own bootstrap token and its own CSR, calling from 64 connections at
// the CSR service's default rate limit (no identity asks more than its
// limit allows), with issuances logged to a file as the control plane
// logs them. ns/op is wall time per issuance on every core, the load
// generator included; cpu-us/cert is the process's CPU per issuance.
func BenchmarkCreateCertificateFleet(b *testing.B) {
	authority := catest.NewAuthority(b, ca.Config{})
	logFile, err := os.Create(filepath.Join(b.TempDir(), "controlplane.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	s := catest.ServeService(b, csr.Config{Authority: authority, Logger: slog.New(slog.NewTextHandler(logFile, nil))})
	type identity struct{ token, csr string }
	fleet := make([]identity, 1024)
	for i := range fleet {
		tok, err := authority.IssueToken(fmt.Sprintf("ns-%d", i%100), fmt.Sprintf("sa-%d", i), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		fleet[i] = identity{tok, string(catest.CSR(b, catest.NewKey(b)))}
	}
	const callers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	for c := range callers {
		wg.Go(func() {
			tlsCfg := &tls.Config{RootCAs: s.RootPool(), ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12}
			conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			client := pb.NewIstioCertificateServiceClient(conn)
			for i := c; next.Add(1) <= int64(b.N); i += callers {
				id := fleet[i%len(fleet)]
				ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+id.token)
				if _, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: id.csr}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "certs/s")
	b.ReportMetric((processCPU()-cpu0).Seconds()*1e6/float64(b.N), "cpu-us/cert")
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
