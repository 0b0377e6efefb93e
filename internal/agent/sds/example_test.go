package sds_test

import (
	"context"
	"log"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/sds"
)

// Serving the workload identity ("default", "ROOTCA") and a gateway
// certificate mounted as files ("ingress-cert", "ingress-cert-cacert") to an
// Envoy whose SDS config points at unix:///run/zmesh/gw/sds.sock.
func Example() {
	var ag *agent.Agent // from agent.New, running
	files, err := sds.NewFileSource([]sds.File{{
		Name:       "ingress-cert",
		CertChain:  "/etc/gateway/cert-chain.pem",
		PrivateKey: "/etc/gateway/key.pem",
		RootCert:   "/etc/gateway/root-cert.pem",
	}}, 0, nil)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := sds.New(sds.Config{
		SocketPath: "/run/zmesh/gw/sds.sock",
		Sources:    []sds.Source{sds.AgentSecrets(ag, ag.ID().TrustDomain()), files},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
