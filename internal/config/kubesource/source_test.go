package kubesource_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/config/kubesource"
)

// quickstart is the repository's example mesh.
var quickstart = filepath.Join("..", "..", "..", "examples", "quickstart")

// TestQuickstartSameAsFiles applies the quickstart's Istio YAML through
// the API and checks that the cluster's snapshot holds the same resources,
// with the same version, as the file source gives for the same files; and
// that an object written through v1beta1 appears too, with the same
// content as the same YAML read from a file.
func TestQuickstartSameAsFiles(t *testing.T) {
	e := newEnv(t)
	files, err := filesource.Read(quickstart)
	if err != nil {
		t.Fatal(err)
	}
	fromFiles, _, err := config.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range files {
		e.apply(t, decode(t, data)...)
	}
	const beta = `apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: beta-deny
  namespace: qs-beta
  labels: {team: a}
  annotations: {note: written through v1beta1}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin/*"]}
`
	e.applyYAML(t, beta)

	s := e.run(t, kubesource.Config{})
	ch, cancel := s.Subscribe()
	defer cancel()
	inQuickstart := func(r config.Resource) bool { return r.Namespace == "api" || r.Namespace == "istio-system" }
	snap := waitFor(t, ch, 10*time.Second, "the quickstart and the v1beta1 object", func(s *config.Snapshot) bool {
		_, ok := find(s, config.KindAuthorizationPolicy, "qs-beta/beta-deny")
		n := 0
		for _, r := range s.All() {
			if inQuickstart(r) {
				n++
			}
		}
		return ok && n == len(fromFiles.All())
	})
	var fromCluster []config.Resource
	for _, r := range snap.All() {
		if inQuickstart(r) {
			fromCluster = append(fromCluster, r)
		}
	}
	if got, want := config.Version(fromCluster), fromFiles.Version; got != want {
		t.Errorf("cluster version of the quickstart = %s, file source's = %s", got, want)
	}
	for i, want := range fromFiles.All() {
		got := fromCluster[i]
		if got.Kind != want.Kind || got.Key() != want.Key() || got.APIVersion != want.APIVersion || !proto.Equal(got.Spec, want.Spec) {
			t.Errorf("resource %d: cluster %s %s %s %v, file %s %s %s %v", i, got.Kind, got.APIVersion, got.Key(), got.Spec, want.Kind, want.APIVersion, want.Key(), want.Spec)
		}
	}

	betaFile, _, err := config.Load(map[string][]byte{"beta.yaml": []byte(beta)})
	if err != nil {
		t.Fatal(err)
	}
	want := betaFile.All()[0]
	got, _ := find(snap, config.KindAuthorizationPolicy, "qs-beta/beta-deny")
	if !proto.Equal(got.Spec, want.Spec) || got.Labels["team"] != "a" || got.Annotations["note"] != "written through v1beta1" {
		t.Errorf("v1beta1 object from the cluster = %+v, from a file = %+v", got, want)
	}
	// The apiserver serves every version of the kind with the same
	// schema, and the source watches v1.
	if got.APIVersion != "security.istio.io/v1" {
		t.Errorf("apiVersion = %s, want security.istio.io/v1 (the watched version)", got.APIVersion)
	}
	if got.Spec.(*security.AuthorizationPolicy).GetAction() != security.AuthorizationPolicy_DENY {
		t.Errorf("action = %v", got.Spec)
	}
}

const editPolicy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-reader
  namespace: edit
