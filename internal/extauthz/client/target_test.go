package client

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/extauthz"
)

// fakeServices are mesh services by hostname, each with its endpoints
// picked in turn.
type fakeServices map[string]*fakeService

type fakeService struct {
	host, ns  string
	endpoints []Endpoint
	picked    int
}

func (f fakeServices) Lookup(host string) Service {
	if s, ok := f[host]; ok {
		return s
	}
	return nil
}

func (s *fakeService) Hostname() string  { return s.host }
func (s *fakeService) Namespace() string { return s.ns }
func (s *fakeService) Pick() (Endpoint, bool) {
	if len(s.endpoints) == 0 {
		return Endpoint{}, false
	}
	s.picked++
	return s.endpoints[(s.picked-1)%len(s.endpoints)], true
}

func TestTarget(t *testing.T) {
	authzID := spiffeid.RequireFromString("spiffe://cluster.local/ns/authz/sa/ext-authz")
	services := func() fakeServices {
		return fakeServices{
			"ext-authz.authz.svc.cluster.local": {host: "ext-authz.authz.svc.cluster.local", ns: "authz",
				endpoints: []Endpoint{{Addr: "10.0.0.1:9000", ID: authzID}}},
			"plain.authz.svc.cluster.local": {host: "plain.authz.svc.cluster.local", ns: "authz",
				endpoints: []Endpoint{{Addr: "10.0.0.2:9000"}}},
			"empty.authz.svc.cluster.local": {host: "empty.authz.svc.cluster.local", ns: "authz"},
		}
	}
	for _, tc := range []struct {
		name     string
		services Services
		service  string
		port     uint32
		addr     string
		id       spiffeid.ID
		err      string
	}{
		{name: "a mesh service with a proxy: its endpoint, over mutual TLS",
			service: "ext-authz.authz.svc.cluster.local", port: 9000, addr: "10.0.0.1:9000", id: authzID},
		{name: "a mesh service without a proxy: its endpoint, plaintext",
			service: "plain.authz.svc.cluster.local", addr: "10.0.0.2:9000"},
		{name: "NAMESPACE/HOSTNAME that agrees",
			service: "authz/ext-authz.authz.svc.cluster.local", addr: "10.0.0.1:9000", id: authzID},
		{name: "NAMESPACE/HOSTNAME that disagrees fails",
			service: "other/ext-authz.authz.svc.cluster.local", err: "is in namespace authz, not other"},
		{name: "a namespace for a host that is no mesh service fails",
			service: "authz/missing.authz.svc.cluster.local", port: 9000, err: "is not a mesh service in namespace authz"},
		{name: "a mesh service without endpoints fails",
			service: "empty.authz.svc.cluster.local", err: "has no endpoints"},
		{name: "host:port is dialled directly",
			service: "authz.example:8000", addr: "authz.example:8000"},
		{name: "a host is dialled at the provider's port",
			service: "authz.example", port: 8000, addr: "authz.example:8000"},
		{name: "a host without a port fails",
			service: "authz.example", err: "has no port"},
		{name: "a port beyond 65535 fails",
			service: "authz.example", port: 70000, err: "has no port"},
		{name: "without mesh services, a hostname is dialled directly",
			services: Services(nil), service: "ext-authz.authz.svc.cluster.local", port: 9000, addr: "ext-authz.authz.svc.cluster.local:9000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svcs := tc.services
			if svcs == nil && !strings.HasPrefix(tc.name, "without") {
				svcs = services()
			}
			addr, id, err := target(svcs, &extauthz.Provider{Service: tc.service, Port: tc.port})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %s %s, %v; want an error with %q", addr, id, err, tc.err)
				}
				return
			}
			if err != nil || addr != tc.addr || id != tc.id {
				t.Fatalf("got %s %q, %v; want %s %q", addr, id, err, tc.addr, tc.id)
			}
		})
	}
}
