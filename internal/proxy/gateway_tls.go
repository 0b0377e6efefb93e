package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/crl"
)

// gatewayTLS is the TLS configuration of gateway port n. Each handshake
// takes the state in force and the server its SNI names (no SNI: the
// port's first server). A mesh listener (ISTIO_MUTUAL) presents the
// gateway's SPIFFE certificate and requires a caller certificate that
// chains to the mesh's roots, as the inbound listener does; any other
// presents its server's credentialName and, for MUTUAL, requires a client
// certificate of the credential's CA. Credentials are taken at each
// handshake (a Secret pushed with the state in force, else files read
// then), so a renewed Secret is served from the next connection on; one
// that is missing or malformed fails the handshakes of the servers naming
// it, never serves without it.
func (p *Proxy) gatewayTLS(n uint32, mesh bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			st := p.state.Load()
			if st == nil || st.gateway == nil {
				return nil, errors.New("gateway: no configuration yet")
			}
			gp := st.gateway.ports[n]
			srv := gp.server(hello.ServerName)
			if srv == nil {
				return nil, fmt.Errorf("gateway: no server on port %d takes SNI %q", n, hello.ServerName)
			}
			if mesh {
				if srv.mode != networking.ServerTLSSettings_ISTIO_MUTUAL {
					return nil, fmt.Errorf("gateway: port %d no longer serves ISTIO_MUTUAL", n)
				}
				conf := p.in.baseTLS
				if st.serverTLS != nil {
					conf = st.serverTLS
				}
				conf = conf.Clone()
				conf.NextProtos = gatewayALPN
				conf.GetConfigForClient = nil
				return conf, nil
			}
			conf, err := credentialServerTLS(st.gateway.creds, p.credentialSources(), srv.tls)
			if err != nil {
				srv.logRefusal(p.log, n, err)
			}
			return conf, err
		},
	}
}

// credentialSources is where a gateway's servers find what they present
// besides pushed Secrets: the credential directory, and the directories
// certificate files may be served from.
type credentialSources struct {
	credentialDir string
	certFileDirs  []string
	now           func() time.Time // for a CRL's nextUpdate; nil: time.Now
}

func (p *Proxy) credentialSources() credentialSources {
	src := credentialSources{credentialDir: p.cfg.CredentialDir, now: p.now}
	if p.cfg.Gateway != nil {
		src.certFileDirs = p.cfg.Gateway.CertFileDirs
	}
	return src
}

// credentialServerTLS builds the server side of SIMPLE, MUTUAL or
// OPTIONAL_MUTUAL TLS from s.credentialName, or each of
// s.credentialNames (an RSA and an ECDSA certificate: Go presents the
// one the client supports), through loadCredential (a pushed Secret, else
// files), or from s.serverCertificate, s.privateKey and s.caCertificates
// (fileServerMaterial). The CA for client certificates is
// s.caCertCredentialName's when set, else the first credential's
// (NAME-cacert, else its own). Any of them missing fails the handshake.
func credentialServerTLS(creds map[string]*servedCredential, src credentialSources, s *networking.ServerTLSSettings) (*tls.Config, error) {
	mode := s.GetMode()
	if !credentialMode(mode) {
		return nil, fmt.Errorf("gateway: TLS mode %s is not served", mode)
	}
	mutual, caName := mode != networking.ServerTLSSettings_SIMPLE, s.GetCaCertCredentialName()
	var certs []tls.Certificate
	var ca *x509.CertPool
	var crls []*x509.RevocationList
	if serverUsesFiles(s) {
		m, err := fileServerMaterial(src.certFileDirs, s, mutual)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		certs, ca, crls = []tls.Certificate{m.cert}, m.ca, m.crls
	} else {
		names := config.ServerCredentialNames(s)
		if len(names) == 0 {
			return nil, errors.New("gateway: no credentialName")
		}
		for i, name := range names {
			m, err := loadCredential(creds, src.credentialDir, name, mutual && caName == "" && i == 0)
			if err != nil {
				return nil, fmt.Errorf("gateway: %w", err)
			}
			certs = append(certs, m.cert)
			if i == 0 {
				ca, crls = m.ca, m.crls
			}
		}
		if mutual && caName != "" {
			var err error
			if ca, crls, err = loadCA(creds, src.credentialDir, caName); err != nil {
				return nil, fmt.Errorf("gateway: caCertCredentialName: %w", err)
			}
		}
	}
	m := credentialMaterial{ca: ca}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: certs,
		NextProtos:   gatewayALPN,
	}
	if mode == networking.ServerTLSSettings_SIMPLE {
		return conf, nil
	}
	conf.ClientAuth = tls.RequireAndVerifyClientCert
	optional := mode == networking.ServerTLSSettings_OPTIONAL_MUTUAL
	if optional {
		// A client certificate is verified when given, and none is
		// required (Istio's OPTIONAL_MUTUAL).
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	}
	conf.ClientCAs = m.ca
	sans := s.GetSubjectAltNames()
	if len(sans) == 0 && len(crls) == 0 {
		return conf, nil
	}
	now := src.now
	if now == nil {
		now = time.Now
	}
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if optional && len(cs.PeerCertificates) == 0 {
			return nil
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
		if len(sans) > 0 && !certNames(cs.PeerCertificates[0], sans) {
			return fmt.Errorf("client certificate names none of subjectAltNames %q", sans)
		}
		if len(crls) > 0 {
			if err := crl.Check(cs.VerifiedChains, crls, now()); err != nil {
				return fmt.Errorf("caCrl: %w", err)
			}
		}
		return nil
	}
	return conf, nil
}

// credentialMode reports whether a server of mode presents its
// credentialName: SIMPLE, MUTUAL and OPTIONAL_MUTUAL (which also verify a
// client certificate against the credential's CA, the latter only when
// one is given).
func credentialMode(mode networking.ServerTLSSettings_TLSmode) bool {
	switch mode {
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		return true
	}
	return false
}
