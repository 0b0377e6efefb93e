package analyze

import (
	"slices"
	"strings"
	"testing"
)

// messagesOf analyzes docs (YAML documents, one file) and returns the
// messages with the given code, as printed.
func messagesOf(t *testing.T, code string, cluster bool, docs ...string) []string {
	t.Helper()
	in := FromFiles(map[string][]byte{"in.yaml": []byte(strings.Join(docs, "\n---\n"))})
	if len(in.Rejected) > 0 {
		t.Fatalf("input rejected: %v", in.Rejected[0].Err)
	}
	in.Cluster = cluster
	var out []string
	for _, m := range Analyze(in) {
		if m.Type.Code == code {
			out = append(out, m.String())
		}
	}
	return out
}

func sidecarDoc(name, ns, selector string) string {
	sel := ""
	if selector != "" {
		sel = "  workloadSelector: {labels: " + selector + "}\n"
	}
	return "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n" + sel + "  egress: [{hosts: [\"./*\"]}]"
}

func podDoc(name, ns, labels string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: " + ns + ", labels: " + labels + "}"
}

func TestSidecarSelectors(t *testing.T) {
	cases := []struct {
		name    string
		cluster bool
		docs    []string
		want    []string // IST0101, IST0110 and IST0111 messages
	}{{
		name: "without known workloads nothing is checked",
		docs: []string{sidecarDoc("a", "ns", "{app: x}"), sidecarDoc("b", "ns", "{app: x}")},
	}, {
		name:    "a cluster with no workload in the namespace: the selector is not found",
		cluster: true,
		docs:    []string{"apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}", sidecarDoc("a", "ns", "{app: x}")},
		want:    []string{`Error [IST0101] (Sidecar ns/a) Referenced selector not found: "app=x"`},
	}, {
		name: "an empty selector is ignored, as Istio ignores it",
		docs: []string{podDoc("p", "ns", "{app: x}"), sidecarDoc("a", "ns", "{}"), sidecarDoc("b", "ns", "{app: x}")},
	}, {
		name: "an empty selector counts as none for IST0111",
		docs: []string{sidecarDoc("a", "ns", "{}"), sidecarDoc("b", "ns", "")},
		want: []string{
			`Error [IST0111] (Sidecar ns/a) The Sidecars [a b] in namespace "ns" have no workload selector, which can lead to undefined behavior.`,
			`Error [IST0111] (Sidecar ns/b) The Sidecars [a b] in namespace "ns" have no workload selector, which can lead to undefined behavior.`,
		},
	}, {
		name: "selectors of different namespaces never conflict",
		docs: []string{podDoc("p", "ns", "{app: x}"), podDoc("p", "other", "{app: x}"), sidecarDoc("a", "ns", "{app: x}"), sidecarDoc("a", "other", "{app: x}")},
	}, {
		name: "a root-namespace Sidecar with a selector selects only there",
		docs: []string{podDoc("p", "ns", "{app: x}"), sidecarDoc("a", "ns", "{app: x}"), sidecarDoc("mesh", "istio-system", "{app: x}")},
		want: []string{`Error [IST0101] (Sidecar istio-system/mesh) Referenced selector not found: "app=x"`},
	}, {
		name: "a selector-less default and a selecting Sidecar do not conflict",
		docs: []string{podDoc("p", "ns", "{app: x}"), sidecarDoc("default", "ns", ""), sidecarDoc("a", "ns", "{app: x}")},
	}, {
		name: "two shared workloads: one message per workload",
		docs: []string{podDoc("p1", "ns", "{app: x}"), podDoc("p2", "ns", "{app: x}"), sidecarDoc("a", "ns", "{app: x}"), sidecarDoc("b", "ns", "{app: x}")},
		want: []string{
			`Error [IST0110] (Sidecar ns/a) The Sidecars [a b] in namespace "ns" select the same workload pod "p1", which can lead to undefined behavior.`,
			`Error [IST0110] (Sidecar ns/a) The Sidecars [a b] in namespace "ns" select the same workload pod "p2", which can lead to undefined behavior.`,
			`Error [IST0110] (Sidecar ns/b) The Sidecars [a b] in namespace "ns" select the same workload pod "p1", which can lead to undefined behavior.`,
			`Error [IST0110] (Sidecar ns/b) The Sidecars [a b] in namespace "ns" select the same workload pod "p2", which can lead to undefined behavior.`,
		},
	}, {
		name: "three on one workload name all three",
		docs: []string{podDoc("p", "ns", "{app: x, v: '1'}"), sidecarDoc("c", "ns", "{app: x}"), sidecarDoc("a", "ns", "{v: '1'}"), sidecarDoc("b", "ns", "{app: x, v: '1'}")},
		want: []string{
			`Error [IST0110] (Sidecar ns/a) The Sidecars [a b c] in namespace "ns" select the same workload pod "p", which can lead to undefined behavior.`,
			`Error [IST0110] (Sidecar ns/b) The Sidecars [a b c] in namespace "ns" select the same workload pod "p", which can lead to undefined behavior.`,
			`Error [IST0110] (Sidecar ns/c) The Sidecars [a b c] in namespace "ns" select the same workload pod "p", which can lead to undefined behavior.`,
		},
	}, {
		name: "a WorkloadEntry is a workload",
		docs: []string{
			"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm, namespace: ns}\nspec: {address: 10.0.0.9, labels: {app: x}}",
			sidecarDoc("a", "ns", "{app: x}"), sidecarDoc("b", "ns", "{app: x}"),
		},
		want: []string{
			`Error [IST0110] (Sidecar ns/a) The Sidecars [a b] in namespace "ns" select the same workload pod "vm", which can lead to undefined behavior.`,
			`Error [IST0110] (Sidecar ns/b) The Sidecars [a b] in namespace "ns" select the same workload pod "vm", which can lead to undefined behavior.`,
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, code := range []string{"IST0101", "IST0110", "IST0111"} {
				got = append(got, messagesOf(t, code, tc.cluster, tc.docs...)...)
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
