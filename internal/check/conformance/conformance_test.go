package conformance

import (
	"strings"
	"testing"
)

func TestParseRejectsIncompleteFiles(t *testing.T) {
	const req = `{workload: {namespace: foo}, request: {port: 80}}`
	for _, tc := range []struct {
		name, file, want string
	}{
		{"no-cite", "resources: ''\nrequests: [{name: a, request: " + req + ", expect: {decision: ALLOW, peerAuthentication: {mode: PERMISSIVE}}}]", "cite is required"},
		{"unknown-field", "cite: x\nresource: ''", "unknown field"},
		{"unknown-var", "cite: '{{NOPE}}'", "unknown variables NOPE"},
		{"no-requests", "cite: x\nresources: ''", "no requests"},
		{"error-and-requests", "cite: x\nerror: y\nrequests: [{name: a}]", "has no requests"},
		{"unnamed", "cite: x\nrequests: [{request: " + req + "}]", "name is required"},
		{"duplicate", "cite: x\nrequests: [{name: a, request: " + req + ", expect: {decision: ALLOW, peerAuthentication: {mode: STRICT}}}, {name: a, request: " + req + ", expect: {decision: ALLOW, peerAuthentication: {mode: STRICT}}}]", "used twice"},
		{"no-decision", "cite: x\nrequests: [{name: a, request: " + req + ", expect: {peerAuthentication: {mode: STRICT}}}]", "expect.decision"},
		{"no-mode", "cite: x\nrequests: [{name: a, request: " + req + ", expect: {decision: DENY}}]", "peerAuthentication.mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), map[string]string{"X": "y"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSubstitutesVars(t *testing.T) {
	f, err := Parse([]byte("cite: 'token {{TOKEN}}'\nerror: x"), map[string]string{"TOKEN": "abc"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Cite != "token abc" {
		t.Fatalf("cite %q", f.Cite)
	}
}

func TestOptionsArgs(t *testing.T) {
	o := Options{RootNamespace: "r", TrustDomain: "td", TrustDomainAliases: []string{"a", "b"}, PathNormalization: "MERGE_SLASHES"}
	got := strings.Join(o.Args(), " ")
	want := "--root-namespace r --trust-domain td --trust-domain-alias a --trust-domain-alias b --path-normalization MERGE_SLASHES"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
