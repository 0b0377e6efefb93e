package check_test

import (
	"context"
	"testing"

	"github.com/zmesh/zmesh/internal/check"
	"github.com/zmesh/zmesh/internal/check/conformance"
	"github.com/zmesh/zmesh/internal/config"
)

// FuzzParseInput feeds arbitrary request files to ParseInput: it must not
// panic, and a request it accepts must be decidable: Evaluate, against
// resources that exercise every stage, returns an error or a well-formed
// answer, never a panic.
func FuzzParseInput(f *testing.F) {
	files, err := conformance.Load("testdata/conformance")
	if err != nil {
		f.Fatal(err)
	}
	var resources string
	for _, cf := range files {
		for _, r := range cf.Requests {
			f.Add(string(r.Request))
		}
	}
	for _, name := range []string{"043-when-claims", "050-and-or-semantics", "085-peer-port-level", "094-jwt-claims-in-policy"} {
		for _, cf := range files {
			if cf.Name == name {
				resources += "---\n" + cf.Resources
			}
		}
	}
	for _, s := range []string{
		"", "{}", "null", "[]", "workload: {namespace: foo}\nrequest: {port: 0}",
		`{"workload":{"namespace":"foo"},"source":{"principal":"spiffe://"},"request":{"port":1}}`,
		`{"workload":{"namespace":"foo"},"tls":true,"request":{"port":1,"method":"GET","path":"%zz"}}`,
		"workload: {namespace: foo}\nrequest: {port: 80, method: GET, path: '/a/../../%2e%2E/%00', jwt: a.b.c}",
	} {
		f.Add(s)
	}
	snap, _, err := config.Load(map[string][]byte{"fuzz.yaml": []byte(resources)})
	if err != nil {
		f.Fatal(err)
	}
	opts := check.Options{RootNamespace: "istio-system", TrustDomain: "cluster.local", Now: conformanceNow}
	f.Fuzz(func(t *testing.T, data string) {
		in, err := check.ParseInput([]byte(data))
		if err != nil {
			return
		}
		out, err := check.Evaluate(context.Background(), snap, in, opts)
		if err != nil {
			return
		}
		if out.Decision != "ALLOW" && out.Decision != "DENY" {
			t.Fatalf("decision %q", out.Decision)
		}
		switch out.PeerAuthentication.Mode {
		case "STRICT", "PERMISSIVE", "DISABLE":
		default:
			t.Fatalf("peer authentication mode %q", out.PeerAuthentication.Mode)
		}
		if (out.Decision == "ALLOW") != (out.Stage == "") {
			t.Fatalf("decision %s with stage %q", out.Decision, out.Stage)
		}
	})
}
