package registry

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Check reports whether services can be compiled into one route table, the
// rules a proxy applies to every view it receives: each hostname is
// non-empty and listed once (compared as CanonicalHost), each endpoint with
// a proxy names a valid SPIFFE ID, and no address is expected to serve as
// two identities (secure naming verifies one identity per address).
//
// It is the one definition of those rules: the proxy refuses (NACKs) a
// view whose services fail it, and the control plane admits services
// resource by resource with a Table, which applies the same rules, so that
// it never sends a view a proxy would refuse because of one resource.
func Check(services []Service) error {
	listed := make(map[string]bool, len(services))
	for _, s := range services {
		c := CanonicalHost(s.Hostname)
		if listed[c] {
			return fmt.Errorf("service %s listed twice", c)
		}
		listed[c] = true
	}
	var t Table
	return t.Add(services)
}

// CanonicalHost returns h as proxies compare hostnames: lower case, without
// a trailing dot. It allocates only when h has upper-case letters.
func CanonicalHost(h string) string {
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// Table holds services that pass Check together, so that more can be
// added one group at a time, each accepted only if the whole still
// passes. Services whose hostname is already in the table join it, as
// Merge joins them. The zero value is an empty table.
type Table struct {
	hosts   map[string]string // canonical hostname -> hostname as spelled
	holders map[string]holder // endpoint address -> who serves there
}

// holder is the identity expected at an address and the workload that
// first claimed it, for messages.
type holder struct {
	identity string
	workload string
}

// Add adds services to t if t with them still passes Check. Otherwise it
// returns why, naming the endpoint and the workload already expected at
// its address, and leaves t unchanged.
func (t *Table) Add(services []Service) error {
	hosts := map[string]string{}
	holders := map[string]holder{}
	for _, s := range services {
		c := CanonicalHost(s.Hostname)
		if c == "" {
			return fmt.Errorf("service with an empty hostname")
		}
		prev, ok := hosts[c]
		if !ok {
			prev, ok = t.hosts[c]
		}
		if ok && prev != s.Hostname {
			return fmt.Errorf("services %s and %s differ only in case or a trailing dot", prev, s.Hostname)
		}
		hosts[c] = s.Hostname
		for _, e := range s.Endpoints {
			if !e.HasProxy {
				continue
			}
			if _, err := spiffeid.FromString(e.Identity); err != nil {
				return fmt.Errorf("service %s endpoint %s: identity %q: %w", c, e.Address, e.Identity, err)
			}
			h, ok := holders[e.Address]
			if !ok {
				h, ok = t.holders[e.Address]
			}
			if ok && h.identity != e.Identity {
				return fmt.Errorf("endpoint %s expected as both %s (%s) and %s (%s)", e.Address, h.identity, h.workload, e.Identity, e.Workload)
			}
			if !ok {
				holders[e.Address] = holder{identity: e.Identity, workload: e.Workload}
			}
		}
	}
	if t.hosts == nil {
		t.hosts, t.holders = map[string]string{}, map[string]holder{}
	}
	for c, h := range hosts {
		t.hosts[c] = h
	}
	for a, h := range holders {
		t.holders[a] = h
	}
	return nil
}
