package analyze

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// analyzeDestinationPorts is the port half of Istio's
// virtualservice.DestinationHostAnalyzer: a VirtualService destination
// (route or mirror, HTTP, TCP or TLS, sidecar or gateway) whose service
// has several ports must name one (IST0112), and a port it names must be
// one of the service's (IST0101 "host:port"). Without a port a proxy,
// zmesh's as Envoy, sends to the destination on the port the request
// came in on, which is not what the author chose when the service has
// several. The services are Istio's: ServiceEntries and Kubernetes
// Services, found as serviceLookup finds them; a destination it does not
// find is left to analyzeVirtualServices (IST0101 "host"), and the
// services of zmesh.dev Workloads, which declare no ports, are not
// checked.
func analyzeDestinationPorts(c *context) {
	services := newServiceLookup(c)
	for _, r := range c.in.Snapshot.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		check := func(d *networking.Destination) {
			if d == nil {
				return
			}
			svc, found := services.find(r.Namespace, vs.GetExportTo(), d.GetHost())
			if !found {
				return
			}
			ports := svc.ports
			if d.GetPort() == nil {
				if len(ports) > 1 {
					list := make([]int, len(ports))
					for i, p := range ports {
						list[i] = int(p)
					}
					c.reportOn(VirtualServiceDestinationPortSelectorRequired, r, d.GetHost(), list)
				}
				return
			}
			for _, p := range ports {
				if p == d.GetPort().GetNumber() {
					return
				}
			}
			c.reportOn(ReferencedResourceNotFound, r, "host:port", fmt.Sprintf("%s:%d", d.GetHost(), d.GetPort().GetNumber()))
		}
		// Istio's order: TCP, TLS and HTTP routes, then HTTP mirrors.
		for _, tr := range vs.GetTcp() {
			for _, d := range tr.GetRoute() {
				check(d.GetDestination())
			}
		}
		for _, tr := range vs.GetTls() {
			for _, d := range tr.GetRoute() {
				check(d.GetDestination())
			}
		}
		for _, hr := range vs.GetHttp() {
			for _, d := range hr.GetRoute() {
				check(d.GetDestination())
			}
		}
		for _, hr := range vs.GetHttp() {
			check(hr.GetMirror())
			for _, m := range hr.GetMirrors() {
				check(m.GetDestination())
			}
		}
	}
}

// serviceLookup is Istio's table of the services a destination host can
// name (util.InitServiceEntryHostMap): each host's service, by the
// namespace it is visible in ("*": all).
type serviceLookup struct {
	services map[string]lookedUp // scope + "/" + host
	keys     []string            // services' keys, sorted: the wildcard scan's order
}

// lookedUp is what Istio's analyzers read of a service: its ports, and a
// ServiceEntry's workloadSelector (a Kubernetes Service has none there).
type lookedUp struct {
	ports    []uint32
	selector map[string]string
}

// exportToAnnotation is the Kubernetes Service annotation that limits
// where a Service is visible, as exportTo does for Istio resources.
const exportToAnnotation = "networking.istio.io/exportTo"

// newServiceLookup indexes the ServiceEntries, then the Kubernetes Services
// (a Service replaces a ServiceEntry of the same host and scope, as in
// Istio), each host made a FQDN as fqdn does.
func newServiceLookup(c *context) *serviceLookup {
	l := &serviceLookup{services: map[string]lookedUp{}}
	add := func(scope, ns, host string, svc lookedUp) {
		l.services[scope+"/"+fqdn(host, ns)] = svc
	}
	for _, r := range c.in.Snapshot.List(config.KindServiceEntry) {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		svc := lookedUp{selector: se.GetWorkloadSelector().GetLabels()}
		for _, p := range se.GetPorts() {
			svc.ports = append(svc.ports, p.GetNumber())
		}
		toAll := false
		for _, h := range se.GetHosts() {
			if len(se.GetExportTo()) == 0 || toAll {
				add("*", r.Namespace, h, svc)
				continue
			}
			// As Istio: the first host also gets the scopes listed
			// before a "*", the later ones only "*".
			for _, e := range se.GetExportTo() {
				switch e {
				case "*":
					toAll = true
				case ".":
					e = r.Namespace
				}
				add(e, r.Namespace, h, svc)
				if toAll {
					break
				}
			}
		}
	}
	for _, s := range c.in.Services {
		var svc lookedUp
		for _, p := range s.Ports {
			svc.ports = append(svc.ports, uint32(p.Port))
		}
		scopes := []string{"*"}
		if v := s.Annotations[exportToAnnotation]; v != "" {
			scopes = scopes[:0]
			for _, e := range strings.Split(v, ",") {
				if e = strings.TrimSpace(e); e == "." {
					e = s.Namespace
				}
				scopes = append(scopes, e)
			}
		}
		for _, scope := range scopes {
			add(scope, s.Namespace, s.Name, svc)
		}
	}
	for k := range l.services {
		l.keys = append(l.keys, k)
	}
	sort.Strings(l.keys)
	return l
}

// find returns the service a VirtualService (or DestinationRule) of
// namespace ns and exportTo names with host, as Istio's util.GetDestinationHost: the
// host visible everywhere, else in the namespaces the VirtualService is
// exported to (its own without exportTo), else the first wildcard host
// visible everywhere or in ns whose suffix ends host. Istio scans the
// wildcards in map order; here they are taken in key order, so that the
// output is stable where several would match.
func (l *serviceLookup) find(ns string, exportTo []string, host string) (lookedUp, bool) {
	fq := fqdn(host, ns)
	if s, ok := l.services["*/"+fq]; ok {
		return s, true
	}
	scopes := exportTo
	if len(scopes) == 0 {
		scopes = []string{ns}
	}
	for _, e := range scopes {
		if e == "." {
			e = ns
		}
		if s, ok := l.services[e+"/"+fq]; ok {
			return s, true
		}
	}
	for _, k := range l.keys {
		scope, seHost, _ := strings.Cut(k, "/")
		if !strings.HasPrefix(seHost, "*") || (scope != "*" && scope != ns) {
			continue
		}
		if strings.HasSuffix(strings.TrimPrefix(host, "*"), strings.TrimPrefix(seHost, "*")) {
			return l.services[k], true
		}
	}
	return lookedUp{}, false
}
