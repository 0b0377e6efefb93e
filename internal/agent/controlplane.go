package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ControlPlaneTLS returns a client TLS configuration for the proxy's other
// connections to the control plane (the xDS stream). It presents the
// agent's current certificate and verifies the server against the agent's
// current bundle at each handshake, so it follows a root rotation: after
// the old root is retired, the control plane serves a certificate from the
// new root, which a pool loaded once from root-cert.pem at start would
// refuse. The configuration is safe to share and to clone.
func (a *Agent) ControlPlaneTLS() *tls.Config {
	return &tls.Config{
		ServerName: a.cfg.CAServerName,
		MinVersion: tls.VersionTLS12,
		// The standard verification runs in VerifyConnection instead, with
		// the bundle of the moment.
		InsecureSkipVerify: true,
		VerifyConnection:   a.verifyControlPlane,
		// The current certificate even when this agent's clock says it is
		// not valid (installed for want of a valid one, see rotate): the
		// control plane judges it by its own clock, the one it issued it
		// by, and refuses it if it is really expired.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := a.currentCertificate(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // none yet: the server decides
		},
	}
}

func (a *Agent) verifyControlPlane(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("agent: control plane sent no certificate")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range a.bundle.Load().X509Authorities() {
		roots.AddCert(r)
	}
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       a.cfg.CAServerName,
		CurrentTime:   a.cfg.Clock(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("agent: control plane certificate: %w", err)
	}
	return nil
}
