package authn

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
)

const issuer = "https://issuer.example.com"

// unsigned returns a token with alg "none" and an empty signature.
func unsigned(t *testing.T, c map[string]any) string {
	t.Helper()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"rsa-1"}`))
	p, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// TestAuthenticateJWKSURI checks Istio's verdicts for tokens validated with
// keys fetched from a jwksUri served over real HTTPS.
func TestAuthenticateJWKSURI(t *testing.T) {
	rsa1, ec1 := rsaSigner(t), ecSigner(t)
	srv := newJWKSServer(t, jwksJSON(t, rsa1, ec1))
	p := compile(t, ra("foo", "jwt", nil, &security.JWTRule{
		Issuer:    issuer,
		Audiences: []string{"bookstore", "other"},
		JwksUri:   srv.URL + "/jwks",
	}))
	keys := srv.cache(newFakeClock())

	// An attacker who knows the RSA public key signs HS256 with it as the
	// HMAC secret: the classic algorithm-confusion attack.
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	confused := signer{"rsa-1", jwa.HS256(), pubDER}
	testKeys(t)
	impostor := signer{"rsa-1", jwa.RS256(), rsaKey2} // right kid, wrong key

	tests := []struct {
		name      string
		req       RequestView
		wantAuth  bool
		wantErr   Reason
		principal string
	}{
		{name: "a valid RS256 token authenticates as iss/sub", req: bearer(rsa1.sign(t, claims(issuer, nil))), wantAuth: true, principal: issuer + "/alice"},
		{name: "a valid ES256 token authenticates as iss/sub", req: bearer(ec1.sign(t, claims(issuer, map[string]any{"sub": "bob"}))), wantAuth: true, principal: issuer + "/bob"},
		{name: "a request without a token passes unauthenticated", req: RequestView{}},
		{name: "an Authorization header of another scheme holds no token", req: RequestView{Header: map[string][]string{"Authorization": {"Basic dXNlcjpwYXNz"}}}},
		{name: "the Bearer scheme is case-insensitive", req: RequestView{Header: map[string][]string{"Authorization": {"bearer " + rsa1.sign(t, claims(issuer, nil))}}}, wantAuth: true, principal: issuer + "/alice"},
		{name: "a token without kid is verified by any key that fits its alg", req: bearer(signer{"", jwa.ES256(), ecKey1}.sign(t, claims(issuer, nil))), wantAuth: true, principal: issuer + "/alice"},
		{name: "any one of the rule's audiences is accepted", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"aud": []string{"x", "other"}}))), wantAuth: true, principal: issuer + "/alice"},
		{name: "a token expired within the 60 s skew is accepted", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"exp": testNow.Add(-30 * time.Second).Unix()}))), wantAuth: true, principal: issuer + "/alice"},
		{name: "a token not yet valid within the 60 s skew is accepted", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"nbf": testNow.Add(30 * time.Second).Unix()}))), wantAuth: true, principal: issuer + "/alice"},
		{name: "a token without exp does not expire", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"exp": nil}))), wantAuth: true, principal: issuer + "/alice"},

		{name: "an expired token is rejected", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"exp": testNow.Add(-2 * time.Minute).Unix()}))), wantErr: ReasonExpired},
		{name: "a token whose nbf is beyond the skew is rejected", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"nbf": testNow.Add(2 * time.Minute).Unix()}))), wantErr: ReasonNotYetValid},
		{name: "a token of an unconfigured issuer is rejected", req: bearer(rsa1.sign(t, claims("https://evil.example.com", nil))), wantErr: ReasonUnknownIssuer},
		{name: "a token without iss is rejected", req: bearer(rsa1.sign(t, claims("", map[string]any{"iss": nil}))), wantErr: ReasonUnknownIssuer},
		{name: "a token for another audience is rejected", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"aud": "payments"}))), wantErr: ReasonAudience},
		{name: "a token without aud is rejected when the rule lists audiences", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"aud": nil}))), wantErr: ReasonAudience},
		{name: "a token signed by another key under a known kid is rejected", req: bearer(impostor.sign(t, claims(issuer, nil))), wantErr: ReasonBadSignature},
		{name: "a token with alg none is rejected", req: bearer(unsigned(t, claims(issuer, nil))), wantErr: ReasonUnsupportedAlg},
		{name: "an HS256 token keyed with the RSA public key is rejected", req: bearer(confused.sign(t, claims(issuer, nil))), wantErr: ReasonNoKey},
		{name: "a token naming an unknown kid is rejected", req: bearer(signer{"nope", jwa.ES256(), ecKey1}.sign(t, claims(issuer, nil))), wantErr: ReasonNoKey},
		{name: "a token whose alg does not fit the kid's key is rejected", req: bearer(signer{"ec-1", jwa.RS256(), rsaKey1}.sign(t, claims(issuer, nil))), wantErr: ReasonNoKey},
		{name: "a token with a tampered payload is rejected", req: bearer(tamper(rsa1.sign(t, claims(issuer, nil)))), wantErr: ReasonBadSignature},
		{name: "a token of two parts is malformed", req: bearer("abc.def"), wantErr: ReasonBadFormat},
		{name: "a token of five parts (JWE) is malformed", req: bearer("a.b.c.d.e"), wantErr: ReasonBadFormat},
		{name: "a header that is not base64url JSON is rejected", req: bearer("bm90IGpzb24.e30.c2ln"), wantErr: ReasonBadHeader},
		{name: "a payload that is not JSON is rejected", req: bearer(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256"}`)) + ".bm90.c2ln"), wantErr: ReasonBadPayload},
		{name: "an exp that is not a number is rejected", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"exp": "tomorrow"}))), wantErr: ReasonBadPayload},
		{name: "a token over 64 KiB is refused undecoded", req: bearer(rsa1.sign(t, claims(issuer, map[string]any{"pad": strings.Repeat("x", 70000)}))), wantErr: ReasonBadFormat},
		{name: "a request with a valid and an invalid token is rejected", req: RequestView{
			Header:   map[string][]string{"Authorization": {"Bearer " + rsa1.sign(t, claims(issuer, nil))}},
			RawQuery: "access_token=" + rsa1.sign(t, claims(issuer, map[string]any{"aud": "payments"})),
		}, wantErr: ReasonAudience},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := authenticate(p, tt.req, keys)
			if tt.wantErr != 0 {
				var te *TokenError
				if !errors.As(err, &te) || !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("err = %v, want a TokenError", err)
				}
				if te.Reason != tt.wantErr {
					t.Fatalf("reason = %q (%v), want %q", te.Reason, err, tt.wantErr)
				}
				if res.Authenticated {
					t.Fatal("rejected request is Authenticated")
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if res.Authenticated != tt.wantAuth || res.Principal != tt.principal {
				t.Fatalf("Authenticated=%v Principal=%q, want %v %q", res.Authenticated, res.Principal, tt.wantAuth, tt.principal)
			}
			if tt.wantAuth && res.Policy != "foo/jwt" {
				t.Fatalf("Policy = %q", res.Policy)
			}
		})
	}
}

