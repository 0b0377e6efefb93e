package ui

import (
	"reflect"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

const policiesYAML = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: legacy, namespace: web}
spec:
  selector: {matchLabels: {app: legacy}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {"9000": {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend-allow-frontend, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/web/sa/frontend]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all-web, namespace: web, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-only, namespace: api}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
  action: ALLOW
`

func snapshot(t *testing.T, yaml string) *config.Snapshot {
	t.Helper()
	snap, _, err := config.Load(map[string][]byte{"p.yaml": []byte(yaml)})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

var testWorkloads = []registry.Workload{
	{Name: "backend", Namespace: "api", ServiceAccount: "backend", Labels: map[string]string{"app": "backend"}, Identity: "spiffe://cluster.local/ns/api/sa/backend",
		Address: "127.0.0.1:1001", AdminAddress: "127.0.0.1:2001", HasProxy: true},
	{Name: "frontend", Namespace: "web", ServiceAccount: "frontend", Labels: map[string]string{"app": "frontend"}, Identity: "spiffe://cluster.local/ns/web/sa/frontend",
		Address: "127.0.0.1:1002", AdminAddress: "127.0.0.1:2002", HasProxy: true},
	{Name: "legacy", Namespace: "web", ServiceAccount: "legacy", Labels: map[string]string{"app": "legacy"}, Identity: "spiffe://cluster.local/ns/web/sa/legacy",
		Address: "127.0.0.1:1003", AdminAddress: "127.0.0.1:2003", HasProxy: true},
}

var testMesh = xds.Mesh{TrustDomain: "cluster.local", RootNamespace: "istio-system", DNSDomain: "cluster.local"}

// dest is a series the destination proxy of backend reports.
func dest(src, code, flags, security string, v float64) Series {
	return Series{Reporter: "destination", SourceWorkload: src, SourceNamespace: "web", SourcePrincipal: "spiffe://cluster.local/ns/web/sa/" + src,
		DestinationWorkload: "backend", DestinationNamespace: "api", DestinationPrincipal: "spiffe://cluster.local/ns/api/sa/backend",
		Service: "backend.api.svc.cluster.local", Protocol: "http", Code: code, Flags: flags, Security: security, Value: v}
}

func source(s Series) Series { s.Reporter = "source"; return s }

func TestBuildPolicies(t *testing.T) {
	m := Build(Inputs{Now: time.Unix(1000, 0), Workloads: testWorkloads, Snapshot: snapshot(t, policiesYAML), Mesh: testMesh})
	got := map[string]Policy{}
	for _, p := range m.Policies {
		got[p.Kind+" "+p.Namespace+"/"+p.Name] = p
	}
	for _, tc := range []struct {
		name, key string
		want      Policy
	}{
		{"the mesh-wide PeerAuthentication decides the mode of every workload but the one with its own",
			"PeerAuthentication istio-system/default",
			Policy{Kind: "PeerAuthentication", Namespace: "istio-system", Name: "default", Action: "STRICT", Selects: []string{"api/backend", "web/frontend"}}},
		{"a workload PeerAuthentication decides its workload's mode",
			"PeerAuthentication web/legacy",
			Policy{Kind: "PeerAuthentication", Namespace: "web", Name: "legacy", Action: "PERMISSIVE", Rules: 1, Selects: []string{"web/legacy"}}},
		{"a selector selects only matching workloads of its namespace",
			"AuthorizationPolicy api/backend-allow-frontend",
			Policy{Kind: "AuthorizationPolicy", Namespace: "api", Name: "backend-allow-frontend", Action: "ALLOW", Rules: 1, Selects: []string{"api/backend"}}},
		{"no selector: every workload of its namespace; dry run shown",
			"AuthorizationPolicy web/deny-all-web",
			Policy{Kind: "AuthorizationPolicy", Namespace: "web", Name: "deny-all-web", Action: "DENY", Rules: 1, DryRun: true, Selects: []string{"web/frontend", "web/legacy"}}},
		{"target refs attach to gateways: no workload",
			"AuthorizationPolicy api/gateway-only",
			Policy{Kind: "AuthorizationPolicy", Namespace: "api", Name: "gateway-only", Action: "ALLOW", Selects: []string{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, ok := got[tc.key]; !ok || !reflect.DeepEqual(p, tc.want) {
				t.Errorf("%s = %+v, want %+v", tc.key, p, tc.want)
			}
		})
	}
	modes := map[string]string{}
	for _, w := range m.Workloads {
		modes[w.Key] = w.MTLSMode + " " + w.MTLSPolicy + " " + join(w.PortModes)
	}
	want := map[string]string{"api/backend": "STRICT istio-system/default ", "web/frontend": "STRICT istio-system/default ", "web/legacy": "PERMISSIVE web/legacy 9000=DISABLE"}
	if !reflect.DeepEqual(modes, want) {
		t.Errorf("modes = %v, want %v", modes, want)
	}
}

func join(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out
}

func TestBuildEdges(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t1 := t0.Add(2 * time.Second)
	prev := map[string]Scrape{
		"api/backend": {At: t0, Sample: &Sample{Series: []Series{
			dest("frontend", "200", "-", "mutual_tls", 10),
			dest("stranger", "403", "RBAC", "mutual_tls", 4),
		}}},
	}
	cur := map[string]Scrape{
		"api/backend": {At: t1, Sample: &Sample{Series: []Series{
			dest("frontend", "200", "-", "mutual_tls", 20),
			dest("frontend", "503", "UF", "mutual_tls", 1),
			dest("stranger", "403", "RBAC", "mutual_tls", 8),
			dest("plain", "200", "-", "none", 2),
			dest("plain", "200", "-", "mutual_tls", 3),
		}, Denied: map[string]float64{"": 8}, CertExpiry: 1000 + 3600}},
		"web/frontend": {At: t1, Sample: &Sample{Series: []Series{
			// Counted by backend's proxy too: left out.
			source(dest("frontend", "200", "-", "mutual_tls", 20)),
			// Toward a destination without a proxy: only the source counts it.
			{Reporter: "source", SourceWorkload: "frontend", SourceNamespace: "web", SourcePrincipal: "spiffe://cluster.local/ns/web/sa/frontend",
				DestinationWorkload: "unknown", DestinationNamespace: "unknown", DestinationPrincipal: "unknown", Service: "example.com",
				Protocol: "http", Code: "502", Flags: "-", Security: "none", Value: 5},
		}}},
		"web/legacy": {At: t1, Err: "metrics: admin port unreachable"},
	}
	m := Build(Inputs{Now: t1, Workloads: testWorkloads, Scrapes: cur, Previous: prev, Mesh: testMesh})
	got := map[string]Edge{}
	for _, e := range m.Edges {
		got[e.Source+">"+e.Destination] = e
	}
	if len(got) != len(m.Edges) || len(m.Edges) != 4 {
		t.Fatalf("edges = %+v", m.Edges)
	}
	for _, tc := range []struct {
		name, key                                  string
		requests, denied, errors, rate, deniedRate float64
		security, reporter                         string
	}{
		{"counts and rate over the two readings, 5xx as errors", "web/frontend>api/backend", 21, 0, 1, 5.5, 0, "mutual_tls", "destination"},
		{"RBAC-flagged 403s are denials", "web/stranger>api/backend", 8, 8, 0, 2, 2, "mutual_tls", "destination"},
		{"plaintext and mTLS on one edge is mixed; a new series counts in full", "web/plain>api/backend", 5, 0, 0, 2.5, 0, "mixed", "destination"},
		{"a destination without a proxy comes from the source's report", "web/frontend>example.com", 5, 0, 5, 0, 0, "none", "source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := got[tc.key]
			if !ok {
				t.Fatalf("no edge %s in %+v", tc.key, m.Edges)
			}
			if e.Requests != tc.requests || e.Denied != tc.denied || e.Errors != tc.errors || e.Rate != tc.rate || e.DeniedRate != tc.deniedRate ||
				e.Security != tc.security || e.Reporter != tc.reporter {
				t.Errorf("edge = %+v, want requests %v denied %v errors %v rate %v deniedRate %v security %s reporter %s",
					e, tc.requests, tc.denied, tc.errors, tc.rate, tc.deniedRate, tc.security, tc.reporter)
			}
		})
	}
	byKey := map[string]Workload{}
	for _, w := range m.Workloads {
		byKey[w.Key] = w
	}
	if c := byKey["api/backend"].Cert; c == nil || c.ExpiresIn != 3598 || !c.NotAfter.Equal(time.Unix(4600, 0)) {
		t.Errorf("backend cert = %+v, want expiry at 4600 in 3598s", c)
	}
	if d := byKey["api/backend"].Denied[""]; d != 8 {
		t.Errorf("backend denied = %v", byKey["api/backend"].Denied)
	}
	if e := byKey["web/legacy"].MetricsError; e == "" {
		t.Error("a failed reading is not shown")
	}
}

func TestBuildCounterReset(t *testing.T) {
	t0 := time.Unix(1000, 0)
	prev := map[string]Scrape{"api/backend": {At: t0, Sample: &Sample{Series: []Series{dest("frontend", "200", "-", "mutual_tls", 100)}}}}
	cur := map[string]Scrape{"api/backend": {At: t0.Add(time.Second), Sample: &Sample{Series: []Series{dest("frontend", "200", "-", "mutual_tls", 3)}}}}
	m := Build(Inputs{Now: t0, Workloads: testWorkloads, Scrapes: cur, Previous: prev, Mesh: testMesh})
	if len(m.Edges) != 1 || m.Edges[0].Rate != 3 {
		t.Errorf("after a proxy restart the rate is its new count: %+v", m.Edges)
	}
}

func TestBuildWithoutConfig(t *testing.T) {
	m := Build(Inputs{Now: time.Unix(0, 0), Workloads: testWorkloads, Proxies: []Proxy{{ID: "api/backend", Synced: true, AckedVersion: "v1"}}, Mesh: testMesh})
	if len(m.Policies) != 0 || len(m.Workloads) != 3 {
		t.Fatalf("model = %+v", m)
	}
	w := m.Workloads[0]
	if !w.Connected || !w.Synced || w.ConfigVersion != "v1" || w.MTLSMode != "PERMISSIVE" || m.Workloads[1].Connected {
		t.Errorf("workloads = %+v", m.Workloads)
	}
}
