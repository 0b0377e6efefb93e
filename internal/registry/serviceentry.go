package registry

import (
	"cmp"
	"net"
	"slices"
	"strconv"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/identity"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// FromConfig returns the services declared by the ServiceEntry resources of
// snap, merged (see Declarations).
func FromConfig(snap *config.Snapshot, trustDomain string) []Service {
	var lists [][]Service
	for _, d := range Declarations(snap, trustDomain) {
		lists = append(lists, d.Services)
	}
	return Merge(lists...)
}

// Declared is what one ServiceEntry resource declares: a service per host.
type Declared struct {
	Resource config.Meta
	Services []Service
}

// Declarations returns, for each ServiceEntry resource of snap, the
// services it declares with their endpoints: the ServiceEntry's own
// endpoints and the WorkloadEntry resources of its namespace that its
// workloadSelector selects. Hostnames are canonical (CanonicalHost), so
// that spellings proxies treat as one name are one service. An endpoint
// has a proxy (HasProxy, an expected Identity) only if it carries the label
// security.istio.io/tlsMode=istio; its identity is
// spiffe://TRUSTDOMAIN/ns/NS/sa/SA from its service account (or the
// ServiceEntry's first subjectAltName when it names none). A ServiceEntry
// with DNS resolution and no endpoints resolves to its hosts themselves.
// Ports: one endpoint per ServiceEntry port, at the endpoint's port of the
// same name, else the targetPort, else the port number.
func Declarations(snap *config.Snapshot, trustDomain string) []Declared {
	var workloadEntries []config.Resource
	for _, r := range snap.List(config.KindWorkloadEntry) {
		if _, ok := r.Spec.(*networking.WorkloadEntry); ok {
			workloadEntries = append(workloadEntries, r)
		}
	}
	var out []Declared
	for _, r := range snap.List(config.KindServiceEntry) {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		var eps []Endpoint
		for i, we := range se.GetEndpoints() {
			eps = append(eps, entryEndpoints(se, we, r.Namespace, r.Key()+"#"+strconv.Itoa(i), trustDomain)...)
		}
		if sel := se.GetWorkloadSelector().GetLabels(); len(sel) > 0 {
			for _, wr := range workloadEntries {
				we := wr.Spec.(*networking.WorkloadEntry)
				if wr.Namespace == r.Namespace && labelsel.Matches(sel, we.GetLabels()) {
					eps = append(eps, entryEndpoints(se, we, r.Namespace, wr.Key(), trustDomain)...)
				}
			}
		}
		var ports []Port
		for _, p := range se.GetPorts() {
			ports = append(ports, Port{Number: p.GetNumber(), Name: p.GetName(), Protocol: p.GetProtocol(), TargetPort: p.GetTargetPort()})
		}
		var svcs []Service
		for _, h := range se.GetHosts() {
			host := CanonicalHost(h)
			svcEps := eps
			if len(eps) == 0 && se.GetResolution() == networking.ServiceEntry_DNS {
				for _, p := range se.GetPorts() {
					svcEps = append(svcEps, Endpoint{Address: net.JoinHostPort(host, strconv.Itoa(int(p.GetNumber()))), Workload: r.Key()})
				}
			}
			svcs = append(svcs, Service{Hostname: host, Namespace: r.Namespace, Addresses: slices.Clone(se.GetAddresses()), Ports: ports, Endpoints: cloneEndpoints(svcEps)})
		}
		// A host listed twice is one service, as proxies see it.
		out = append(out, Declared{Resource: r.Meta, Services: Merge(svcs)})
	}
	return out
}

func entryEndpoints(se *networking.ServiceEntry, we *networking.WorkloadEntry, ns, workload, trustDomain string) []Endpoint {
	if we.GetAddress() == "" {
		return nil
	}
	hasProxy := we.GetLabels()[LabelTLSMode] == TLSModeIstio
	id := ""
	if hasProxy {
		if sans := se.GetSubjectAltNames(); we.GetServiceAccount() == "" && len(sans) > 0 {
			id = sans[0]
		} else {
			sa := cmp.Or(we.GetServiceAccount(), "default")
			var err error
			if id, err = identity.ServiceAccountURI(trustDomain, ns, sa); err != nil {
				// Validation refuses such names; should one get here,
				// no identity means no mTLS is expected of it, and a
				// STRICT server refuses the plaintext: closed, not open.
				hasProxy = false
			}
		}
	}
	var eps []Endpoint
	for _, p := range se.GetPorts() {
		port := p.GetNumber()
		if n, ok := we.GetPorts()[p.GetName()]; ok && n != 0 {
			port = n
		} else if p.GetTargetPort() != 0 {
			port = p.GetTargetPort()
		}
		eps = append(eps, Endpoint{
			Address:  net.JoinHostPort(we.GetAddress(), strconv.Itoa(int(port))),
			Identity: id,
			HasProxy: hasProxy,
			Workload: workload,
			Labels:   cloneLabels(we.GetLabels()),
		})
	}
	return eps
}

func cloneEndpoints(eps []Endpoint) []Endpoint {
	if len(eps) == 0 {
		return nil
	}
	out := make([]Endpoint, len(eps))
	for i, ep := range eps {
		ep.Labels = cloneLabels(ep.Labels)
		out[i] = ep
	}
	return out
}
