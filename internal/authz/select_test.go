package authz

import (
	"slices"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
)

// Istio reference, "Authorization Policy": scope is the namespace plus an
// optional selector; the root namespace is mesh-wide.
func TestSelect(t *testing.T) {
	all := []config.Resource{
		ap(t, "istio-system/mesh-wide", `{}`),
		ap(t, "istio-system/mesh-v1", `{"selector":{"matchLabels":{"version":"v1"}}}`),
		ap(t, "foo/ns-wide", `{}`),
		ap(t, "foo/httpbin", `{"selector":{"matchLabels":{"app":"httpbin"}}}`),
		ap(t, "foo/httpbin-v2", `{"selector":{"matchLabels":{"app":"httpbin","version":"v2"}}}`),
		ap(t, "foo/empty-selector", `{"selector":{}}`),
		ap(t, "foo/gateway", `{"targetRefs":[{"kind":"Gateway","group":"gateway.networking.k8s.io","name":"gw"}]}`),
		ap(t, "foo/service", `{"targetRef":{"kind":"Service","group":"","name":"httpbin"}}`),
		ap(t, "bar/other-ns", `{}`),
		ap(t, "bar/other-ns-httpbin", `{"selector":{"matchLabels":{"app":"httpbin"}}}`),
		{Meta: config.Meta{Kind: config.KindPeerAuthentication, Name: "pa", Namespace: "foo"}},
	}
	cases := []struct {
		name string
		w    Workload
		root string
		want []string
	}{
		{"a workload gets mesh-wide, namespace-wide and its selector's policies",
			Workload{Namespace: "foo", Labels: map[string]string{"app": "httpbin", "version": "v1"}}, "istio-system",
			[]string{"istio-system/mesh-wide", "istio-system/mesh-v1", "foo/ns-wide", "foo/httpbin", "foo/empty-selector"}},
		{"a selector needs all its labels",
			Workload{Namespace: "foo", Labels: map[string]string{"app": "httpbin", "version": "v2"}}, "istio-system",
			[]string{"istio-system/mesh-wide", "foo/ns-wide", "foo/httpbin", "foo/httpbin-v2", "foo/empty-selector"}},
		{"a workload without labels gets only unselective policies",
			Workload{Namespace: "foo"}, "istio-system",
			[]string{"istio-system/mesh-wide", "foo/ns-wide", "foo/empty-selector"}},
		{"selectors in other namespaces do not apply",
			Workload{Namespace: "baz", Labels: map[string]string{"app": "httpbin"}}, "istio-system",
			[]string{"istio-system/mesh-wide"}},
		{"another root namespace makes istio-system ordinary",
			Workload{Namespace: "bar", Labels: map[string]string{"app": "httpbin"}}, "mesh-root",
			[]string{"bar/other-ns", "bar/other-ns-httpbin"}},
		{"a policy in the workload's own namespace is selected when that is the root",
			Workload{Namespace: "istio-system", Labels: map[string]string{"version": "v1"}}, "istio-system",
			[]string{"istio-system/mesh-wide", "istio-system/mesh-v1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range Select(all, tc.w, tc.root) {
				got = append(got, r.Key())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Select = %v\nwant     %v", got, tc.want)
			}
		})
	}
}
