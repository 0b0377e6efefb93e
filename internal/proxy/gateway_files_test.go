package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/xds"
)

// writeFiles writes name→content into dir, creating it.
func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// symlink makes link point at target, replacing it atomically (a
// rename), as the kubelet swaps a volume's ..data.
func symlink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// tlsHandshake completes a handshake with addr and returns the server
// certificate's common name; a TLS 1.3 server refuses a client
// certificate after the client's side is done, so it reads to learn of
// it.
func tlsHandshake(addr net.Addr, sni string, roots *tls.Config, cert *tls.Certificate) (string, error) {
	cfg := roots.Clone()
	cfg.ServerName = sni
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr.String(), cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return "", err
		}
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// TestGatewayServesCertificateFiles: Istio's file-mounted gateway
// certificates. A SIMPLE server presents serverCertificate/privateKey
// read at each handshake, from a Kubernetes-style volume (..data
// symlinks): swapping ..data serves the new certificate from the next
// connection, without a push. A MUTUAL server takes clients of its
// caCertificates only. A missing, malformed, undeclared or escaping
// (symlink out of the directory) file refuses its own server's
// handshakes, logged once, while the other servers serve on.
func TestGatewayServesCertificateFiles(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	web := meshtest.NewCA(t, "web.test")
	clients, others := meshtest.NewCA(t, "clients.test"), meshtest.NewCA(t, "others.test")
	chain1, key1 := meshtest.PEM(t, web.IssueLeaf(t, "files-1", "files.example.com"))
	chain2, key2 := meshtest.PEM(t, web.IssueLeaf(t, "files-2", "files.example.com"))

	certs := filepath.Join(t.TempDir(), "ingressgateway-certs")
	writeFiles(t, filepath.Join(certs, "..v1"), map[string][]byte{"tls.crt": chain1, "tls.key": key1, "ca.crt": clients.RootPEM()})
	symlink(t, "..v1", filepath.Join(certs, "..data"))
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		symlink(t, filepath.Join("..data", f), filepath.Join(certs, f))
	}
	writeFiles(t, certs, map[string][]byte{"garbage.crt": []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")})
	outside := t.TempDir() // a valid pair the operator did not declare
	writeFiles(t, outside, map[string][]byte{"tls.crt": chain1, "tls.key": key1})
	symlink(t, filepath.Join(outside, "tls.crt"), filepath.Join(certs, "escape.crt"))
	symlink(t, filepath.Join(outside, "tls.key"), filepath.Join(certs, "escape.key"))

	logs := &syncBuffer{}
	gw := startGateway(t, ca, "ingressgateway", "", slog.New(slog.NewTextHandler(logs, nil)), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{}
		for n := uint32(9461); n <= 9466; n++ {
			c.Gateway.Ports[n] = "127.0.0.1:0"
		}
		c.Gateway.CertFileDirs = []string{certs}
	})
	server := func(n int, name, tlsSpec string) string {
		return fmt.Sprintf("  - port: {number: %d, name: %s, protocol: HTTPS}\n    hosts: [files.example.com]\n    tls: {%s}\n", n, name, tlsSpec)
	}
	c, k := filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key")
	yaml := "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: files, namespace: apps}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n" +
		server(9461, "simple", fmt.Sprintf("mode: SIMPLE, serverCertificate: %s, privateKey: %s", c, k)) +
		server(9462, "mutual", fmt.Sprintf("mode: MUTUAL, serverCertificate: %s, privateKey: %s, caCertificates: %s", c, k, filepath.Join(certs, "ca.crt"))) +
		server(9463, "missing", fmt.Sprintf("mode: SIMPLE, serverCertificate: %s, privateKey: %s", filepath.Join(certs, "missing.crt"), k)) +
		server(9464, "malformed", fmt.Sprintf("mode: SIMPLE, serverCertificate: %s, privateKey: %s", filepath.Join(certs, "garbage.crt"), k)) +
		server(9465, "undeclared", fmt.Sprintf("mode: SIMPLE, serverCertificate: %s, privateKey: %s", filepath.Join(outside, "tls.crt"), filepath.Join(outside, "tls.key"))) +
		server(9466, "escape", fmt.Sprintf("mode: SIMPLE, serverCertificate: %s, privateKey: %s", filepath.Join(certs, "escape.crt"), filepath.Join(certs, "escape.key")))
	rs := parse(t, yaml)
	for _, r := range rs {
		if err := config.Validate(r); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	}
	v := xds.Build(config.NewSnapshot("1", rs), nil, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true})
	mustApply(t, gw, v)
	addrs := map[uint32]net.Addr{}
	waitFor(t, func() bool {
		for n := uint32(9461); n <= 9466; n++ {
			if addrs[n] = gw.GatewayAddr(n); addrs[n] == nil {
				return false
			}
		}
		return true
	})
	roots := &tls.Config{RootCAs: web.Pool()}

	if cn, err := tlsHandshake(addrs[9461], "files.example.com", roots, nil); err != nil || cn != "files-1" {
		t.Fatalf("SIMPLE from files: %q, %v", cn, err)
	}
	good, bad := clients.IssueLeaf(t, "client"), others.IssueLeaf(t, "other")
	if _, err := tlsHandshake(addrs[9462], "files.example.com", roots, &good); err != nil {
		t.Errorf("MUTUAL with a client of caCertificates' CA: %v", err)
	}
	if _, err := tlsHandshake(addrs[9462], "files.example.com", roots, &bad); err == nil {
		t.Error("MUTUAL took a client certificate of another CA")
	}
	if _, err := tlsHandshake(addrs[9462], "files.example.com", roots, nil); err == nil {
		t.Error("MUTUAL took a client without a certificate")
	}
	for n, why := range map[uint32]string{9463: "missing file", 9464: "malformed certificate", 9465: "file outside the declared directories", 9466: "symbolic link out of the declared directory"} {
		for range 2 {
			if cn, err := tlsHandshake(addrs[n], "files.example.com", roots, nil); err == nil {
				t.Errorf("port %d (%s) served %q", n, why, cn)
			}
		}
	}
	if cn, err := tlsHandshake(addrs[9461], "files.example.com", roots, nil); err != nil || cn != "files-1" {
		t.Errorf("SIMPLE beside refusing servers: %q, %v", cn, err)
	}
	out := logs.String()
	for _, want := range []string{"missing.crt", "garbage.crt", "in none of the gateway's certificate file directories", "escape.crt"} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("the log names %q %d times, want once (a refusal is logged once per reason):\n%s", want, n, out)
		}
	}
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("the log carries certificate material:\n%s", out)
	}

	// Rotation as the kubelet does it: a new directory, ..data swapped.
	writeFiles(t, filepath.Join(certs, "..v2"), map[string][]byte{"tls.crt": chain2, "tls.key": key2, "ca.crt": clients.RootPEM()})
	symlink(t, "..v2", filepath.Join(certs, "..data"))
	if cn, err := tlsHandshake(addrs[9461], "files.example.com", roots, nil); err != nil || cn != "files-2" {
		t.Errorf("after the rotation: %q, %v", cn, err)
	}

	// A key that no longer matches its certificate (half a rotation):
	// refused, never served with the old pair or none.
	writeFiles(t, filepath.Join(certs, "..v2"), map[string][]byte{"tls.key": key1})
	if cn, err := tlsHandshake(addrs[9461], "files.example.com", roots, nil); err == nil {
		t.Errorf("a mismatched pair was served (%q)", cn)
	}
	if !strings.Contains(logs.String(), "private key does not match public key") {
		t.Errorf("the mismatch is not logged:\n%s", logs.String())
	}
}