// tamper changes the payload of a token without re-signing it.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	b = []byte(strings.Replace(string(b), `"alice"`, `"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// TestResultAttributes checks what authorization gets from a valid token.
func TestResultAttributes(t *testing.T) {
	s := ecSigner(t)
	p := compile(t, ra("foo", "jwt", nil, &security.JWTRule{
		Issuer:               issuer,
		Jwks:                 string(jwksJSON(t, s)),
		SpaceDelimitedClaims: []string{"org.roles"},
	}))
	tok := s.sign(t, claims(issuer, map[string]any{
		"aud":    []string{"a", "b"},
		"azp":    "web-client",
		"groups": []string{"dev", "ops"},
		"scope":  "read  write",
		"org":    map[string]any{"name": "acme", "roles": "admin audit"},
		"n":      12345678901,
	}))
	res, err := authenticate(p, bearer(tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Authenticated || res.Principal != issuer+"/alice" || res.Issuer != issuer || res.Subject != "alice" {
		t.Fatalf("result = %+v", res)
	}
	if !reflect.DeepEqual(res.Audiences, []string{"a", "b"}) || res.Presenter != "web-client" || res.Token != tok {
		t.Fatalf("audiences %v presenter %q", res.Audiences, res.Presenter)
	}
	if got := res.Claims["groups"]; !reflect.DeepEqual(got, []any{"dev", "ops"}) {
		t.Errorf("groups = %#v", got)
	}
	if got := res.Claims["scope"]; !reflect.DeepEqual(got, []any{"read", "write"}) {
		t.Errorf("scope (space-delimited by default) = %#v", got)
	}
	org := res.Claims["org"].(map[string]any)
	if org["name"] != "acme" || !reflect.DeepEqual(org["roles"], []any{"admin", "audit"}) {
		t.Errorf("org = %#v", org)
	}
	if got := res.Claims["n"]; got != json.Number("12345678901") {
		t.Errorf("n = %#v, want exact json.Number", got)
	}
}

// TestTokenLocations checks fromHeaders, fromParams, fromCookies and the
// default locations.
func TestTokenLocations(t *testing.T) {
	s := ecSigner(t)
	jwks := string(jwksJSON(t, s))
	tok := s.sign(t, claims(issuer, nil))
	custom := compile(t, ra("foo", "jwt", nil, &security.JWTRule{
		Issuer:      issuer,
		Jwks:        jwks,
		FromHeaders: []*security.JWTHeader{{Name: "x-jwt-assertion", Prefix: "Bearer "}, {Name: "x-raw-token"}},
		FromParams:  []string{"my_token"},
		FromCookies: []string{"session"},
	}))
	defaults := compile(t, ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, Jwks: jwks}))
	h := func(k, v string) RequestView { return RequestView{Header: map[string][]string{k: {v}}} }

	tests := []struct {
		name     string
		policy   *RequestPolicy
		req      RequestView
		wantAuth bool
	}{
		{"fromHeaders with a prefix reads the token after it", custom, h("X-Jwt-Assertion", "Bearer "+tok), true},
		{"fromHeaders with a prefix ignores a value without it", custom, h("X-Jwt-Assertion", tok), false},
		{"fromHeaders without a prefix takes the whole value", custom, h("X-Raw-Token", tok), true},
		{"fromParams reads the query parameter", custom, RequestView{RawQuery: "a=1&my_token=" + tok}, true},
		{"fromCookies reads the cookie", custom, h("Cookie", "theme=dark; session="+tok+"; x=y"), true},
		{"fromCookies reads a quoted cookie", custom, h("Cookie", `session="`+tok+`"`), true},
		{"custom locations replace the default header", custom, bearer(tok), false},
		{"custom locations replace the default parameter", custom, RequestView{RawQuery: "access_token=" + tok}, false},
		{"the default location is the Authorization bearer header", defaults, bearer(tok), true},
		{"the default location includes the access_token parameter", defaults, RequestView{RawQuery: "access_token=" + tok}, true},
		{"the default locations do not include cookies", defaults, h("Cookie", "access_token="+tok), false},
		{"a malformed query elsewhere does not hide the token", defaults, RequestView{RawQuery: "x=%zz&access_token=" + tok}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := authenticate(tt.policy, tt.req, nil)
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if res.Authenticated != tt.wantAuth {
				t.Fatalf("Authenticated = %v, want %v", res.Authenticated, tt.wantAuth)
			}
		})
	}
}

