package localmesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zmesh/zmesh/internal/capture"
	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/fdstore"
	"github.com/zmesh/zmesh/internal/meshdir"
)

// Config configures a local mesh. Binary is the zmesh executable that the
// mesh starts as control plane, proxies and built-in apps.
type Config struct {
	Dir         string        // mesh directory: Istio YAML plus zmesh.dev Workloads
	DataDir     string        // control plane data (CA); a temporary directory when empty
	CertTTL     time.Duration // workload certificate lifetime; 0 = control plane default (24h)
	TrustDomain string        // default cluster.local
	Binary      string        // path of the zmesh binary
	// ProxyBinary, when set, is what the proxies run: the data-plane
	// build (bin/zmesh-proxy), which links no control plane or
	// Kubernetes code and so maps half the pages. Empty: Binary.
	ProxyBinary string
	Out         io.Writer // contract lines (DESIGN §5)
	Logs        io.Writer // children's logs, line-prefixed
	Logger      *slog.Logger
	ReadyWithin time.Duration // how long to wait for every proxy to be ready; default 60s
	MeshConfig  string        // Istio MeshConfig YAML for the control plane; optional
	AccessLog   bool          // proxies log every request, not only denied and failed ones
	// Capture runs each app in its own network namespace with its traffic
	// redirected to its proxy (DESIGN §5 `zmesh up --capture`); root only.
	Capture bool
	// CapturePrefix and CaptureSubnet name and address the pod network
	// (podnet.Config); two captured meshes on one host need different ones.
	CapturePrefix string
	CaptureSubnet netip.Prefix
	// StateFile, when set, is where Run records the mesh's addresses
	// (State) once it is ready; it is removed when Run returns.
	StateFile string
	// LogFile names the file Logs writes to, when it is one, so that the
	// output says where to look (the controlplane line's logs= field).
	LogFile string
	// Hints prints ready-to-paste commands after `zmesh: ready`.
	Hints bool
	// TokenIssuer writes a bootstrap token for ns/sa using the control
	// plane's data directory (the `zmesh token create` logic). Not used
	// with a Cluster.
	TokenIssuer func(dataDir, namespace, serviceAccount string, ttl time.Duration) (string, error)
	// Cluster, when set, is Kubernetes mode (DESIGN §5 `zmesh up
	// --kubeconfig`): Dir is applied to the cluster first, the control
	// plane reads its config from the cluster and registers its injection
	// webhook there, and every proxy authenticates with a service-account
	// token from the cluster instead of a bootstrap token.
	Cluster Cluster

	// ControlPlaneClockOffset and ProxyClockOffsets are test hooks for
	// clock skew (docs/reliability.md): the control plane runs with its
	// clock offset by the first, the i-th workload's proxy by
	// ProxyClockOffsets[i % len], so one machine can hold a CA and
	// proxies that disagree about the time. Zero: the machine's clock.
	ControlPlaneClockOffset time.Duration
	ProxyClockOffsets       []time.Duration
}

// proxyClockOffset returns the clock offset of the i-th workload's proxy.
func (c Config) proxyClockOffset(i int) time.Duration {
	if len(c.ProxyClockOffsets) == 0 {
		return 0
	}
	return c.ProxyClockOffsets[i%len(c.ProxyClockOffsets)]
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("localmesh: mesh directory is required")
	}
	if c.Binary == "" {
		return errors.New("localmesh: zmesh binary path is required")
	}
	if c.TokenIssuer == nil && c.Cluster == nil {
		return errors.New("localmesh: token issuer is required")
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logs == nil {
		c.Logs = os.Stderr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(c.Logs, nil))
	}
	if c.ReadyWithin == 0 {
		c.ReadyWithin = 60 * time.Second
	}
	return nil
}

// member is one workload with the ports it was given.
type member struct {
	Workload
	app, inbound, outbound, admin string
	// tunnel is the proxy's HBONE listener, on the inbound's host.
	tunnel      string
	workloadAPI string // unix socket path of the SPIFFE Workload API
	netns       string // capture: the pod's network namespace
	podIP       netip.Addr
}

