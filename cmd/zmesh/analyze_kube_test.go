package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/zmesh/zmesh/internal/kubecrd"
	"github.com/zmesh/zmesh/internal/kubetest"
)

// TestAnalyzeKubernetes: `zmesh analyze --kubernetes` reads the cluster's
// resources and finds what the same YAML from files gives (an
// AuthorizationPolicy naming a namespace the cluster does not have), plus
// what only a cluster tells (namespaces not labelled for injection), and
// no longer the first once that namespace exists.
func TestAnalyzeKubernetes(t *testing.T) {
	c := kubetest.New(t)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kubecrd.Apply(ctx, dyn); err != nil {
		t.Fatal(err)
	}
	const denyAll = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: foo}
spec:
  action: DENY
  rules:
  - from:
    - source: {namespaces: ["bar"]}
`
	applyIstioYAML(t, c, dyn, []byte(denyAll))
	notFound := `Error [IST0101] (AuthorizationPolicy foo/deny-all) Referenced namespace not found: "bar"` + "\n"
	notInjected := `Info [IST0102] (Namespace foo) The namespace is not enabled for Istio injection.`
	out, errOut, code := runAnalyze(t, "", "--kubernetes", "--kubeconfig", c.Kubeconfig)
	if !strings.Contains(out, notFound) || !strings.Contains(out, notInjected) || code != 79 {
		t.Fatalf("out=%q code=%d stderr=%q, want %q, %q and 79", out, code, errOut, notFound, notInjected)
	}
	applyIstioYAML(t, c, dyn, []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec: {}\n"))
	if out, errOut, _ := runAnalyze(t, "", "--kubernetes", "--kubeconfig", c.Kubeconfig); strings.Contains(out, "IST0101") {
		t.Errorf("with namespace bar: out=%q stderr=%q, want no IST0101", out, errOut)
	}
	if _, _, code := runAnalyze(t, "", "--kubernetes", "--kubeconfig", c.Kubeconfig, "-f", "x.yaml"); code != 2 {
		t.Errorf("--kubernetes with -f: code %d, want 2", code)
	}
}
