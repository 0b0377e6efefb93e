package extauthz

import (
	"strings"
	"testing"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

func TestCompileHTTPProvider(t *testing.T) {
	type provider = meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider
	for _, tc := range []struct {
		name    string
		h       *provider
		wantErr string
	}{
		{"a minimal provider compiles", &provider{Service: "a", Port: 80}, ""},
		{"pathPrefix must start with /", &provider{Service: "a", Port: 80, PathPrefix: "check"}, "pathPrefix"},
		{"pathPrefix may not carry a query", &provider{Service: "a", Port: 80, PathPrefix: "/check?x=1"}, "pathPrefix"},
		{"a lone * is refused in includeRequestHeadersInCheck", &provider{Service: "a", Port: 80, IncludeRequestHeadersInCheck: []string{"*"}}, "includeRequestHeadersInCheck"},
		{"a lone * is refused in the deprecated includeHeadersInCheck", &provider{Service: "a", Port: 80, IncludeHeadersInCheck: []string{"*"}}, "includeHeadersInCheck"},
		{"a lone * is refused in headersToUpstreamOnAllow", &provider{Service: "a", Port: 80, HeadersToUpstreamOnAllow: []string{"*"}}, "headersToUpstreamOnAllow"},
		{"a lone * is refused in headersToDownstreamOnDeny", &provider{Service: "a", Port: 80, HeadersToDownstreamOnDeny: []string{"*"}}, "headersToDownstreamOnDeny"},
		{"a lone * is refused in headersToDownstreamOnAllow", &provider{Service: "a", Port: 80, HeadersToDownstreamOnAllow: []string{"*"}}, "headersToDownstreamOnAllow"},
		{"an additional header needs a valid name", &provider{Service: "a", Port: 80, IncludeAdditionalHeadersInCheck: map[string]string{"bad name": "v"}}, "includeAdditionalHeadersInCheck"},
		{"an additional header needs a valid value", &provider{Service: "a", Port: 80, IncludeAdditionalHeadersInCheck: map[string]string{"x": "a\nb"}}, "includeAdditionalHeadersInCheck"},
		{"maxRequestBytes must be positive", &provider{Service: "a", Port: 80,
			IncludeRequestBodyInCheck: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody{}}, "maxRequestBytes"},
		{"maxRequestBytes is bounded", &provider{Service: "a", Port: 80,
			IncludeRequestBodyInCheck: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody{MaxRequestBytes: MaxBody + 1}}, "maxRequestBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := &meshv1alpha1.MeshConfig_ExtensionProvider{Name: "p", Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp{EnvoyExtAuthzHttp: tc.h}}
			provs, names, err := Compile([]*meshv1alpha1.MeshConfig_ExtensionProvider{ep})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error about %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if provs["p"].HTTP == nil || len(names) != 1 || provs["p"].Timeout != DefaultTimeout || provs["p"].StatusOnError != 403 {
				t.Errorf("got %+v %v", provs["p"], names)
			}
		})
	}
}

func TestHeaderMatcher(t *testing.T) {
	m, err := compileHeaderMatcher("f", []string{"x-user", "X-Auth-*", "*-ID", ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"X-User", true},
		{"x-user", true},
		{"X-User-Name", false},
		{"X-Auth-", true},
		{"X-Auth-Role", true},
		{"x-auth", false},
		{"X-Request-Id", true},
		{"Id", false},
		{"Cookie", false},
		{"", false},
	} {
		if got := m.Match(tc.name); got != tc.want {
			t.Errorf("match(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if (HeaderMatcher{}).Match("X-User") {
		t.Error("an empty list matches nothing")
	}
}

// FuzzCompileHeaderMatcher: any list compiles or is refused cleanly, and
// a compiled matcher never panics on any name.
func FuzzCompileHeaderMatcher(f *testing.F) {
	for _, s := range []string{"x-user", "X-Auth-*", "*-ID", "*", "", "**", "*x*"} {
		f.Add(s, "X-Auth-Role")
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		m, err := compileHeaderMatcher("f", []string{pattern})
		if err != nil {
			if pattern != "*" {
				t.Fatalf("%q refused: %v", pattern, err)
			}
			return
		}
		m.Match(name)
		m.DenyHeader(name)
	})
}