// Run starts the mesh, prints its contract lines, and keeps every process
// running until ctx is done; then it stops them all (proxies and apps
// first, the control plane last) and returns.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	workloads, err := meshdir.Load(cfg.Dir)
	if err != nil {
		return err
	}
	// The control plane refuses to start on a directory it cannot load;
	// say why now rather than after its restarts time out.
	if _, _, err := filesource.Load(cfg.Dir); err != nil {
		return fmt.Errorf("localmesh: %w", err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return err
	}
	if cfg.Cluster != nil {
		if err := prepareCluster(ctx, cfg, dir, workloads); err != nil {
			return err
		}
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "zmesh-up-"); err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
	} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
		// The control plane in Kubernetes mode only writes its bundle
		// file there, into a directory that must exist.
		return fmt.Errorf("localmesh: data directory: %w", err)
	}
	ports, err := freePorts(3 + 5*len(workloads))
	if err != nil {
		return err
	}
	grpcAddr, cpAdmin, webhook := ports[0], ports[1], ports[len(ports)-1]
	var pods *podNetwork
	if cfg.Capture {
		// A gateway gets no pod: it runs on the host, as Istio's run
		// without interception, where its clients reach its ports.
		var inPods []Workload
		for _, w := range workloads {
			if w.Gateway == nil {
				inPods = append(inPods, w)
			}
		}
		if pods, err = startPodNetwork(ctx, cfg, inPods); err != nil {
			return err
		}
		defer pods.destroy(cfg)
		// The pods reach the control plane on the host's side of the bridge.
		if grpcAddr, err = pods.gatewayPort(); err != nil {
			return err
		}
	}
	// Unix socket paths are limited to 108 bytes: keep them short, in a
	// directory of their own under the system temp dir.
	sockDir, err := os.MkdirTemp("", "zm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(sockDir)
	members := make([]member, len(workloads))
	pod := 0
	for i, w := range workloads {
		p := ports[2+5*i:]
		members[i] = member{Workload: w, app: p[0], inbound: p[1], outbound: p[2], admin: p[3], tunnel: p[4],
			workloadAPI: filepath.Join(sockDir, w.Namespace+"."+w.Name, "workload.sock")}
		switch {
		case pods == nil:
		case w.Gateway != nil:
			// The pods' proxies reach its inbound (an egress gateway's
			// mesh port) on the host's side of the bridge.
			if members[i].inbound, err = pods.gatewayPort(); err != nil {
				return err
			}
		default:
			pods.podMember(&members[i], pod)
			pod++
		}
	}

	cp, err := controlPlaneProcess(cfg, dir, dataDir, grpcAddr, cpAdmin, webhook)
	if err != nil {
		return err
	}

	// The control plane runs in its own context so that it outlives the
	// proxies during shutdown.
	cpCtx, stopCP := context.WithCancel(context.Background())
	var cpDone sync.WaitGroup
	cpDone.Go(func() { cp.supervise(cpCtx, 5*time.Second) })
	defer func() { stopCP(); cpDone.Wait() }()

	if err := waitControlPlane(ctx, dataDir, cpAdmin, 30*time.Second); err != nil {
		return err
	}
	cpLine := fmt.Sprintf("zmesh: controlplane grpc=%s data=%s admin=%s ui=http://%s/", grpcAddr, dataDir, cpAdmin, cpAdmin)
	if cfg.Cluster != nil {
		cpLine += " webhook=" + webhook
	}
	if cfg.LogFile != "" {
		cpLine += " logs=" + cfg.LogFile
	}
	fmt.Fprintln(cfg.Out, cpLine)

	var wg sync.WaitGroup
	defer wg.Wait()
	// Whatever way Run returns, what wg owns is stopped before it waits.
	ctx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var kubeTokenFiles map[string]string
	if cfg.Cluster != nil {
		kt := &kubeTokens{cluster: cfg.Cluster, dir: filepath.Join(dataDir, "tokens"), cfg: &cfg}
		if cfg.Capture {
			kt.owner = &[2]int{capture.DefaultProxyUID, capture.DefaultProxyUID}
		}
		if kubeTokenFiles, err = kt.start(ctx, &wg, members); err != nil {
			return err
		}
	}
	var pairs []workloadProcs
	for i, m := range members {
		tokenFile, ok := kubeTokenFiles[m.Key()]
		if !ok {
			if tokenFile, err = writeToken(cfg, dataDir, m); err != nil {
				return err
			}
		}
		proxy := proxyProcess(cfg, m, grpcAddr, dataDir, tokenFile)
		var app *process
		if m.Gateway == nil {
			app = appProcess(cfg, m)
		}
		if off := cfg.proxyClockOffset(i); off != 0 {
			proxy.argv = append(proxy.argv, "--clock-offset", off.String())
		}
		if pods != nil && m.Gateway == nil {
			if err := shareWithProxy(dataDir, sockDir, m, tokenFile); err != nil {
				return fmt.Errorf("localmesh: files for %s's proxy: %w", m.Key(), err)
			}
			proxy.argv = pods.proxyArgv(m, proxy.argv)
			app.argv = pods.appArgv(m, app.argv)
			// No proxy setting: the app's traffic is captured.
			app.env = []string{"PORT=" + strconv.Itoa(podAppPort), "ZMESH_WORKLOAD=" + m.Key(),
				"ZMESH_PROXY_ADMIN=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(podAdmin)),
				"HTTP_PROXY=", "http_proxy=", "HTTPS_PROXY=", "https_proxy=", "ALL_PROXY=", "all_proxy="}
		}
		pairs = append(pairs, workloadProcs{proxy: proxy, app: app, admin: m.admin})
	}
	for _, wp := range pairs {
		wg.Go(func() { wp.run(ctx) })
	}

	for _, m := range members {
		if m.Gateway != nil {
			line := fmt.Sprintf("zmesh: gateway %s inbound=%s admin=%s", m.Key(), m.inbound, m.admin)
			if ports := gatewayPortsFlag(m.Gateway); ports != "" {
				line += " ports=" + ports
			}
			fmt.Fprintln(cfg.Out, line)
			continue
		}
		line := fmt.Sprintf("zmesh: workload %s app=%s inbound=%s admin=%s outbound=%s workloadapi=unix://%s",
			m.Key(), m.app, m.inbound, m.admin, m.outbound, m.workloadAPI)
		if m.netns != "" {
			line += " netns=" + m.netns
		}
		line += " tunnel=" + m.tunnel
		fmt.Fprintln(cfg.Out, line)
	}
	if err := waitReady(ctx, members, cfg.ReadyWithin); err != nil {
		return err
	}
	fmt.Fprintln(cfg.Out, "zmesh: ready")
	if cfg.StateFile != "" {
		st := &State{PID: os.Getpid(), ControlPlaneGRPC: grpcAddr, ControlPlaneAdmin: cpAdmin, DataDir: dataDir, MeshDir: dir, LogFile: cfg.LogFile}
		if cfg.Cluster != nil {
			st.Kubeconfig = cfg.Cluster.Kubeconfig()
		}
		for _, m := range members {
			if m.Gateway != nil {
				continue
			}
			st.Workloads = append(st.Workloads, StateWorkload{Name: m.Name, Namespace: m.Namespace, Labels: m.Labels,
				App: m.app, Inbound: m.inbound, Outbound: m.outbound, Admin: m.admin})
		}
		if err := writeState(cfg.StateFile, st); err != nil {
			cfg.Logger.Warn("cannot record the mesh's state; zmesh proxy-status will need --controlplane-admin", "file", cfg.StateFile, "err", err)
		} else {
			defer os.Remove(cfg.StateFile)
		}
	}
	if cfg.Hints {
		writeHints(cfg.Out, cfg, dir, members)
	}
	<-ctx.Done()
	return nil
}

