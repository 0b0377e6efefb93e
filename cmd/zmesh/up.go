package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/localmesh"
)

func upCmd() *cobra.Command {
	var cfg localmesh.Config
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a local mesh: a control plane and every workload of DIR behind its own proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Binary = bin
			cfg.Out = cmd.OutOrStdout()
			cfg.Logs = os.Stderr
			cfg.Logger = newLogger(0)
			cfg.TokenIssuer = ca.IssueToken
			return localmesh.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfg.Dir, "file", "f", "examples/quickstart", "mesh directory: Istio YAML and zmesh.dev Workloads")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 0, "lifetime of workload certificates (default: the control plane's, 24h)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "control plane data directory (default: a temporary directory)")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	f.StringVar(&cfg.MeshConfig, "mesh-config", "", "Istio MeshConfig YAML for the control plane (extension providers, path normalization, ...)")
	f.BoolVar(&cfg.AccessLog, "access-log", false, "proxies log every request (default: only denied and failed ones)")
	f.DurationVar(&cfg.ReadyWithin, "ready-timeout", 60*time.Second, "how long to wait for every proxy to be ready")
	return cmd
}
