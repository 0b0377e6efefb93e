package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/boundedio"
)

// gatewayTLS is the TLS configuration of gateway port n. Each handshake
// takes the state in force and the server its SNI names (no SNI: the
// port's first server). A mesh listener (ISTIO_MUTUAL) presents the
// gateway's SPIFFE certificate and requires a caller certificate that
// chains to the mesh's roots, as the inbound listener does; any other
// presents its server's credentialName and, for MUTUAL, requires a client
// certificate of the credential's CA. Credentials are read at each
// handshake, so a renewed Secret is served from the next connection on;
// one that cannot be read fails the handshake, never serves without it.
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
			return credentialServerTLS(p.cfg.CredentialDir, srv.tls)
		},
	}
}

// credentialServerTLS builds the server side of SIMPLE or MUTUAL TLS
// from the files of s.credentialName (credentialFiles: tls.crt, tls.key,
// and for MUTUAL ca.crt), read through boundedio.
func credentialServerTLS(dir string, s *networking.ServerTLSSettings) (*tls.Config, error) {
	mode := s.GetMode()
	if mode != networking.ServerTLSSettings_SIMPLE && mode != networking.ServerTLSSettings_MUTUAL {
		return nil, fmt.Errorf("gateway: TLS mode %s is not served", mode)
	}
	certFile, keyFile, caFile, err := credentialFiles(dir, s.GetCredentialName())
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("gateway: credentialName %q has no certificate and key", s.GetCredentialName())
	}
	certPEM, err := boundedio.ReadFile(certFile, maxOriginPEM)
	if err != nil {
		return nil, fmt.Errorf("gateway: certificate: %w", err)
	}
	keyPEM, err := boundedio.ReadFile(keyFile, maxOriginPEM)
	if err != nil {
		return nil, fmt.Errorf("gateway: key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("gateway: credentialName %q: %w", s.GetCredentialName(), err)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   gatewayALPN,
	}
	if mode == networking.ServerTLSSettings_SIMPLE {
		return conf, nil
	}
	if caFile == "" {
		// MUTUAL with no CA to verify against would take any
		// certificate: refuse instead.
		return nil, fmt.Errorf("gateway: credentialName %q has no ca.crt for MUTUAL", s.GetCredentialName())
	}
	caPEM, err := boundedio.ReadFile(caFile, maxOriginPEM)
	if err != nil {
		return nil, fmt.Errorf("gateway: ca.crt: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("gateway: credentialName %q: no certificate in %s", s.GetCredentialName(), caFile)
	}
	conf.ClientAuth = tls.RequireAndVerifyClientCert
	conf.ClientCAs = pool
	if sans := s.GetSubjectAltNames(); len(sans) > 0 {
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !certNames(cs.PeerCertificates[0], sans) {
				return fmt.Errorf("client certificate names none of subjectAltNames %q", sans)
			}
			return nil
		}
	}
	return conf, nil
}
