package dnsproxy

import (
	"net/netip"
	"strings"

	"github.com/zmesh/zmesh/internal/registry"
)

// table maps every name a workload may use for a mesh service to the
// service's virtual addresses. It is immutable once built.
type table struct {
	names map[string][]netip.Addr // lower case, no trailing dot
	// search are the suffixes a stub resolver appends to a name it is
	// given (the search path of a pod in namespace ns: ns.svc.DOMAIN,
	// svc.DOMAIN, DOMAIN), longest first: a query NAME.SUFFIX that is
	// not itself in names is looked up as NAME.
	search []string
}

// buildTable builds the table of services as seen from a workload in
// namespace ns: for a service NAME.NS2.svc.DOMAIN, its FQDN, NAME.NS2.svc
// and NAME.NS2, and NAME alone when NS2 is ns (Kubernetes' and Istio's
// forms); for any other host (a ServiceEntry's), the host itself.
// Services without a virtual address are left out: their names are
// forwarded upstream. An exact hostname always wins over a short form.
func buildTable(services []registry.Service, ns, domain string) *table {
	domain = canonical(domain)
	if domain == "" {
		domain = "cluster.local"
	}
	t := &table{names: map[string][]netip.Addr{}}
	if ns != "" {
		t.search = append(t.search, ns+".svc."+domain)
	}
	t.search = append(t.search, "svc."+domain, domain)
	var short []struct {
		name  string
		addrs []netip.Addr
	}
	for _, s := range services {
		var addrs []netip.Addr
		for _, a := range s.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				addrs = append(addrs, ip.Unmap())
			}
		}
		host := canonical(s.Hostname)
		if len(addrs) == 0 || host == "" || strings.HasPrefix(host, "*") {
			continue
		}
		t.names[host] = addrs
		base, ok := strings.CutSuffix(host, ".svc."+domain)
		if !ok {
			continue
		}
		name, svcNS, ok := strings.Cut(base, ".")
		if !ok || strings.Contains(svcNS, ".") {
			continue
		}
		forms := []string{base + ".svc", base}
		if svcNS == ns {
			forms = append(forms, name)
		}
		for _, f := range forms {
			short = append(short, struct {
				name  string
				addrs []netip.Addr
			}{f, addrs})
		}
	}
	for _, s := range short {
		if _, taken := t.names[s.name]; !taken {
			t.names[s.name] = s.addrs
		}
	}
	return t
}

// lookup returns the addresses of a queried name, and whether it is a
// mesh name at all.
func (t *table) lookup(qname string) ([]netip.Addr, bool) {
	name := canonical(qname)
	if a, ok := t.names[name]; ok {
		return a, true
	}
	for _, s := range t.search {
		if rest, ok := strings.CutSuffix(name, "."+s); ok && rest != "" {
			if a, ok := t.names[rest]; ok {
				return a, true
			}
		}
	}
	return nil, false
}

// canonical lower-cases a name and drops its trailing dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
