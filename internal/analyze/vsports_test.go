package analyze

import (
	"slices"
	"strings"
	"testing"
)

// TestDestinationPorts pins how Istio finds the service of a destination
// before it checks the port, case by case.
func TestDestinationPorts(t *testing.T) {
	svc := func(ns, name, exportTo string, ports ...string) string {
		anno := ""
		if exportTo != "" {
			anno = ", annotations: {networking.istio.io/exportTo: '" + exportTo + "'}"
		}
		var ps []string
		for _, p := range ports {
			ps = append(ps, "{name: http-"+p+", port: "+p+"}")
		}
		return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + ns + anno + "}\nspec: {selector: {app: x}, ports: [" + strings.Join(ps, ", ") + "]}"
	}
	se := func(ns, name, host, exportTo string) string {
		exp := ""
		if exportTo != "" {
			exp = ", exportTo: [" + exportTo + "]"
		}
		return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: {hosts: ['" + host + "'], resolution: DNS, location: MESH_EXTERNAL" + exp + ", ports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: http-b, protocol: HTTP}]}"
	}
	vs := func(ns, exportTo, dest string) string {
		exp := ""
		if exportTo != "" {
			exp = "  exportTo: [" + exportTo + "]\n"
		}
		return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: " + ns + "}\nspec:\n  hosts: [front.example.com]\n" + exp + "  http:\n  - route: [{destination: " + dest + "}]"
	}
	required := func(ns, host, ports string) string {
		return "Error [IST0112] (VirtualService " + ns + "/vs) This VirtualService routes to a service \"" + host + "\" that exposes multiple ports [" + ports + "]. Specifying a port in the destination is required to disambiguate."
	}
	cases := []struct {
		name string
		docs []string
		want []string
	}{
		{"a short name is a Service of the VirtualService's namespace",
			[]string{svc("a", "s", "", "80", "81"), vs("a", "", "{host: s}")},
			[]string{required("a", "s", "80 81")}},
		{"name.namespace is not completed, as Istio does not",
			[]string{svc("a", "s", "", "80", "81"), vs("b", "", "{host: s.a}")}, nil},
		{"a Service of one port needs none",
			[]string{svc("a", "s", "", "80"), vs("a", "", "{host: s}")}, nil},
		{"a port the Service has",
			[]string{svc("a", "s", "", "80", "81"), vs("a", "", "{host: s, port: {number: 81}}")}, nil},
		{"a port the Service lacks",
			[]string{svc("a", "s", "", "80", "81"), vs("a", "", "{host: s, port: {number: 82}}")},
			[]string{`Error [IST0101] (VirtualService a/vs) Referenced host:port not found: "s:82"`}},
		{"a Service exported to another namespace is found there",
			[]string{svc("a", "s", "b", "80", "81"), vs("b", "", "{host: s.a.svc.cluster.local}")},
			[]string{required("b", "s.a.svc.cluster.local", "80 81")}},
		{"a Service exported to its namespace is not found from another",
			[]string{svc("a", "s", ".", "80", "81"), vs("b", "", "{host: s.a.svc.cluster.local}")}, nil},
		{"a ServiceEntry exported to its namespace is found there",
			[]string{se("a", "e", "api.example.com", "'.'"), vs("a", "", "{host: api.example.com}")},
			[]string{required("a", "api.example.com", "80 81")}},
		{"a ServiceEntry exported to its namespace is not found from another",
			[]string{se("a", "e", "api.example.com", "'.'"), vs("b", "", "{host: api.example.com}")}, nil},
		{"Istio: a VirtualService exported to a namespace sees what is exported there, not what is exported to its own",
			[]string{se("a", "e", "api.example.com", "c"), se("a", "f", "other.example.com", "b"), vs("b", "c", "{host: api.example.com}"), strings.Replace(vs("b", "c", "{host: other.example.com}"), "name: vs", "name: vs2", 1)},
			[]string{required("b", "api.example.com", "80 81")}},
		{"a wildcard ServiceEntry covers the hosts under it",
			[]string{se("a", "e", "*.example.com", ""), vs("b", "", "{host: api.example.com}")},
			[]string{required("b", "api.example.com", "80 81")}},
		{"a Service replaces a ServiceEntry of the same host",
			[]string{se("a", "e", "s.a.svc.cluster.local", ""), svc("a", "s", "", "80"), vs("a", "", "{host: s}")}, nil},
		{"mirrors are checked",
			[]string{svc("a", "s", "", "80", "81"), svc("a", "one", "", "80"), vs("a", "", "{host: one}}]\n    mirrors: [{destination: {host: s}")},
			[]string{required("a", "s", "80 81")}},
		{"an unknown host is not this check's",
			[]string{vs("a", "", "{host: nowhere.example.com}")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := append(messagesOf(t, "IST0112", false, tc.docs...), messagesOf(t, "IST0101", false, tc.docs...)...)
			var filtered []string
			for _, m := range got {
				if !strings.Contains(m, "Referenced host not found") { // analyzeVirtualServices' business
					filtered = append(filtered, m)
				}
			}
			slices.Sort(filtered)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(filtered, want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(filtered, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
