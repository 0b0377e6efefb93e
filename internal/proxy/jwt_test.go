package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/meshtest"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// testIssuer signs ES256 JWTs with one key and publishes it as a JWKS.
type testIssuer struct {
	iss string
	kid string
	key *ecdsa.PrivateKey
}

func newTestIssuer(t testing.TB, iss string) *testIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testIssuer{iss: iss, kid: "k1", key: k}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwks returns the issuer's public key set as JSON.
func (i *testIssuer) jwks() string {
	pub := i.key.PublicKey
	b, _ := pub.Bytes() // uncompressed point: 0x04 || X || Y
	set := map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": i.kid, "alg": "ES256", "use": "sig",
		"x": b64(b[1:33]), "y": b64(b[33:]),
	}}}
	out, _ := json.Marshal(set)
	return string(out)
}

// token returns a compact JWS for sub with the given audience, valid for
// an hour; extra claims are merged in.
func (i *testIssuer) token(t testing.TB, sub, aud string, extra map[string]any) string {
	t.Helper()
	claims := map[string]any{"iss": i.iss, "sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	if aud != "" {
		claims["aud"] = aud
	}
	for k, v := range extra {
		claims[k] = v
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": i.kid, "typ": "JWT"})
	payload, _ := json.Marshal(claims)
	signing := b64(hdr) + "." + b64(payload)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, i.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + b64(sig)
}

var _ crypto.Signer = (*ecdsa.PrivateKey)(nil)

// headerApp answers with the request headers it received, one
// "Name: value" per line, so tests can see what the proxy forwarded.
func headerApp(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range r.Header {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(vs, ","))
		}
		fmt.Fprintf(w, "path=%s\n", r.URL.RequestURI())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func requestAuthn(issuer, jwksField string) string {
	return fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  jwtRules:
  - issuer: %q
    audiences: [backend]
    %s
    outputClaimToHeaders:
    - {header: x-jwt-sub, claim: sub}
    - {header: x-jwt-team, claim: team}
`, issuer, jwksField)
}

const requireJWT = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  rules:
  - from:
    - source: {requestPrincipals: ["*"]}
`

func doGet(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestJWTThroughProxies(t *testing.T) {
	iss := newTestIssuer(t, "https://issuer.example")
	forger := newTestIssuer(t, "https://issuer.example")
	inline, _ := json.Marshal(iss.jwks())
	p := newPairWith(t, mesh(), strictMesh+"---\n"+requestAuthn(iss.iss, "jwks: "+string(inline))+"---\n"+requireJWT, headerApp(t))
	url := "http://backend.api.svc.cluster.local/data"
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	tests := []struct {
		name     string
		hdr      map[string]string
		wantCode int
		wantBody string
	}{
		{"no token passes authentication but no ALLOW rule matches", nil, 403, "RBAC: access denied"},
		{"forged signature", bearer(forger.token(t, "alice", "backend", nil)), 401, "Jwt verification fails"},
		{"garbage token", bearer("not.a.jwt"), 401, "Jwt header is an invalid JSON"},
		{"unknown issuer", bearer(newTestIssuer(t, "https://other.example").token(t, "alice", "backend", nil)), 401, "Jwt issuer is not configured"},
		{"wrong audience", bearer(iss.token(t, "alice", "someone-else", nil)), 403, "Audiences in Jwt are not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := doGet(t, p.http, url, tc.hdr)
			if code != tc.wantCode || body != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
			if code == 401 && !strings.HasPrefix(h.Get("Www-Authenticate"), "Bearer realm=") {
				t.Errorf("401 without WWW-Authenticate: %v", h)
			}
		})
	}

	t.Run("valid token reaches the app with claim headers and without the token", func(t *testing.T) {
		hdr := bearer(iss.token(t, "alice", "backend", map[string]any{"team": "blue"}))
		hdr["X-Jwt-Sub"] = "mallory" // a client-sent value is replaced
		code, _, body := doGet(t, p.http, url, hdr)
		if code != 200 {
			t.Fatalf("got %d %q", code, body)
		}
		for _, want := range []string{"X-Jwt-Sub: alice\n", "X-Jwt-Team: blue\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("app did not see %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, "Authorization:") || strings.Contains(body, "mallory") {
			t.Errorf("app saw the token or the client's header:\n%s", body)
		}
	})
}

func TestJWTForwardOriginalTokenAndPayloadHeader(t *testing.T) {
	iss := newTestIssuer(t, "https://issuer.example")
	inline, _ := json.Marshal(iss.jwks())
	ra := fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: api}
spec:
  jwtRules:
  - issuer: %q
    jwks: %s
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
`, iss.iss, inline)
	p := newPairWith(t, mesh(), ra, headerApp(t))
	tok := iss.token(t, "bob", "", nil)
	code, _, body := doGet(t, p.http, "http://backend.api.svc.cluster.local/", map[string]string{"Authorization": "Bearer " + tok})
	if code != 200 {
		t.Fatalf("got %d %q", code, body)
	}
	if !strings.Contains(body, "Authorization: Bearer "+tok+"\n") {
		t.Errorf("token not forwarded:\n%s", body)
	}
	if !strings.Contains(body, "X-Jwt-Payload: "+strings.Split(tok, ".")[1]+"\n") {
		t.Errorf("payload header missing:\n%s", body)
	}
}

// TestJWKSFetchedOnApply: keys behind a jwksUri are fetched when the
// config arrives, not by the first request.
func TestJWKSFetchedOnApply(t *testing.T) {
	iss := newTestIssuer(t, "https://issuer.example")
	var fetches atomic.Int32
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		io.WriteString(w, iss.jwks())
	}))
	t.Cleanup(jwksSrv.Close)

	var logs syncBuffer
	ca := meshtest.NewCA(t, testTD)
	server := startProxyLog(t, ca, "api", "backend", headerApp(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	v := &xds.View{Version: "s1", Mesh: mesh()}
	for _, r := range parse(t, requestAuthn(iss.iss, "jwksUri: "+jwksSrv.URL+"/jwks")+"---\n"+requireJWT) {
		switch r.Kind {
		case "RequestAuthentication":
			v.RequestAuthentications = append(v.RequestAuthentications, r)
		case "AuthorizationPolicy":
			v.AuthorizationPolicies = append(v.AuthorizationPolicies, r)
		}
	}
	mustApply(t, server, v)
	mustApply(t, client, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(server)}})
	deadline := time.Now().Add(5 * time.Second)
	for fetches.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if fetches.Load() != 1 {
		t.Fatalf("JWKS fetched %d times after Apply, want 1", fetches.Load())
	}
	c := proxyClient(t, client)
	for range 3 {
		code, _, body := doGet(t, c, "http://backend.api.svc.cluster.local/", map[string]string{"Authorization": "Bearer " + iss.token(t, "carol", "backend", nil)})
		if code != 200 || !strings.Contains(body, "X-Jwt-Sub: carol") {
			t.Fatalf("got %d %q", code, body)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1 (cached)", n)
	}
	// The policy that refused a token is in the access log, not the body.
	code, _, body := doGet(t, c, "http://backend.api.svc.cluster.local/", map[string]string{"Authorization": "Bearer " + iss.token(t, "carol", "nope", nil)})
	if code != 403 || strings.Contains(body, "api/jwt") {
		t.Fatalf("got %d %q", code, body)
	}
	if !strings.Contains(logs.String(), `"status":403`) || !strings.Contains(logs.String(), `policy api/jwt jwtRules[0]`) {
		t.Errorf("access log does not explain the refusal:\n%s", logs.String())
	}
}

// TestAuditAndDryRunAreLoggedNotEnforced: an AUDIT match and a dry-run
// DENY show in the access log and metrics; neither changes the answer.
func TestAuditAndDryRunAreLoggedNotEnforced(t *testing.T) {
	var logs syncBuffer
	ca := meshtest.NewCA(t, testTD)
	server := startProxyLog(t, ca, "api", "backend", echoApp(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	client := startProxy(t, ca, "web", "frontend", echoApp(t))
	mustApply(t, server, &xds.View{Version: "s1", Mesh: mesh(), AuthorizationPolicies: parse(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: api}
spec:
  action: AUDIT
  rules:
  - to:
    - operation: {paths: ["/admin"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-deny
  namespace: api
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin"]}
`)})
	mustApply(t, client, &xds.View{Version: "c1", Mesh: mesh(), Services: []registry.Service{serviceOf(server)}})
	c := proxyClient(t, client)
	if code, _ := get(t, c, "http://backend.api.svc.cluster.local/admin"); code != 200 {
		t.Fatalf("/admin: %d, want 200 (AUDIT and dry-run never deny)", code)
	}
	if code, _ := get(t, c, "http://backend.api.svc.cluster.local/public"); code != 200 {
		t.Fatalf("/public: %d", code)
	}
	var adminLine, publicLine string
	for _, l := range strings.Split(logs.String(), "\n") {
		switch {
		case strings.Contains(l, `"msg":"access"`) && strings.Contains(l, `"path":"/admin"`):
			adminLine = l
		case strings.Contains(l, `"msg":"access"`) && strings.Contains(l, `"path":"/public"`):
			publicLine = l
		}
	}
	for _, want := range []string{`"audit":true`, `"audit_policy":"api/audit-admin"`, `"dry_run_result":"deny"`, `"dry_run_policy":"api/would-deny"`, `"status":200`} {
		if !strings.Contains(adminLine, want) {
			t.Errorf("/admin access log %s lacks %s", adminLine, want)
		}
	}
	if strings.Contains(publicLine, `"audit"`) || !strings.Contains(publicLine, `"dry_run_result":"allow"`) {
		t.Errorf("/public access log %s", publicLine)
	}
	if got := counter(t, server, "zmesh_authz_dry_run_total", `policy="api/would-deny",result="deny"`); got != 1 {
		t.Errorf("dry-run deny counter = %v, want 1", got)
	}
	if got := counter(t, server, "zmesh_authz_denied_total", `policy="api/would-deny"`); got != 0 {
		t.Errorf("a dry-run policy was counted as a denial")
	}
}

