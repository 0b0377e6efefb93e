package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/sidecar"
)

func proxyCmd() *cobra.Command {
	var cfg sidecar.Config
	var labels, services string
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run one workload's agent and proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := parseLabels(labels)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			cfg.Workload.Labels = l
			if services != "" {
				cfg.Workload.Services = strings.Split(services, ",")
			}
			cfg.Logger = newLogger(slog.LevelInfo)
			return sidecar.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ControlPlane, "controlplane", "127.0.0.1:15012", "control plane gRPC/TLS address")
	f.StringVar(&cfg.RootCertFile, "root-cert", "", "mesh trust bundle (the control plane's root-cert.pem)")
	f.StringVar(&cfg.TokenFile, "token-file", "", "token file, re-read at each certificate request: a bootstrap token (`zmesh token create`) or a Kubernetes service-account token for audience istio-ca (the projected token the kubelet rotates)")
	f.StringVar(&cfg.Workload.Name, "name", "", "workload name")
	f.StringVar(&cfg.Workload.Namespace, "namespace", "default", "workload namespace")
	f.StringVar(&cfg.Workload.ServiceAccount, "service-account", "default", "workload service account")
	f.StringVar(&labels, "labels", "", "workload labels, k=v,k2=v2")
	f.StringVar(&services, "services", "", "short names of the services this workload serves, comma-separated")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	f.StringVar(&cfg.DNSDomain, "dns-domain", "cluster.local", "services' DNS suffix")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 0, "requested certificate lifetime (default: the CA's)")
	f.StringVar(&cfg.AppAddr, "app", "127.0.0.1:8080", "the app's plaintext listener")
	f.StringVar(&cfg.InboundAddr, "inbound", "0.0.0.0:15006", "inbound (mesh) listener")
	f.StringVar(&cfg.OutboundAddr, "outbound", "127.0.0.1:15001", "outbound listener (the app's HTTP proxy)")
	f.StringVar(&cfg.AdminAddr, "admin", "127.0.0.1:15020", "admin listener: /metrics /ready /debug/config /debug/certs")
	f.StringVar(&cfg.AdvertiseAddr, "advertise", "", "address other proxies reach the inbound listener at (default --inbound)")
	f.StringVar(&cfg.WorkloadAPISocket, "workload-api-socket", "", "serve the SPIFFE Workload API on this unix socket")
	f.StringVar(&cfg.SDSSocket, "sds-socket", "", "serve Envoy SDS (default, ROOTCA) on this unix socket")
	f.StringVar((*string)(&cfg.KeyType), "key-type", "ECDSA-P256", "workload key type: ECDSA-P256, RSA-2048 or RSA-3072")
	f.BoolVar(&cfg.AccessLog, "access-log", false, "log every request (default: only denied, failed, audited and dry-run ones)")
	return cmd
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
