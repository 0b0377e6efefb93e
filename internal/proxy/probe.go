package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The kubelet probes an app on the app's own port, which a STRICT inbound
// refuses (the kubelet has no mesh certificate). Istio's injector
// therefore rewrites each HTTP (and gRPC, TCP) probe into an HTTP GET on
// the agent's port, /app-health/CONTAINER/livez|readyz|startupz, and
// gives the agent the original probes as JSON (ISTIO_KUBE_APP_PROBERS);
// the agent performs the original probe against the app, from inside the
// pod, and answers with its outcome. AppProbers is that JSON, in Istio's
// format, so that an injector written for Istio's works unchanged:
//
//	{"/app-health/web/livez":   {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP",
//	                                         "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
//	                             "timeoutSeconds": 1},
//	 "/app-health/web/readyz":  {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1},
//	 "/app-health/web/startupz": {"grpc": {"port": 9090, "service": "ready"}}}
type AppProbers map[string]*Prober

// Prober is one original probe: exactly one of HTTPGet, TCPSocket and
// GRPC, with the Kubernetes field names.
type Prober struct {
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC      *GRPCAction      `json:"grpc,omitempty"`
	// TimeoutSeconds bounds the probe; default 1, the kubelet's.
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
}

// HTTPGetAction is Kubernetes' httpGet probe. Host is accepted and
// ignored: the probe always goes to this pod's app, where the proxy
// delivers the app's traffic, so a probe cannot make the proxy call
// another host.
type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        ProbePort    `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"` // HTTP (default) or HTTPS
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

// HTTPHeader is one header an httpGet probe sends.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TCPSocketAction is Kubernetes' tcpSocket probe: success when the port
// accepts a connection.
type TCPSocketAction struct {
	Port ProbePort `json:"port"`
	Host string    `json:"host,omitempty"` // ignored, as HTTPGetAction.Host
}

// GRPCAction is Kubernetes' grpc probe: the gRPC health service's Check,
// success when it answers SERVING.
type GRPCAction struct {
	Port    int32   `json:"port"`
	Service *string `json:"service,omitempty"`
}

// ProbePort is a probe's port: a number, or a numeric string (Kubernetes'
// IntOrString). Named ports must be resolved to numbers by whoever writes
// the JSON (Istio's injector does), since the proxy does not see the
// pod's container ports.
type ProbePort uint16

// UnmarshalJSON accepts 8080 and "8080".
func (p *ProbePort) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %s: not a port number (named ports must be resolved to numbers)", b)
	}
	*p = ProbePort(n)
	return nil
}

// appHealthPath is the form of a rewritten probe's path, as Istio's.
var appHealthPath = regexp.MustCompile(`^/app-health/[^/]+/(livez|readyz|startupz)$`)

// Bounds on what ParseAppProbers accepts: a pod has a few containers with
// three probes each.
const (
	maxAppProbersBytes = 64 << 10
	maxAppProbers      = 256
	maxProbeTimeout    = 10 * time.Minute
	defaultProbeWait   = time.Second
	// maxProbeBody is what is read of an app's probe answer, as the
	// kubelet's 10 kB: only its status matters.
	maxProbeBody = 10 << 10
)

