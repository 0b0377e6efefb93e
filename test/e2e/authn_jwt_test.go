package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jwtIssuer signs ES256 tokens with one key.
type jwtIssuer struct {
	iss string
	key *ecdsa.PrivateKey
}

func newJWTIssuer(t *testing.T, iss string) *jwtIssuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &jwtIssuer{iss: iss, key: k}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwks is the issuer's public key set, as JSON.
func (j *jwtIssuer) jwks() string {
	pt, _ := j.key.PublicKey.Bytes() // 0x04 || X || Y
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": "e2e", "alg": "ES256", "use": "sig",
		"x": b64url(pt[1:33]), "y": b64url(pt[33:]),
	}}})
	return string(b)
}

func (j *jwtIssuer) token(t *testing.T, sub string) string {
	t.Helper()
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": "e2e", "typ": "JWT"})
	payload, _ := json.Marshal(map[string]any{"iss": j.iss, "sub": sub, "aud": "backend", "exp": time.Now().Add(time.Hour).Unix()})
	in := b64url(hdr) + "." + b64url(payload)
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, j.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + b64url(sig)
}

// rawResult is one response read off a raw connection.
type rawResult struct {
	status int
	body   string
}

// viaOutbound sends one origin-form request, with the request line written
// by hand (so paths like //admin and /%61dmin reach the proxy as typed),
// to a workload's outbound listener, routed by its Host header (DESIGN §5).
func viaOutbound(outbound, host, path string, hdr map[string]string) (rawResult, error) {
	c, err := net.DialTimeout("tcp", outbound, 5*time.Second)
	if err != nil {
		return rawResult{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", path, host)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return rawResult{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return rawResult{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return rawResult{status: resp.StatusCode, body: string(body)}, nil
}

// waitOutbound polls until a request answers want.
func waitOutbound(t *testing.T, outbound, host, path string, hdr map[string]string, want int, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		r, err := viaOutbound(outbound, host, path, hdr)
		if err == nil && r.status == want {
			return
		}
		if time.Since(start) > within {
			t.Fatalf("%s%s still answers %d %q (%v) after %s, want %d", host, path, r.status, r.body, err, within, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

const backendHost = "backend.api.svc.cluster.local"

// jwtPolicies: the backend requires a valid token from issuer iss, and
// only the frontend may call it; the token's sub goes to the app as
// x-jwt-sub; /admin* is denied to everyone.
func jwtPolicies(iss *jwtIssuer) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: backend-jwt, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  jwtRules:
  - issuer: %q
    audiences: [backend]
    jwks: %q
    outputClaimToHeaders:
    - {header: x-jwt-sub, claim: sub}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend-allow-frontend, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/web/sa/frontend"]
        requestPrincipals: ["*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: api}
spec:
  selector: {matchLabels: {app: backend}}
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
`, iss.iss, iss.jwks())
}

// TestJWTThroughRealProxies checks request authentication and path
// normalization end to end: the frontend's outbound listener, mTLS to the
// backend's proxy, the backend echo app.
func TestJWTThroughRealProxies(t *testing.T) {
	iss := newJWTIssuer(t, "https://issuer.e2e.example")
	m := startMesh(t)
	frontend := m.w("web/frontend")
	writeFile(t, filepath.Join(m.dir, "backend-authz.yaml"), jwtPolicies(iss))

	valid := map[string]string{"Authorization": "Bearer " + iss.token(t, "alice")}
	// The edit is live once a request without a token is refused.
	waitOutbound(t, frontend.outbound, backendHost, "/", nil, 403, 10*time.Second)

	t.Run("no token: 403 (requestPrincipals required)", func(t *testing.T) {
		r, err := viaOutbound(frontend.outbound, backendHost, "/", nil)
		if err != nil || r.status != 403 || r.body != "RBAC: access denied" {
			t.Fatalf("got %d %q %v", r.status, r.body, err)
		}
	})
	t.Run("forged token: 401", func(t *testing.T) {
		forged := newJWTIssuer(t, iss.iss).token(t, "alice")
		r, err := viaOutbound(frontend.outbound, backendHost, "/", map[string]string{"Authorization": "Bearer " + forged})
		if err != nil || r.status != 401 || r.body != "Jwt verification fails" {
			t.Fatalf("got %d %q %v", r.status, r.body, err)
		}
	})
	t.Run("valid token: 200 and the app sees the claim header, not the token", func(t *testing.T) {
		r, err := viaOutbound(frontend.outbound, backendHost, "/hello", valid)
		if err != nil || r.status != 200 {
			t.Fatalf("got %d %q %v", r.status, r.body, err)
		}
		var reply echoReply
		if err := json.Unmarshal([]byte(r.body), &reply); err != nil {
			t.Fatalf("backend reply %q: %v", r.body, err)
		}
		if got := reply.Headers["X-Jwt-Sub"]; len(got) != 1 || got[0] != "alice" {
			t.Errorf("backend saw X-Jwt-Sub %v, want [alice]; headers %v", got, reply.Headers)
		}
		if _, ok := reply.Headers["Authorization"]; ok {
			t.Errorf("backend saw the token (forwardOriginalToken is false)")
		}
	})
	t.Run("the stranger's valid token does not make it the frontend", func(t *testing.T) {
		r, err := viaOutbound(m.w("web/stranger").outbound, backendHost, "/", valid)
		if err != nil || r.status != 403 {
			t.Fatalf("got %d %q %v", r.status, r.body, err)
		}
	})
	t.Run("DENY /admin* catches normalized spellings (mesh default BASE)", func(t *testing.T) {
		for _, path := range []string{"/admin", "/./admin", "/%61dmin", "/x/../admin", "/admin/../admin/x"} {
			r, err := viaOutbound(frontend.outbound, backendHost, path, valid)
			if err != nil || r.status != 403 {
				t.Errorf("%s: got %d %q %v, want 403", path, r.status, r.body, err)
			}
		}
		// Under BASE, as in Istio, "//admin" is not merged: it is another
		// path. TestMergeSlashesThroughRealProxies covers MERGE_SLASHES.
		if r, err := viaOutbound(frontend.outbound, backendHost, "/public", valid); err != nil || r.status != 200 {
			t.Errorf("/public: got %d %q %v", r.status, r.body, err)
		}
	})
	if t.Failed() {
		t.Logf("mesh logs:\n%s", m.Logs())
	}
}

// TestMergeSlashesThroughRealProxies runs the mesh with a MeshConfig of
// pathNormalization MERGE_SLASHES: "//admin" must then meet the DENY too.
// `zmesh up --mesh-config` passes the file to the control plane, which
// pushes the setting to every proxy.
func TestMergeSlashesThroughRealProxies(t *testing.T) {
	meshConfig := filepath.Join(t.TempDir(), "mesh.yaml")
	writeFile(t, meshConfig, "pathNormalization: {normalization: MERGE_SLASHES}\n")
	iss := newJWTIssuer(t, "https://issuer.e2e.example")
	m := startMesh(t, "--mesh-config", meshConfig)
	frontend := m.w("web/frontend")
	writeFile(t, filepath.Join(m.dir, "backend-authz.yaml"), jwtPolicies(iss))
	waitOutbound(t, frontend.outbound, backendHost, "/", nil, 403, 10*time.Second)
	valid := map[string]string{"Authorization": "Bearer " + iss.token(t, "alice")}
	for _, path := range []string{"//admin", "/./admin", "/%61dmin", "///admin//x"} {
		r, err := viaOutbound(frontend.outbound, backendHost, path, valid)
		if err != nil || r.status != 403 {
			t.Errorf("%s: got %d %q %v, want 403", path, r.status, r.body, err)
		}
	}
	if r, err := viaOutbound(frontend.outbound, backendHost, "//public", valid); err != nil || r.status != 200 {
		t.Errorf("//public: got %d %q %v", r.status, r.body, err)
	}
}
