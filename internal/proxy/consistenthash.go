package proxy

import (
	"hash/fnv"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// hashPolicy is a DestinationRule's loadBalancer.consistentHash: what of
// a request keys it (one of a header, a cookie, a query parameter, the
// source address) and the ring its endpoints sit on. ringHash and maglev
// are both served by this ring: the property users rely on, the same key
// to the same endpoint while the endpoints stay and only ~1/n of keys
// moving when one goes, holds for both.
type hashPolicy struct {
	header, cookie, query string
	sourceIP              bool
	ring                  []ringPoint // sorted by hash
	// setCookie is the Set-Cookie attributes after NAME=VALUE for a
	// cookie the proxy generates when a request lacks it: httpCookie with
	// a ttl, as Envoy generates one only then. "" means none is made.
	setCookie string
}

type ringPoint struct {
	hash uint64
	ep   int // index into the policy's endpoints
}

// ringReplicas is how many points each endpoint has on the ring: enough
// to spread keys within a few percent of even.
const ringReplicas = 160

// newHashPolicy compiles ch for eps; nil when ch is nil or names no key.
func newHashPolicy(ch *networking.LoadBalancerSettings_ConsistentHashLB, eps []endpoint) *hashPolicy {
	if ch == nil {
		return nil
	}
	h := &hashPolicy{
		header:   http.CanonicalHeaderKey(ch.GetHttpHeaderName()),
		cookie:   ch.GetHttpCookie().GetName(),
		query:    ch.GetHttpQueryParameterName(),
		sourceIP: ch.GetUseSourceIp(),
	}
	if h.header == "" && h.cookie == "" && h.query == "" && !h.sourceIP {
		return nil
	}
	if c := ch.GetHttpCookie(); c.GetTtl() != nil {
		h.setCookie = cookieAttributes(c.GetPath(), c.GetTtl().AsDuration())
	}
	for i, ep := range eps {
		for r := range ringReplicas {
			h.ring = append(h.ring, ringPoint{hash: hash64(ep.addr + "#" + strconv.Itoa(r)), ep: i})
		}
	}
	slices.SortFunc(h.ring, func(a, b ringPoint) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return a.ep - b.ep
	})
	return h
}

// key returns r's hash key, false when r carries none (Envoy then picks
// at random; zmesh falls back to the policy's simple balancer).
func (h *hashPolicy) key(r *http.Request) (string, bool) {
	if r == nil {
		return "", false
	}
	switch {
	case h.header != "":
		v := r.Header.Get(h.header)
		return v, v != ""
	case h.cookie != "":
		c, err := r.Cookie(h.cookie)
		if err != nil {
			return "", false
		}
		return c.Value, true
	case h.query != "":
		v := r.URL.Query().Get(h.query)
		return v, v != ""
	case h.sourceIP:
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		return host, err == nil
	}
	return "", false
}

// cookieAttributes are the attributes of a generated cookie: its path
// when the rule sets one, Max-Age from ttl, and HttpOnly (the cookie is
// the mesh's, not the page's scripts'). A zero ttl makes a session
// cookie, without Max-Age, as Envoy does; a ttl under a second is one
// second, since Max-Age=0 would delete the cookie it sets.
func cookieAttributes(path string, ttl time.Duration) string {
	var b strings.Builder
	if path != "" {
		b.WriteString("; Path=" + path)
	}
	if ttl > 0 {
		b.WriteString("; Max-Age=" + strconv.FormatInt(max(int64(ttl/time.Second), 1), 10))
	}
	b.WriteString("; HttpOnly")
	return b.String()
}

// generate returns a key for a request that lacks the policy's cookie,
// and the Set-Cookie header value that hands it to the client, so that
// its next requests carry it and stick to the endpoint it hashes to; ok
// is false when the policy generates no cookie. v is the cookie's value
// (random: a client's affinity is to the endpoint, not to its address,
// so clients behind one address still spread).
func (h *hashPolicy) generate(v uint64) (key, setCookie string, ok bool) {
	if h.setCookie == "" {
		return "", "", false
	}
	key = strconv.FormatUint(v, 16)
	return key, h.cookie + "=" + key + h.setCookie, true
}

// pick returns the endpoint index for key: the first ring point at or
// after its hash whose endpoint usable accepts (outlier detection), -1
// when none does.
func (h *hashPolicy) pick(key string, usable func(int) bool) int {
	if len(h.ring) == 0 {
		return -1
	}
	k := hash64(key)
	i, _ := slices.BinarySearchFunc(h.ring, k, func(p ringPoint, k uint64) int {
		switch {
		case p.hash < k:
			return -1
		case p.hash > k:
			return 1
		}
		return 0
	})
	for n := range len(h.ring) {
		p := h.ring[(i+n)%len(h.ring)]
		if usable(p.ep) {
			return p.ep
		}
	}
	return -1
}

// hash64 is FNV-1a with a final avalanche (MurmurHash3's fmix64):
// FNV alone leaves strings that differ in one character (an endpoint's
// replicas, "addr#0", "addr#1") close together, and the ring uneven.
// Stable across processes and restarts, unlike a seeded hash.
func hash64(s string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(s))
	h := f.Sum64()
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
