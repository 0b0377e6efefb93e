package analyze

import (
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// analyzeServicePorts is Istio's service.PortNameAnalyzer: a Service port
// whose protocol Istio cannot tell from its name or appProtocol is
// sniffed, which does not work for server-first protocols (IST0118); on an
// ExternalName Service, which has no IP to tell its ports apart, such a
// port, or one named just "tcp", is IST0150 instead. As Istio, the control
// plane's own Services (label "istio", or release=istio, in any
// namespace) and those a gateway controller manages are skipped.
func analyzeServicePorts(c *context) {
	for _, s := range c.in.Services {
		if _, ok := s.Labels["istio"]; ok || s.Labels["release"] == "istio" || gatewayManaged(s.Labels) {
			continue
		}
		for _, p := range s.Ports {
			unsupported := portProtocol(p.Port, p.Name, p.Protocol, p.AppProtocol) == ""
			res := resourceName("Service", s.Namespace, s.Name)
			switch {
			case s.Type == "ExternalName" && (unsupported || p.Name == "tcp"):
				c.report(ExternalNameServiceTypeInvalidPortName, res, s.Source)
			case unsupported:
				tp := p.TargetPort
				if tp == "" {
					tp = strconv.Itoa(int(p.Port))
				}
				c.report(PortNameIsNotUnderNamingConvention, res, s.Source, p.Name, p.Port, tp)
			}
		}
	}
}

// gatewayManaged reports whether a Service is one Istio's gateway
// controllers created (label gateway.istio.io/managed naming one of
// them), which Istio's port name check skips.
func gatewayManaged(labels map[string]string) bool {
	switch labels["gateway.istio.io/managed"] {
	case "istio.io-gateway-controller", "istio.io-mesh-controller", "istio.io-eastwest-controller":
		return true
	}
	return false
}

// portProtocol is Istio's protocol selection for a Kubernetes Service
// port: UDP is UDP; else appProtocol when set, else the port name's prefix
// before "-" ("grpc-web" whole); a few well-known ports default to TCP.
// "" means unsupported: Istio sniffs the protocol.
func portProtocol(port int32, name, proto, appProto string) string {
	if proto == "UDP" {
		return "UDP"
	}
	if appProto != "" {
		switch appProto {
		case "kubernetes.io/h2c":
			return "HTTP2"
		case "kubernetes.io/ws":
			return "HTTP"
		case "kubernetes.io/wss":
			return "HTTPS"
		}
		name = appProto
	}
	if len(name) >= 8 && strings.EqualFold(name[:8], "grpc-web") {
		return "GRPC-Web"
	}
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[:i]
	}
	if p := parseProtocol(name); p != "" {
		return p
	}
	switch port {
	case 25, 53, 3306, 27017: // SMTP, DNS, MySQL, MongoDB
		return "TCP"
	}
	return ""
}

// parseProtocol maps a protocol name to Istio's spelling, "" if unknown.
func parseProtocol(s string) string {
	switch strings.ToLower(s) {
	case "tcp":
		return "TCP"
	case "udp":
		return "UDP"
	case "grpc":
		return "GRPC"
	case "grpc-web":
		return "GRPC-Web"
	case "http":
		return "HTTP"
	case "http_proxy":
		return "HTTP_PROXY"
	case "http2":
		return "HTTP2"
	case "https":
		return "HTTPS"
	case "tls":
		return "TLS"
	case "mongo":
		return "Mongo"
	case "redis":
		return "Redis"
	case "mysql":
		return "MySQL"
	}
	return ""
}

// opaque reports whether a proxy sees the protocol's traffic as bytes
// only, with no HTTP attributes: TCP and what Istio proxies as TCP.
func opaque(protocol string) bool {
	switch protocol {
	case "TCP", "TLS", "HTTPS", "Mongo", "Redis", "MySQL":
		return true
	}
	return false
}

// workloadPort is one port a workload serves, and whether its traffic is
// opaque TCP to the proxy.
type workloadPort struct {
	port uint32
	tcp  bool
}

// workloadPorts returns the ports of w that a protocol is declared for:
// those of the Services selecting it (their targetPort, when numeric) and
// of the ServiceEntries whose workloadSelector selects it.
func (c *context) workloadPorts(w Workload) []workloadPort {
	var out []workloadPort
	for _, s := range c.in.Services {
		if s.Namespace != w.Namespace || len(s.Selector) == 0 || !labelsel.Matches(s.Selector, w.Labels) {
			continue
		}
		for _, p := range s.Ports {
			n := uint32(p.Port)
			if p.TargetPort != "" {
				v, err := strconv.ParseUint(p.TargetPort, 10, 16)
				if err != nil {
					continue // a named port: the pod's spec would say which
				}
				n = uint32(v)
			}
			if proto := portProtocol(p.Port, p.Name, p.Protocol, p.AppProtocol); proto != "" && proto != "UDP" {
				out = append(out, workloadPort{port: n, tcp: opaque(proto)})
			}
		}
	}
	for _, r := range c.in.Snapshot.List(config.KindServiceEntry) {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok || r.Namespace != w.Namespace {
			continue
		}
		sel := se.GetWorkloadSelector().GetLabels()
		if len(sel) == 0 || !labelsel.Matches(sel, w.Labels) {
			continue
		}
		for _, p := range se.GetPorts() {
			n := p.GetNumber()
			if p.GetTargetPort() != 0 {
				n = p.GetTargetPort()
			}
			if proto := parseProtocol(p.GetProtocol()); proto != "" && proto != "UDP" {
				out = append(out, workloadPort{port: n, tcp: opaque(proto)})
			}
		}
	}
	return out
}
