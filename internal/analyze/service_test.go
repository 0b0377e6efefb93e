package analyze

import (
	"slices"
	"strings"
	"testing"
)

func TestServicePortNames(t *testing.T) {
	svc := func(meta, spec string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns" + meta + "}\nspec: {" + spec + "}"
	}
	const (
		ist0118 = "Info [IST0118] (Service ns/s) Port name foo (port: 80, targetPort: 80) doesn't follow the naming convention of Istio port."
		ist0150 = "Warning [IST0150] (Service ns/s) Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly"
	)
	cases := []struct {
		name string
		doc  string
		want []string
	}{
		{"an unknown name", svc("", "ports: [{name: foo, port: 80}]"), []string{ist0118}},
		{"ExternalName: an unknown name is IST0150", svc("", "type: ExternalName, externalName: x.example.com, ports: [{name: foo, port: 80}]"), []string{ist0150}},
		{"ExternalName: an unnamed port is IST0150", svc("", "type: ExternalName, externalName: x.example.com, ports: [{port: 8081}]"), []string{ist0150}},
		{"ExternalName: tcp with a suffix is fine", svc("", "type: ExternalName, externalName: x.example.com, ports: [{name: tcp-db, port: 80}]"), nil},
		{"ExternalName: tls is fine", svc("", "type: ExternalName, externalName: x.example.com, ports: [{name: tls, port: 443}]"), nil},
		{"a ClusterIP port named tcp is fine", svc("", "ports: [{name: tcp, port: 80}]"), nil},
		{"the control plane's label, in any namespace, even empty", svc(", labels: {istio: ''}", "ports: [{name: foo, port: 80}]"), nil},
		{"release=istio", svc(", labels: {release: istio}", "ports: [{name: foo, port: 80}]"), nil},
		{"app=istiod alone is not the control plane's mark", svc(", labels: {app: istiod}", "ports: [{name: foo, port: 80}]"), []string{ist0118}},
		{"a gateway controller's Service", svc(", labels: {gateway.istio.io/managed: istio.io-gateway-controller}", "ports: [{name: foo, port: 80}]"), nil},
		{"an east-west gateway's Service", svc(", labels: {gateway.istio.io/managed: istio.io-eastwest-controller}", "ports: [{name: foo, port: 80}]"), nil},
		{"a gateway-managed label of another value", svc(", labels: {gateway.istio.io/managed: other}", "ports: [{name: foo, port: 80}]"), []string{ist0118}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := append(messagesOf(t, "IST0118", false, tc.doc), messagesOf(t, "IST0150", false, tc.doc)...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
