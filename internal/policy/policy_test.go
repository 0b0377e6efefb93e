package policy

import (
	"context"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/config"
)

const testPolicies = `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: api}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwks: '{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: api}
spec:
  rules:
  - from:
    - source: {requestPrincipals: ["*"]}
`

// TestAuthenticateThenContinueIsRequest: the split pipeline the proxy runs
// (to consult a CUSTOM provider between the stages) decides as Request.
func TestAuthenticateThenContinueIsRequest(t *testing.T) {
	rs, _, err := config.Parse([]byte(testPolicies), "test")
	if err != nil {
		t.Fatal(err)
	}
	var ras, aps []config.Resource
	for _, r := range rs {
		if r.Kind == config.KindRequestAuthentication {
			ras = append(ras, r)
		} else {
			aps = append(aps, r)
		}
	}
	set, err := Compile(nil, ras, aps, Workload{Namespace: "api"}, Mesh{})
	if err != nil {
		t.Fatal(err)
	}
	if set.RequestAuthentication() == nil {
		t.Fatal("no request authentication compiled")
	}
	now := time.Now()
	for name, tc := range map[string]struct {
		auth   string
		stage  Stage
		status int
	}{
		"no token":      {"", StageAuthorization, 403},
		"garbage token": {"Bearer a.b.c", StageRequestAuthentication, 401},
	} {
		t.Run(name, func(t *testing.T) {
			h := map[string][]string{}
			if tc.auth != "" {
				h["Authorization"] = []string{tc.auth}
			}
			view := authn.RequestView{Header: h}
			mk := func() *authz.Request {
				return &authz.Request{HTTP: true, Method: "GET", Path: "/", DestinationPort: 80, Headers: authz.HTTPHeader(h)}
			}
			whole := set.Request(context.Background(), mk(), view, nil, now)
			r := mk()
			split := set.Continue(r, set.Authenticate(context.Background(), r, view, nil, now))
			for _, res := range []Result{whole, split} {
				if res.Allow || res.Stage != tc.stage || res.Status != tc.status {
					t.Errorf("result %+v, want deny at %s with %d", res, tc.stage, tc.status)
				}
			}
			if whole.Reason != split.Reason || whole.Body != split.Body {
				t.Errorf("Request says %q/%q, the split pipeline %q/%q", whole.Reason, whole.Body, split.Reason, split.Body)
			}
		})
	}
}

// TestAdmit: what Admit rejects (400) and what it forwards, under every
// pathNormalization. Encoded slashes are data except under
// DECODE_AND_MERGE_SLASHES, as Istio configures Envoy; %00 and malformed
// escapes are rejected whatever the mode.
func TestAdmit(t *testing.T) {
	modes := []authz.PathNormalization{authz.NormalizeNone, authz.NormalizeBase, authz.NormalizeMergeSlashes, authz.NormalizeDecodeAndMergeSlashes}
	cases := []struct {
		name   string
		method string
		path   string
		want   [4]string // per mode, in the order of modes; "" means 400
	}{
		{"a plain path", "GET", "/a/b?q=1", [4]string{"/a/b", "/a/b", "/a/b", "/a/b"}},
		{"an encoded slash is kept, or decoded by DECODE_AND_MERGE_SLASHES", "GET", "/a%2fb", [4]string{"/a%2fb", "/a%2Fb", "/a%2Fb", "/a/b"}},
		{"an encoded backslash likewise", "GET", "/a%5Cb", [4]string{"/a%5Cb", "/a%5Cb", "/a%5Cb", "/a/b"}},
		{"%00", "GET", "/a%00", [4]string{}},
		{"a truncated escape", "GET", "/a%2", [4]string{}},
		{"a malformed escape", "GET", "/a%g0/b", [4]string{}},
		{"a control character", "GET", "/a\x7f", [4]string{}},
		{"a lower-case method", "get", "/a", [4]string{}},
	}
	for _, tc := range cases {
		for i, n := range modes {
			t.Run(tc.name+"/"+n.String(), func(t *testing.T) {
				set, err := Compile(nil, nil, nil, Workload{Namespace: "api"}, Mesh{PathNormalization: n})
				if err != nil {
					t.Fatal(err)
				}
				r := &authz.Request{HTTP: true, Method: tc.method, Path: tc.path, DestinationPort: 80}
				res, ok := set.Admit(r)
				want := tc.want[i]
				switch {
				case want == "" && (ok || res.Status != 400 || res.Body != "Bad Request" || res.Reason == ""):
					t.Errorf("Admit(%s %q) = %+v, %v; want a 400 with a reason", tc.method, tc.path, res, ok)
				case want != "" && (!ok || r.Path != want):
					t.Errorf("Admit(%s %q) = %v, path %q; want admitted with %q (%s)", tc.method, tc.path, ok, r.Path, want, res.Reason)
				}
			})
		}
	}
}

// TestAuthenticateStripsOutputHeaders: the headers a RequestAuthentication
// outputs are removed from the request's header map before anything reads
// it, with no token or a token without the claim, so authorization (and
// `zmesh check`, which runs this code) never sees a client's own copy.
func TestAuthenticateStripsOutputHeaders(t *testing.T) {
	const ra = `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: api}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwks: '{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admin-header, namespace: api}
spec:
  rules:
  - when:
    - {key: "request.headers[x-jwt-sub]", values: [admin]}
`
	rs, _, err := config.Parse([]byte(ra), "test")
	if err != nil {
		t.Fatal(err)
	}
	set, err := Compile(nil, rs[:1], rs[1:], Workload{Namespace: "api"}, Mesh{})
	if err != nil {
		t.Fatal(err)
	}
	h := map[string][]string{"X-Jwt-Sub": {"admin"}, "X-Jwt-Payload": {"e30"}, "X-Other": {"kept"}}
	r := &authz.Request{HTTP: true, Method: "GET", Path: "/", DestinationPort: 80, Headers: authz.HTTPHeader(h)}
	res := set.Request(context.Background(), r, authn.RequestView{Header: h}, nil, time.Now())
	if res.Allow || res.Status != 403 {
		t.Errorf("a forged x-jwt-sub without a token: %+v, want 403", res)
	}
	if _, ok := h["X-Jwt-Sub"]; ok {
		t.Errorf("X-Jwt-Sub left in place: %v", h)
	}
	if _, ok := h["X-Jwt-Payload"]; ok || h["X-Other"][0] != "kept" {
		t.Errorf("headers after Authenticate: %v", h)
	}
}
