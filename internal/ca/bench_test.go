package ca_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/identity"
)

// benchmarkSign measures issuances per second on every core: what one
// control plane can sign when nothing but the signature is in the way.
func benchmarkSign(b *testing.B, kt ca.KeyType) {
	a := catest.NewAuthority(b, ca.Config{KeyType: kt})
	csr := parseCSR(b, catest.CSR(b, catest.NewKey(b)))
	id, err := identity.ForServiceAccount(a.TrustDomain(), "foo", "bar")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Sign(csr, id, time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
	// CPU time per issuance does not depend on what else runs on the
	// machine, as certs/s does on a shared one.
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

// BenchmarkSignECDSA signs with an ECDSA P-256 root (the default).
func BenchmarkSignECDSA(b *testing.B) { benchmarkSign(b, ca.KeyECDSAP256) }

// BenchmarkSignRSA2048 signs with an RSA 2048 root.
func BenchmarkSignRSA2048(b *testing.B) { benchmarkSign(b, ca.KeyRSA2048) }
