package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/zmesh/zmesh/internal/capture"
	"github.com/zmesh/zmesh/internal/dnsproxy"
	"github.com/zmesh/zmesh/internal/fdstore"
	"github.com/zmesh/zmesh/internal/proxy"
	"github.com/zmesh/zmesh/internal/sidecar"
)

func proxyCmd() *cobra.Command {
	var cfg sidecar.Config
	var labels, services, resolvConf, appProbers string
	var adminAllow, gatewayPorts, certFileDirs []string
	var captureOn, gateway bool
	var gatewayHost string
	var captureConfig func() (capture.Config, error)
	var clockOffset time.Duration
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
			// A connection the kernel redirected (capture rules installed
			// here or by `zmesh capture-init`) is routed by its original
			// destination; one that was not is served as before.
			cfg.OriginalDst = capture.OriginalDst
			if captureOn && cfg.DNSAddr == "" {
				cfg.DNSAddr = proxy.DefaultDNSAddr
			}
			if cfg.DNSAddr != "" && len(cfg.DNSUpstreams) == 0 {
				ups, err := dnsproxy.ResolvConf(resolvConf)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--dns-upstream not given and %w", err)}
				}
				cfg.DNSUpstreams = ups
			}
			for _, a := range adminAllow {
				p, err := netip.ParsePrefix(a)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--admin-allow: %w", err)}
				}
				cfg.AdminAllow = append(cfg.AdminAllow, p.Masked())
			}
			if appProbers == "" {
				// What Istio's injector sets on the sidecar container.
				appProbers = os.Getenv("ISTIO_KUBE_APP_PROBERS")
			}
			if cfg.AppProbers, err = proxy.ParseAppProbers([]byte(appProbers)); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--app-probers: %w", err)}
			}
			if gateway {
				gc, err := parseGatewayPorts(gatewayPorts)
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				gc.Host = gatewayHost
				for _, d := range certFileDirs {
					abs, err := filepath.Abs(d)
					if err != nil {
						return &exitError{code: 2, err: fmt.Errorf("--cert-file-dir: %w", err)}
					}
					gc.CertFileDirs = append(gc.CertFileDirs, abs)
				}
				cfg.Gateway = gc
				if !cmd.Flags().Changed("outbound") {
					// Not served by a gateway; bound anywhere free so
					// that it collides with no sidecar's.
					cfg.OutboundAddr = "127.0.0.1:0"
				}
			} else if len(gatewayPorts) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("--gateway-port needs --gateway")}
			}
			cfg.Logger = newLogger(slog.LevelInfo)
			if clockOffset != 0 {
				cfg.Clock = offsetClock(clockOffset)
				cfg.Logger.Warn("clock offset in force (test hook): the agent's and the proxy's notion of now is shifted", "offset", clockOffset.String())
			}
			if captureOn {
				cc, err := captureConfig()
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				if err := capture.Setup(cmd.Context(), cc); err != nil {
					return err
				}
				cfg.Logger.Info("capture rules installed", "uid", os.Geteuid(), "gid", os.Getegid())
			}
			// Listeners a supervisor kept from this proxy's previous
			// process (zmesh up, a systemd socket unit), and the store
			// to hand this one's to: a restart refuses no connection.
			lns, err := fdstore.Open(cfg.Logger)
			if err != nil {
				return err
			}
			defer lns.Close()
			cfg.Listeners = lns
			// GOGC, when set, is the operator's choice over the proxy's
			// own GC target.
			if _, set := os.LookupEnv("GOGC"); set {
				cfg.GCPercent = -1
			}
			return sidecar.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&captureOn, "capture", false, "install transparent capture rules in this network namespace first (needs root or CAP_NET_ADMIN), then run as --proxy-uid/--proxy-gid")
	captureConfig = captureFlags(f)
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
	f.StringVar(&cfg.TunnelAddr, "tunnel", "", "HBONE tunnel listener (Istio's 15008): client proxies carry their TCP streams to this workload as HTTP/2 CONNECT on one mTLS connection; advertised on the --advertise host (empty: none, a connection per stream)")
	f.StringVar(&cfg.OutboundAddr, "outbound", "127.0.0.1:15001", "outbound listener (the app's HTTP proxy)")
	f.StringVar(&cfg.AdminAddr, "admin", "127.0.0.1:15020", "admin listener: /metrics /ready /debug/config /debug/certs /quitquitquit /app-health/...; keep it on loopback where others can reach the host (an injected pod has it on 127.0.0.1:15000)")
	f.StringSliceVar(&adminAllow, "admin-allow", nil, "when set, the admin listener serves only loopback and these networks (CIDR, comma-separated): for an admin address others can reach, such as a pod's")
	f.StringVar(&cfg.HealthAddr, "health", "", `health listener serving only GET /healthz/ready (200 when ready, else 503), for the kubelet: e.g. 0.0.0.0:15021 in a pod; "" none`)
	f.StringVar(&cfg.AppHealthAddr, "app-health", "", `listener serving only the app's rewritten probes /app-health/..., for the kubelet: e.g. 0.0.0.0:15020 in a pod; "" none`)
	f.StringVar(&cfg.AdvertiseAddr, "advertise", "", "address other proxies reach the inbound listener at (default --inbound)")
	f.StringVar(&cfg.WorkloadAPISocket, "workload-api-socket", "", "serve the SPIFFE Workload API on this unix socket")
	f.StringVar(&cfg.SDSSocket, "sds-socket", "", "serve Envoy SDS (default, ROOTCA) on this unix socket")
	f.StringVar((*string)(&cfg.KeyType), "key-type", "ECDSA-P256", "workload key type: ECDSA-P256, RSA-2048 or RSA-3072")
	f.BoolVar(&cfg.AccessLog, "access-log", false, "log every request (default: only denied, failed, audited and dry-run ones)")
	f.StringVar(&cfg.DNSAddr, "dns", "", "answer DNS on this address, UDP and TCP (mesh names; the rest forwarded); "+proxy.DefaultDNSAddr+" under capture")
	f.StringSliceVar(&cfg.DNSUpstreams, "dns-upstream", nil, "resolvers to forward other names to, host:port (default: the nameservers of --resolv-conf)")
	f.StringVar(&cfg.CredentialDir, "credential-dir", "", "where a DestinationRule's tls.credentialName NAME is found: DIR/NAME/{tls.crt,tls.key,ca.crt} (or cert, key, cacert), as a Secret mounted there")
	f.StringVar(&resolvConf, "resolv-conf", "/etc/resolv.conf", "where the default DNS upstreams are read from")
	f.DurationVar(&cfg.ProtocolDetectionTimeout, "protocol-detection-timeout", proxy.DefaultProtocolDetection, "how long a captured or plaintext connection may stay silent before it is relayed as TCP (server-first protocols)")
	f.DurationVar(&cfg.DrainDuration, "drain-duration", sidecar.DefaultDrainDuration, "on SIGTERM or POST /quitquitquit: how long in-flight requests, TCP streams and upgraded (WebSocket) connections may take before the proxy closes them and exits")
	f.BoolVar(&cfg.KeepStartupPages, "keep-startup-pages", false, "keep mapped the pages of this binary that only the start used; by default they are given back 2 s after the first configuration (they stay in the page cache, and whatever runs later is mapped back on first use)")
	f.BoolVar(&gateway, "gateway", false, "run a gateway (Istio's ingress or egress gateway) instead of a sidecar: no app; it serves the ports of the Gateways whose selector matches --labels, routed by the VirtualServices bound to them, with TLS from --credential-dir")
	f.StringSliceVar(&gatewayPorts, "gateway-port", nil, "with --gateway: serve a Gateway server's port at another address, PORT=HOST:PORT (e.g. 443=0.0.0.0:8443), comma-separated or repeated; other ports are served at --gateway-host:PORT, except privileged ones (below 1024), which are then not served")
	f.StringSliceVar(&certFileDirs, "cert-file-dir", nil, "with --gateway: a directory whose files Gateway servers' serverCertificate, privateKey and caCertificates may name (e.g. /etc/istio/ingressgateway-certs), repeated or comma-separated; a path outside them, or a symbolic link out of them, is refused; none: such servers refuse TLS")
	f.StringVar(&gatewayHost, "gateway-host", "0.0.0.0", "with --gateway: where Gateway ports without a --gateway-port address are bound")
	clockOffsetFlag(f, &clockOffset, "the agent's and the proxy's")
	f.StringVar(&appProbers, "app-probers", "", `the app's original probes as Istio's ISTIO_KUBE_APP_PROBERS JSON, served on the admin port as /app-health/CONTAINER/livez|readyz|startupz (default: $ISTIO_KUBE_APP_PROBERS)`)
	return cmd
}

