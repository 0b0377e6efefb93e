package localmesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/zmesh/zmesh/internal/capture"
	"github.com/zmesh/zmesh/internal/capture/podnet"
	"github.com/zmesh/zmesh/internal/registry"
)

// In a pod network every workload has its own addresses, so each gets
// Istio's fixed ports.
const (
	podAppPort = 8080
	podAdmin   = 15020
)

// appDroppedCaps are taken from an app's capability bounding set in a pod
// network: with them a root app could rewrite its namespace's rules
// (net_admin), leave the namespace (sys_admin), become the proxy's UID
// and so escape capture (setuid, setgid), or reach into the proxy
// (sys_ptrace). It keeps root's ownership of files.
const appDroppedCaps = "-net_admin,-net_raw,-sys_admin,-setuid,-setgid,-setpcap,-sys_ptrace,-sys_module,-bpf,-perfmon,-sys_rawio"

// podNetwork is the capture side of a local mesh: the pod network and the
// tools that run processes in it.
type podNetwork struct {
	cfg     podnet.Config
	net     podnet.Network
	ip      string // the ip command, for `ip netns exec`
	setpriv string // util-linux setpriv, to drop the apps' capabilities
}

// checkCapture says what `zmesh up --capture` lacks, before anything
// starts.
func checkCapture() (ipCmd, setpriv string, err error) {
	if os.Geteuid() != 0 {
		return "", "", errors.New("localmesh: --capture needs root: it creates network namespaces, links and redirect rules (run it with sudo)")
	}
	if ipCmd, err = exec.LookPath("ip"); err != nil {
		return "", "", errors.New("localmesh: --capture needs the ip command (iproute2) to run apps in their network namespaces")
	}
	if setpriv, err = exec.LookPath("setpriv"); err != nil {
		return "", "", errors.New("localmesh: --capture needs setpriv (util-linux) to run apps without the capabilities that would let them escape capture")
	}
	return ipCmd, setpriv, nil
}

// startPodNetwork creates a pod network for ws (removing what a killed
// run left first) and installs every pod's capture rules, so that no app
// ever runs uncaptured. The caller must call destroy.
func startPodNetwork(ctx context.Context, cfg Config, ws []Workload) (*podNetwork, error) {
	ipCmd, setpriv, err := checkCapture()
	if err != nil {
		return nil, err
	}
	pc := podnet.Config{Prefix: cfg.CapturePrefix, Subnet: cfg.CaptureSubnet, DNSDomain: "cluster.local"}
	if err := pc.Validate(); err != nil {
		return nil, err
	}
	pws := make([]podnet.Workload, len(ws))
	for i, w := range ws {
		pws[i] = podnet.Workload{Namespace: w.Namespace, Name: w.Name}
	}
	n, err := podnet.Plan(pc, pws)
	if err != nil {
		return nil, err
	}
	if err := podnet.Create(ctx, pc, n, cfg.Logger); err != nil {
		return nil, err
	}
	p := &podNetwork{cfg: pc, net: n, ip: ipCmd, setpriv: setpriv}
	for _, pod := range n.Pods {
		if err := capture.Apply(ctx, capture.Config{NetNS: filepath.Join("/run/netns", pod.NetNS)}); err != nil {
			p.destroy(cfg)
			return nil, fmt.Errorf("localmesh: capture rules for %s: %w", pod.NetNS, err)
		}
	}
	return p, nil
}

func (p *podNetwork) destroy(cfg Config) {
	if err := podnet.Destroy(p.cfg, cfg.Logger); err != nil {
		cfg.Logger.Error("pod network not fully removed", "err", err)
	}
}

// gatewayPort returns a free address on the host's side of the bridge,
// where the pods reach the control plane.
func (p *podNetwork) gatewayPort() (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(p.net.Gateway.Addr().String(), "0"))
	if err != nil {
		return "", fmt.Errorf("localmesh: reserve a port on %s: %w", p.net.Gateway.Addr(), err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// podMember gives m the addresses of its pod: app, inbound and admin on
// the pod's IP as the host and other pods see them, outbound on the pod's
// own loopback.
func (p *podNetwork) podMember(m *member, i int) {
	pod := p.net.Pods[i]
	ip := pod.IP.String()
	m.netns = pod.NetNS
	m.podIP = pod.IP
	m.app = net.JoinHostPort(ip, strconv.Itoa(podAppPort))
	m.inbound = net.JoinHostPort(ip, strconv.Itoa(capture.DefaultInboundPort))
	m.admin = net.JoinHostPort(ip, strconv.Itoa(podAdmin))
	m.tunnel = net.JoinHostPort(ip, strconv.Itoa(registry.DefaultTunnelPort))
	m.outbound = net.JoinHostPort("127.0.0.1", strconv.Itoa(capture.DefaultOutboundPort))
}

// proxyArgv runs the workload's proxy in its pod: it installs the capture
// rules again (a no-op when in place, a repair otherwise), drops to the
// proxy's UID (losing every capability), and advertises the app's pod address, where the pod's
// rules hand mesh connections to its inbound side as Istio's do.
func (p *podNetwork) proxyArgv(m member, argv []string) []string {
	local := net.JoinHostPort("127.0.0.1", strconv.Itoa(podAppPort))
	argv = append(argv, "--capture",
		"--app", local, "--advertise", m.app,
		"--inbound", net.JoinHostPort("0.0.0.0", strconv.Itoa(capture.DefaultInboundPort)),
		"--tunnel", net.JoinHostPort("0.0.0.0", strconv.Itoa(registry.DefaultTunnelPort)),
		"--admin", net.JoinHostPort("0.0.0.0", strconv.Itoa(podAdmin)),
		// The host's tools (zmesh up, proxy-status, the web view) read
		// the admin listener from the bridge's host address; the other
		// pods, on the same bridge, must not.
		"--admin-allow", netip.PrefixFrom(p.net.Gateway.Addr(), p.net.Gateway.Addr().BitLen()).String(),
		"--outbound", m.outbound)
	// no_new_privs: once the proxy has dropped root, no setuid binary
	// can give it back.
	return append([]string{p.ip, "netns", "exec", m.netns, p.setpriv, "--no-new-privs"}, argv...)
}

// appArgv runs argv in the workload's pod, without the capabilities that
// would let it undo or escape capture.
func (p *podNetwork) appArgv(m member, argv []string) []string {
	return append([]string{p.ip, "netns", "exec", m.netns, p.setpriv, "--bounding-set", appDroppedCaps, "--no-new-privs"}, argv...)
}

// shareWithProxy lets the proxy, which drops to capture.DefaultProxyUID,
// read its token and the trust bundle and create its Workload API socket:
// the data and socket directories become traversable (not listable), and
// the token file and socket directory become the proxy's.
func shareWithProxy(dataDir, sockDir string, m member, tokenFile string) error {
	uid, gid := capture.DefaultProxyUID, capture.DefaultProxyUID
	for _, d := range []string{dataDir, filepath.Dir(tokenFile), sockDir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	if err := os.Chown(tokenFile, uid, gid); err != nil {
		return err
	}
	wdir := filepath.Dir(m.workloadAPI)
	if err := os.MkdirAll(wdir, 0o700); err != nil {
		return err
	}
	return os.Chown(wdir, uid, gid)
}