// TestGatewayCertificateFilesWithoutDirectories: a gateway whose
// operator declared no certificate file directory serves no Gateway's
// certificate files, even ones that exist and are valid.
func TestGatewayCertificateFilesWithoutDirectories(t *testing.T) {
	ca := meshtest.NewCA(t, testTD)
	web := meshtest.NewCA(t, "web.test")
	chain, key := meshtest.PEM(t, web.IssueLeaf(t, "files", "files.example.com"))
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"tls.crt": chain, "tls.key": key})
	gw := startGateway(t, ca, "ingressgateway", dir, testLogger(t), func(c *Config) {
		c.Gateway.Ports = map[uint32]string{9467: "127.0.0.1:0"}
	})
	rs := parse(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: files, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9467, name: https, protocol: HTTPS}
    hosts: [files.example.com]
    tls: {mode: SIMPLE, serverCertificate: %s, privateKey: %s}
`, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")))
	mustApply(t, gw, xds.Build(config.NewSnapshot("1", rs), nil, mesh(), xds.Proxy{ID: gw.reg.Key(), Workload: gw.reg, Gateway: true}))
	var addr net.Addr
	waitFor(t, func() bool { addr = gw.GatewayAddr(9467); return addr != nil })
	if cn, err := tlsHandshake(addr, "files.example.com", &tls.Config{RootCAs: web.Pool()}, nil); err == nil {
		t.Errorf("served %q from files no directory declares (the credential directory is not one)", cn)
	}
}

// TestReadCertFile: which paths a gateway reads, table by table.
func TestReadCertFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"a.pem": []byte("A")})
	writeFiles(t, filepath.Join(dir, "sub"), map[string][]byte{"b.pem": []byte("B")})
	other := t.TempDir()
	writeFiles(t, other, map[string][]byte{"c.pem": []byte("C")})
	symlink(t, "../"+filepath.Base(other)+"/c.pem", filepath.Join(dir, "rel-escape.pem"))
	symlink(t, "sub/b.pem", filepath.Join(dir, "inside.pem"))
	if err := os.WriteFile(filepath.Join(dir, "big.pem"), make([]byte, maxOriginPEM+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		dirs             []string
		wantErr          string
	}{
		{name: "a file of the directory", path: filepath.Join(dir, "a.pem"), want: "A"},
		{name: "in a subdirectory", path: filepath.Join(dir, "sub", "b.pem"), want: "B"},
		{name: "a symlink that stays inside", path: filepath.Join(dir, "inside.pem"), want: "B"},
		{name: "dot-dot out of the directory", path: dir + "/../" + filepath.Base(other) + "/c.pem", wantErr: "in none of"},
		{name: "a relative symlink out", path: filepath.Join(dir, "rel-escape.pem"), wantErr: "escape"},
		{name: "another directory", path: filepath.Join(other, "c.pem"), wantErr: "in none of"},
		{name: "the directory itself", path: dir, wantErr: "in none of"},
		{name: "a relative path", path: "a.pem", wantErr: "not an absolute path"},
		{name: "a directory below", path: filepath.Join(dir, "sub"), wantErr: "not a regular file"},
		{name: "too large", path: filepath.Join(dir, "big.pem"), wantErr: "too large"},
		{name: "no directories", path: filepath.Join(dir, "a.pem"), dirs: []string{}, wantErr: "declares no certificate file directory"},
		{name: "the second directory", path: filepath.Join(other, "c.pem"), dirs: []string{dir, other}, want: "C"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirs := tc.dirs
			if dirs == nil {
				dirs = []string{dir}
			}
			got, err := readCertFile(dirs, tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("readCertFile = %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("readCertFile = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