// captureInitCmd is what a Kubernetes init container runs: it installs
// the capture rules in the pod's network namespace and exits, leaving the
// proxy to run without any privilege.
func captureInitCmd() *cobra.Command {
	var remove bool
	var netnsPath string
	var captureConfig func() (capture.Config, error)
	cmd := &cobra.Command{
		Use:   "capture-init",
		Short: "Install (or --remove) the transparent capture rules of this network namespace, then exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc, err := captureConfig()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			cc.NetNS = netnsPath
			if remove {
				return capture.Remove(cmd.Context(), cc.NetNS)
			}
			return capture.Apply(cmd.Context(), cc)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&remove, "remove", false, "remove the rules instead")
	captureConfig = captureFlags(f)
	f.StringVar(&netnsPath, "netns", "", "network namespace to act on, as a path (/run/netns/NAME); default: this process's")
	return cmd
}

// captureFlags adds the flags of Istio's traffic annotations
// (traffic.sidecar.istio.io/...) to f and returns the function that turns
// them into a capture.Config once parsed.
func captureFlags(f *pflag.FlagSet) func() (capture.Config, error) {
	var cc capture.Config
	var inPorts, exInPorts, exOutPorts, inRanges, exRanges string
	f.Uint32Var(&cc.ProxyUID, "proxy-uid", capture.DefaultProxyUID, "the proxy's UID: its traffic is not captured")
	f.Uint32Var(&cc.ProxyGID, "proxy-gid", capture.DefaultProxyUID, "the proxy's GID: its traffic is not captured")
	f.Uint32Var(&cc.ProxyMark, "proxy-mark", 0, "also exempt sockets with this mark (SO_MARK); 0: none")
	f.StringVar(&inPorts, "include-inbound-ports", "*", `inbound ports to capture, comma-separated; "*" all, "" none`)
	f.StringVar(&exInPorts, "exclude-inbound-ports", "", "inbound ports never captured, comma-separated (the proxy's own 15008,15020,15021,15090 always are)")
	f.StringVar(&exOutPorts, "exclude-outbound-ports", "", "outbound destination ports never captured, comma-separated")
	f.StringVar(&inRanges, "include-outbound-ip-ranges", "*", `outbound destinations to capture, CIDRs comma-separated; "*" all, "" none`)
	f.StringVar(&exRanges, "exclude-outbound-ip-ranges", "", "outbound destinations never captured, CIDRs comma-separated")
	f.BoolVar(&cc.NoDNS, "no-capture-dns", false, "leave the app's DNS (port 53) alone instead of sending it to the proxy's DNS port")
	return func() (capture.Config, error) {
		out := cc
		var all bool
		var err error
		if out.IncludeInboundPorts, all, err = capture.ParsePorts(inPorts); err != nil {
			return out, fmt.Errorf("--include-inbound-ports: %w", err)
		}
		if all {
			out.IncludeInboundPorts = nil
		} else if len(out.IncludeInboundPorts) == 0 {
			out.NoInbound = true
		}
		if out.ExcludeInboundPorts, _, err = capture.ParsePorts(exInPorts); err != nil {
			return out, fmt.Errorf("--exclude-inbound-ports: %w", err)
		}
		if out.ExcludeOutboundPorts, _, err = capture.ParsePorts(exOutPorts); err != nil {
			return out, fmt.Errorf("--exclude-outbound-ports: %w", err)
		}
		if out.IncludeOutboundCIDRs, all, err = capture.ParseCIDRs(inRanges); err != nil {
			return out, fmt.Errorf("--include-outbound-ip-ranges: %w", err)
		}
		if all {
			out.IncludeOutboundCIDRs = nil
		} else if len(out.IncludeOutboundCIDRs) == 0 {
			out.NoOutbound = true
		}
		if out.ExcludeOutboundCIDRs, _, err = capture.ParseCIDRs(exRanges); err != nil {
			return out, fmt.Errorf("--exclude-outbound-ip-ranges: %w", err)
		}
		return out, out.Validate()
	}
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

// parseGatewayPorts reads --gateway-port values, PORT=HOST:PORT.
func parseGatewayPorts(vals []string) (*proxy.GatewayConfig, error) {
	gc := &proxy.GatewayConfig{Ports: map[uint32]string{}}
	for _, v := range vals {
		port, addr, ok := strings.Cut(v, "=")
		n, err := strconv.ParseUint(port, 10, 16)
		if !ok || err != nil || n == 0 {
			return nil, fmt.Errorf("--gateway-port: %q is not PORT=HOST:PORT", v)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--gateway-port: %q: %w", v, err)
		}
		if _, dup := gc.Ports[uint32(n)]; dup {
			return nil, fmt.Errorf("--gateway-port: port %d given twice", n)
		}
		gc.Ports[uint32(n)] = addr
	}
	return gc, nil
}

// offsetClock returns a clock that runs d ahead of the machine's (behind
// when d is negative).
func offsetClock(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Add(d) }
}

// clockOffsetFlag adds the hidden --clock-offset test hook to f: it shifts
// whose notion of now, for injecting clock skew between a CA and its
// proxies on one machine (docs/reliability.md). Hidden: nobody should run
// a mesh with it.
func clockOffsetFlag(f *pflag.FlagSet, d *time.Duration, whose string) {
	f.DurationVar(d, "clock-offset", 0, "test hook: shift "+whose+" clock by this much (e.g. 5m, -5m)")
	_ = f.MarkHidden("clock-offset")
}
