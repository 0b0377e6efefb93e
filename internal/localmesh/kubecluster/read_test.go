package kubecluster

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	kinds, err := istioResources()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		yaml string
		want []string // KIND NS/NAME RESOURCE, in order
		err  string
	}{
		{name: "Istio kinds at v1 and v1beta1, default namespace filled in", yaml: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: api}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default}
`, want: []string{"AuthorizationPolicy api/a security.istio.io/v1, Resource=authorizationpolicies", "PeerAuthentication default/default security.istio.io/v1beta1, Resource=peerauthentications"}},
		{name: "zmesh workloads and empty documents skipped", yaml: `
apiVersion: zmesh.dev/v1alpha1
kind: Workload
metadata: {name: w}
---
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: web}
`, want: []string{"ServiceEntry web/se networking.istio.io/v1, Resource=serviceentries"}},
		{name: "a List is expanded", yaml: `
apiVersion: v1
kind: List
items:
- {apiVersion: security.istio.io/v1, kind: RequestAuthentication, metadata: {name: r, namespace: a}}
- {apiVersion: networking.istio.io/v1, kind: WorkloadEntry, metadata: {name: e, namespace: b}}
`, want: []string{"RequestAuthentication a/r security.istio.io/v1, Resource=requestauthentications", "WorkloadEntry b/e networking.istio.io/v1, Resource=workloadentries"}},
		{name: "a kind of no Istio CRD is refused", yaml: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n", err: "apps/v1 Deployment is not an Istio kind"},
		{name: "a version the CRD does not serve is refused", yaml: "apiVersion: security.istio.io/v9\nkind: AuthorizationPolicy\nmetadata: {name: a}\n", err: "not a version Istio's CRD serves"},
		{name: "an object without a name is refused", yaml: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: a}\n", err: "without a name"},
		{name: "malformed YAML is an error", yaml: "apiVersion: [\n", err: "f.yaml document 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := parse([]byte(tc.yaml), "f.yaml", kinds)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.obj.GetKind()+" "+o.obj.GetNamespace()+"/"+o.obj.GetName()+" "+o.gvr.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// FuzzParse: any file gives objects or an error, never a panic, and every
// object has a name, a namespace and an Istio resource.
func FuzzParse(f *testing.F) {
	kinds, err := istioResources()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: security.istio.io/v1, kind: PeerAuthentication, metadata: {name: x}}]\n"))
	f.Add([]byte("{\"apiVersion\":\"zmesh.dev/v1alpha1\"}\n---\n[1,2]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := parse(data, "fuzz.yaml", kinds)
		if err != nil {
			return
		}
		for _, o := range objs {
			if o.obj.GetName() == "" || o.obj.GetNamespace() == "" || o.gvr.Resource == "" {
				t.Fatalf("incomplete object %v %v", o.obj, o.gvr)
			}
		}
	})
}
