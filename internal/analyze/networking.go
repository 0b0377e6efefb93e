package analyze

import (
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
)

// analyzeVirtualServices reports, as istioctl does, a VirtualService
// destination whose subset no DestinationRule of its host defines
// (IST0101 "host+subset in destinationrule": the proxy answers 503 for
// it), and one whose host is not a known service (IST0101 "host", when
// services are known); for a mirror, "mirror+subset in destinationrule"
// and "mirror host", as istioctl words them. Only VirtualServices bound to
// sidecars are read: gateways are not zmesh's.
func analyzeVirtualServices(c *context) {
	hosts := c.knownHosts()
	subsets := map[string][]string{} // FQDN -> subsets defined by any DestinationRule
	for _, r := range c.in.Snapshot.List(config.KindDestinationRule) {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if !ok {
			continue
		}
		h := fqdn(dr.GetHost(), r.Namespace)
		for _, s := range dr.GetSubsets() {
			subsets[h] = append(subsets[h], s.GetName())
		}
	}
	for _, r := range c.in.Snapshot.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok || !config.AppliesToSidecars(vs) {
			continue
		}
		reported := map[string]bool{}
		// check reports d as Istio does, a mirror ("mirror host",
		// "mirror+subset") apart from a route's destination.
		check := func(d *networking.Destination, what string) {
			if d == nil {
				return
			}
			h := fqdn(d.GetHost(), r.Namespace)
			if len(hosts) > 0 && !hostKnown(hosts, h) && !reported[what+"/"+h] {
				reported[what+"/"+h] = true
				c.reportOn(ReferencedResourceNotFound, r, strings.TrimPrefix(what+" host", " "), d.GetHost())
			}
			if s := d.GetSubset(); s != "" && !slices.Contains(subsets[h], s) && !reported[what+"/"+h+"+"+s] {
				reported[what+"/"+h+"+"+s] = true
				kind := "host+subset in destinationrule"
				if what != "" {
					kind = what + "+subset in destinationrule"
				}
				c.reportOn(ReferencedResourceNotFound, r, kind, d.GetHost()+"+"+s)
			}
		}
		for _, hr := range vs.GetHttp() {
			for _, d := range hr.GetRoute() {
				check(d.GetDestination(), "")
			}
			check(hr.GetMirror(), "mirror")
			for _, m := range hr.GetMirrors() {
				check(m.GetDestination(), "mirror")
			}
		}
		for _, tr := range vs.GetTcp() {
			for _, d := range tr.GetRoute() {
				check(d.GetDestination(), "")
			}
		}
		for _, tr := range vs.GetTls() {
			for _, d := range tr.GetRoute() {
				check(d.GetDestination(), "")
			}
		}
	}
}

// analyzeSidecars reports a namespace with more than one Sidecar without
// a workload selector (IST0111): Istio, as zmesh, applies one of them (the
// first by name here) and ignores the others. A selector without labels
// counts as none, as Istio's analyzer counts it.
func analyzeSidecars(c *context) {
	byNS := map[string][]string{}
	for _, r := range c.in.Snapshot.List(config.KindSidecar) {
		if sc, ok := r.Spec.(*networking.Sidecar); ok && len(sc.GetWorkloadSelector().GetLabels()) == 0 {
			byNS[r.Namespace] = append(byNS[r.Namespace], r.Name)
		}
	}
	for _, r := range c.in.Snapshot.List(config.KindSidecar) {
		names := byNS[r.Namespace]
		if sc, ok := r.Spec.(*networking.Sidecar); ok && len(sc.GetWorkloadSelector().GetLabels()) == 0 && len(names) > 1 {
			c.reportOn(MultipleSidecarsWithoutWorkloadSelectors, r, "["+strings.Join(names, " ")+"]", r.Namespace)
		}
	}
}

// analyzeVirtualServiceHosts reports hosts that several VirtualServices
// bound to sidecars claim (IST0109), on each of them, as istioctl does
// (whatever their exportTo, as istioctl).
func analyzeVirtualServiceHosts(c *context) {
	byHost := map[string][]config.Resource{}
	var order []string
	for _, r := range c.in.Snapshot.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok || !config.AppliesToSidecars(vs) {
			continue
		}
		for _, h := range vs.GetHosts() {
			h = fqdn(h, r.Namespace)
			if _, seen := byHost[h]; !seen {
				order = append(order, h)
			}
			byHost[h] = append(byHost[h], r)
		}
	}
	for _, h := range order {
		claims := byHost[h]
		if len(claims) < 2 {
			continue
		}
		var names []string
		for _, r := range claims {
			names = append(names, r.Key())
		}
		list := strings.Join(names, ",")
		for _, r := range claims {
			c.reportOn(ConflictingMeshGatewayVirtualServiceHosts, r, list, h)
		}
	}
}
