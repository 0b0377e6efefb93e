// Package kubetest starts a real etcd and a real kube-apiserver on loopback
// for integration tests, the way controller-runtime's envtest does, without
// a kubelet or Docker: objects are stored and served, admission webhooks
// are called, TokenRequest and TokenReview work, but no pod ever runs.
//
// The two binaries are built from Go modules by test/kube/build.sh into a
// cache folder (ZMESH_KUBE_BIN, or $XDG_CACHE_HOME/zmesh/kube-v1.37.2).
// Without them a test skips with a message saying how to build them, except
// under CI (CI set), where their absence fails the test: .ci/run builds
// them, so a missing binary there is a broken set-up, not a reason to skip.
package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Version is the Kubernetes release the binaries are built from.
const Version = "1.37.2"

// AdminToken is the bearer token of the cluster's administrator
// (system:masters). It exists only in the test's own apiserver.
const AdminToken = "zmesh-kubetest-admin-token"

// Cluster is a running etcd + kube-apiserver pair.
type Cluster struct {
	// Host is the apiserver's URL, https://127.0.0.1:PORT.
	Host string
	// CAPEM is the PEM certificate that signed the apiserver's serving
	// certificate.
	CAPEM []byte
	// Kubeconfig is the path of a kubeconfig file for the administrator.
	Kubeconfig string
	// Dir holds the cluster's files; it is removed by Stop.
	Dir string

	etcd, apiserver *exec.Cmd
	stopOnce        sync.Once
}

// BinDir returns the folder that holds the etcd and kube-apiserver
// binaries, and whether both are there.
func BinDir() (string, bool) {
	dir := os.Getenv("ZMESH_KUBE_BIN")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "zmesh", "kube-v"+Version)
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			return dir, false
		}
	}
	return dir, true
}

var (
	shared     *Cluster
	sharedErr  error
	sharedOnce sync.Once
)

// Shared returns one cluster per test binary, started on first use, and
// skips t when the binaries are missing (fails under CI). Tests that share
// it must use their own namespaces. Call StopShared from TestMain after
// m.Run so that the processes do not outlive the tests.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	requireBinaries(t)
	sharedOnce.Do(func() { shared, sharedErr = Start() })
	if sharedErr != nil {
		t.Fatalf("kubetest: %v", sharedErr)
	}
	return shared
}

// StopShared stops the cluster that Shared started, if any.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// New starts a cluster of its own for t and stops it when t ends.
func New(t testing.TB) *Cluster {
	t.Helper()
	requireBinaries(t)
	c, err := Start()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

func requireBinaries(t testing.TB) {
	t.Helper()
	dir, ok := BinDir()
	if ok {
		return
	}
	msg := fmt.Sprintf("kubetest: etcd and kube-apiserver %s are not in %s; build them with test/kube/build.sh", Version, dir)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Start starts etcd and kube-apiserver on free loopback ports and waits
// until the apiserver is ready and its RBAC bootstrap is done. The caller
// must call Stop.
func Start() (*Cluster, error) {
	bin, ok := BinDir()
	if !ok {
		return nil, fmt.Errorf("binaries missing in %s (test/kube/build.sh)", bin)
	}
	dir, err := os.MkdirTemp("", "zmesh-kubetest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir}
	if err := c.start(bin); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(bin string) error {
	if err := c.writePKI(); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	c.etcd = exec.Command(filepath.Join(bin, "etcd"),
		"--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(ports[1]),
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+strconv.Itoa(ports[1]),
		"--initial-cluster", "default=http://127.0.0.1:"+strconv.Itoa(ports[1]),
		"--unsafe-no-fsync", "--log-level", "error")
	if err := c.run(c.etcd, "etcd.log"); err != nil {
		return err
	}
	c.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	c.apiserver = exec.Command(filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--secure-port", strconv.Itoa(ports[2]), "--bind-address", "127.0.0.1",
		"--tls-cert-file", c.file("apiserver.crt"), "--tls-private-key-file", c.file("apiserver.key"),
		"--client-ca-file", c.file("ca.crt"),
		"--token-auth-file", c.file("tokens.csv"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", c.file("sa.pub"),
		"--service-account-signing-key-file", c.file("sa.key"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--runtime-config", "certificates.k8s.io/v1beta1/clustertrustbundles=true",
		"--feature-gates", "ClusterTrustBundle=true",
		"--cert-dir", c.Dir,
		"--v", "0")
	if err := c.run(c.apiserver, "apiserver.log"); err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	return c.waitReady(90 * time.Second)
}

func (c *Cluster) file(name string) string { return filepath.Join(c.Dir, name) }

// run starts cmd with its output in a log file of the cluster's folder, in
// its own process group so that Stop reaches any child.
func (c *Cluster) run(cmd *exec.Cmd, logName string) error {
	f, err := os.Create(c.file(logName))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	return nil
}

// waitReady polls /readyz, then waits for the RBAC bootstrap: the
// apiserver answers /readyz before its default cluster roles exist.
func (c *Cluster) waitReady(limit time.Duration) error {
	client, err := c.httpClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	for _, path := range []string{"/readyz", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:auth-delegator"} {
		for {
			req, _ := http.NewRequest(http.MethodGet, c.Host+path, nil)
			req.Header.Set("Authorization", "Bearer "+AdminToken)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(c.file("apiserver.log"))
				if len(log) > 4000 {
					log = log[len(log)-4000:]
				}
				return fmt.Errorf("apiserver not ready after %s (%s): %v\n%s", limit, path, err, log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (c *Cluster) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		return nil, errors.New("bad CA")
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// Stop kills both processes and removes the cluster's folder. The
// apiserver takes ~15 s to stop on SIGTERM; its state is thrown away, so
// SIGKILL is enough.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		for _, cmd := range []*exec.Cmd{c.apiserver, c.etcd} {
			if cmd != nil && cmd.Process != nil {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}
		for _, cmd := range []*exec.Cmd{c.apiserver, c.etcd} {
			if cmd != nil && cmd.Process != nil {
				for i := 0; i < 100 && syscall.Kill(cmd.Process.Pid, 0) == nil; i++ {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		os.RemoveAll(c.Dir)
	})
}

// RESTConfig returns a client configuration for the administrator.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            c.Host,
		BearerToken:     AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM},
		QPS:             200,
		Burst:           400,
	}
}

// Client returns a typed clientset for the administrator.
func (c *Cluster) Client(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatalf("kubetest: clientset: %v", err)
	}
	return cs
}

func (c *Cluster) writeKubeconfig() error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: admin}
current-context: kubetest
`, c.Host, c.file("ca.crt"), AdminToken)
	c.Kubeconfig = c.file("kubeconfig")
	return os.WriteFile(c.Kubeconfig, []byte(kc), 0o600)
}

// writePKI writes the apiserver's CA and serving certificate, the
// service-account signing key pair and the static token file.
func (c *Cluster) writePKI() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	c.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	srvKeyDER, _ := x509.MarshalECPrivateKey(srvKey)
	saKeyDER, _ := x509.MarshalECPrivateKey(saKey)
	saPubDER, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	files := map[string][]byte{
		"ca.crt":        c.CAPEM,
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"apiserver.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: srvKeyDER}),
		"sa.key":        pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saKeyDER}),
		"sa.pub":        pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
		"tokens.csv":    []byte(AdminToken + ",admin,admin,\"system:masters\"\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(c.file(name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// freePorts returns n distinct free loopback ports. They are free when
// returned; another process could take one before the caller binds it, a
// race that a test run on its own machine does not lose in practice.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
