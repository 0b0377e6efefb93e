package authn_test

import (
	"fmt"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/config"
)

func ExampleCompilePeer() {
	rs, _, err := config.Parse([]byte(`
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  portLevelMtls:
    8080: {mode: PERMISSIVE}
`), "peer.yaml")
	if err != nil {
		panic(err)
	}
	p := authn.CompilePeer(rs, authn.Workload{Namespace: "foo", Labels: map[string]string{"app": "httpbin"}}, "istio-system")
	for _, port := range []uint32{8000, 8080} {
		fmt.Printf("port %d: %s (%s)\n", port, p.Mode(port), p.Source(port))
	}
	// Output:
	// port 8000: STRICT (istio-system/default)
	// port 8080: PERMISSIVE (foo/httpbin)
}
