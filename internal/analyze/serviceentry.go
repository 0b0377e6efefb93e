package analyze

import (
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

// analyzeServiceEntries reports the ServiceEntries the control plane
// would leave out (ZM0006), with its own check, registry.Admit; and
// Istio's IST0134 and IST0177.
func analyzeServiceEntries(c *context) {
	admission := registry.Admit(c.in.Registered, registry.Declarations(c.in.Snapshot, c.in.trustDomain()), nil)
	for _, se := range admission.Rejected {
		if se.Kind != config.KindServiceEntry {
			continue
		}
		ns, name, _ := strings.Cut(se.Key, "/")
		c.report(ServiceEntryAddressConflict, resourceName(string(se.Kind), ns, name), se.Source, se.Err)
	}
	autoAllocate := false
	if md := c.in.Mesh.GetDefaultConfig().GetProxyMetadata(); md["ISTIO_META_DNS_CAPTURE"] == "true" &&
		(md["ISTIO_META_DNS_AUTO_ALLOCATE"] == "true" || md["PILOT_ENABLE_IP_AUTOALLOCATE"] == "true") {
		autoAllocate = true
	}
	for _, r := range c.in.Snapshot.List(config.KindServiceEntry) {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok || len(se.GetAddresses()) > 0 || autoAllocate {
			continue
		}
		for _, p := range se.GetPorts() {
			if p.GetProtocol() == "" || strings.EqualFold(p.GetProtocol(), "TCP") {
				c.reportOn(ServiceEntryAddressesRequired, r)
			}
		}
	}
	checkServiceEntryProtocols(c)
}

// checkServiceEntryProtocols is Istio's IST0177: ServiceEntries visible
// in one namespace that give one host and port different protocols.
func checkServiceEntryProtocols(c *context) {
	type key struct {
		scope, host string
		port        uint32
	}
	type entry struct {
		r        config.Resource
		protocol string
	}
	index := map[key][]entry{}
	for _, r := range c.in.Snapshot.List(config.KindServiceEntry) {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		for _, scope := range exportScopes(se.GetExportTo(), r.Namespace) {
			for _, h := range se.GetHosts() {
				for _, p := range se.GetPorts() {
					k := key{scope, h, p.GetNumber()}
					index[k] = append(index[k], entry{r, strings.ToUpper(p.GetProtocol())})
				}
			}
		}
	}
	keys := make([]key, 0, len(index))
	for k := range index {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.host != b.host {
			return a.host < b.host
		}
		if a.port != b.port {
			return a.port < b.port
		}
		return a.scope < b.scope
	})
	reported := map[string]bool{}
	for _, k := range keys {
		entries := index[k]
		if k.scope != "*" {
			entries = append(append([]entry(nil), entries...), index[key{"*", k.host, k.port}]...)
		}
		protocols := map[string]bool{}
		names := map[string]bool{}
		for _, e := range entries {
			protocols[e.protocol] = true
			names[e.r.Key()] = true
		}
		if len(protocols) < 2 {
			continue
		}
		for _, e := range entries {
			if reported[e.r.Key()] {
				continue
			}
			reported[e.r.Key()] = true
			c.reportOn(ConflictingServiceEntryProtocol, e.r, strings.Join(sortedSet(names), ", "), k.host, int(k.port), strings.Join(sortedSet(protocols), ", "))
		}
	}
}

// exportScopes returns the namespaces a ServiceEntry is visible in, "*"
// for all.
func exportScopes(exportTo []string, ns string) []string {
	if len(exportTo) == 0 {
		return []string{"*"}
	}
	var out []string
	for _, e := range exportTo {
		switch e {
		case "*":
			return []string{"*"}
		case ".":
			out = append(out, ns)
		default:
			out = append(out, e)
		}
	}
	return out
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
