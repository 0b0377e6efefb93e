package kubesource

import (
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/zmesh/zmesh/internal/identity"
	"github.com/zmesh/zmesh/internal/registry"
)

// ProxyContainer is the name of the init container (a native sidecar)
// that zmesh's injector adds to a pod: a pod that has it serves mesh mTLS.
const ProxyContainer = "zmesh-proxy"

// serviceInput is what one Kubernetes Service's registry.Service is built
// from.
type serviceInput struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
	// pod returns the pod NAMESPACE/NAME, or nil if the informer has none.
	pod         func(key string) *corev1.Pod
	trustDomain string
	dnsDomain   string
}

// buildService returns the registry.Service of one Kubernetes Service and
// the keys of the pods its endpoints named (found or not), so that a
// change of one of those pods rebuilds it. ok is false for a service the
// mesh does not route (ExternalName).
//
// The hostname is NAME.NS.svc.DNSDOMAIN; Addresses are its ClusterIPs (none
// when headless); each TCP port keeps its name, its appProtocol as
// Protocol (Istio's explicit protocol selection, which wins over the
// name's prefix) and a numeric targetPort. Endpoints come from the
// EndpointSlices labelled with the service's name: one per ready address
// and TCP port, its identity spiffe://TD/ns/NS/sa/SA from the pod's service
// account when the pod has a proxy (label security.istio.io/tlsMode=istio,
// or an init container named zmesh-proxy), its labels the pod's.
func buildService(in serviceInput) (svc registry.Service, pods []string, ok bool) {
	s := in.svc
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return registry.Service{}, nil, false
	}
	svc = registry.Service{
		Hostname:  s.Name + "." + s.Namespace + ".svc." + in.dnsDomain,
		Namespace: s.Namespace,
	}
	for _, ip := range s.Spec.ClusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			svc.Addresses = append(svc.Addresses, ip)
		}
	}
	if len(svc.Addresses) == 0 && s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
		svc.Addresses = []string{s.Spec.ClusterIP}
	}
	portNames := map[string]bool{}
	for _, p := range s.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue // the mesh carries TCP only
		}
		port := registry.Port{Number: uint32(p.Port), Name: p.Name}
		if p.AppProtocol != nil {
			port.Protocol = protocolOf(*p.AppProtocol)
		}
		if p.TargetPort.IntVal > 0 && p.TargetPort.StrVal == "" {
			port.TargetPort = uint32(p.TargetPort.IntVal)
		}
		svc.Ports = append(svc.Ports, port)
		portNames[p.Name] = true
	}
	seenPod := map[string]bool{}
	for _, sl := range in.slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var ports []int32
		for _, p := range sl.Ports {
			if p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
				continue
			}
			if name := deref(p.Name); !portNames[name] {
				continue // a port the service no longer has
			}
			ports = append(ports, *p.Port)
		}
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			base := registry.Endpoint{Workload: s.Namespace + "/" + s.Name}
			if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" && ref.Name != "" {
				ns := ref.Namespace
				if ns == "" {
					ns = sl.Namespace
				}
				key := ns + "/" + ref.Name
				if !seenPod[key] {
					seenPod[key] = true
					pods = append(pods, key)
				}
				base.Workload = key
				if pod := in.pod(key); pod != nil {
					base = podEndpoint(pod, in.trustDomain)
				}
			}
			for _, addr := range ep.Addresses {
				for _, port := range ports {
					e := base
					e.Address = net.JoinHostPort(addr, strconv.Itoa(int(port)))
					e.Labels = cloneLabels(base.Labels)
					svc.Endpoints = append(svc.Endpoints, e)
				}
			}
		}
	}
	// Merge of one service sorts its addresses, ports and endpoints and
	// drops duplicate endpoints, so equal content compares equal.
	return registry.Merge([]registry.Service{svc})[0], pods, true
}

// podEndpoint is the endpoint template of a pod: its workload key, its
// labels and, when it has a proxy, the identity it must prove.
func podEndpoint(pod *corev1.Pod, trustDomain string) registry.Endpoint {
	e := registry.Endpoint{Workload: pod.Namespace + "/" + pod.Name, Labels: cloneLabels(pod.Labels)}
	if hasProxy(pod) {
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		id, err := identity.ServiceAccountURI(trustDomain, pod.Namespace, sa)
		if err != nil {
			// The apiserver admits no such names; no identity means no
			// mTLS expected, which a STRICT server refuses: closed.
			return e
		}
		e.HasProxy = true
		e.Identity = id
		if e.Labels == nil {
			e.Labels = map[string]string{}
		}
		e.Labels[registry.LabelTLSMode] = registry.TLSModeIstio
		if pod.Labels[registry.LabelTunnel] == registry.TunnelHTTP {
			e.TunnelPort = registry.DefaultTunnelPort
		}
	}
	return e
}

// hasProxy reports whether a pod serves mesh mTLS: Istio's injected-pod
// label, or zmesh's proxy init container.
func hasProxy(pod *corev1.Pod) bool {
	if pod.Labels[registry.LabelTLSMode] == registry.TLSModeIstio {
		return true
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == ProxyContainer {
			return true
		}
	}
	return false
}

// protocolOf maps a port's appProtocol to the protocol names zmesh and
// Istio use; an unknown value gives "", leaving the protocol to the port's
// name, as Istio does.
func protocolOf(appProtocol string) string {
	switch strings.ToLower(appProtocol) {
	case "http", "kubernetes.io/ws":
		return "HTTP"
	case "http2", "kubernetes.io/h2c":
		return "HTTP2"
	case "grpc":
		return "GRPC"
	case "grpc-web":
		return "GRPC-WEB"
	case "https", "kubernetes.io/wss":
		return "HTTPS"
	case "tls":
		return "TLS"
	case "tcp":
		return "TCP"
	case "mongo", "redis", "mysql":
		return strings.ToUpper(appProtocol)
	}
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func cloneLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
