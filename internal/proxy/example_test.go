package proxy_test

import (
	"context"
	"log/slog"

	"github.com/zmesh/zmesh/internal/proxy"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// The agent supplies certificates, the xDS client views; the proxy serves
// until the context ends.
func Example() {
	var certs proxy.CertificateSource // the agent, which rotates the certificate
	p, err := proxy.New(proxy.Config{
		Workload: registry.Workload{
			Name: "backend", Namespace: "api", ServiceAccount: "backend",
			Labels: map[string]string{"app": "backend"}, Services: []string{"backend"},
		},
		TrustDomain:  "cluster.local",
		InboundAddr:  "0.0.0.0:15006",
		OutboundAddr: "127.0.0.1:15001",
		AdminAddr:    "127.0.0.1:15020",
		AppAddr:      "127.0.0.1:8080",
		Certs:        certs,
		Logger:       slog.Default(),
	})
	if err != nil {
		slog.Error("proxy", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Each config push: a rejected view returns an error (NACK) and
		// the last good one stays in force.
		_ = p.Apply(&xds.View{Version: "1", Mesh: xds.Mesh{TrustDomain: "cluster.local", RootNamespace: "istio-system"}})
	}()
	_ = p.Run(ctx)
}