// controlPlaneProcess is the control plane: on dir, or, in Kubernetes
// mode, on the cluster, with its injection webhook at webhook registered
// there with a url client config (the mesh config is then the cluster's
// ConfigMap, which prepareCluster wrote).
func controlPlaneProcess(cfg Config, dir, dataDir, grpcAddr, admin, webhook string) (*process, error) {
	argv := []string{cfg.Binary, "controlplane", "--data-dir", dataDir,
		"--listen", grpcAddr, "--admin", admin,
		"--trust-domain", cfg.TrustDomain}
	if cfg.Cluster != nil {
		argv = append(argv, "--kubeconfig", cfg.Cluster.Kubeconfig(), "--webhook", webhook, "--webhook-register", "url")
	} else {
		argv = append(argv, "--config-dir", dir)
	}
	if cfg.CertTTL > 0 {
		argv = append(argv, "--cert-ttl", cfg.CertTTL.String())
	}
	if cfg.ControlPlaneClockOffset != 0 {
		argv = append(argv, "--clock-offset", cfg.ControlPlaneClockOffset.String())
	}
	if cfg.MeshConfig != "" && cfg.Cluster == nil {
		mc, err := filepath.Abs(cfg.MeshConfig)
		if err != nil {
			return nil, err
		}
		argv = append(argv, "--mesh-config", mc)
	}
	return &process{name: "controlplane", argv: argv, logs: cfg.Logs, log: cfg.Logger}, nil
}