// TestIssuerPicksRule checks that with several rules a token is verified
// by the rule of its issuer, and only at that rule's locations.
func TestIssuerPicksRule(t *testing.T) {
	a, b := ecSigner(t), rsaSigner(t)
	p := compile(t,
		ra("foo", "a", nil, &security.JWTRule{Issuer: "issuer-a", Jwks: string(jwksJSON(t, a))}),
		ra("istio-system", "b", nil, &security.JWTRule{
			Issuer:      "issuer-b",
			Jwks:        string(jwksJSON(t, b)),
			FromHeaders: []*security.JWTHeader{{Name: "x-b-token"}},
		}),
	)
	tests := []struct {
		name       string
		req        RequestView
		wantPolicy string
		wantErr    Reason
	}{
		{"issuer A's token is verified by rule A", bearer(a.sign(t, claims("issuer-a", nil))), "foo/a", 0},
		{"issuer B's token is verified by rule B at B's location", RequestView{Header: map[string][]string{"X-B-Token": {b.sign(t, claims("issuer-b", nil))}}}, "istio-system/b", 0},
		{"issuer B's token at A's location is refused", bearer(b.sign(t, claims("issuer-b", nil))), "", ReasonUnknownIssuer},
		{"issuer A's token signed with B's key is refused", bearer(signer{a.kid, b.alg, b.key}.sign(t, claims("issuer-a", nil))), "", ReasonNoKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := authenticate(p, tt.req, nil)
			if tt.wantErr != 0 {
				var te *TokenError
				if !errors.As(err, &te) || te.Reason != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || res.Policy != tt.wantPolicy {
				t.Fatalf("policy %q err %v, want %q", res.Policy, err, tt.wantPolicy)
			}
		})
	}
}

