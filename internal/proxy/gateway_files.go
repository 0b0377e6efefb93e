package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/boundedio"
	"github.com/zmesh/zmesh/internal/crl"
)

// errNoCertFileDirs refuses a server with certificate files on a gateway
// whose operator declared no directory for them: a Gateway names paths,
// only the gateway's operator says which of its files may be served.
var errNoCertFileDirs = errors.New("the gateway declares no certificate file directory (--cert-file-dir)")

// fileServerMaterial reads a server's serverCertificate and privateKey
// and, for mutual, its caCertificates (Istio's file-mounted
// certificates), at each handshake so that a rotated file is served from
// the next connection. Every file must lie in one of dirs, the gateway's
// declared certificate directories, and is opened through that
// directory (os.Root), so a symbolic link that leaves it is refused as a
// path that does: a Gateway of any namespace can make the gateway serve
// only what its operator mounted there for that purpose, as Istio's
// gateway serves only what is mounted in its pod. Reads are bounded
// (maxOriginPEM) and refuse FIFOs and devices. A caCrl is read the same
// way; one that is unreadable or holds no CRL refuses the server rather
// than admit clients unchecked.
func fileServerMaterial(dirs []string, s *networking.ServerTLSSettings, mutual bool) (credentialMaterial, error) {
	certPEM, err := readCertFile(dirs, s.GetServerCertificate())
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("serverCertificate: %w", err)
	}
	keyPEM, err := readCertFile(dirs, s.GetPrivateKey())
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("privateKey: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("serverCertificate and privateKey %s: %w", s.GetServerCertificate(), err)
	}
	m := credentialMaterial{cert: cert}
	if !mutual {
		return m, nil
	}
	if s.GetCaCertificates() == "" {
		return credentialMaterial{}, fmt.Errorf("caCertificates: %w", errNoCA)
	}
	caPEM, err := readCertFile(dirs, s.GetCaCertificates())
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("caCertificates: %w", err)
	}
	m.ca = x509.NewCertPool()
	if !m.ca.AppendCertsFromPEM(caPEM) {
		return credentialMaterial{}, fmt.Errorf("caCertificates: no certificate in %s", s.GetCaCertificates())
	}
	if s.GetCaCrl() == "" {
		return m, nil
	}
	crlData, err := readCertFile(dirs, s.GetCaCrl())
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("caCrl: %w", err)
	}
	if m.crls, err = crl.Parse(crlData); err != nil {
		return credentialMaterial{}, fmt.Errorf("caCrl %s: %w", s.GetCaCrl(), err)
	}
	return m, nil
}

// readCertFile reads path, which must be absolute and inside one of
// dirs, through that directory: os.Root resolves the symbolic links of a
// Kubernetes volume (..data) within it and refuses any that leave it.
func readCertFile(dirs []string, path string) ([]byte, error) {
	if len(dirs) == 0 {
		return nil, errNoCertFileDirs
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%q is not an absolute path", path)
	}
	path = filepath.Clean(path)
	for _, dir := range dirs {
		rel, err := filepath.Rel(filepath.Clean(dir), path)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: %w (%s)", path, boundedio.ErrNotRegular, info.Mode().Type())
		}
		return boundedio.Read(f, path, maxOriginPEM)
	}
	return nil, fmt.Errorf("%s is in none of the gateway's certificate file directories %q", path, dirs)
}

// serverUsesFiles reports whether a SIMPLE or MUTUAL server presents
// certificate files rather than credentials (credentialName(s)).
func serverUsesFiles(s *networking.ServerTLSSettings) bool {
	return s.GetCredentialName() == "" && len(s.GetCredentialNames()) == 0 && s.GetServerCertificate() != ""
}
