package proxy

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/zmesh/zmesh/internal/boundedio"
	"github.com/zmesh/zmesh/internal/crl"
	"github.com/zmesh/zmesh/internal/xds"
)

// servedCredential is a gateway credential pushed by the control plane
// (a Kubernetes Secret), compiled once per push. A credential that does
// not compile keeps its error: the servers naming it refuse their
// handshakes with it, and every other server serves on.
type servedCredential struct {
	cert *tls.Certificate       // nil for a CA-only (NAME-cacert) credential
	ca   *x509.CertPool         // nil when it holds no CA certificates
	crls []*x509.RevocationList // the CRL of its CA's clients, if any
	err  error
	sum  [sha256.Size]byte // of its content, to tell a rotation
}

// compileCredentials compiles the credentials of a view, by name. Only
// those of the gateway's own namespace are kept: the control plane sends
// no other, and a gateway serves no other namespace's Secret even if it
// did.
func compileCredentials(creds []xds.Credential, ns string, log *slog.Logger) map[string]*servedCredential {
	out := make(map[string]*servedCredential, len(creds))
	for _, c := range creds {
		if c.Namespace != ns {
			log.Warn("gateway credential of another namespace ignored", "secret", c.Key(), "namespace", ns)
			continue
		}
		sc := &servedCredential{sum: sha256.Sum256(bytes.Join([][]byte{c.Cert, c.PrivateKey, c.CA, c.CRL}, []byte{0}))}
		if len(c.Cert) > 0 || len(c.PrivateKey) > 0 {
			cert, err := tls.X509KeyPair(c.Cert, c.PrivateKey)
			if err != nil {
				sc.err = fmt.Errorf("credential %s: %w", c.Key(), err)
			} else {
				sc.cert = &cert
			}
		}
		if len(c.CA) > 0 {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(c.CA) {
				sc.ca = pool
			} else if sc.err == nil {
				sc.err = fmt.Errorf("credential %s: no CA certificate", c.Key())
			}
		}
		if len(c.CRL) > 0 && sc.err == nil {
			crls, err := crl.Parse(c.CRL)
			if err != nil {
				sc.err = fmt.Errorf("credential %s: CRL: %w", c.Key(), err)
			}
			sc.crls = crls
		}
		if sc.err != nil {
			log.Error("gateway credential refused: servers naming it refuse TLS handshakes", "secret", c.Key(), "error", sc.err)
		}
		out[c.Name] = sc
	}
	return out
}

// credentialMaterial is what a SIMPLE or MUTUAL server serves with: its
// certificate and, for MUTUAL, the CA its clients' certificates must
// chain to.
type credentialMaterial struct {
	cert tls.Certificate
	ca   *x509.CertPool
	crls []*x509.RevocationList // caCrl: clients' certificates they list are refused
}

// errNoCA refuses a MUTUAL server whose credential has no CA: it would
// take any client certificate.
var errNoCA = errors.New("no CA certificates for MUTUAL (ca.crt, cacert, or a NAME-cacert Secret)")

// loadCredential finds credential name for a server: pushed by the
// control plane (creds; Istio's rule for the CA of MUTUAL: the Secret
// NAME-cacert, else NAME's own), else the files of dir. mutual requires
// a CA.
func loadCredential(creds map[string]*servedCredential, dir, name string, mutual bool) (credentialMaterial, error) {
	if sc, ok := creds[name]; ok {
		if sc.err != nil {
			return credentialMaterial{}, sc.err
		}
		if sc.cert == nil {
			return credentialMaterial{}, fmt.Errorf("credentialName %q has no certificate and key", name)
		}
		m := credentialMaterial{cert: *sc.cert, ca: sc.ca, crls: sc.crls}
		if mutual {
			if cs, ok := creds[name+xds.CACredentialSuffix]; ok {
				if cs.err != nil {
					return credentialMaterial{}, cs.err
				}
				// The CA and its CRL come together, from NAME-cacert.
				m.ca, m.crls = cs.ca, cs.crls
			}
			if m.ca == nil {
				return credentialMaterial{}, fmt.Errorf("credentialName %q: %w", name, errNoCA)
			}
		}
		return m, nil
	}
	if dir == "" {
		return credentialMaterial{}, fmt.Errorf("credentialName %q: no Secret of that name in the gateway's namespace, and no credential directory", name)
	}
	return fileCredential(dir, name, mutual)
}

