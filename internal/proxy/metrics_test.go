package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// scrape returns the admin /metrics text of p.
func scrape(t testing.TB, p *testProxy) string {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + p.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// counter sums the samples of name whose label set contains every one of
// the comma-separated label pairs in labels.
func counter(t testing.TB, p *testProxy, name, labels string) float64 {
	t.Helper()
	var sum float64
	for _, l := range strings.Split(scrape(t, p), "\n") {
		rest, ok := strings.CutPrefix(l, name+"{")
		if !ok {
			continue
		}
		set, val, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		match := true
		for _, want := range strings.Split(labels, ",") {
			if !strings.Contains(","+set+",", ","+want+",") {
				match = false
			}
		}
		if match {
			v, _ := strconv.ParseFloat(val, 64)
			sum += v
		}
	}
	return sum
}

func TestMetricsLabels(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+allowFrontend)
	for range 3 {
		if code, _ := get(t, p.http, "http://backend.api.svc.cluster.local/"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	common := `destination_principal="spiffe://cluster.local/ns/api/sa/backend",destination_service="backend.api.svc.cluster.local",destination_workload="backend",destination_workload_namespace="api",source_principal="spiffe://cluster.local/ns/web/sa/frontend",source_workload="frontend",source_workload_namespace="web",connection_security_policy="mutual_tls",response_code="200",request_protocol="http"`
	if got := counter(t, p.server, "istio_requests_total", `reporter="destination",`+common); got != 3 {
		t.Errorf("server istio_requests_total = %v, want 3\n%s", got, scrape(t, p.server))
	}
	if got := counter(t, p.client, "istio_requests_total", `reporter="source",`+common); got != 3 {
		t.Errorf("client istio_requests_total = %v, want 3\n%s", got, scrape(t, p.client))
	}
	if got := counter(t, p.server, "istio_request_duration_milliseconds_count", `reporter="destination",response_code="200"`); got != 3 {
		t.Errorf("duration count = %v", got)
	}
	for _, name := range []string{"istio_request_bytes_count", "istio_response_bytes_count"} {
		if got := counter(t, p.server, name, `reporter="destination"`); got != 3 {
			t.Errorf("%s = %v", name, got)
		}
	}
	if got := counter(t, p.server, "zmesh_config_version_info", `version="s1"`); got != 1 {
		t.Errorf("config version info = %v", got)
	}
	if !strings.Contains(scrape(t, p.server), "zmesh_cert_expiry_timestamp_seconds ") {
		t.Error("no certificate expiry metric")
	}
}

func TestMetricsDenied(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: api}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
`)
	if code, body := get(t, p.http, "http://backend.api.svc.cluster.local/admin/x"); code != 403 || body != "RBAC: access denied" {
		t.Fatalf("got %d %q", code, body)
	}
	if got := counter(t, p.server, "zmesh_authz_denied_total", `policy="api/deny-admin"`); got != 1 {
		t.Errorf("zmesh_authz_denied_total = %v", got)
	}
	if got := counter(t, p.server, "istio_requests_total", `reporter="destination",response_code="403",response_flags="RBAC"`); got != 1 {
		t.Errorf("denied request not counted with 403")
	}
}

func TestDebugEndpoints(t *testing.T) {
	p := newPair(t, strictMesh+"---\n"+allowFrontend)
	var cfg debugConfig
	getJSON(t, "http://"+p.server.AdminAddr().String()+"/debug/config", &cfg)
	if cfg.Version != "s1" || len(cfg.AuthorizationPolicies) != 1 || cfg.AuthorizationPolicies[0] != "api/allow-frontend" || cfg.PeerAuthentication.Mode != "STRICT" {
		t.Errorf("server /debug/config: %+v", cfg)
	}
	getJSON(t, "http://"+p.client.AdminAddr().String()+"/debug/config", &cfg)
	if len(cfg.Services) != 1 || cfg.Services[0].Hostname != "backend.api.svc.cluster.local" {
		t.Errorf("client /debug/config services: %+v", cfg.Services)
	}
	var certs map[string]string
	getJSON(t, "http://"+p.server.AdminAddr().String()+"/debug/certs", &certs)
	if certs["identity"] != "spiffe://cluster.local/ns/api/sa/backend" {
		t.Errorf("/debug/certs: %v", certs)
	}
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

func TestLargeBodiesStreamAndAreMeasured(t *testing.T) {
	p := newPair(t, strictMesh)
	const size = 3 << 20
	// Unknown length (chunked), so the proxies count what they forward.
	req, _ := http.NewRequest("POST", "http://backend.api.svc.cluster.local/up?size="+strconv.Itoa(size), io.NopCloser(strings.NewReader(strings.Repeat("a", size))))
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n != size || resp.Header.Get("X-Received") != strconv.Itoa(size) {
		t.Fatalf("status %d, got %d bytes, app received %s", resp.StatusCode, n, resp.Header.Get("X-Received"))
	}
	for _, tp := range []*testProxy{p.client, p.server} {
		if got := counter(t, tp, "istio_request_bytes_sum", `response_code="200"`); got != size {
			t.Errorf("%s istio_request_bytes_sum = %v, want %d", tp.reg.Name, got, size)
		}
		if got := counter(t, tp, "istio_response_bytes_sum", `response_code="200"`); got != size {
			t.Errorf("%s istio_response_bytes_sum = %v, want %d", tp.reg.Name, got, size)
		}
	}
}
