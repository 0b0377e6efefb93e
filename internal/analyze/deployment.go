package analyze

import (
	"slices"
	"strconv"

	"github.com/zmesh/zmesh/internal/labelsel"
)

// analyzeDeploymentServices is Istio's deployment.ServiceAssociationAnalyzer
// for the Deployments of the input (from files: a cluster's are not read)
// that are in the mesh by Istio's test (deploymentInMesh) and are not
// waypoints: the Services of their namespace that select their pods may
// not give one port two protocols (IST0116: the proxy has one listener
// per port and cannot serve both), nor one targetPort two ports (IST0137:
// the proxy's inbound side cannot tell which service a connection to
// that targetPort is for). As Istio, a Service that gives one port to TCP
// and UDP (DNS on 53) counts as two protocols.
func analyzeDeploymentServices(c *context) {
	for _, w := range c.workloads {
		if w.Kind != "Deployment" || w.OwnerLabels["gateway.istio.io/managed"] == "istio.io-mesh-controller" || !c.deploymentInMesh(w) {
			continue
		}
		var selecting []Service
		for _, s := range c.in.Services {
			if s.Namespace == w.Namespace && len(s.Selector) > 0 && labelsel.Matches(s.Selector, w.Labels) {
				selecting = append(selecting, s)
			}
		}
		checkPortProtocols(c, w, selecting)
		checkTargetPorts(c, w, selecting)
	}
}

// checkPortProtocols reports each port the Services give more than one
// protocol (TCP when unset), with the Services that use it.
func checkPortProtocols(c *context, w Workload, svcs []Service) {
	protocols := map[int32]map[string][]string{} // port -> protocol -> services
	var ports []int32
	for _, s := range svcs {
		for _, p := range s.Ports {
			if protocols[p.Port] == nil {
				protocols[p.Port] = map[string][]string{}
				ports = append(ports, p.Port)
			}
			proto := p.Protocol
			if proto == "" {
				proto = "TCP"
			}
			protocols[p.Port][proto] = append(protocols[p.Port][proto], s.Namespace+"/"+s.Name)
		}
	}
	for _, port := range ports {
		if len(protocols[port]) < 2 {
			continue
		}
		var names []string
		for _, ns := range protocols[port] {
			names = append(names, ns...)
		}
		slices.Sort(names)
		c.report(DeploymentAssociatedToMultipleServices, resourceName(w.Kind, w.Namespace, w.Name), w.Source, w.Name, int(port), names)
	}
}

// checkTargetPorts reports each targetPort (the port when unset) that
// Services reach from more than one port. As Istio keeps one Service per
// targetPort and port, the last one of a port is named.
func checkTargetPorts(c *context, w Workload, svcs []Service) {
	byTarget := map[string]map[int32]string{} // targetPort -> port -> service
	var targets []string
	for _, s := range svcs {
		for _, p := range s.Ports {
			tp := p.TargetPort
			if tp == "" || tp == "0" {
				tp = strconv.Itoa(int(p.Port))
			}
			if byTarget[tp] == nil {
				byTarget[tp] = map[int32]string{}
				targets = append(targets, tp)
			}
			byTarget[tp][p.Port] = s.Namespace + "/" + s.Name
		}
	}
	for _, tp := range targets {
		if len(byTarget[tp]) < 2 {
			continue
		}
		var names []string
		var ports []int32
		for port, name := range byTarget[tp] {
			names = append(names, name)
			ports = append(ports, port)
		}
		slices.Sort(names)
		slices.Sort(ports)
		c.report(DeploymentConflictingPorts, resourceName(w.Kind, w.Namespace, w.Name), w.Source, w.Name, names, tp, ports)
	}
}

// deploymentInMesh is Istio's test that a Deployment's pods get a proxy:
// a container named istio-proxy; else the template's label, then its
// annotation, sidecar.istio.io/inject ("true" or not); else its
// namespace's istio-injection=enabled, when the namespace is known; else
// not.
func (c *context) deploymentInMesh(w Workload) bool {
	if w.ProxyContainer {
		return true
	}
	if v, ok := w.Labels["sidecar.istio.io/inject"]; ok {
		return v == "true"
	}
	if v, ok := w.Annotations["sidecar.istio.io/inject"]; ok {
		return v == "true"
	}
	for _, ns := range c.in.Namespaces {
		if ns.Name == w.Namespace {
			return ns.Labels["istio-injection"] == "enabled"
		}
	}
	return false
}
