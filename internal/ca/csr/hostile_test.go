//go:debug rsa1024min=0

// The directive above lets this test binary make and verify RSA keys under
// 1024 bits, so that the CA's own key-size check, not Go's default refusal
// to verify with such keys, is what turns a 512-bit request away.

package csr_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
)

// TestHostileRequests sends the CSR service what an attacker would, over
// real gRPC/TLS: each request gets a clean refusal (or, for names the
// caller has no right to, a certificate for its own identity only), and
// the service holds no more goroutines or file descriptors afterwards than
// before.
func TestHostileRequests(t *testing.T) {
	clock := catest.NewClock(time.Now())
	a := catest.NewAuthority(t, ca.Config{Clock: clock.Now})
	s := catest.Serve(t, a)
	token, err := a.IssueToken("foo", "bar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	shortToken, err := a.IssueToken("foo", "bar", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Warm up: the first call starts gRPC's and the server's long-lived
	// goroutines, which are no leak.
	if _, err := (call{token: token, csr: string(catest.CSR(t, catest.NewKey(t)))}).do(t, s); err != nil {
		t.Fatal(err)
	}
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)

	key := catest.NewKey(t)
	rsa512, rsa1024 := rsaKey(t, 512), rsaKey(t, 1024)
	tests := []struct {
		name     string
		call     call
		wantCode codes.Code // OK: issued, for fooBar only
		before   func()     // runs before the call
	}{
		{name: "CSR for another identity gets the caller's", call: call{token: token, csr: string(catest.CSR(t, key, admin.String(), "spiffe://evil.example/ns/x/sa/y"))}},
		{name: "16 kB SAN list is ignored, the caller's identity only", call: call{token: token, csr: sanFlood(t, key, 16<<10)}},
		{name: "SAN list over the CSR bound", call: call{token: token, csr: sanFlood(t, key, ca.MaxCSRSize)}, wantCode: codes.InvalidArgument},
		{name: "CA:TRUE requested", call: call{token: token, csr: caRequest(t)}, wantCode: codes.InvalidArgument},
		{name: "RSA 512 key", call: call{token: token, csr: string(catest.CSR(t, rsa512))}, wantCode: codes.InvalidArgument},
		{name: "RSA 1024 key", call: call{token: token, csr: string(catest.CSR(t, rsa1024))}, wantCode: codes.InvalidArgument},
		{name: "replayed token still yields only its identity", call: call{token: token}},
		{name: "10 MB message", call: call{token: token, csr: strings.Repeat("A", 10<<20)}, wantCode: codes.ResourceExhausted},
		// Huge headers: the control plane bounds them in gRPC
		// (controlplane.TestHugeHeadersRefused), the test server does not.
		{name: "64 kB bearer token", call: call{token: strings.Repeat("A", 64<<10)}, wantCode: codes.Unauthenticated},
		{name: "oversized zmesh token", call: call{token: ca.TokenPrefix + strings.Repeat("A", ca.MaxTokenSize)}, wantCode: codes.Unauthenticated},
		{name: "expired token replayed", call: call{token: shortToken}, wantCode: codes.Unauthenticated, before: func() { clock.Add(2 * time.Minute) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			if tt.call.csr == "" {
				tt.call.csr = string(catest.CSR(t, key))
			}
			resp, err := tt.call.do(t, s)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode != codes.OK {
				if resp != nil {
					t.Fatal("a refusal came with a response")
				}
				return
			}
			got, _ := svid(t, s, resp, key)
			leaf := got.Certificates[0]
			if got.ID != fooBar || len(leaf.URIs) != 1 || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
				t.Fatalf("leaf names %v %v %v %v, want only %s", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, fooBar)
			}
			if leaf.IsCA {
				t.Fatal("leaf is a CA")
			}
		})
	}

	// Connections close asynchronously on the server side: wait for the
	// counts to come back rather than for a fixed time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && f <= fds {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the hostile requests: %d goroutines (before %d), %d open files (before %d)", g, goroutines, f, fds)
		}
		time.Sleep(20 * time.Millisecond) // polling a count; there is no event to await
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(entries)
}

func rsaKey(t *testing.T, bits int) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatalf("RSA %d: %v", bits, err)
	}
	return k
}

// sanFlood is a PEM CSR for key whose SANs (URIs and DNS names, half each)
// take about size bytes.
func sanFlood(t *testing.T, key crypto.Signer, size int) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for i, n := 0, 0; n < size; i++ {
		u, _ := url.Parse(fmt.Sprintf("spiffe://cluster.local/ns/istio-system/sa/admin-%d", i))
		d := fmt.Sprintf("istiod-%d.istio-system.svc", i)
		tmpl.URIs = append(tmpl.URIs, u)
		tmpl.DNSNames = append(tmpl.DNSNames, d)
		n += len(u.String()) + len(d)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}
