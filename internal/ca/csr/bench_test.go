package csr_test

import (
	"context"
	"crypto/tls"
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
