package install

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/zmesh/zmesh/internal/controlplane"
	"github.com/zmesh/zmesh/internal/kubetest"
)

// moduleCRDs reads Istio's CRDs from the istio.io/api module in go.mod,
// the file internal/kubecrd embeds.
func moduleCRDs(t *testing.T) func() ([]*unstructured.Unstructured, error) {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		t.Skipf("cannot locate the istio.io/api module: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "kubernetes", "customresourcedefinitions.gen.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return func() ([]*unstructured.Unstructured, error) {
		var out []*unstructured.Unstructured
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 1<<16)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if err.Error() == "EOF" {
					return out, nil
				}
				return nil, err
			}
			if len(u.Object) > 0 {
				out = append(out, u)
			}
		}
	}
}

// TestObjectsDecodeAsKubernetesTypes checks every object but the CRDs
// against client-go's types, strictly: a misspelt field in what install
// renders would fail here, not in a user's cluster.
func TestObjectsDecodeAsKubernetesTypes(t *testing.T) {
	objs, err := Objects(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Render(&buf, objs); err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(buf.String(), "---\n")[1:]
	if len(docs) != len(objs) {
		t.Fatalf("%d documents for %d objects", len(docs), len(objs))
	}
	codec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	for i, d := range docs {
		_, gvk, err := codec.Decode([]byte(d), nil, nil)
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if gvk.Kind != objs[i].GetKind() {
			t.Errorf("document %d is a %s, want %s", i, gvk.Kind, objs[i].GetKind())
		}
	}
	if last := objs[len(objs)-1]; last.GetKind() != "MutatingWebhookConfiguration" {
		t.Errorf("last object %s: the webhook must come after the control plane", Describe(last))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Replicas: -1}, {Image: "a b"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", c)
		}
	}
}

// TestInstallUninstall applies everything, CRDs included, to a real
// apiserver twice (the second apply changes nothing), checks the
// control plane's ServiceAccount has the access it needs and not more,
// then uninstalls: without --purge the CRDs and the namespace stay, with
// it they go.
func TestInstallUninstall(t *testing.T) {
	c := kubetest.New(t)
	cs := c.Client(t)
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A gateway runs in edge: the control plane may read Secrets there.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "edge"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{CRDs: moduleCRDs(t), GatewayNamespaces: []string{"edge", Namespace}}
	objs, err := Objects(cfg)
	if err != nil {
		t.Fatal(err)
	}
	crds := 0
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds++
		}
	}
	if crds < 10 {
		t.Fatalf("%d CRDs", crds)
	}
	if err := Apply(ctx, dyn, objs, nil); err != nil {
		t.Fatal(err)
	}
	get := func(o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
		rc, err := client(dyn, o)
		if err != nil {
			t.Fatal(err)
		}
		return rc.Get(ctx, o.GetName(), metav1.GetOptions{})
	}
	versions := map[string]string{}
	for _, o := range objs {
		got, err := get(o)
		if err != nil {
			t.Fatalf("%s: %v", Describe(o), err)
		}
		versions[Describe(o)] = got.GetResourceVersion()
	}
	if err := Apply(ctx, dyn, objs, nil); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	for _, o := range objs {
		got, _ := get(o)
		if got.GetResourceVersion() != versions[Describe(o)] {
			t.Errorf("%s changed on the second apply", Describe(o))
		}
	}

	t.Run("least privilege", func(t *testing.T) {
		sa := "system:serviceaccount:" + Namespace + ":" + Name
		tests := []struct {
			ns, group, resource, verb, name string
			allowed                         bool
		}{
			{"", "security.istio.io", "authorizationpolicies", "watch", "", true},
			{"", "", "pods", "list", "", true},
			{"", "discovery.k8s.io", "endpointslices", "watch", "", true},
			{"", "authentication.k8s.io", "tokenreviews", "create", "", true},
			{"default", "", "configmaps", "update", "istio-ca-root-cert", true},
			{"default", "", "configmaps", "update", "app-config", false},
			{Namespace, "", "secrets", "create", "", true},
			{"default", "", "secrets", "get", "db-password", false},
			{"default", "", "secrets", "watch", "", false},
			{"edge", "", "secrets", "watch", "", true},
			{"edge", "", "secrets", "get", "ingress-cert", true},
			{"edge", "", "secrets", "update", "ingress-cert", false},
			{"edge", "", "secrets", "create", "", false},
			{"", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "update", "zmesh-sidecar-injector", true},
			{"", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "update", "someone-else", false},
			{"default", "", "pods", "create", "", false},
			{"default", "", "pods", "delete", "", false},
			{"", "security.istio.io", "authorizationpolicies", "update", "", false},
			{"", "certificates.k8s.io", "clustertrustbundles", "update", "zmesh-root-ca", true},
			{"", "certificates.k8s.io", "clustertrustbundles", "update", "another-signers-bundle", false},
		}
		for _, tt := range tests {
			r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + Namespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: tt.ns, Group: tt.group, Resource: tt.resource, Verb: tt.verb, Name: tt.name},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status.Allowed != tt.allowed {
				t.Errorf("%s %s.%s %s/%s: allowed %v, want %v", tt.verb, tt.resource, tt.group, tt.ns, tt.name, r.Status.Allowed, tt.allowed)
			}
		}
	})

	if err := Delete(ctx, dyn, objs, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		_, err := get(o)
		keep := o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace"
		switch {
		case keep && err != nil:
			t.Errorf("%s removed without --purge: %v", Describe(o), err)
		case !keep && !apierrors.IsNotFound(err):
			t.Errorf("%s still there after uninstall: %v", Describe(o), err)
		}
	}
	if err := Delete(ctx, dyn, objs, false, nil); err != nil {
		t.Errorf("uninstall of an uninstalled mesh: %v", err)
	}

	if err := Delete(ctx, dyn, objs, true, nil); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		got, err := get(o)
		// The apiserver finalizes CRDs itself; a namespace waits for the
		// controller manager, which kubetest does not run, so it stays
		// Terminating.
		if err == nil && got.GetDeletionTimestamp() == nil {
			t.Errorf("%s still there after uninstall --purge", Describe(o))
		}
	}
}

// TestMeshConfigMapParses checks the mesh ConfigMap's content with the
// control plane's own parser, which refuses unknown fields.
func TestMeshConfigMapParses(t *testing.T) {
	objs, err := Objects(Config{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "ConfigMap" || o.GetName() != MeshConfigMap {
			continue
		}
		mesh, _, _ := unstructured.NestedString(o.Object, "data", "mesh")
		mc, err := controlplane.ParseMeshConfig([]byte(mesh))
		if err != nil {
			t.Fatal(err)
		}
		if mc.GetTrustDomain() != "example.org" || mc.GetRootNamespace() != Namespace {
			t.Errorf("mesh config %v", mc)
		}
		return
	}
	t.Fatal("no mesh ConfigMap")
}
