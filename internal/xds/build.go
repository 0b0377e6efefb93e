package xds

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math"
	"sort"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/destrule"
	"github.com/zmesh/zmesh/internal/labelsel"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/sidecarscope"
)

// Build returns the View of proxy p: the PeerAuthentications of the root
// namespace and of p's namespace (all of them: the consumer resolves their
// selectors, since mesh, namespace and workload levels combine), the
// AuthorizationPolicies and RequestAuthentications that select p, the
// DestinationRules exported to p's namespace (destrule.Visible), and the
// services p may call (for now all of them), each endpoint with the mTLS
// mode its proxy enforces (automatic mTLS, see withServerModes), and the
// VirtualServices bound to sidecars and exported to p's namespace (every
// host: p may call any service). Policies that use targetRef(s)
// attach to gateways and waypoints, which zmesh does not have, so they
// select no proxy. Build is pure; its result shares resources (read-only)
// with snap and services.
func Build(snap *config.Snapshot, services []registry.Service, mesh Mesh, p Proxy) *View {
	v := &View{Mesh: mesh}
	inScope := func(ns string) bool {
		return ns == p.Namespace || (mesh.RootNamespace != "" && ns == mesh.RootNamespace)
	}
	for _, r := range snap.List(config.KindPeerAuthentication) {
		if inScope(r.Namespace) {
			v.PeerAuthentications = append(v.PeerAuthentications, r)
		}
	}
	for _, r := range snap.List(config.KindAuthorizationPolicy) {
		if inScope(r.Namespace) && selects(r.Spec, p.Labels) {
			v.AuthorizationPolicies = append(v.AuthorizationPolicies, r)
		}
	}
	for _, r := range snap.List(config.KindRequestAuthentication) {
		if inScope(r.Namespace) && selects(r.Spec, p.Labels) {
			v.RequestAuthentications = append(v.RequestAuthentications, r)
		}
	}
	for _, r := range snap.List(config.KindTelemetry) {
		if inScope(r.Namespace) && selects(r.Spec, p.Labels) {
			v.Telemetries = append(v.Telemetries, r)
		}
	}
	for _, r := range snap.List(config.KindDestinationRule) {
		if destrule.Visible(r, p.Namespace) {
			v.DestinationRules = append(v.DestinationRules, r)
		}
	}
	v.Services = withServerModes(snap.List(config.KindPeerAuthentication), services, mesh.RootNamespace)
	if p.Gateway {
		// A gateway is no sidecar: no Sidecar scopes it, and it routes by
		// its Gateways' VirtualServices, not the mesh's.
		for _, r := range snap.List(config.KindGateway) {
			if selectsGateway(r, p.Labels) {
				v.Gateways = append(v.Gateways, r)
			}
		}
		for _, r := range snap.List(config.KindVirtualService) {
			if gatewayVirtualServiceFor(r, v.Gateways) {
				v.VirtualServices = append(v.VirtualServices, r)
			}
		}
		v.Version = Version(v)
		return v
	}
	if sc := sidecarscope.Select(snap.List(config.KindSidecar), p.Namespace, p.Labels, mesh.RootNamespace); sc != nil {
		v.Services = scopeServices(sc, v.Services, p.Namespace)
		if m := sc.OutboundTrafficPolicy; m != "" {
			v.Mesh.OutboundTrafficPolicy = m
		}
	}
	for _, r := range snap.List(config.KindVirtualService) {
		if virtualServiceFor(r, p.Namespace) {
			v.VirtualServices = append(v.VirtualServices, r)
		}
	}
	v.Version = Version(v)
	return v
}

// targeted is a policy that may carry a workload selector or target refs.
type targeted interface {
	GetSelector() *typev1beta1.WorkloadSelector
	GetTargetRef() *typev1beta1.PolicyTargetReference
	GetTargetRefs() []*typev1beta1.PolicyTargetReference
}

// selects reports whether a policy (already known to be in scope by
// namespace) applies to a workload with labels. No selector: every workload
// in scope. A selector: its matchLabels are a subset of labels. Target
// refs: no workload (fail closed for an unknown attachment, rather than
// applying a gateway's policy to a sidecar).
func selects(spec proto.Message, labels map[string]string) bool {
	t, ok := spec.(targeted)
	if !ok {
		return false
	}
	if t.GetTargetRef() != nil || len(t.GetTargetRefs()) > 0 {
		return false
	}
	return labelsel.Matches(t.GetSelector().GetMatchLabels(), labels)
}

// Version returns a content hash of v (ignoring v.Version): equal views
// have equal versions, on any control plane replica. It is a hash of the
// content hashes of v's parts (the mesh, each policy, the service list),
// so that an Index, which hashes each part once for every proxy, computes
// the same version by combining them.
func Version(v *View) string {
	var lists [numLists][]sum
	for i, list := range [][]config.Resource{v.PeerAuthentications, v.AuthorizationPolicies, v.RequestAuthentications, v.Telemetries, v.DestinationRules} {
		for _, r := range list {
			lists[i] = append(lists[i], resourceSum(r))
		}
	}
	var vss, gws []sum
	for _, r := range v.VirtualServices {
		vss = append(vss, resourceSum(r))
	}
	for _, r := range v.Gateways {
		gws = append(gws, resourceSum(r))
	}
	var creds []sum
	for _, c := range v.Credentials {
		creds = append(creds, credentialSum(c))
	}
	return combine(meshSum(v.Mesh), lists, servicesSum(serviceSums(v.Services)), vss, gws, creds)
}

