//go:build !zmesh_dataplane

package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/controlplane"
	"github.com/zmesh/zmesh/internal/inject"
)

func controlplaneCmd() *cobra.Command {
	var cfg controlplane.Config
	var clockOffset time.Duration
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Run the mesh CA and config server (CSRs and xDS on one gRPC/TLS port)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = newLogger(slog.LevelInfo)
			if clockOffset != 0 {
				cfg.Clock = offsetClock(clockOffset)
				cfg.Logger.Warn("clock offset in force (test hook): the CA's notion of now is shifted", "offset", clockOffset.String())
			}
			// In a pod (the apiserver's address in the environment, as the
			// kubelet sets it) with no config named, the pod's own cluster is
			// the config source, through its service account.
			if cfg.Kubeconfig == "" && cfg.ConfigDir == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
				cfg.InCluster = true
			}
			// GOGC, when set, is the operator's choice over the control
			// plane's own GC target.
			if _, set := os.LookupEnv("GOGC"); set {
				cfg.GCPercent = -1
			}
			return controlplane.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ConfigDir, "config-dir", "", "directory of Istio YAML resources (watched)")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "run against this cluster: Istio resources, Services, EndpointSlices, Pods and the mesh ConfigMap read from it instead of --config-dir; the CA in Secrets istio-ca-secret or cacerts of --root-namespace; service-account tokens (audience istio-ca) checked by TokenReview; the root published as ConfigMap istio-ca-root-cert in every namespace (inside a pod, the pod's cluster is used when neither --kubeconfig nor --config-dir is given)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the CA material and the trust bundle (root-cert.pem); may hold Istio cacerts files")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:15012", "gRPC/TLS address for CSRs and xDS")
	f.StringVar(&cfg.Admin, "admin", "127.0.0.1:15014", "admin HTTP address (/ready, /metrics, /debug/proxy-status); empty disables")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	f.StringVar(&cfg.RootNamespace, "root-namespace", "istio-system", "namespace whose policies apply mesh-wide")
	f.StringVar(&cfg.MeshConfig, "mesh-config", "", "Istio MeshConfig YAML file (trustDomainAliases, rootNamespace, pathNormalization, extensionProviders, outboundTrafficPolicy, h2UpgradePolicy, meshMTLS); edits are applied while running")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 0, "lifetime of workload certificates (default 24h)")
	f.BoolVar(&cfg.Profiling, "profiling", false, "serve Go profiles (pprof) under /debug/pprof/ on the admin port")
	f.DurationVar(&cfg.MaxCertTTL, "max-cert-ttl", 0, "cap on the lifetime a workload may request (default 90 days)")
	f.StringVar(&cfg.Webhook, "webhook", "", "HTTPS address of the sidecar injection webhook (POST /inject); empty disables")
	f.StringVar(&cfg.WebhookRegister, "webhook-register", "", "register the webhook: url (MutatingWebhookConfiguration pointing at --webhook) or service (keep the caBundle of the one zmesh install created)")
	f.StringVar(&cfg.Injection.Image, "proxy-image", inject.DefaultImage, "image of the injected zmesh-init and zmesh-proxy containers")
	f.StringVar(&cfg.Injection.ControlPlane, "proxy-controlplane", "zmesh.istio-system.svc:15012", "control plane address injected proxies dial")
	clockOffsetFlag(f, &clockOffset, "the CA's")
	return cmd
}
