package agent_test

import (
	"context"
	"crypto/tls"
	"log"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/zmesh/zmesh/internal/agent"
)

// Example wires an agent the way `zmesh proxy` does: roots from the control
// plane's root-cert.pem, a bootstrap token, and an inbound mTLS listener that
// takes the current certificate from the agent on every handshake.
func Example() {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	roots, err := x509bundle.Load(td, "/var/lib/zmesh/root-cert.pem")
	if err != nil {
		log.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		CAAddress:      "127.0.0.1:15012",
		CARoots:        roots.X509Authorities(),
		Token:          func() (string, error) { return os.Getenv("ZMESH_TOKEN"), nil }, // read in cmd, not below it
		TrustDomain:    td,
		Namespace:      "foo",
		ServiceAccount: "httpbin",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	<-a.Ready()

	inbound := tlsconfig.MTLSServerConfig(a, a, tlsconfig.AuthorizeMemberOf(td))
	inbound.MinVersion = tls.VersionTLS13
	_ = inbound
}
