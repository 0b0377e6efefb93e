package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/boundedio"
	"github.com/zmesh/zmesh/internal/crl"
)

// originator is the client side of TLS origination toward one
// destination, as a DestinationRule's tls mode SIMPLE or MUTUAL asks: the
// app sent plaintext, the proxy speaks TLS to the endpoint, verifying it
// (caCertificates, else the system's roots; subjectAltNames, else the SNI
// as host name; not revoked by caCrl or the credential's CRL, with
// Envoy's rule: every CA of the chain needs a current CRL) unless
// insecureSkipVerify, and presenting a client
// certificate for MUTUAL. The files are read at each new connection, so
// a renewed certificate is used from the next connection on, and one
// missing fails the request rather than the whole configuration.
//
// HTTP requests ride t, an HTTP/1.1 transport whose pool holds only
// connections that passed these checks; TCP streams dial directly.
type originator struct {
	key      string // identity of the settings, to keep t across pushes
	settings *networking.ClientTLSSettings
	sni      string
	credDir  string
	t        *http.Transport
	o        *outbound // for the handshake metrics; set by attach
}

// newOriginator prepares origination with settings toward host (the
// service's name: the default SNI and the name verified when the rule
// lists no subjectAltNames).
func newOriginator(settings *networking.ClientTLSSettings, host, credDir string) *originator {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(settings)
	g := &originator{settings: settings, sni: settings.GetSni(), credDir: credDir}
	if g.sni == "" {
		g.sni = host
	}
	g.key = host + "\x00" + credDir + "\x00" + string(b)
	g.t = &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return g.dial(ctx, addr, []string{"http/1.1"})
		},
		DisableCompression:     true,
		MaxIdleConnsPerHost:    maxMeshConnsPerEndpoint,
		IdleConnTimeout:        clientIdleTimeout,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	return g
}

// dial opens one TLS connection to addr with the rule's settings,
// offering alpn (none for a TCP stream, whose protocol is the app's).
func (g *originator) dial(ctx context.Context, addr string, alpn []string) (net.Conn, error) {
	conf, err := g.config()
	if err != nil {
		return nil, &dialError{fmt.Errorf("TLS origination to %s: %w", addr, err)}
	}
	conf.NextProtos = alpn
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dialTimeout+handshakeTimeout)
	defer cancel()
	raw, err := dial(ctx, dialerFor(ctx), addr)
	if err != nil {
		return nil, &dialError{fmt.Errorf("connect to %s: %w", addr, err)}
	}
	tc := tls.Client(raw, conf)
	err = tc.HandshakeContext(ctx)
	if g.o != nil {
		g.o.p.metrics.Handshake("client", err)
	}
	if err != nil {
		raw.Close()
		return nil, &dialError{fmt.Errorf("TLS origination to %s (%s, SNI %q): %w", addr, g.settings.GetMode(), g.sni, err)}
	}
	return tc, nil
}

// maxOriginPEM bounds each file a DestinationRule names for TLS
// origination. The paths come from configuration: one that names a
// device or a FIFO is refused (boundedio), not read forever.
const maxOriginPEM = 1 << 20

// config builds the TLS client configuration, reading the files named.
func (g *originator) config() (*tls.Config, error) {
	s := g.settings
	caFile, certFile, keyFile := s.GetCaCertificates(), s.GetClientCertificate(), s.GetPrivateKey()
	// A gateway's credential pushed by the control plane (a Secret)
	// comes first; else the files.
	pushedCert, pushedRoots, pushedCRLs, pushed, err := g.pushedCredential(s.GetCredentialName())
	if err != nil {
		return nil, err
	}
	if name := s.GetCredentialName(); name != "" && !pushed {
		if certFile, keyFile, caFile, err = credentialFiles(g.credDir, name); err != nil {
			return nil, err
		}
	}
	conf := &tls.Config{
		ServerName: g.sni,
		MinVersion: tls.VersionTLS12,
	}
	if s.GetMode() == networking.ClientTLSSettings_MUTUAL && pushed {
		if pushedCert == nil {
			return nil, errors.New("mode MUTUAL without a client certificate and key")
		}
		conf.Certificates = []tls.Certificate{*pushedCert}
	} else if s.GetMode() == networking.ClientTLSSettings_MUTUAL {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("mode MUTUAL without a client certificate and key")
		}
		certPEM, err := boundedio.ReadFile(certFile, maxOriginPEM)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		keyPEM, err := boundedio.ReadFile(keyFile, maxOriginPEM)
		if err != nil {
			return nil, fmt.Errorf("client key: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if s.GetInsecureSkipVerify().GetValue() {
		conf.InsecureSkipVerify = true
		return conf, nil
	}
	var roots *x509.CertPool // nil: the system's
	if pushed {
		roots = pushedRoots
	} else if caFile != "" {
		pem, err := boundedio.ReadFile(caFile, maxOriginPEM)
		if err != nil {
			return nil, fmt.Errorf("caCertificates: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caCertificates: no certificate in %s", caFile)
		}
	}
	crls, err := g.revocationLists(pushed, pushedCRLs)
	if err != nil {
		return nil, err
	}
	sans := s.GetSubjectAltNames()
	if len(sans) == 0 {
		conf.RootCAs = roots // Go checks the chain and the SNI as host name
		if len(crls) > 0 {
			conf.VerifyConnection = func(cs tls.ConnectionState) error {
				return crl.Check(cs.VerifiedChains, crls, g.now())
			}
		}
		return conf, nil
	}
	// The rule names the identities allowed: check the chain here, then
	// that the certificate names one of them, in place of the host name.
	conf.InsecureSkipVerify = true
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server presented no certificate")
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		chains, err := leaf.Verify(opts)
		if err != nil {
			return err
		}
		if len(crls) > 0 {
			if err := crl.Check(chains, crls, g.now()); err != nil {
				return err
			}
		}
		if !certNames(leaf, sans) {
			return fmt.Errorf("server certificate names none of subjectAltNames %q", sans)
		}
		return nil
	}
	return conf, nil
}