// TestOutputHeaders checks outputPayloadToHeader, outputClaimToHeaders and
// forwardOriginalToken.
func TestOutputHeaders(t *testing.T) {
	s := ecSigner(t)
	jwks := string(jwksJSON(t, s))
	tok := s.sign(t, claims(issuer, map[string]any{
		"group": "eng",
		"admin": true,
		"level": 3,
		"org":   map[string]any{"team": "core"},
		"evil":  "x\r\nX-Injected: 1",
		"list":  []string{"a"},
	}))
	rule := func(forward bool) *security.JWTRule {
		return &security.JWTRule{
			Issuer:                issuer,
			Jwks:                  jwks,
			ForwardOriginalToken:  forward,
			OutputPayloadToHeader: "x-jwt-payload",
			OutputClaimToHeaders: []*security.ClaimToHeader{
				{Header: "x-group", Claim: "group"},
				{Header: "x-admin", Claim: "admin"},
				{Header: "x-level", Claim: "level"},
				{Header: "x-team", Claim: "org.team"},
				{Header: "x-evil", Claim: "evil"},
				{Header: "x-list", Claim: "list"},
				{Header: "x-missing", Claim: "nope"},
			},
		}
	}

	res, err := authenticate(compile(t, ra("foo", "jwt", nil, rule(false))), bearer(tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	want := []HeaderValue{
		{"X-Jwt-Payload", base64.RawURLEncoding.EncodeToString(payload)},
		{"X-Group", "eng"},
		{"X-Admin", "true"},
		{"X-Level", "3"},
		{"X-Team", "core"},
	}
	if !reflect.DeepEqual(res.SetHeaders, want) {
		t.Errorf("SetHeaders = %v\nwant %v", res.SetHeaders, want)
	}
	if !reflect.DeepEqual(res.RemoveHeaders, []string{"Authorization"}) {
		t.Errorf("forwardOriginalToken false: RemoveHeaders = %v, want [Authorization]", res.RemoveHeaders)
	}

	res, err = authenticate(compile(t, ra("foo", "jwt", nil, rule(true))), bearer(tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RemoveHeaders) != 0 {
		t.Errorf("forwardOriginalToken true: RemoveHeaders = %v, want none", res.RemoveHeaders)
	}

	res, err = authenticate(compile(t, ra("foo", "jwt", nil, rule(false))), RequestView{RawQuery: "access_token=" + tok}, nil)
	if err != nil || len(res.RemoveHeaders) != 0 {
		t.Errorf("token in a parameter: RemoveHeaders = %v (err %v), want none", res.RemoveHeaders, err)
	}
}

// TestOutputHeaderNames: the headers a caller strips from every request
// are each rule's outputPayloadToHeader and outputClaimToHeaders, once
// each, canonical, but never a header tokens are read from.
func TestOutputHeaderNames(t *testing.T) {
	jwks := string(jwksJSON(t, ecSigner(t)))
	p := compile(t,
		ra("foo", "a", nil, &security.JWTRule{Issuer: "a", Jwks: jwks, OutputPayloadToHeader: "x-jwt-payload",
			OutputClaimToHeaders: []*security.ClaimToHeader{{Header: "x-jwt-sub", Claim: "sub"}, {Header: "X-JWT-SUB", Claim: "sub"}}}),
		ra("foo", "b", nil, &security.JWTRule{Issuer: "b", Jwks: jwks,
			FromHeaders:          []*security.JWTHeader{{Name: "x-token"}},
			OutputClaimToHeaders: []*security.ClaimToHeader{{Header: "x-team", Claim: "team"}, {Header: "x-token", Claim: "sub"}}}),
		ra("foo", "c", nil, &security.JWTRule{Issuer: "c", Jwks: jwks}),
	)
	if got, want := p.OutputHeaders(), []string{"X-Jwt-Payload", "X-Jwt-Sub", "X-Team"}; !reflect.DeepEqual(got, want) {
		t.Errorf("OutputHeaders() = %v, want %v", got, want)
	}
	if got := compile(t, ra("foo", "c", nil, &security.JWTRule{Issuer: "c", Jwks: jwks})).OutputHeaders(); len(got) != 0 {
		t.Errorf("a policy without outputs: OutputHeaders() = %v", got)
	}
	if got := (*RequestPolicy)(nil).OutputHeaders(); got != nil {
		t.Errorf("nil policy: OutputHeaders() = %v", got)
	}
}

// TestTokenErrorResponse checks the status and body a sidecar answers
// with, which are Envoy's.
func TestTokenErrorResponse(t *testing.T) {
	tests := []struct {
		reason Reason
		status int
		body   string
	}{
		{ReasonBadSignature, 401, "Jwt verification fails"},
		{ReasonExpired, 401, "Jwt is expired"},
		{ReasonNotYetValid, 401, "Jwt not yet valid"},
		{ReasonUnknownIssuer, 401, "Jwt issuer is not configured"},
		{ReasonAudience, 403, "Audiences in Jwt are not allowed"},
		{ReasonNoKey, 401, "Jwks doesn't have key to match kid or alg from Jwt"},
		{ReasonKeysUnavailable, 401, "Jwks remote fetch is failed"},
	}
	for _, tt := range tests {
		e := &TokenError{Reason: tt.reason, Location: `header "Authorization"`}
		if e.StatusCode() != tt.status || e.Body() != tt.body {
			t.Errorf("%v: %d %q, want %d %q", tt.reason, e.StatusCode(), e.Body(), tt.status, tt.body)
		}
	}
}

// TestErrorsCarryNoToken checks that a rejection never echoes the token,
// which may be a live credential of another audience.
func TestErrorsCarryNoToken(t *testing.T) {
	s := ecSigner(t)
	p := compile(t, ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, Audiences: []string{"x"}, Jwks: string(jwksJSON(t, s))}))
	tok := s.sign(t, claims(issuer, nil))
	_, err := authenticate(p, bearer(tok), nil)
	if err == nil {
		t.Fatal("want an error")
	}
	parts := strings.Split(tok, ".")
	for _, part := range parts {
		if strings.Contains(err.Error(), part) {
			t.Fatalf("error %q contains part of the token", err)
		}
	}
}

// TestCompileRequest checks compile-time behaviour.
func TestCompileRequest(t *testing.T) {
	t.Run("a policy without rules lets tokens through unread", func(t *testing.T) {
		res, err := authenticate(compile(t, ra("foo", "empty", nil)), bearer("garbage"), nil)
		if err != nil || res.Authenticated {
			t.Fatalf("res %+v err %v", res, err)
		}
		var nilPolicy *RequestPolicy
		if _, err := authenticate(nilPolicy, bearer("garbage"), nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an unusable inline jwks fails closed and warns", func(t *testing.T) {
		p := compile(t, ra("foo", "bad", nil, &security.JWTRule{Issuer: issuer, Jwks: `{"keys":[{"kty":"nope"}]}`}))
		if len(p.Warnings()) != 1 {
			t.Fatalf("warnings = %v", p.Warnings())
		}
		_, err := authenticate(p, bearer(ecSigner(t).sign(t, claims(issuer, nil))), nil)
		var te *TokenError
		if !errors.As(err, &te) || te.Reason != ReasonNoKey {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a jwksUri rule without a key source fails closed", func(t *testing.T) {
		p := compile(t, ra("foo", "uri", nil, &security.JWTRule{Issuer: issuer, JwksUri: "https://keys.invalid/jwks"}))
		_, err := authenticate(p, bearer(ecSigner(t).sign(t, claims(issuer, nil))), nil)
		var te *TokenError
		if !errors.As(err, &te) || te.Reason != ReasonKeysUnavailable {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a spec of the wrong type is an error", func(t *testing.T) {
		r := config.Resource{Meta: config.Meta{Kind: config.KindRequestAuthentication, Name: "x", Namespace: "foo"}, Spec: &security.PeerAuthentication{}}
		if _, err := CompileRequest([]config.Resource{r}, RequestOptions{}); err == nil {
			t.Fatal("want an error")
		}
	})
	t.Run("a negative skew checks times exactly", func(t *testing.T) {
		s := ecSigner(t)
		p, err := CompileRequest([]config.Resource{ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, Jwks: string(jwksJSON(t, s))})}, RequestOptions{ClockSkew: -1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = authenticate(p, bearer(s.sign(t, claims(issuer, map[string]any{"exp": testNow.Add(-time.Second).Unix()}))), nil)
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a private key in an inline jwks verifies with its public part", func(t *testing.T) {
		s := ecSigner(t)
		priv, _ := json.Marshal(map[string]any{"keys": []any{privateJWK(t, s)}})
		p := compile(t, ra("foo", "jwt", nil, &security.JWTRule{Issuer: issuer, Jwks: string(priv)}))
		if res, err := authenticate(p, bearer(s.sign(t, claims(issuer, nil))), nil); err != nil || !res.Authenticated {
			t.Fatalf("res %+v err %v", res, err)
		}
	})
}

// privateJWK returns s's private key as a JWK, as an operator might paste
// it by mistake.
func privateJWK(t *testing.T, s signer) jwk.Key {
	t.Helper()
	k, err := jwk.Import(s.key)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, s.kid)
	return k
}

// TestSelectRequest checks Istio's scoping of RequestAuthentications.
func TestSelectRequest(t *testing.T) {
	rule := &security.JWTRule{Issuer: issuer}
	withTarget := ra("foo", "gateway", nil, rule)
	withTarget.Spec.(*security.RequestAuthentication).TargetRef = &typev1beta1.PolicyTargetReference{Kind: "Gateway", Name: "gw"}
	all := []config.Resource{
		ra("istio-system", "mesh", nil, rule),
		ra("istio-system", "mesh-selected", map[string]string{"app": "httpbin"}, rule),
		ra("istio-system", "mesh-other", map[string]string{"app": "other"}, rule),
		ra("foo", "namespace", nil, rule),
		ra("foo", "workload", map[string]string{"app": "httpbin"}, rule),
		ra("foo", "workload-other", map[string]string{"app": "httpbin", "version": "v2"}, rule),
		ra("bar", "elsewhere", nil, rule),
		withTarget,
	}
	got := SelectRequest(all, Workload{Namespace: "foo", Labels: map[string]string{"app": "httpbin", "version": "v1"}}, "")
	var names []string
	for _, r := range got {
		names = append(names, r.Name)
	}
	want := []string{"mesh", "mesh-selected", "namespace", "workload"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("selected %v, want %v", names, want)
	}
}

// verifyIndependently reports whether tok is a JWS that jwx verifies with
// key under alg, used as an oracle by the fuzz target.
func verifyIndependently(tok string, alg jwa.SignatureAlgorithm, key any) bool {
	_, err := jws.Verify([]byte(tok), jws.WithKey(alg, key))
	return err == nil
}
