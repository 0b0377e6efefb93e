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
