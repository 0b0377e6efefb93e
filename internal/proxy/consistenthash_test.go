package proxy

import (
	"fmt"
	"net/http"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

func ringOf(addrs ...string) *hashPolicy {
	var eps []endpoint
	for _, a := range addrs {
		eps = append(eps, endpoint{addr: a})
	}
	return newHashPolicy(&networking.LoadBalancerSettings_ConsistentHashLB{
		HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"},
	}, eps)
}

// TestConsistentHashRing: a key always lands on the same endpoint; keys
// spread over every endpoint; removing one endpoint moves only the keys
// it held (and about 1/n of all); an endpoint that may not be used is
// passed over for the next one on the ring.
func TestConsistentHashRing(t *testing.T) {
	addrs := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}
	all, three := ringOf(addrs...), ringOf(addrs[:3]...)
	any := func(int) bool { return true }
	const keys = 4000
	counts := make([]int, len(addrs))
	moved := 0
	for k := range keys {
		key := fmt.Sprint("user-", k)
		i := all.pick(key, any)
		if again := all.pick(key, any); again != i {
			t.Fatalf("key %s: %d then %d", key, i, again)
		}
		counts[i]++
		if j := three.pick(key, any); addrs[j] != addrs[i] {
			if i != 3 {
				t.Fatalf("key %s moved from %s to %s though its endpoint stayed", key, addrs[i], addrs[j])
			}
			moved++
		}
	}
	for i, n := range counts {
		if n < keys/len(addrs)/2 || n > keys/len(addrs)*2 {
			t.Errorf("endpoint %d holds %d of %d keys: uneven", i, n, keys)
		}
	}
	if moved != counts[3] || moved > keys/2 {
		t.Errorf("%d keys moved, the removed endpoint held %d", moved, counts[3])
	}
	if i := all.pick("user-1", func(i int) bool { return i != all.pick("user-1", any) }); i < 0 || i == all.pick("user-1", any) {
		t.Errorf("an unusable endpoint was not passed over: %d", i)
	}
	if i := all.pick("user-1", func(int) bool { return false }); i != -1 {
		t.Errorf("no usable endpoint: %d, want -1", i)
	}
}

func TestConsistentHashKey(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://h/?u=q", nil)
	r.Header.Set("X-User", "alice")
	r.AddCookie(&http.Cookie{Name: "session", Value: "s1"})
	r.RemoteAddr = "10.1.2.3:5555"
	for _, tc := range []struct {
		ch   *networking.LoadBalancerSettings_ConsistentHashLB
		want string
	}{
		{&networking.LoadBalancerSettings_ConsistentHashLB{HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"}}, "alice"},
		{&networking.LoadBalancerSettings_ConsistentHashLB{HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie{HttpCookie: &networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: "session"}}}, "s1"},
		{&networking.LoadBalancerSettings_ConsistentHashLB{HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName{HttpQueryParameterName: "u"}}, "q"},
		{&networking.LoadBalancerSettings_ConsistentHashLB{HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp{UseSourceIp: true}}, "10.1.2.3"},
	} {
		h := newHashPolicy(tc.ch, []endpoint{{addr: "a:1"}})
		if got, ok := h.key(r); !ok || got != tc.want {
			t.Errorf("%v: key %q %v, want %q", tc.ch, got, ok, tc.want)
		}
	}
	h := ringOf("a:1")
	if _, ok := h.key(&http.Request{Header: http.Header{}}); ok {
		t.Error("a request without the header has a key")
	}
}

// TestDestinationRuleConsistentHash: through real proxies, requests with
// the same x-user header reach the same backend; different users reach
// both.
func TestDestinationRuleConsistentHash(t *testing.T) {
	m := newVSMesh(t, vsHeader+`  hosts: [backend]
  http: [{route: [{destination: {host: backend}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend, namespace: api}
spec:
  host: backend
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
`)
	seen := map[string]bool{}
	for u := range 20 {
		first := ""
		for range 5 {
			req, _ := http.NewRequest("GET", "http://backend.api.svc.cluster.local/", nil)
			req.Header.Set("X-User", fmt.Sprint("user-", u))
			resp, err := m.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b [512]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			v := echoField(string(b[:n]), "version")
			if resp.StatusCode != 200 || v == "" {
				t.Fatalf("user-%d: %d %q", u, resp.StatusCode, b[:n])
			}
			if first == "" {
				first = v
			} else if v != first {
				t.Fatalf("user-%d reached %s then %s", u, first, v)
			}
		}
		seen[first] = true
	}
	if len(seen) != 2 {
		t.Errorf("20 users reached %v: the hash does not spread", seen)
	}
}
