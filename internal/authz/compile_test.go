package authz

import (
	"strings"
	"testing"

	"github.com/zmesh/zmesh/internal/config"
)

// Policies Istio's validation rejects are errors, never partially
// enforced.
func TestCompileRejectsInvalidPolicies(t *testing.T) {
	cases := []struct {
		name, spec, want string
	}{
		{"an empty source is an error", `{"rules":[{"from":[{"source":{}}]}]}`, "from[0].source: must not be empty"},
		{"a from without source is an error", `{"rules":[{"from":[{}]}]}`, "from[0].source: must not be nil"},
		{"an empty operation is an error", `{"rules":[{"to":[{"operation":{}}]}]}`, "to[0].operation: must not be empty"},
		{"a malformed IP block", `{"rules":[{"from":[{"source":{"ipBlocks":["10.0.0.300"]}}]}]}`, "ipBlocks: invalid IP address"},
		{"a malformed CIDR", `{"rules":[{"from":[{"source":{"notRemoteIpBlocks":["10.0.0.0/33"]}}]}]}`, "invalid IP block"},
		{"a port that is not a number", `{"rules":[{"to":[{"operation":{"ports":["http"]}}]}]}`, "invalid port"},
		{"a port out of range", `{"rules":[{"to":[{"operation":{"notPorts":["65536"]}}]}]}`, "invalid port"},
		{"an empty value", `{"rules":[{"from":[{"source":{"principals":[""]}}]}]}`, "principals: empty value"},
		{"an unknown condition key", `{"rules":[{"when":[{"key":"source.user","values":["x"]}]}]}`, "unknown or unsupported condition key"},
		{"a condition without values", `{"rules":[{"when":[{"key":"source.ip"}]}]}`, "at least one of values or notValues"},
		{"a malformed header key", `{"rules":[{"when":[{"key":"request.headers[]","values":["x"]}]}]}`, "want request.headers[NAME]"},
		{"a malformed claims key", `{"rules":[{"when":[{"key":"request.auth.claims[a]x","values":["x"]}]}]}`, "request.auth.claims"},
		{"a destination.port condition that is not a port", `{"rules":[{"when":[{"key":"destination.port","values":["80-90"]}]}]}`, "invalid port"},
		{"serviceAccounts with principals", `{"rules":[{"from":[{"source":{"serviceAccounts":["a/b"],"principals":["x"]}}]}]}`, "cannot be set with"},
		{"a wildcard service account", `{"rules":[{"from":[{"source":{"serviceAccounts":["ns/*"]}}]}]}`, "wildcards are not allowed"},
		{"{**} not last", `{"rules":[{"to":[{"operation":{"paths":["/{**}/a/{*}"]}}]}]}`, "must be the last operator"},
		{"an operator sharing a segment", `{"rules":[{"to":[{"operation":{"paths":["/foo/{*}.txt"]}}]}]}`, "mixes an operator"},
		{"* outside an operator in a template", `{"rules":[{"to":[{"operation":{"paths":["/*/baz/{*}"]}}]}]}`, "mixes an operator"},
		{"CUSTOM without provider", `{"action":"CUSTOM","rules":[{}]}`, "needs provider.name"},
		{"provider without CUSTOM", `{"action":"DENY","provider":{"name":"x"},"rules":[{}]}`, "only allowed with action CUSTOM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile([]config.Resource{ap(t, "foo/bad", tc.spec)}, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile error = %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "foo/bad") {
				t.Errorf("error %q does not name the policy", err)
			}
			if Validate(ap(t, "foo/bad", tc.spec)) == nil {
				t.Errorf("Validate accepted what Compile rejects")
			}
		})
	}
}

func TestCompileRejectsWrongSpecType(t *testing.T) {
	_, err := Compile([]config.Resource{{Meta: config.Meta{Name: "x", Namespace: "foo"}}}, Options{})
	if err == nil {
		t.Fatal("Compile accepted a resource without an AuthorizationPolicy spec")
	}
}

func TestCompileReportsEveryBadPolicy(t *testing.T) {
	_, err := Compile([]config.Resource{
		ap(t, "foo/a", `{"rules":[{"from":[{"source":{}}]}]}`),
		ap(t, "foo/ok", `{}`),
		ap(t, "foo/b", `{"rules":[{},{"to":[{"operation":{"ports":["x"]}}]}]}`),
	}, Options{})
	if err == nil || !strings.Contains(err.Error(), "foo/a") || !strings.Contains(err.Error(), "foo/b: rule 1") {
		t.Fatalf("Compile error = %v, want both foo/a and foo/b rule 1 named", err)
	}
}

func TestCanonicalHeaderKey(t *testing.T) {
	for in, want := range map[string]string{
		"x-token": "X-Token", "X-TOKEN": "X-Token", "user-agent": "User-Agent", "x--a": "X--A",
		"content-md5": "Content-Md5", "x_y": "X_y", ":authority": ":authority", "bad header": "bad header",
	} {
		if got := canonicalHeaderKey(in); got != want {
			t.Errorf("canonicalHeaderKey(%q) = %q, want %q", in, got, want)
		}
	}
}
