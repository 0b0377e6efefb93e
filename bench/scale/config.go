package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// mesh is the shape of the simulated mesh: which namespace, app label and
// identity each simulated proxy has, and what the config directory holds.
// Everything the benchmark expects (which proxies a change selects) is
// computed from it, not observed.
type mesh struct {
	proxies    int
	namespaces int
	apps       int // app labels per namespace, each with its own AuthorizationPolicy
	services   int // proxies (the first ones) that register a service
}

func (m mesh) namespace(ns int) string { return fmt.Sprintf("ns-%04d", ns) }

// proxy returns where proxy i lives: namespace index, app index, name.
func (m mesh) proxy(i int) (ns int, app int, name string) {
	return i % m.namespaces, (i / m.namespaces) % m.apps, fmt.Sprintf("p-%05d", i)
}

// selected reports whether the edited policy (app-0 of the first
// namespace) selects proxy i.
func (m mesh) selected(i int) bool {
	ns, app, _ := m.proxy(i)
	return ns == 0 && app == 0
}

// writeConfig writes one file per namespace plus the root namespace's
// mesh-wide PeerAuthentication. version is the path prefix in the edited
// policy (v1 at start, v2 after the change).
func (m mesh) writeConfig(dir string) error {
	root := `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`
	if err := os.WriteFile(filepath.Join(dir, "root.yaml"), []byte(root), 0o644); err != nil {
		return err
	}
	for ns := range m.namespaces {
		if err := os.WriteFile(m.file(dir, ns), []byte(m.namespaceYAML(ns, "v1")), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (m mesh) file(dir string, ns int) string {
	return filepath.Join(dir, m.namespace(ns)+".yaml")
}

// edit rewrites the first namespace's file with app-0's policy changed
// (path prefix v2), atomically, as an editor or a GitOps sync would.
func (m mesh) edit(dir string) error {
	tmp := filepath.Join(dir, ".edit.tmp")
	if err := os.WriteFile(tmp, []byte(m.namespaceYAML(0, "v2")), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, m.file(dir, 0))
}

// editedPolicy is the key of the policy edit changes, and editedPath the
// path it allows after the change.
func (m mesh) editedPolicy() string { return m.namespace(0) + "/app-0" }

const editedPath = "/v2/*"

// namespaceYAML is one namespace's policies: a namespace-wide
// PeerAuthentication and AuthorizationPolicy, and one AuthorizationPolicy
// per app label. In namespace 0, app-0's paths start with version.
func (m mesh) namespaceYAML(ns int, version string) string {
	name := m.namespace(ns)
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: %[1]s}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: same-namespace, namespace: %[1]s}
spec:
  action: ALLOW
  rules:
  - from: [{source: {namespaces: [%[1]s, istio-system]}}]
`, name)
	for app := range m.apps {
		v := "v1"
		if ns == 0 && app == 0 {
			v = version
		}
		fmt.Fprintf(&b, `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: app-%[2]d, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: app-%[2]d}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/%[1]s/sa/client-%[2]d"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/%[3]s/*", "/healthz"]}}]
    when: [{key: "request.headers[x-tenant]", values: ["%[1]s"]}]
`, name, app, v)
	}
	return b.String()
}
