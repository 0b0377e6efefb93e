package analyze

import (
	"slices"
	"testing"
)

func TestApplicationUID(t *testing.T) {
	pod := func(labels, spec string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns, labels: " + labels + "}\nspec: " + spec
	}
	deploy := func(labels, spec string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: ns, labels: " + labels + "}\nspec: {template: {metadata: {labels: {app: a}}, spec: " + spec + "}}"
	}
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"a pod's securityContext", pod("{app: a}", "{securityContext: {runAsUser: 1337}, containers: [{name: app, image: a}]}"), []string{"Warning [IST0144] (Pod ns/p) User ID (UID) 1337 is reserved for the sidecar proxy."}},
		{"a container's, once however many", pod("{app: a}", "{containers: [{name: a, image: a, securityContext: {runAsUser: 1337}}, {name: b, image: b, securityContext: {runAsUser: 1337}}]}"), []string{"Warning [IST0144] (Pod ns/p) User ID (UID) 1337 is reserved for the sidecar proxy."}},
		{"the proxy's own container", pod("{app: a}", "{containers: [{name: istio-proxy, image: p, securityContext: {runAsUser: 1337}}]}"), nil},
		{"an init container is not read, as Istio", pod("{app: a}", "{initContainers: [{name: init, image: i, securityContext: {runAsUser: 1337}}], containers: [{name: a, image: a}]}"), nil},
		{"another user", pod("{app: a}", "{securityContext: {runAsUser: 1000}, containers: [{name: a, image: a}]}"), nil},
		{"the control plane's pod", pod("{istio: pilot}", "{securityContext: {runAsUser: 1337}, containers: [{name: a, image: a}]}"), nil},
		{"a Deployment's template", deploy("{app: a}", "{containers: [{name: a, image: a, securityContext: {runAsUser: 1337}}]}"), []string{"Warning [IST0144] (Deployment ns/d) User ID (UID) 1337 is reserved for the sidecar proxy."}},
		{"a Deployment labelled release=istio", deploy("{release: istio}", "{securityContext: {runAsUser: 1337}, containers: [{name: a, image: a}]}"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := messagesOf(t, "IST0144", false, tc.doc); !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}
