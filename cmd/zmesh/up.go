//go:build !zmesh_dataplane

package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/examples"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/localmesh"
	"github.com/zmesh/zmesh/internal/localmesh/kubecluster"
)

func upCmd() *cobra.Command {
	var cfg localmesh.Config
	var subnet, kubeconfig string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a local mesh: a control plane and every workload of DIR behind its own proxy",
		Long: `Run a local mesh: a control plane and every workload of DIR behind its own proxy.

With --kubeconfig FILE (Kubernetes mode) the cluster is the config source:
DIR's Istio resources are applied to it first (server-side apply; Istio's
CRDs and istio-system are created when missing, and so are the namespaces
and service accounts of DIR's workloads; --mesh-config becomes the ConfigMap
istio-system/istio), the control plane reads the cluster, keeps its CA in
istio-system, and registers the MutatingWebhookConfiguration
zmesh-sidecar-injector pointing at its own webhook (webhook= on the
controlplane line), and each proxy authenticates with a service-account
token from TokenRequest (audience istio-ca), refreshed while the mesh runs.
Ctrl-C stops the local processes only: what was applied to the cluster,
the CA's Secret and the webhook configuration stay in place (with
failurePolicy Fail, pods in injection-enabled namespaces are refused
until a control plane answers again; zmesh uninstall removes the webhook).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Binary = bin
			// The data-plane build beside this binary, when there is one
			// (make build puts bin/zmesh-proxy there), runs the proxies.
			if pb := filepath.Join(filepath.Dir(bin), "zmesh-proxy"); isExecutable(pb) {
				cfg.ProxyBinary = pb
			}
			cfg.Out = cmd.OutOrStdout()
			cfg.Logs = os.Stderr
			cfg.Logger = newLogger(0)
			cfg.TokenIssuer = ca.IssueToken
			cfg.Hints = true
			stateDir := upStateDir()
			if err := os.MkdirAll(stateDir, 0o700); err == nil {
				cfg.StateFile = filepath.Join(stateDir, fmt.Sprintf("up-%d.json", os.Getpid()))
			}
			if cfg.Dir == "" {
				dir, cleanup, err := quickstartDir()
				if err != nil {
					return err
				}
				defer cleanup()
				cfg.Dir = dir
			}
			if !verbose {
				// Quiet: the children's ~45 start-up lines go to a file,
				// so that the contract lines and the hints stand out.
				pruneUpLogs(stateDir, 5)
				logFile := filepath.Join(stateDir, fmt.Sprintf("up-%d.log", os.Getpid()))
				f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return fmt.Errorf("up: log file (use --verbose to log to stderr): %w", err)
				}
				defer f.Close()
				cfg.Logs, cfg.LogFile = f, logFile
				cfg.Logger = slog.New(slog.NewTextHandler(f, nil))
				defer func() {
					if err != nil {
						fmt.Fprintf(os.Stderr, "zmesh: the mesh's logs are in %s; its last lines:\n%s", logFile, tailFile(logFile, 20))
					}
				}()
			}
			if kubeconfig != "" {
				c, err := kubecluster.New(kubecluster.Config{Kubeconfig: kubeconfig, Logger: cfg.Logger})
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				cfg.Cluster = c
			}
			if subnet != "" {
				p, err := netip.ParsePrefix(subnet)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--capture-subnet: %w", err)}
				}
				cfg.CaptureSubnet = p
			}
			err = localmesh.Run(cmd.Context(), cfg)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfg.Dir, "file", "f", "", "mesh directory: Istio YAML and zmesh.dev Workloads (default: ./examples/quickstart in a checkout, else the quickstart built into zmesh)")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the control plane's, proxies' and apps' logs on stderr (default: to a log file, named on the controlplane line)")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 0, "lifetime of workload certificates (default: the control plane's, 24h)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "control plane data directory (default: a temporary directory)")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "cluster.local", "mesh trust domain")
	f.StringVar(&cfg.MeshConfig, "mesh-config", "", "Istio MeshConfig YAML for the control plane (extension providers, path normalization, ...)")
	f.BoolVar(&cfg.AccessLog, "access-log", false, "proxies log every request (default: only denied and failed ones)")
	f.BoolVar(&cfg.Capture, "capture", false, "run each app in its own network namespace, its traffic captured by its proxy with no proxy setting (root)")
	f.StringVar(&cfg.CapturePrefix, "capture-prefix", "zmesh", "with --capture: prefix of the network namespaces (PREFIX-NS-NAME), bridge (PREFIX0) and veths created on the host")
	f.StringVar(&subnet, "capture-subnet", "10.47.0.0/24", "with --capture: the bridge's IPv4 subnet (the host takes the first address)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "Kubernetes mode: apply DIR to this cluster and run the mesh against it (see above); the cluster's objects stay when the mesh stops")
	f.DurationVar(&cfg.ReadyWithin, "ready-timeout", 60*time.Second, "how long to wait for every proxy to be ready")
	clockOffsetFlag(f, &cfg.ControlPlaneClockOffset, "the control plane's")
	f.DurationSliceVar(&cfg.ProxyClockOffsets, "proxy-clock-offset", nil, "test hook: shift the proxies' clocks, the i-th workload's by the i-th offset (cycled), e.g. 5m,-5m")
	_ = f.MarkHidden("proxy-clock-offset")
	return cmd
}

// quickstartDir returns the mesh directory `zmesh up` runs without -f: the
// checkout's examples/quickstart when there is one (so that editing it
// works as the README says), else the quickstart built into the binary,
// unpacked into a temporary directory the user may edit.
func quickstartDir() (string, func(), error) {
	const checkout = "examples/quickstart"
	if info, err := os.Stat(checkout); err == nil && info.IsDir() {
		return checkout, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "zmesh-quickstart-")
	if err != nil {
		return "", nil, err
	}
	if err := localmesh.Unpack(examples.Quickstart(), dir); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("up: unpack the built-in quickstart: %w", err)
	}
	fmt.Fprintf(os.Stderr, "zmesh: running the built-in quickstart from %s\n", dir)
	return dir, func() { os.RemoveAll(dir) }, nil
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(data) > 64<<10 {
		data = data[len(data)-64<<10:]
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}

// isExecutable reports whether path is a regular file someone may run.
func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
