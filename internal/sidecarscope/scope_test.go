package sidecarscope_test

import (
	"testing"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/sidecarscope"
)

const sidecars = `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress: [{hosts: ["./*", "istio-system/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: web}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
  egress: [{hosts: ["api/backend.api.svc.cluster.local", "*/*.example.com", "~/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: frontend, namespace: web}
spec:
  workloadSelector: {labels: {app: frontend}}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
  egress: [{hosts: ["*/*"]}]
`

func load(t *testing.T) []config.Resource {
	t.Helper()
	rs, _, err := config.Parse([]byte(sidecars), "sidecars.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := config.Validate(r); err != nil {
			t.Fatal(err)
		}
	}
	return config.NewSnapshot("1", rs).List(config.KindSidecar)
}

func TestSelect(t *testing.T) {
	scs := load(t)
	for _, tc := range []struct {
		ns     string
		labels map[string]string
		want   string
		otp    string
	}{
		{"web", map[string]string{"app": "frontend"}, "web/frontend", "ALLOW_ANY"},
		{"web", map[string]string{"app": "other"}, "web/default", "REGISTRY_ONLY"},
		{"api", nil, "istio-system/default", ""},
	} {
		s := sidecarscope.Select(scs, tc.ns, tc.labels, "istio-system")
		if s == nil || s.Key != tc.want || s.OutboundTrafficPolicy != tc.otp {
			t.Errorf("Select(%s, %v) = %+v, want %s with %q", tc.ns, tc.labels, s, tc.want, tc.otp)
		}
	}
	if s := sidecarscope.Select(scs, "api", nil, "other-root"); s != nil {
		t.Errorf("without a root Sidecar, api got %s", s.Key)
	}
}

func TestAllows(t *testing.T) {
	scs := load(t)
	root := sidecarscope.Select(scs, "api", nil, "istio-system")
	web := sidecarscope.Select(scs, "web", nil, "istio-system")
	for _, tc := range []struct {
		scope       *sidecarscope.Scope
		host, svcNS string
		proxyNS     string
		want        bool
	}{
		{root, "backend.api.svc.cluster.local", "api", "api", true}, // "./*": the proxy's namespace
		{root, "frontend.web.svc.cluster.local", "web", "api", false},
		{root, "istiod.istio-system.svc.cluster.local", "istio-system", "api", true},
		{web, "backend.api.svc.cluster.local", "api", "web", true},
		{web, "BACKEND.api.svc.cluster.local.", "api", "web", true},
		{web, "other.api.svc.cluster.local", "api", "web", false},
		{web, "backend.api.svc.cluster.local", "other", "web", false}, // the name, in another namespace
		{web, "www.example.com", "egress", "web", true},
		{web, "example.com", "egress", "web", false}, // "*.example.com" needs a label more
		{web, "frontend.web.svc.cluster.local", "web", "web", false},
		{nil, "anything", "any", "web", true},
	} {
		if got := tc.scope.Allows(tc.host, tc.svcNS, tc.proxyNS); got != tc.want {
			t.Errorf("%v.Allows(%s in %s, proxy in %s) = %v, want %v", tc.scope, tc.host, tc.svcNS, tc.proxyNS, got, tc.want)
		}
	}
}

func FuzzCheckSidecarHost(f *testing.F) {
	for _, h := range []string{"./*", "*/*.example.com", "~/*", "api/backend", "bad", "/x", "a/", "*/*"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		_ = config.CheckSidecarHost(h)
	})
}
