package config_test

import (
	"fmt"

	"github.com/zmesh/zmesh/internal/config"
)

func ExampleLoad() {
	files := map[string][]byte{
		"mesh.yaml": []byte(`
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`),
		"bad.yaml": []byte(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-post, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {method: [POST]}}]
`),
	}
	_, _, err := config.Load(files)
	fmt.Println(err)

	delete(files, "bad.yaml")
	snap, _, err := config.Load(files)
	fmt.Println(len(snap.List(config.KindPeerAuthentication)), err)
	// Output:
	// config: bad.yaml#1: AuthorizationPolicy foo/deny-post: spec.rules[0].to[0].operation: unknown field "method" (did you mean "methods"?)
	// 1 <nil>
}
