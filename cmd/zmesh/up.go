package main

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/localmesh"
)

func upCmd() *cobra.Command {
	var cfg localmesh.Config
	var subnet string
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
			if subnet != "" {
				p, err := netip.ParsePrefix(subnet)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--capture-subnet: %w", err)}
				}
				cfg.CaptureSubnet = p
			}
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
	f.BoolVar(&cfg.Capture, "capture", false, "run each app in its own network namespace, its traffic captured by its proxy with no proxy setting (root)")
	f.StringVar(&cfg.CapturePrefix, "capture-prefix", "zmesh", "with --capture: prefix of the network namespaces (PREFIX-NS-NAME), bridge (PREFIX0) and veths created on the host")
	f.StringVar(&subnet, "capture-subnet", "10.47.0.0/24", "with --capture: the bridge's IPv4 subnet (the host takes the first address)")
	f.DurationVar(&cfg.ReadyWithin, "ready-timeout", 60*time.Second, "how long to wait for every proxy to be ready")
	return cmd
}