spec:
  selector: {matchLabels: {app: books}}
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/edit/sa/PRINCIPAL"]}
`

func principalOf(r config.Resource) string {
	ap, ok := r.Spec.(*security.AuthorizationPolicy)
	if !ok || len(ap.GetRules()) == 0 || len(ap.GetRules()[0].GetFrom()) == 0 {
		return ""
	}
	return ap.GetRules()[0].GetFrom()[0].GetSource().GetPrincipals()[0]
}

// TestPolicyEditReachesSnapshot changes an AuthorizationPolicy through
// the API and checks that a new snapshot carries the change within 2 s.
func TestPolicyEditReachesSnapshot(t *testing.T) {
	e := newEnv(t)
	e.applyYAML(t, strings.ReplaceAll(editPolicy, "PRINCIPAL", "reader"))
	s := e.run(t, kubesource.Config{Debounce: kubesource.DefaultDebounce})
	ch, cancel := s.Subscribe()
	defer cancel()
	has := func(p string) func(*config.Snapshot) bool {
		return func(s *config.Snapshot) bool {
			r, ok := find(s, config.KindAuthorizationPolicy, "edit/allow-reader")
			return ok && principalOf(r) == "cluster.local/ns/edit/sa/"+p
		}
	}
	first := waitFor(t, ch, 10*time.Second, "the policy", has("reader"))

	start := time.Now()
	e.applyYAML(t, strings.ReplaceAll(editPolicy, "PRINCIPAL", "writer"))
	next := waitFor(t, ch, 2*time.Second, "the edited policy", has("writer"))
	t.Logf("edit applied to a snapshot in %s", time.Since(start))
	if next.Version == first.Version {
		t.Error("the edit kept the snapshot version")
	}
}

// TestMalformedObjectRejectedAlone creates an AuthorizationPolicy that the
// apiserver stores (Istio's CRD schema cannot tell) but zmesh rejects (a
// wildcard inside a principal), next to a good one. The bad one is left
// out, named by LastError, Rejected and a Warning Event; the good one and a
// later edit of it still apply; an edit that breaks a good policy keeps
// its last good version; fixing the bad one clears the error.
func TestMalformedObjectRejectedAlone(t *testing.T) {
	e := newEnv(t)
	const bad = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bad-principal
  namespace: reject
spec:
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/*/sa/x"]}
`
	e.applyYAML(t, bad)
	good := strings.NewReplacer("PRINCIPAL", "reader", "namespace: edit", "namespace: reject").Replace(editPolicy)
	e.applyYAML(t, good)

	s := e.run(t, kubesource.Config{})
	ch, cancel := s.Subscribe()
	defer cancel()
	snap := waitFor(t, ch, 10*time.Second, "the good policy", func(s *config.Snapshot) bool {
		_, ok := find(s, config.KindAuthorizationPolicy, "reject/allow-reader")
		return ok
	})
	if _, ok := find(snap, config.KindAuthorizationPolicy, "reject/bad-principal"); ok {
		t.Fatal("the malformed policy is in the snapshot")
	}
	rej := s.Rejected()
	if len(rej) != 1 || rej[0].Name != "bad-principal" || !strings.Contains(rej[0].Err.Error(), "wildcard") {
		t.Fatalf("Rejected = %+v, want bad-principal with a wildcard error", rej)
	}
	if err := s.LastError(); err == nil || !strings.Contains(err.Error(), "AuthorizationPolicy reject/bad-principal") {
		t.Errorf("LastError = %v", err)
	}
	eventually(t, 5*time.Second, "a Warning Event on the rejected policy", func() bool {
		evs, err := e.kube.CoreV1().Events("reject").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == "bad-principal" && ev.InvolvedObject.Kind == "AuthorizationPolicy" &&
				ev.Type == corev1.EventTypeWarning && ev.Reason == kubesource.EventReason && strings.Contains(ev.Message, "wildcard") {
				return true
			}
		}
		return false
	})

	// Another edit still applies.
	e.applyYAML(t, strings.ReplaceAll(good, "sa/reader", "sa/writer"))
	waitFor(t, ch, 2*time.Second, "the edit of the good policy", func(s *config.Snapshot) bool {
		r, ok := find(s, config.KindAuthorizationPolicy, "reject/allow-reader")
		return ok && principalOf(r) == "cluster.local/ns/edit/sa/writer"
	})

	// Breaking the good policy keeps its last good version in force.
	e.applyYAML(t, strings.ReplaceAll(good, "sa/reader", "sa/*x*"))
	eventually(t, 5*time.Second, "the broken edit rejected", func() bool { return len(s.Rejected()) == 2 })
	r, ok := find(s.Current(), config.KindAuthorizationPolicy, "reject/allow-reader")
	if !ok || principalOf(r) != "cluster.local/ns/edit/sa/writer" {
		t.Errorf("after a bad edit the policy is %v (present %v), want its last good version", r.Spec, ok)
	}

	// Fixing both clears the error.
	e.applyYAML(t, strings.ReplaceAll(bad, "ns/*/sa/x", "ns/reject/sa/x")+"---\n"+good)
	waitFor(t, ch, 5*time.Second, "the fixed policy", func(s *config.Snapshot) bool {
		_, ok := find(s, config.KindAuthorizationPolicy, "reject/bad-principal")
		r, ok2 := find(s, config.KindAuthorizationPolicy, "reject/allow-reader")
		return ok && ok2 && principalOf(r) == "cluster.local/ns/edit/sa/reader"
	})
	if err := s.LastError(); err != nil {
		t.Errorf("LastError after the fix = %v", err)
	}
}

// TestLoadListsOnce checks the one-shot Load that `zmesh check` uses: the
// same resources as the watching source, the bad object reported.
func TestLoadListsOnce(t *testing.T) {
	e := newEnv(t)
	e.applyYAML(t, strings.ReplaceAll(strings.ReplaceAll(editPolicy, "namespace: edit", "namespace: load"), "PRINCIPAL", "reader"))
	e.applyYAML(t, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-principal, namespace: load}
spec:
  rules:
  - from:
    - source: {principals: ["a*b"]}
`)
	snap, rejected, _, err := kubesource.Load(context.Background(), e.c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := find(snap, config.KindAuthorizationPolicy, "load/allow-reader"); !ok {
		t.Errorf("Load's snapshot lacks load/allow-reader: %v", describe(snap))
	}
	found := false
	for _, r := range rejected {
		found = found || (r.Kind == config.KindAuthorizationPolicy && r.Namespace == "load" && r.Name == "bad-principal")
	}
	if !found {
		t.Errorf("rejected = %+v, want load/bad-principal", rejected)
	}
}
