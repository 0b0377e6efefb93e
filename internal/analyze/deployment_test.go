package analyze

import (
	"slices"
	"strings"
	"testing"
)

func TestDeploymentServices(t *testing.T) {
	ns := func(labels string) string {
		return "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns, labels: " + labels + "}"
	}
	deploy := func(kind, meta, tmplMeta, containers string) string {
		return "apiVersion: apps/v1\nkind: " + kind + "\nmetadata: {name: d, namespace: ns" + meta + "}\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a" + tmplMeta + "}}\n    spec: {containers: [" + containers + "]}"
	}
	app := "{name: app, image: app:1}"
	svc := func(name, nsName, selector, ports string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + nsName + "}\nspec: {selector: " + selector + ", ports: [" + ports + "]}"
	}
	conflict := []string{svc("s1", "ns", "{app: a}", "{name: tcp, port: 53}"), svc("s2", "ns", "{app: a}", "{name: udp, port: 53, protocol: UDP}")}
	const want53 = "Warning [IST0116] (Deployment ns/d) This deployment d is associated with multiple services using port 53 but different protocols: [ns/s1 ns/s2]"
	cases := []struct {
		name string
		docs []string
		want []string
	}{
		{"in an injected namespace", append([]string{ns("{istio-injection: enabled}"), deploy("Deployment", "", "", app)}, conflict...), []string{want53}},
		{"an unknown namespace is not injected", append([]string{deploy("Deployment", "", "", app)}, conflict...), nil},
		{"a namespace labelled otherwise", append([]string{ns("{istio-injection: disabled}"), deploy("Deployment", "", "", app)}, conflict...), nil},
		{"an istio-proxy container puts it in the mesh", append([]string{deploy("Deployment", "", "", app+", {name: istio-proxy, image: proxyv2}")}, conflict...), []string{want53}},
		{"the template's inject label decides before the namespace", append([]string{ns("{istio-injection: enabled}"), deploy("Deployment", "", ", sidecar.istio.io/inject: 'false'", app)}, conflict...), nil},
		{"the template's inject label opts in", append([]string{deploy("Deployment", "", ", sidecar.istio.io/inject: 'true'", app)}, conflict...), []string{want53}},
		{"a waypoint is skipped", append([]string{ns("{istio-injection: enabled}"), deploy("Deployment", ", labels: {gateway.istio.io/managed: istio.io-mesh-controller}", "", app)}, conflict...), nil},
		{"a StatefulSet is not checked, as Istio", append([]string{ns("{istio-injection: enabled}"), deploy("StatefulSet", "", "", app)}, conflict...), nil},
		{"Istio: one Service with TCP and UDP on one port conflicts with itself",
			[]string{ns("{istio-injection: enabled}"), deploy("Deployment", "", "", app), svc("dns", "ns", "{app: a}", "{name: tcp-dns, port: 53}, {name: udp-dns, port: 53, protocol: UDP}")},
			[]string{"Warning [IST0116] (Deployment ns/d) This deployment d is associated with multiple services using port 53 but different protocols: [ns/dns ns/dns]"}},
		{"Services of another namespace do not count",
			[]string{ns("{istio-injection: enabled}"), deploy("Deployment", "", "", app), svc("s1", "ns", "{app: a}", "{name: tcp, port: 53}"), svc("s2", "other", "{app: a}", "{name: udp, port: 53, protocol: UDP}")}, nil},
		{"one targetPort from two ports",
			[]string{ns("{istio-injection: enabled}"), deploy("Deployment", "", "", app), svc("s1", "ns", "{app: a}", "{name: http, port: 80, targetPort: 8080}"), svc("s2", "ns", "{app: a}", "{name: http, port: 81, targetPort: 8080}")},
			[]string{`Warning [IST0137] (Deployment ns/d) This deployment d is associated with multiple services [ns/s1 ns/s2] using targetPort "8080" but different ports: [80 81].`}},
		{"one targetPort from one port is fine",
			[]string{ns("{istio-injection: enabled}"), deploy("Deployment", "", "", app), svc("s1", "ns", "{app: a}", "{name: http, port: 80, targetPort: 8080}"), svc("s2", "ns", "{app: a}", "{name: http, port: 80, targetPort: 8080}")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := append(messagesOf(t, "IST0116", false, tc.docs...), messagesOf(t, "IST0137", false, tc.docs...)...)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