// ParseAppProbers parses and checks Istio's ISTIO_KUBE_APP_PROBERS JSON.
// Empty input means no probes.
func ParseAppProbers(data []byte) (AppProbers, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return AppProbers{}, nil
	}
	if len(data) > maxAppProbersBytes {
		return nil, fmt.Errorf("proxy: app probers: larger than %d bytes", maxAppProbersBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ap AppProbers
	if err := dec.Decode(&ap); err != nil {
		return nil, fmt.Errorf("proxy: app probers: %w", err)
	}
	if dec.More() {
		return nil, errors.New("proxy: app probers: trailing data after the JSON object")
	}
	if len(ap) > maxAppProbers {
		return nil, fmt.Errorf("proxy: app probers: %d probes, at most %d", len(ap), maxAppProbers)
	}
	paths := make([]string, 0, len(ap))
	for path := range ap {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		if err := ap[path].validate(path); err != nil {
			return nil, fmt.Errorf("proxy: app probers: %s: %w", path, err)
		}
	}
	return ap, nil
}

func (pr *Prober) validate(path string) error {
	if !appHealthPath.MatchString(path) {
		return errors.New("path is not /app-health/CONTAINER/livez|readyz|startupz")
	}
	if pr == nil {
		return errors.New("null probe")
	}
	n := 0
	if pr.HTTPGet != nil {
		n++
		switch pr.HTTPGet.Scheme {
		case "", "HTTP", "HTTPS":
		default:
			return fmt.Errorf("scheme %q: want HTTP or HTTPS", pr.HTTPGet.Scheme)
		}
		if pr.HTTPGet.Port == 0 {
			return errors.New("httpGet: port is required")
		}
		if p := pr.HTTPGet.Path; p != "" && p[0] != '/' {
			return fmt.Errorf("httpGet: path %q does not start with /", p)
		}
		for _, h := range pr.HTTPGet.HTTPHeaders {
			if !validHeaderName(h.Name) || !validHeaderValue(h.Value) {
				return fmt.Errorf("httpGet: header %q: invalid name or value", h.Name)
			}
		}
	}
	if pr.TCPSocket != nil {
		n++
		if pr.TCPSocket.Port == 0 {
			return errors.New("tcpSocket: port is required")
		}
	}
	if pr.GRPC != nil {
		n++
		if pr.GRPC.Port <= 0 || pr.GRPC.Port > 65535 {
			return fmt.Errorf("grpc: port %d out of range", pr.GRPC.Port)
		}
	}
	if n != 1 {
		return fmt.Errorf("%d probe kinds; want exactly one of httpGet, tcpSocket, grpc", n)
	}
	if pr.TimeoutSeconds < 0 || time.Duration(pr.TimeoutSeconds)*time.Second > maxProbeTimeout {
		return fmt.Errorf("timeoutSeconds %d out of range", pr.TimeoutSeconds)
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte("\"(),/:;<=>?@[\\]{}"), c) >= 0 {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func (pr *Prober) timeout() time.Duration {
	if pr.TimeoutSeconds <= 0 {
		return defaultProbeWait
	}
	return time.Duration(pr.TimeoutSeconds) * time.Second
}

// SetAppProbers installs the app's probes served on /app-health/...; the
// latest call wins. Probes go to the host of Config.AppAddr (where the
// proxy delivers the app's traffic) on each probe's own port.
func (p *Proxy) SetAppProbers(ap AppProbers) {
	p.lifecycle().probers.Store(&ap)
}

// serveAppHealth performs the original probe registered for the request's
// path and answers with its outcome: the app's status code for an HTTP
// probe (the kubelet counts 200-399 as success), 200 or 500 for TCP and
// gRPC probes, 500 when the app cannot be reached in time, 404 for a path
// no probe was registered for.
func (p *Proxy) serveAppHealth(w http.ResponseWriter, r *http.Request) {
	var pr *Prober
	if ap := p.lifecycle().probers.Load(); ap != nil {
		pr = (*ap)[r.URL.Path]
	}
	if pr == nil {
		writeText(w, http.StatusNotFound, "no probe registered for "+r.URL.Path+"\n")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), pr.timeout())
	defer cancel()
	code, err := p.runProbe(ctx, pr, r)
	if err != nil {
		p.log.Info("app probe failed", "probe", r.URL.Path, "err", err)
		writeText(w, http.StatusInternalServerError, "probe failed: "+err.Error()+"\n")
		return
	}
	writeText(w, code, http.StatusText(code)+"\n")
}

// runProbe performs pr against the app and returns the status to answer.
func (p *Proxy) runProbe(ctx context.Context, pr *Prober, r *http.Request) (int, error) {
	host := p.appHost()
	switch {
	case pr.HTTPGet != nil:
		return httpProbe(ctx, host, pr.HTTPGet, r)
	case pr.TCPSocket != nil:
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(pr.TCPSocket.Port))))
		if err != nil {
			return 0, err
		}
		c.Close()
		return http.StatusOK, nil
	case pr.GRPC != nil:
		return grpcProbe(ctx, net.JoinHostPort(host, strconv.Itoa(int(pr.GRPC.Port))), pr.GRPC)
	}
	return 0, errors.New("empty probe")
}

// appHost is the host probes go to: the app address's, or loopback when
// the app listens on every address.
func (p *Proxy) appHost() string {
	host, _, err := net.SplitHostPort(p.cfg.AppAddr)
	if err != nil || host == "" {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() == nil {
			return "::1"
		}
		return "127.0.0.1"
	}
	return host
}

// probeTransport makes each probe a fresh connection, as the kubelet
// does, never through a proxy from the environment, and, like the
// kubelet, without verifying an HTTPS app's certificate (a probe asks
// whether the app is alive, not who it is).
var probeTransport = &http.Transport{
	Proxy:             nil,
	DisableKeepAlives: true,
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
	DialContext:       (&net.Dialer{}).DialContext,
}

// httpProbe sends the original GET. Of the caller's headers only
// User-Agent and Accept are passed on (the kubelet's kube-probe/VERSION
// and its Accept): the admin port is not authenticated, and any other
// header, an X-Forwarded-Client-Cert above all, must not reach the app
// from there. The probe's own headers are sent as configured, Host
// included.
func httpProbe(ctx context.Context, host string, a *HTTPGetAction, in *http.Request) (int, error) {
	scheme := "http"
	if a.Scheme == "HTTPS" {
		scheme = "https"
	}
	path := a.Path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, strconv.Itoa(int(a.Port)))+path, nil)
	if err != nil {
		return 0, err
	}
	for _, k := range []string{"User-Agent", "Accept"} {
		if v := in.Header.Values(k); len(v) > 0 {
			req.Header[k] = v
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "zmesh-probe")
	}
	for _, h := range a.HTTPHeaders {
		if http.CanonicalHeaderKey(h.Name) == "Host" {
			req.Host = h.Value
			continue
		}
		req.Header.Set(h.Name, h.Value)
	}
	client := &http.Client{
		Transport: probeTransport,
		// A redirect is answered as is: its status counts as success
		// for the kubelet, and following it could leave the pod.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// grpcProbe calls the gRPC health service's Check on addr: 200 when the
// service is SERVING, an error otherwise.
func grpcProbe(ctx context.Context, addr string, a *GRPCAction) (int, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	req := &healthpb.HealthCheckRequest{}
	if a.Service != nil {
		req.Service = *a.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, req)
	if err != nil {
		return 0, err
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return 0, fmt.Errorf("health status %s", st)
	}
	return http.StatusOK, nil
}
