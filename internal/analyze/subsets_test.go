package analyze

import (
	"slices"
	"strings"
	"testing"
)

func TestSubsets(t *testing.T) {
	dr := func(ns, host, subsets string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: " + ns + "}\nspec: {host: " + host + ", subsets: [" + subsets + "]}"
	}
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {selector: {app: s}, ports: [{name: http, port: 80}]}"
	notSelecting := func(ns, subset string) string {
		return "Error [IST0173] (DestinationRule " + ns + "/dr) The Subset " + subset + " defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream)."
	}
	cases := []struct {
		name string
		docs []string
		want []string
	}{
		{"without known workloads nothing is checked",
			[]string{svc, dr("a", "s", "{name: v9, labels: {version: v9}}")}, nil},
		{"Istio: a workload of any namespace counts",
			[]string{svc, podDoc("p", "b", "{version: v1}"), dr("a", "s", "{name: v1, labels: {version: v1}}")}, nil},
		{"Istio: a Kubernetes Service's selector does not narrow its subsets",
			[]string{svc, podDoc("p", "a", "{app: other, version: v1}"), dr("a", "s", "{name: v1, labels: {version: v1}}")}, nil},
		{"all of a subset's labels must match",
			[]string{svc, podDoc("p", "a", "{version: v1}"), dr("a", "s", "{name: v1, labels: {version: v1, track: canary}}")},
			[]string{notSelecting("a", "v1")}},
		{"a subset without labels selects every workload",
			[]string{svc, podDoc("p", "a", "{app: s}"), dr("a", "s", "{name: all}")}, nil},
		{"a host Istio's lookup does not find is left to IST0174",
			[]string{podDoc("p", "a", "{app: s}"), dr("a", "nowhere", "{name: v1, labels: {version: v1}}")}, nil},
		{"a subset on a node's hostname is not checked",
			[]string{svc, podDoc("p", "a", "{app: s}"), dr("a", "s", "{name: n1, labels: {kubernetes.io/hostname: node-1}}")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := messagesOf(t, "IST0173", false, tc.docs...)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