// TestJWTOutputHeadersCannotBeForged: the headers a RequestAuthentication
// outputs (outputClaimToHeaders, outputPayloadToHeader) reach the app and
// authorization only as a verified token set them, whichever way the
// request came (through the client's proxy over mTLS, or plaintext
// straight to the inbound): a client's own copies are removed from every
// request, with no token, with a token that lacks the claim, or with one
// that has it.
func TestJWTOutputHeadersCannotBeForged(t *testing.T) {
	iss := newTestIssuer(t, "https://issuer.example")
	inline, _ := json.Marshal(iss.jwks())
	ra := fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: api}
spec:
  jwtRules:
  - issuer: %q
    jwks: %s
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {header: x-jwt-sub, claim: sub}
    - {header: x-jwt-team, claim: team}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admins-only-for-admin, namespace: api}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin"]}
    when:
    - key: request.headers[x-jwt-team]
      notValues: ["admins"]
`, iss.iss, inline)
	p := newPairWith(t, mesh(), permissiveMesh+"---\n"+ra, headerApp(t))
	forged := map[string]string{"X-Jwt-Sub": "admin", "X-Jwt-Team": "admins", "X-Jwt-Payload": "eyJzdWIiOiJhZG1pbiJ9"}
	with := func(tok string) map[string]string {
		h := map[string]string{}
		for k, v := range forged {
			h[k] = v
		}
		if tok != "" {
			h["Authorization"] = "Bearer " + tok
		}
		return h
	}
	noTeam := iss.token(t, "alice", "", nil)
	blue := iss.token(t, "bob", "", map[string]any{"team": "blue"})
	routes := map[string]struct {
		c    *http.Client
		base string
	}{
		"via the client proxy":     {p.http, "http://backend.api.svc.cluster.local"},
		"plaintext to the inbound": {&http.Client{Timeout: 10 * time.Second}, "http://" + p.server.InboundAddr().String()},
	}
	for route, rt := range routes {
		for _, tc := range []struct {
			name  string
			hdr   map[string]string
			want  []string // lines the app must see
			never []string // substrings the app must not see
		}{
			{"no token", with(""), nil, []string{"X-Jwt-Sub", "X-Jwt-Team", "X-Jwt-Payload"}},
			{"a valid token without the team claim", with(noTeam),
				[]string{"X-Jwt-Sub: alice\n", "X-Jwt-Payload: " + strings.Split(noTeam, ".")[1] + "\n"},
				[]string{"X-Jwt-Team", "admin", "Authorization"}},
			{"a valid token with the claim", with(blue),
				[]string{"X-Jwt-Sub: bob\n", "X-Jwt-Team: blue\n"}, []string{"admin"}},
		} {
			t.Run(route+"/"+tc.name, func(t *testing.T) {
				code, _, body := doGet(t, rt.c, rt.base+"/data", tc.hdr)
				if code != 200 {
					t.Fatalf("got %d %q", code, body)
				}
				for _, w := range tc.want {
					if !strings.Contains(body, w) {
						t.Errorf("app did not see %q:\n%s", w, body)
					}
				}
				for _, n := range tc.never {
					if strings.Contains(body, n) {
						t.Errorf("app saw %q:\n%s", n, body)
					}
				}
				// Authorization sees what the app sees: a forged team
				// does not open /admin.
				if code, _, body := doGet(t, rt.c, rt.base+"/admin", tc.hdr); code != 403 {
					t.Errorf("/admin with a forged x-jwt-team: got %d %q, want 403", code, body)
				}
			})
		}
	}
}
