package config

import (
	"errors"
	"strings"
	"testing"
)

// validateCase is one resource spec and what Validate should say about it:
// wantErr "" means valid; otherwise a substring of the error. wantWarn is a
// substring of one warning, or "".
type validateCase struct {
	name     string
	spec     string
	wantErr  string
	wantWarn string
}

func runValidateCases(t *testing.T, apiVersion string, kind Kind, cases []validateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := "apiVersion: " + apiVersion + "\nkind: " + string(kind) + "\nmetadata: {name: p, namespace: foo}\nspec:\n" + indent(tc.spec)
			rs, _, err := Parse([]byte(doc), "t.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			warnings, err := validate(rs[0])
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v, want valid", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("Validate succeeded, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Validate: %v, want error containing %q", err, tc.wantErr)
			}
			if err != nil {
				var ve *ValidationError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), "AuthorizationPolicy foo/p") && kind == KindAuthorizationPolicy {
					t.Errorf("error %q should wrap a *ValidationError and name the resource", err)
				}
			}
			if tc.wantWarn != "" && !strings.Contains(strings.Join(warnings, "\n"), tc.wantWarn) {
				t.Errorf("warnings %q, want one containing %q", warnings, tc.wantWarn)
			}
			if tc.wantWarn == "" && len(warnings) > 0 {
				t.Errorf("unexpected warnings %q", warnings)
			}
		})
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// Rules from istiod's ValidateAuthorizationPolicy and the CRD schema, plus
// zmesh's wildcard rule.
func TestValidateAuthorizationPolicy(t *testing.T) {
	runValidateCases(t, "security.istio.io/v1", KindAuthorizationPolicy, []validateCase{
		{name: "empty spec (allow nothing) is valid", spec: "{}"},
		{name: "allow all with an empty rule is valid", spec: "rules: [{}]"},
		{name: "full ALLOW rule is valid", spec: `
selector: {matchLabels: {app: a}}
rules:
- from: [{source: {principals: ["cluster.local/ns/*", "*"], notNamespaces: [bar], ipBlocks: ["10.0.0.0/8", "::1"]}}]
  to: [{operation: {hosts: ["*.example.com"], ports: ["80", "65535"], methods: [GET], paths: ["/api/*", "/v1/{*}/x/{**}"]}}]
  when:
  - {key: "request.auth.claims[groups]", values: [admin]}
  - {key: "request.auth.claims[a][b]", values: [x]}
  - {key: source.ip, notValues: ["10.1.0.0/16"]}
  - {key: destination.port, values: ["8080"]}
  - {key: "experimental.envoy.filters.a.b[c]", values: [d]}
`},
		{name: "CUSTOM requires a provider", spec: "action: CUSTOM\nrules: [{}]", wantErr: "provider.name"},
		{name: "CUSTOM requires rules", spec: "action: CUSTOM\nprovider: {name: ext}", wantErr: "CUSTOM action without `rules`"},
		{name: "CUSTOM with provider and rules is valid", spec: "action: CUSTOM\nprovider: {name: ext}\nrules: [{to: [{operation: {paths: [/admin]}}]}]"},
		{name: "provider is not allowed with DENY", spec: "action: DENY\nprovider: {name: ext}\nrules: [{}]", wantErr: "`provider` must not be set with action DENY"},
		{name: "provider is not allowed with ALLOW", spec: "provider: {name: ext}", wantErr: "only with CUSTOM"},
		{name: "CUSTOM cannot match principals", spec: "action: CUSTOM\nprovider: {name: ext}\nrules: [{from: [{source: {principals: [a]}}]}]", wantErr: "principals: not supported with CUSTOM"},
		{name: "CUSTOM cannot match request.auth conditions", spec: "action: CUSTOM\nprovider: {name: ext}\nrules: [{when: [{key: request.auth.principal, values: [a]}]}]", wantErr: "not supported with CUSTOM"},
		{name: "DENY requires rules", spec: "action: DENY", wantErr: "DENY action without `rules`"},
		{name: "DENY on ports only is valid without warning", spec: "action: DENY\nrules: [{to: [{operation: {ports: [\"22\"]}}]}]"},
		{name: "DENY on HTTP attributes only warns about TCP", spec: "action: DENY\nrules: [{to: [{operation: {methods: [POST]}}]}]", wantWarn: "deny all traffic to TCP ports"},
		{name: "AUDIT without provider is valid", spec: "action: AUDIT\nrules: [{}]"},
		{name: "selector and targetRef are exclusive", spec: "selector: {matchLabels: {app: a}}\ntargetRef: {kind: Service, name: a}", wantErr: "only one of targetRefs or selector"},
		{name: "targetRef to a Service is valid", spec: "targetRefs: [{kind: Service, group: \"\", name: a}]"},
		{name: "targetRef must not cross namespaces", spec: "targetRef: {kind: Service, name: a, namespace: b}", wantErr: "cross namespace"},
		{name: "targetRef must be a supported kind", spec: "targetRef: {kind: Pod, name: a}", wantErr: "must refer to a Service"},
		{name: "selector wildcard is rejected", spec: "selector: {matchLabels: {app: \"a*\"}}", wantErr: "wildcard is not supported in selector"},
		{name: "empty selector warns", spec: "selector: {}", wantWarn: "without labels"},
		{name: "empty from.source is rejected", spec: "rules: [{from: [{source: {}}]}]", wantErr: "from[0].source: must not be empty"},
		{name: "from without source is rejected", spec: "rules: [{from: [{}]}]", wantErr: "from[0].source: must be set"},
		{name: "empty to.operation is rejected", spec: "rules: [{to: [{operation: {}}]}]", wantErr: "to[0].operation: must not be empty"},
		{name: "to without operation is rejected", spec: "rules: [{to: [{}]}]", wantErr: "to[0].operation: must be set"},
		{name: "serviceAccounts with principals is rejected", spec: "rules: [{from: [{source: {serviceAccounts: [a], principals: [b]}}]}]", wantErr: "cannot set serviceAccounts"},
		{name: "empty string values are rejected", spec: "rules: [{from: [{source: {namespaces: [\"\"]}}]}]", wantErr: "namespaces[0]: empty value"},
		{name: "non-numeric port is rejected", spec: "rules: [{to: [{operation: {ports: [http]}}]}]", wantErr: `ports[0]: bad port "http"`},
		{name: "port 0 is rejected", spec: "rules: [{to: [{operation: {notPorts: [\"0\"]}}]}]", wantErr: "notPorts[0]: bad port"},
		{name: "port above 65535 is rejected", spec: "rules: [{to: [{operation: {ports: [\"65536\"]}}]}]", wantErr: "bad port"},
		{name: "bad ipBlock is rejected", spec: "rules: [{from: [{source: {ipBlocks: [\"10.0.0.300\"]}}]}]", wantErr: "bad IP address"},
		{name: "bad CIDR is rejected", spec: "rules: [{from: [{source: {remoteIpBlocks: [\"10.0.0.0/33\"]}}]}]", wantErr: "bad CIDR"},
		{name: "wildcard in the middle is rejected", spec: "rules: [{from: [{source: {principals: [\"cluster.local/ns/*/sa/x\"]}}]}]", wantErr: "only supported alone, as a prefix or as a suffix"},
		{name: "two wildcards are rejected", spec: "rules: [{to: [{operation: {hosts: [\"*.example.*\"]}}]}]", wantErr: "wildcard"},
		{name: "named path template variables are rejected", spec: "rules: [{to: [{operation: {paths: [\"/{name}/{*}\"]}}]}]", wantErr: "path template"},
		{name: "bare glob inside a path template is rejected", spec: "rules: [{to: [{operation: {paths: [\"/{*}/*\"]}}]}]", wantErr: "path template"},
		{name: "condition needs values or notValues", spec: "rules: [{when: [{key: source.ip}]}]", wantErr: "at least one of values or notValues"},
		{name: "condition key must be set", spec: "rules: [{when: [{values: [a]}]}]", wantErr: "key: must be set"},
		{name: "unknown condition key is rejected", spec: "rules: [{when: [{key: source.ipp, values: [a]}]}]", wantErr: `unknown attribute "source.ipp"`},
		{name: "header key needs a name", spec: "rules: [{when: [{key: request.headers, values: [a]}]}]", wantErr: "request.headers[NAME]"},
		{name: "header key needs a non-empty name", spec: "rules: [{when: [{key: \"request.headers[]\", values: [a]}]}]", wantErr: "bad key"},
		{name: "destination.namespace is replaced by metadata.namespace", spec: "rules: [{when: [{key: destination.namespace, values: [a]}]}]", wantErr: "replaced by the policy's metadata.namespace"},
		{name: "destination.labels is replaced by the selector", spec: "rules: [{when: [{key: \"destination.labels[app]\", values: [a]}]}]", wantErr: "replaced by the workload selector"},
		{name: "condition IP values are checked", spec: "rules: [{when: [{key: destination.ip, values: [nope]}]}]", wantErr: "bad IP"},
		{name: "condition port values are checked", spec: "rules: [{when: [{key: destination.port, values: [\"99999\"]}]}]", wantErr: "bad port"},
		{name: "numeric action outside the enum is rejected", spec: "action: 7", wantErr: "unknown action 7"},
		{name: "all problems are reported at once", spec: "rules: [{from: [{source: {}}], to: [{operation: {}}]}]", wantErr: "2 problems"},
	})
}