// loadCA finds the CA certificates of credential name (a server's
// caCertCredentialName), and their CRL if it has one: pushed, else the
// files of dir (ca.crt or cacert; ca.crl or crl). None is an error:
// MUTUAL must not take any certificate.
func loadCA(creds map[string]*servedCredential, dir, name string) (*x509.CertPool, []*x509.RevocationList, error) {
	if sc, ok := creds[name]; ok {
		if sc.err != nil {
			return nil, nil, sc.err
		}
		if sc.ca == nil {
			return nil, nil, fmt.Errorf("%q: %w", name, errNoCA)
		}
		return sc.ca, sc.crls, nil
	}
	if dir == "" {
		return nil, nil, fmt.Errorf("%q: no Secret of that name in the gateway's namespace, and no credential directory", name)
	}
	_, _, caFile, err := credentialFiles(dir, name)
	if err != nil {
		return nil, nil, err
	}
	if caFile == "" {
		return nil, nil, fmt.Errorf("%q: %w", name, errNoCA)
	}
	caPEM, err := boundedio.ReadFile(caFile, maxOriginPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("ca.crt: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("%q: no certificate in %s", name, caFile)
	}
	crls, err := credentialCRL(dir, name)
	if err != nil {
		return nil, nil, err
	}
	return pool, crls, nil
}

// credentialCRL reads the CRL of credential name from dir, ca.crl (a TLS
// Secret's key) else crl (a generic one's), if either exists: nil when
// neither does; an unreadable or malformed one is an error, never
// skipped.
func credentialCRL(dir, name string) ([]*x509.RevocationList, error) {
	for _, f := range []string{"ca.crl", "crl"} {
		path := filepath.Join(dir, name, f)
		if _, err := os.Lstat(path); err != nil {
			continue
		}
		data, err := boundedio.ReadFile(path, maxOriginPEM)
		if err != nil {
			return nil, fmt.Errorf("credentialName %q: %s: %w", name, f, err)
		}
		crls, err := crl.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("credentialName %q: %s: %w", name, f, err)
		}
		return crls, nil
	}
	return nil, nil
}

// fileCredential reads credential name from dir (credentialFiles:
// tls.crt, tls.key, and for MUTUAL ca.crt and, if there, ca.crl) through
// boundedio.
func fileCredential(dir, name string, mutual bool) (credentialMaterial, error) {
	certFile, keyFile, caFile, err := credentialFiles(dir, name)
	if err != nil {
		return credentialMaterial{}, err
	}
	if certFile == "" || keyFile == "" {
		return credentialMaterial{}, fmt.Errorf("credentialName %q has no certificate and key", name)
	}
	certPEM, err := boundedio.ReadFile(certFile, maxOriginPEM)
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("certificate: %w", err)
	}
	keyPEM, err := boundedio.ReadFile(keyFile, maxOriginPEM)
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("credentialName %q: %w", name, err)
	}
	m := credentialMaterial{cert: cert}
	if !mutual {
		return m, nil
	}
	if caFile == "" {
		return credentialMaterial{}, fmt.Errorf("credentialName %q: %w", name, errNoCA)
	}
	caPEM, err := boundedio.ReadFile(caFile, maxOriginPEM)
	if err != nil {
		return credentialMaterial{}, fmt.Errorf("ca.crt: %w", err)
	}
	m.ca = x509.NewCertPool()
	if !m.ca.AppendCertsFromPEM(caPEM) {
		return credentialMaterial{}, fmt.Errorf("credentialName %q: no certificate in %s", name, caFile)
	}
	if m.crls, err = credentialCRL(dir, name); err != nil {
		return credentialMaterial{}, err
	}
	return m, nil
}

// pushedCredential finds a DestinationRule's credentialName among the
// credentials pushed to this gateway (TLS origination from a Secret): its
// client certificate (nil: none) and the CA to verify the server with
// (NAME-cacert's, else its own; nil: the system's roots) with its CRLs.
// pushed is false
// when none was (a sidecar never has any), and the files are read then.
// The state in force at each connection is read, so a renewed Secret is
// used from the next one.
func (g *originator) pushedCredential(name string) (cert *tls.Certificate, roots *x509.CertPool, crls []*x509.RevocationList, pushed bool, err error) {
	if name == "" || g.o == nil {
		return nil, nil, nil, false, nil
	}
	st := g.o.p.state.Load()
	if st == nil || st.gateway == nil {
		return nil, nil, nil, false, nil
	}
	sc, ok := st.gateway.creds[name]
	if !ok {
		return nil, nil, nil, false, nil
	}
	if sc.err != nil {
		return nil, nil, nil, true, sc.err
	}
	roots, crls = sc.ca, sc.crls
	if cs, ok := st.gateway.creds[name+xds.CACredentialSuffix]; ok {
		if cs.err != nil {
			return nil, nil, nil, true, cs.err
		}
		roots, crls = cs.ca, cs.crls
	}
	return sc.cert, roots, crls, true, nil
}

// rotatedCredentials returns the names whose pushed credential differs
// between was and now (added, changed or gone), a NAME-cacert counting
// for NAME too.
func rotatedCredentials(was, now map[string]*servedCredential) map[string]bool {
	out := map[string]bool{}
	mark := func(name string) {
		out[name] = true
		out[strings.TrimSuffix(name, xds.CACredentialSuffix)] = true
	}
	for name, sc := range now {
		if o, ok := was[name]; !ok || o.sum != sc.sum {
			mark(name)
		}
	}
	for name := range was {
		if _, ok := now[name]; !ok {
			mark(name)
		}
	}
	return out
}

// closeRotatedOrigins closes the idle upstream connections of the TLS
// originators whose DestinationRule credentialName was rotated, so that
// the gateway's next request opens a connection with the credential now
// in force instead of reusing one made with the old (or withdrawn) one.
// Requests in flight finish on theirs.
func (p *Proxy) closeRotatedOrigins(rotated map[string]bool) {
	if len(rotated) == 0 {
		return
	}
	o := p.out
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, g := range o.origins {
		if name := g.settings.GetCredentialName(); name != "" && rotated[name] {
			g.closeIdle()
		}
	}
}
