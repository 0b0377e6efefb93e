package proxy

import (
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// TestConsistentHashCookieGeneration: a cookie is generated only when the
// rule's httpCookie has a ttl, as Envoy does; a zero ttl makes a session
// cookie, without Max-Age.
func TestConsistentHashCookieGeneration(t *testing.T) {
	tests := []struct {
		name string
		ttl  *durationpb.Duration
		path string
		want string // "" : no cookie is generated
	}{
		{"no ttl generates nothing", nil, "/", ""},
		{"ttl and path", durationpb.New(time.Hour), "/", "user=ff; Path=/; Max-Age=3600; HttpOnly"},
		{"no path", durationpb.New(90 * time.Second), "", "user=ff; Max-Age=90; HttpOnly"},
		{"zero ttl is a session cookie", durationpb.New(0), "/app", "user=ff; Path=/app; HttpOnly"},
		{"under a second is one, not a deletion", durationpb.New(500 * time.Millisecond), "", "user=ff; Max-Age=1; HttpOnly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHashPolicy(&networking.LoadBalancerSettings_ConsistentHashLB{
				HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie{HttpCookie: &networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: "user", Path: tt.path, Ttl: tt.ttl}},
			}, []endpoint{{addr: "a:1"}})
			key, set, ok := h.generate(0xff)
			if ok != (tt.want != "") || set != tt.want {
				t.Fatalf("generate: %q %v, want %q", set, ok, tt.want)
			}
			if ok && key != "ff" {
				t.Errorf("key %q, want the cookie's value", key)
			}
		})
	}
}

// TestDestinationRuleConsistentHashCookie: through real proxies, with and
// without a VirtualService route, a request without the httpCookie gets
// one (Set-Cookie); requests that carry it all reach the same backend;
// new clients' cookies spread over both backends; without a ttl no cookie
// is made.
func TestDestinationRuleConsistentHashCookie(t *testing.T) {
	const dr = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend, namespace: api}
spec:
  host: backend
  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: user, path: /, %s}}}}
`
	vs := vsHeader + "  hosts: [backend]\n  http: [{route: [{destination: {host: backend}}]}]\n---\n"
	setCookie := regexp.MustCompile(`^user=([0-9a-f]+); Path=/; Max-Age=3600; HttpOnly$`)
	for _, tc := range []struct{ name, yaml string }{
		{"DestinationRule alone", fmt.Sprintf(dr, "ttl: 3600s")},
		{"behind a VirtualService route", vs + fmt.Sprintf(dr, "ttl: 3600s")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newVSMesh(t, tc.yaml)
			send := func(cookie string) (version string, set []string) {
				t.Helper()
				req, _ := http.NewRequest("GET", "http://backend.api.svc.cluster.local/", nil)
				if cookie != "" {
					req.AddCookie(&http.Cookie{Name: "user", Value: cookie})
				}
				resp, err := m.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var b [512]byte
				n, _ := resp.Body.Read(b[:])
				resp.Body.Close()
				version = echoField(string(b[:n]), "version")
				if resp.StatusCode != 200 || version == "" {
					t.Fatalf("%d %q", resp.StatusCode, b[:n])
				}
				return version, resp.Header.Values("Set-Cookie")
			}
			seen := map[string]bool{}
			for c := range 20 {
				first, set := send("")
				if len(set) != 1 || !setCookie.MatchString(set[0]) {
					t.Fatalf("client %d: Set-Cookie %q, want user=<hex>; Path=/; Max-Age=3600; HttpOnly", c, set)
				}
				cookie := setCookie.FindStringSubmatch(set[0])[1]
				for range 5 {
					v, again := send(cookie)
					if v != first {
						t.Fatalf("client %d with cookie %s reached %s then %s", c, cookie, first, v)
					}
					if len(again) != 0 {
						t.Fatalf("a request with the cookie got Set-Cookie %q", again)
					}
				}
				seen[first] = true
			}
			if len(seen) != 2 {
				t.Errorf("20 clients' cookies reached %v: generated cookies do not spread", seen)
			}
		})
	}
	t.Run("no ttl, no cookie", func(t *testing.T) {
		m := newVSMesh(t, fmt.Sprintf(dr, ""))
		resp, err := m.http.Get("http://backend.api.svc.cluster.local/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || len(resp.Header.Values("Set-Cookie")) != 0 {
			t.Errorf("%d, Set-Cookie %q: want none without a ttl", resp.StatusCode, resp.Header.Values("Set-Cookie"))
		}
	})
}