// writeToken issues m's bootstrap token into a 0600 file of the data
// directory and returns its path. A week: the token only bootstraps a proxy
// of this run (and its restarts); renewals authenticate with the mesh
// certificate.
func writeToken(cfg Config, dataDir string, m member) (string, error) {
	tok, err := cfg.TokenIssuer(dataDir, m.Namespace, m.ServiceAccount, 7*24*time.Hour)
	if err != nil {
		return "", fmt.Errorf("localmesh: token for %s: %w", m.Key(), err)
	}
	path := filepath.Join(dataDir, "tokens", m.Namespace+"."+m.Name+".token")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(tok), 0o600)
}

func proxyProcess(cfg Config, m member, grpcAddr, dataDir, tokenFile string) *process {
	labels := make([]string, 0, len(m.Labels))
	for k, v := range m.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	bin := cfg.Binary
	if cfg.ProxyBinary != "" {
		bin = cfg.ProxyBinary
	}
	if m.Gateway != nil {
		return gatewayProcess(cfg, m, bin, grpcAddr, dataDir, tokenFile, labels)
	}
	argv := []string{bin, "proxy",
		"--controlplane", grpcAddr,
		"--root-cert", filepath.Join(dataDir, "root-cert.pem"),
		"--token-file", tokenFile,
		"--name", m.Name, "--namespace", m.Namespace, "--service-account", m.ServiceAccount,
		"--trust-domain", cfg.TrustDomain,
		"--app", m.app, "--inbound", m.inbound, "--outbound", m.outbound, "--admin", m.admin,
		"--tunnel", m.tunnel,
		"--workload-api-socket", m.workloadAPI,
		"--app-probers", appProbers(m),
	}
	if cfg.AccessLog {
		argv = append(argv, "--access-log")
	}
	if len(labels) > 0 {
		argv = append(argv, "--labels", strings.Join(labels, ","))
	}
	if len(m.Services) > 0 {
		argv = append(argv, "--services", strings.Join(m.Services, ","))
	}
	return &process{name: m.Key() + " proxy", argv: argv, logs: cfg.Logs, log: cfg.Logger, store: fdstore.NewStore(cfg.Logger)}
}

// gatewayProcess is the proxy of a gateway workload: `zmesh proxy
// --gateway`, no app; its Gateways' ports at 127.0.0.1:PORT unless the
// workload maps them elsewhere.
func gatewayProcess(cfg Config, m member, bin, grpcAddr, dataDir, tokenFile string, labels []string) *process {
	argv := []string{bin, "proxy", "--gateway",
		"--controlplane", grpcAddr,
		"--root-cert", filepath.Join(dataDir, "root-cert.pem"),
		"--token-file", tokenFile,
		"--name", m.Name, "--namespace", m.Namespace, "--service-account", m.ServiceAccount,
		"--trust-domain", cfg.TrustDomain,
		"--inbound", m.inbound, "--outbound", m.outbound, "--admin", m.admin,
		"--workload-api-socket", m.workloadAPI,
		"--gateway-host", "127.0.0.1",
	}
	if ports := gatewayPortsFlag(m.Gateway); ports != "" {
		argv = append(argv, "--gateway-port", ports)
	}
	if cd := m.Gateway.CredentialDir; cd != "" {
		if !filepath.IsAbs(cd) {
			cd = filepath.Join(cfg.Dir, cd)
		}
		if abs, err := filepath.Abs(cd); err == nil {
			cd = abs
		}
		argv = append(argv, "--credential-dir", cd)
	}
	for _, d := range m.Gateway.CertFileDirs {
		if !filepath.IsAbs(d) {
			d = filepath.Join(cfg.Dir, d)
		}
		argv = append(argv, "--cert-file-dir", d)
	}
	if cfg.AccessLog {
		argv = append(argv, "--access-log")
	}
	if len(labels) > 0 {
		argv = append(argv, "--labels", strings.Join(labels, ","))
	}
	if len(m.Services) > 0 {
		argv = append(argv, "--services", strings.Join(m.Services, ","))
	}
	return &process{name: m.Key() + " gateway", argv: argv, logs: cfg.Logs, log: cfg.Logger, store: fdstore.NewStore(cfg.Logger)}
}

