package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/controlplane"
)

func controlplaneCmd() *cobra.Command {
	var cfg controlplane.Config
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Run the mesh CA and config server (CSRs and xDS on one gRPC/TLS port)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = newLogger(slog.LevelInfo)
			return controlplane.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ConfigDir, "config-dir", "", "directory of Istio YAML resources (watched)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the CA material and the trust bundle (root-cert.pem); may hold Istio cacerts files")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:15012", "gRPC/TLS address for CSRs and xDS")
	f.StringVar(&cfg.Admin, "admin", "127.0.0.1:15014", "admin HTTP address (/ready, /metrics, /debug/proxy-status); empty disables")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	f.StringVar(&cfg.RootNamespace, "root-namespace", "istio-system", "namespace whose policies apply mesh-wide")
	f.StringVar(&cfg.MeshConfig, "mesh-config", "", "Istio MeshConfig YAML file (trustDomainAliases, rootNamespace, pathNormalization, extensionProviders, outboundTrafficPolicy, h2UpgradePolicy, meshMTLS); edits are applied while running")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 0, "lifetime of workload certificates (default 24h)")
	f.BoolVar(&cfg.Profiling, "profiling", false, "serve Go profiles (pprof) under /debug/pprof/ on the admin port")
	f.DurationVar(&cfg.MaxCertTTL, "max-cert-ttl", 0, "cap on the lifetime a workload may request (default 90 days)")
	return cmd
}
