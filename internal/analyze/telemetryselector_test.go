package analyze

import (
	"slices"
	"strings"
	"testing"
)

func telemetryDoc(name, ns, spec string) string {
	return "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: {" + spec + "tracing: [{randomSamplingPercentage: 1}]}"
}

func TestTelemetrySelectors(t *testing.T) {
	none := func(ns string, names string) []string {
		var out []string
		for _, n := range strings.Fields(names) {
			out = append(out, "Error [IST0160] (Telemetry "+ns+"/"+n+") The Telemetries ["+names+"] in namespace \""+ns+"\" have no workload selector, which can lead to undefined behavior.")
		}
		return out
	}
	cases := []struct {
		name string
		docs []string
		want []string // IST0101, IST0159 and IST0160 messages
	}{
		{"selector-less ones conflict without known workloads",
			[]string{telemetryDoc("b", "ns", ""), telemetryDoc("a", "ns", "")}, none("ns", "a b")},
		{"selectors are not checked without known workloads",
			[]string{telemetryDoc("a", "ns", "selector: {matchLabels: {app: x}}, "), telemetryDoc("b", "ns", "selector: {matchLabels: {app: x}}, ")}, nil},
		{"one selector-less Telemetry per namespace is fine",
			[]string{telemetryDoc("a", "ns", ""), telemetryDoc("a", "other", ""), telemetryDoc("a", "istio-system", "")}, nil},
		{"Istio: a selector without labels is neither checked nor selector-less",
			[]string{podDoc("p", "ns", "{app: x}"), telemetryDoc("a", "ns", "selector: {}, "), telemetryDoc("b", "ns", ""), telemetryDoc("c", "ns", "selector: {matchLabels: {app: x}}, ")}, nil},
		{"three on one pod, names sorted",
			[]string{podDoc("p", "ns", "{app: x, v: '1'}"), telemetryDoc("c", "ns", "selector: {matchLabels: {app: x}}, "), telemetryDoc("a", "ns", "selector: {matchLabels: {v: '1'}}, "), telemetryDoc("b", "ns", "selector: {matchLabels: {app: x, v: '1'}}, ")},
			[]string{
				`Error [IST0159] (Telemetry ns/a) The Telemetries [a b c] in namespace "ns" select the same workload pod "p", which can lead to undefined behavior.`,
				`Error [IST0159] (Telemetry ns/b) The Telemetries [a b c] in namespace "ns" select the same workload pod "p", which can lead to undefined behavior.`,
				`Error [IST0159] (Telemetry ns/c) The Telemetries [a b c] in namespace "ns" select the same workload pod "p", which can lead to undefined behavior.`,
			}},
		{"a selector matching only another namespace's pod",
			[]string{podDoc("p", "other", "{app: x}"), telemetryDoc("a", "ns", "selector: {matchLabels: {app: x}}, ")},
			[]string{`Error [IST0101] (Telemetry ns/a) Referenced selector not found: "app=x"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, code := range []string{"IST0101", "IST0159", "IST0160"} {
				got = append(got, messagesOf(t, code, false, tc.docs...)...)
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