// gatewayPortsFlag is g's ports as --gateway-port's value, by port.
func gatewayPortsFlag(g *GatewaySpec) string {
	nums := make([]int, 0, len(g.Ports))
	for n := range g.Ports {
		nums = append(nums, int(n))
	}
	sort.Ints(nums)
	var parts []string
	for _, n := range nums {
		parts = append(parts, strconv.Itoa(n)+"="+g.Ports[uint32(n)])
	}
	return strings.Join(parts, ",")
}

func appProcess(cfg Config, m member) *process {
	_, port, _ := net.SplitHostPort(m.app)
	argv := make([]string, len(m.Command))
	for i, a := range m.Command {
		argv[i] = strings.ReplaceAll(a, "$(PORT)", port)
	}
	if argv[0] == "zmesh" {
		argv[0] = cfg.Binary
	}
	proxyURL := "http://" + m.outbound
	env := []string{"PORT=" + port, "HTTP_PROXY=" + proxyURL, "http_proxy=" + proxyURL,
		"ZMESH_WORKLOAD=" + m.Key(), "ZMESH_PROXY_ADMIN=" + m.admin}
	return &process{name: m.Key() + " app", argv: argv, env: env, logs: cfg.Logs, log: cfg.Logger}
}

// freePorts reserves n distinct loopback ports. They are released before
// use, so another program could take one in between; on a developer
// machine that is rare, and the process supervisor would retry.
func freePorts(n int) ([]string, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("localmesh: reserve port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

func waitControlPlane(ctx context.Context, dataDir, admin string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		_, statErr := os.Stat(filepath.Join(dataDir, "root-cert.pem"))
		if statErr == nil && httpOK("http://"+admin+"/ready") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localmesh: control plane not ready after %s", within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitReady waits until every proxy is ready (it holds a certificate and
// has applied config), its app accepts connections, and it knows the
// endpoints of every service of the mesh, so that the first request after
// `zmesh: ready` cannot miss a route.
func waitReady(ctx context.Context, members []member, within time.Duration) error {
	deadline := time.Now().Add(within)
	var want []string
	for _, m := range members {
		for _, s := range m.Services {
			want = append(want, s+"."+m.Namespace+".svc.") // any DNS domain
		}
	}
	pending := map[string]member{}
	for _, m := range members {
		pending[m.Key()] = m
	}
	for len(pending) > 0 {
		for k, m := range pending {
			admin := m.admin
			// A gateway has no app to be ready.
			if httpOK("http://"+admin+"/ready") && (m.Gateway != nil || httpOK("http://"+admin+appReadyz)) && knowsServices(admin, want) {
				delete(pending, k)
			}
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			keys := make([]string, 0, len(pending))
			for k := range pending {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return fmt.Errorf("localmesh: proxies not ready after %s: %s", within, strings.Join(keys, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// knowsServices reports whether the proxy's applied config (its admin
// /debug/config) has an endpoint for every hostname prefix in want.
func knowsServices(admin string, want []string) bool {
	resp, err := probe.Get("http://" + admin + "/debug/config")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var cfg struct {
		Services []struct {
			Hostname  string            `json:"hostname"`
			Endpoints []json.RawMessage `json:"endpoints"`
		} `json:"services"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&cfg) != nil {
		return false
	}
	for _, w := range want {
		found := false
		for _, s := range cfg.Services {
			if strings.HasPrefix(s.Hostname, w) && len(s.Endpoints) > 0 {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

var probe = &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}

func httpOK(url string) bool {
	resp, err := probe.Get(url)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