// revocationLists returns the CRLs the server's chain is checked
// against: the credential's (pushed, or its directory's ca.crl or crl)
// and the rule's caCrl file, all of them. A CRL named and unreadable or
// malformed fails the connection: a revocation list that cannot be read
// must not turn into none.
func (g *originator) revocationLists(pushed bool, pushedCRLs []*x509.RevocationList) ([]*x509.RevocationList, error) {
	s := g.settings
	var out []*x509.RevocationList
	if name := s.GetCredentialName(); pushed {
		out = append(out, pushedCRLs...)
	} else if name != "" {
		crls, err := credentialCRL(g.credDir, name)
		if err != nil {
			return nil, err
		}
		out = append(out, crls...)
	}
	if f := s.GetCaCrl(); f != "" {
		data, err := boundedio.ReadFile(f, maxOriginPEM)
		if err != nil {
			return nil, fmt.Errorf("caCrl: %w", err)
		}
		crls, err := crl.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("caCrl %s: %w", f, err)
		}
		out = append(out, crls...)
	}
	return out, nil
}

// now is the clock a CRL's validity is checked against: the proxy's
// clock for peers' certificates.
func (g *originator) now() time.Time {
	if g.o != nil {
		return g.o.p.peerNow()
	}
	return time.Now()
}

// certNames reports whether leaf carries one of sans exactly (DNS names
// without regard to case), as Envoy's exact SAN matcher does.
func certNames(leaf *x509.Certificate, sans []string) bool {
	for _, want := range sans {
		for _, n := range leaf.DNSNames {
			if strings.EqualFold(n, want) {
				return true
			}
		}
		for _, u := range leaf.URIs {
			if u.String() == want {
				return true
			}
		}
		for _, ip := range leaf.IPAddresses {
			if ip.String() == want {
				return true
			}
		}
		for _, e := range leaf.EmailAddresses {
			if e == want {
				return true
			}
		}
	}
	return false
}

// credentialName is the form of a Kubernetes Secret name; it also keeps
// a name from leaving CredentialDir ("..", "/").
var credentialName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// credentialFiles finds the files of credential name under dir, laid out
// as a Kubernetes Secret mounted at dir/name: tls.crt, tls.key and ca.crt
// (a TLS Secret), else Istio's generic cert, key and cacert. A CA alone
// (for SIMPLE) is fine; what is absent comes back "".
func credentialFiles(dir, name string) (cert, key, ca string, err error) {
	if dir == "" {
		return "", "", "", fmt.Errorf("credentialName %q: the proxy has no credential directory", name)
	}
	if len(name) > 253 || !credentialName.MatchString(name) || strings.Contains(name, "..") {
		return "", "", "", fmt.Errorf("credentialName %q is not a Secret name", name)
	}
	base := filepath.Join(dir, name)
	pick := func(names ...string) string {
		for _, n := range names {
			p := filepath.Join(base, n)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		return ""
	}
	cert, key, ca = pick("tls.crt", "cert"), pick("tls.key", "key"), pick("ca.crt", "cacert")
	if cert == "" && key == "" && ca == "" {
		return "", "", "", fmt.Errorf("credentialName %q: nothing in %s", name, base)
	}
	return cert, key, ca, nil
}

func (g *originator) closeIdle() { g.t.CloseIdleConnections() }