// virtualServiceFor reports whether the VirtualService r goes to a proxy
// in namespace ns: it binds to sidecars and is exported to ns. Its hosts
// are not filtered: a proxy may call any service.
func virtualServiceFor(r config.Resource, ns string) bool {
	vs, ok := r.Spec.(*networking.VirtualService)
	return ok && config.AppliesToSidecars(vs) && config.ExportedTo(vs.GetExportTo(), r.Namespace, ns)
}

// sum is the content hash of one part of a view.
type sum [sha256.Size]byte

// numLists is the number of resource lists of a View: its kinds of policy
// (policyKinds) and then its DestinationRules.
const numLists = len(policyKinds) + 1

// combine is the view version of the parts' hashes.
func combine(mesh sum, lists [numLists][]sum, services sum, vss, gws, creds []sum) string {
	h := sha256.New()
	h.Write(mesh[:])
	for _, list := range lists {
		num(h, len(list))
		for _, s := range list {
			h.Write(s[:])
		}
	}
	h.Write(services[:])
	if len(vss) > 0 {
		// Absent from views without VirtualServices, so that their
		// versions stay what they were before VirtualServices existed.
		num(h, len(vss))
		for _, s := range vss {
			h.Write(s[:])
		}
	}
	if len(gws) > 0 {
		// Likewise absent from every sidecar's view.
		str(h, "gateways")
		num(h, len(gws))
		for _, s := range gws {
			h.Write(s[:])
		}
	}
	if len(creds) > 0 {
		// Likewise absent from every view but a gateway's with one.
		str(h, "credentials")
		num(h, len(creds))
		for _, s := range creds {
			h.Write(s[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func meshSum(m Mesh) sum {
	h := sha256.New()
	str(h, m.TrustDomain)
	strs(h, m.TrustDomainAliases)
	str(h, m.RootNamespace)
	str(h, m.DNSDomain)
	str(h, m.PathNormalization)
	str(h, m.OutboundTrafficPolicy)
	str(h, m.H2UpgradePolicy)
	if m.MeshMTLS != nil {
		message(h, m.MeshMTLS)
	} else {
		str(h, "")
	}
	num(h, len(m.ExtensionProviders))
	for _, ep := range m.ExtensionProviders {
		message(h, ep)
	}
	strs(h, m.DefaultTracingProviders)
	num(h, int(math.Float64bits(m.TracingSampling)))
	return sum(h.Sum(nil))
}

func resourceSum(r config.Resource) sum {
	h := sha256.New()
	hashResource(h, r)
	return sum(h.Sum(nil))
}

func serviceSums(svcs []registry.Service) []sum {
	out := make([]sum, len(svcs))
	for i, s := range svcs {
		out[i] = serviceSum(s)
	}
	return out
}

func servicesSum(sums []sum) sum {
	h := sha256.New()
	num(h, len(sums))
	for _, s := range sums {
		h.Write(s[:])
	}
	return sum(h.Sum(nil))
}

// serviceSum hashes everything of s that reaches a proxy.
func serviceSum(s registry.Service) sum {
	h := sha256.New()
	str(h, s.Hostname)
	str(h, s.Namespace)
	strs(h, s.Addresses)
	num(h, len(s.Ports))
	for _, p := range s.Ports {
		num(h, int(p.Number))
		str(h, p.Name)
		str(h, p.Protocol)
		num(h, int(p.TargetPort))
	}
	num(h, len(s.Endpoints))
	for _, ep := range s.Endpoints {
		str(h, ep.Address)
		str(h, ep.Identity)
		if ep.HasProxy {
			num(h, 1)
		} else {
			num(h, 0)
		}
		str(h, ep.Workload)
		labels(h, ep.Labels)
		str(h, ep.MTLSMode)
		num(h, int(ep.TunnelPort))
	}
	return sum(h.Sum(nil))
}

func hashResource(h hash.Hash, r config.Resource) {
	str(h, string(r.Kind))
	str(h, r.APIVersion)
	str(h, r.Namespace)
	str(h, r.Name)
	str(h, r.Source)
	labels(h, r.Labels)
	labels(h, r.Annotations)
	message(h, r.Spec)
}

func message(h hash.Hash, m proto.Message) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		str(h, "unmarshalable:"+err.Error())
		return
	}
	num(h, len(b))
	h.Write(b)
}

func str(h hash.Hash, s string) {
	num(h, len(s))
	h.Write([]byte(s))
}

func strs(h hash.Hash, ss []string) {
	num(h, len(ss))
	for _, s := range ss {
		str(h, s)
	}
}

func num(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}

func labels(h hash.Hash, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	num(h, len(keys))
	for _, k := range keys {
		str(h, k)
		str(h, m[k])
	}
}

// scopeServices returns the services of svcs that the Sidecar scope sc
// lets a proxy of namespace ns see, in their order.
func scopeServices(sc *sidecarscope.Scope, svcs []registry.Service, ns string) []registry.Service {
	out := make([]registry.Service, 0, len(svcs))
	for _, s := range svcs {
		if sc.Allows(s.Hostname, s.Namespace, ns) {
			out = append(out, s)
		}
	}
	return out
}
