package check_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/check"
	"github.com/zmesh/zmesh/internal/check/conformance"
	"github.com/zmesh/zmesh/internal/config"
)

// conformanceNow is the clock of the suite: the tokens in vars.yaml are
// valid from 2024 to 2100, the expired one ended in 2020.
var conformanceNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// TestConformance decides every request of the conformance suite
// (testdata/conformance) with Evaluate and compares the answer with the
// one Istio's documentation gives. A failure quotes the rule the request
// checks.
func TestConformance(t *testing.T) {
	files, err := conformance.Load("testdata/conformance")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			snap, _, err := config.Load(map[string][]byte{f.Name + ".yaml": []byte(f.Resources)})
			if f.Error != "" {
				if err == nil || !strings.Contains(err.Error(), f.Error) {
					t.Fatalf("loading the resources: got error %v, want one containing %q\ncite: %s", err, f.Error, f.Cite)
				}
				return
			}
			if err != nil {
				t.Fatalf("loading the resources: %v", err)
			}
			opts, err := evalOptions(f.Options)
			if err != nil {
				t.Fatal(err)
			}
			for i := range f.Requests {
				r := &f.Requests[i]
				t.Run(r.Name, func(t *testing.T) {
					in, err := check.ParseInput(r.Request)
					if err != nil {
						t.Fatalf("request: %v", err)
					}
					out, err := check.Evaluate(context.Background(), snap, in, opts)
					if err != nil {
						t.Fatalf("Evaluate: %v", err)
					}
					diff := r.Expect.Mismatch(out)
					switch {
					case r.KnownIssue != "" && diff == "":
						t.Fatalf("passes now: remove knownIssue %q", r.KnownIssue)
					case r.KnownIssue != "":
						t.Skipf("known issue: %s (%s)", r.KnownIssue, diff)
					case diff != "":
						t.Errorf("%s\nreason: %s\ncite: %s", diff, out.Reason, f.Citation(r))
					}
				})
			}
		})
	}
}

func evalOptions(o conformance.Options) (check.Options, error) {
	opts := check.Options{
		RootNamespace:      o.RootNamespace,
		TrustDomain:        o.TrustDomain,
		TrustDomainAliases: o.TrustDomainAliases,
		Now:                conformanceNow,
	}
	if opts.RootNamespace == "" {
		opts.RootNamespace = "istio-system"
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = "cluster.local"
	}
	var err error
	opts.PathNormalization, err = authz.ParsePathNormalization(o.PathNormalization)
	return opts, err
}