func TestValidateDryRunAnnotation(t *testing.T) {
	cases := []struct {
		name, doc, wantErr string
	}{
		{"dry-run true on ALLOW is valid", "kind: AuthorizationPolicy\nmetadata: {name: p, annotations: {istio.io/dry-run: \"true\"}}\nspec: {}\n", ""},
		{"dry-run must be a boolean", "kind: AuthorizationPolicy\nmetadata: {name: p, annotations: {istio.io/dry-run: \"yes please\"}}\nspec: {}\n", "true or false"},
		{"dry-run is not supported on CUSTOM", "kind: AuthorizationPolicy\nmetadata: {name: p, annotations: {istio.io/dry-run: \"true\"}}\nspec: {action: CUSTOM, provider: {name: x}, rules: [{}]}\n", "only supported with action ALLOW or DENY"},
		{"dry-run is not supported on PeerAuthentication", "kind: PeerAuthentication\nmetadata: {name: p, annotations: {istio.io/dry-run: \"true\"}}\n", "only supported on AuthorizationPolicy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, _, err := Parse([]byte("apiVersion: security.istio.io/v1\n"+tc.doc), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(rs[0])
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// Rules from istiod's ValidatePeerAuthentication and the CRD schema.
func TestValidatePeerAuthentication(t *testing.T) {
	runValidateCases(t, "security.istio.io/v1", KindPeerAuthentication, []validateCase{
		{name: "namespace-wide STRICT is valid", spec: "mtls: {mode: STRICT}"},
		{name: "empty spec (inherit) is valid", spec: "{}"},
		{name: "workload policy with port-level mTLS is valid", spec: "selector: {matchLabels: {app: a}}\nmtls: {mode: STRICT}\nportLevelMtls:\n  8080: {mode: DISABLE}\n  \"9090\": {mode: UNSET}"},
		{name: "portLevelMtls requires a selector", spec: "portLevelMtls: {8080: {mode: DISABLE}}", wantErr: "requires a selector"},
		{name: "portLevelMtls requires selector labels", spec: "selector: {}\nportLevelMtls: {8080: {mode: DISABLE}}", wantErr: "requires a selector", wantWarn: "without labels"},
		{name: "port 0 is rejected", spec: "selector: {matchLabels: {app: a}}\nportLevelMtls: {0: {mode: DISABLE}}", wantErr: "out of range"},
		{name: "port above 65535 is rejected", spec: "selector: {matchLabels: {app: a}}\nportLevelMtls: {70000: {mode: DISABLE}}", wantErr: "out of range"},
		{name: "numeric mode outside the enum is rejected", spec: "mtls: {mode: 9}", wantErr: "unknown mode 9"},
		{name: "selector wildcard is rejected", spec: "selector: {matchLabels: {\"*\": a}}", wantErr: "wildcard"},
	})
}

// Rules from istiod's ValidateRequestAuthentication and the CRD schema.
func TestValidateRequestAuthentication(t *testing.T) {
	runValidateCases(t, "security.istio.io/v1", KindRequestAuthentication, []validateCase{
		{name: "jwksUri rule is valid", spec: "jwtRules: [{issuer: a, jwksUri: \"https://a.example/jwks\", audiences: [x], fromHeaders: [{name: x-jwt, prefix: \"Bearer \"}], outputClaimToHeaders: [{header: x-sub, claim: sub}]}]"},
		{name: "inline jwks is valid", spec: "jwtRules: [{issuer: a, jwks: '{\"keys\":[]}'}]"},
		{name: "issuer is required", spec: "jwtRules: [{jwksUri: \"https://a.example/jwks\"}]", wantErr: "issuer: must be set"},
		{name: "jwksUri must be http or https", spec: "jwtRules: [{issuer: a, jwksUri: \"file:///etc/jwks\"}]", wantErr: "scheme http:// or https://"},
		{name: "jwksUri needs a host", spec: "jwtRules: [{issuer: a, jwksUri: \"https:///jwks\"}]", wantErr: "no host"},
		{name: "jwks and jwksUri are exclusive", spec: "jwtRules: [{issuer: a, jwksUri: \"https://a.example/jwks\", jwks: '{\"keys\":[]}'}]", wantErr: "only one of jwks or jwksUri"},
		{name: "jwks must be a key set", spec: "jwtRules: [{issuer: a, jwks: '{\"kty\":\"RSA\"}'}]", wantErr: "no \"keys\" list"},
		{name: "jwks must be JSON", spec: "jwtRules: [{issuer: a, jwks: '-----BEGIN PUBLIC KEY-----'}]", wantErr: "not a JSON Web Key Set"},
		{name: "audiences must not be empty strings", spec: "jwtRules: [{issuer: a, audiences: [\"\"]}]", wantErr: "audiences[0]: empty value"},
		{name: "fromHeaders name is required", spec: "jwtRules: [{issuer: a, fromHeaders: [{prefix: x}]}]", wantErr: "fromHeaders[0].name: must be set"},
		{name: "output header must be a valid header name", spec: "jwtRules: [{issuer: a, outputClaimToHeaders: [{header: \"x y\", claim: sub}]}]", wantErr: "not a valid header name"},
		{name: "output headers must be unique", spec: "jwtRules: [{issuer: a, outputClaimToHeaders: [{header: x, claim: a}, {header: x, claim: b}]}]", wantErr: "set twice"},
		{name: "timeout must be positive", spec: "jwtRules: [{issuer: a, timeout: 0s}]", wantErr: "positive duration"},
		{name: "selector and targetRefs are exclusive", spec: "selector: {matchLabels: {a: b}}\ntargetRefs: [{kind: Service, name: a}]", wantErr: "only one of targetRefs or selector"},
	})
}

func TestValidateServiceEntry(t *testing.T) {
	runValidateCases(t, "networking.istio.io/v1", KindServiceEntry, []validateCase{
		{name: "external service is valid", spec: "hosts: [api.example.com, \"*.example.org\"]\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: DNS"},
		{name: "hosts are required", spec: "ports: [{number: 80, name: http}]", wantErr: "at least one host"},
		{name: "host * is rejected", spec: "hosts: [\"*\"]", wantErr: "capture all traffic"},
		{name: "wildcard only as leading label", spec: "hosts: [\"api.*.com\"]", wantErr: "not a valid DNS name"},
		{name: "port numbers must be valid", spec: "hosts: [a.example]\nports: [{number: 0, name: x}]", wantErr: "out of range"},
		{name: "port numbers must be unique", spec: "hosts: [a.example]\nports: [{number: 80, name: a}, {number: 80, name: b}]", wantErr: "used twice"},
		{name: "addresses must be IPs or CIDRs", spec: "hosts: [a.example]\naddresses: [nope]", wantErr: "bad IP"},
		{name: "workloadSelector and endpoints are exclusive", spec: "hosts: [a.example]\nworkloadSelector: {labels: {app: a}}\nendpoints: [{address: 10.0.0.1}]", wantErr: "only one of workloadSelector or endpoints"},
		{name: "endpoint needs an address or a network", spec: "hosts: [a.example]\nendpoints: [{labels: {a: b}}]", wantErr: "endpoints[0].address: must be set"},
	})
}

func TestValidateWorkloadEntry(t *testing.T) {
	runValidateCases(t, "networking.istio.io/v1", KindWorkloadEntry, []validateCase{
		{name: "IP address is valid", spec: "address: 10.0.0.1\nports: {http: 8080}"},
		{name: "host name is valid", spec: "address: vm1.example.com"},
		{name: "unix socket is valid", spec: "address: unix:///var/run/app.sock"},
		{name: "network without address is valid", spec: "network: net2"},
		{name: "address is required", spec: "labels: {app: a}", wantErr: "address: must be set"},
		{name: "bad address is rejected", spec: "address: \"not an address\"", wantErr: "neither an IP address nor a host name"},
		{name: "port values must be valid", spec: "address: 10.0.0.1\nports: {http: 0}", wantErr: "out of range"},
	})
}
