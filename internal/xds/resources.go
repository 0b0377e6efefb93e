package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	mcp "istio.io/api/mcp/v1alpha1"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	telemetryv1alpha1 "istio.io/api/telemetry/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

// Type URLs of the resource collections a proxy subscribes to, named as
// Istio names config collections over xDS. Each resource is an MCP
// Resource (istio.io/api/mcp/v1alpha1) whose body is the istio.io/api spec.
const (
	TypePeerAuthentication    = "security.istio.io/v1beta1/PeerAuthentication"
	TypeAuthorizationPolicy   = "security.istio.io/v1beta1/AuthorizationPolicy"
	TypeRequestAuthentication = "security.istio.io/v1beta1/RequestAuthentication"
	TypeServiceEntry          = "networking.istio.io/v1alpha3/ServiceEntry"
	TypeDestinationRule       = "networking.istio.io/v1alpha3/DestinationRule"
	TypeVirtualService        = "networking.istio.io/v1alpha3/VirtualService"
	TypeMeshConfig            = "mesh.istio.io/v1alpha1/MeshConfig"
	TypeTelemetry             = "telemetry.istio.io/v1alpha1/Telemetry"
	TypeGateway               = "networking.istio.io/v1alpha3/Gateway"
)

// TypeURLs returns every type URL that makes up a View, in a fixed order.
// The slice is shared: callers read it and never modify it.
func TypeURLs() []string {
	return typeURLs[:]
}

// typeURLs is the one list of a View's type URLs; its length is NumTypes
// so that servers can keep per-type state in arrays.
var typeURLs = [...]string{TypeMeshConfig, TypePeerAuthentication, TypeAuthorizationPolicy, TypeRequestAuthentication, TypeServiceEntry, TypeTelemetry, TypeDestinationRule, TypeVirtualService, TypeGateway, TypeCredential}

// NumTypes is the number of type URLs that make up a View.
const NumTypes = len(typeURLs)

// Annotations zmesh adds to the MCP metadata to carry what the istio.io/api
// messages have no field for. They are removed again by Decode.
const (
	annotationAPIVersion = "zmesh.io/api-version"
	annotationSource     = "zmesh.io/source"
	annotationDNSDomain  = "zmesh.io/dns-domain"
	// annotationEndpoints holds, for a ServiceEntry, a JSON array parallel
	// to spec.endpoints with what secure naming needs exactly: the workload
	// and the SPIFFE ID expected of each endpoint.
	annotationEndpoints = "zmesh.io/endpoints"
)

// MeshConfigName is the name of the single MeshConfig resource.
const MeshConfigName = "zmesh/mesh"

// Resource is one named, versioned resource of a type URL, as carried in a
// delta xDS response: Body is an Any holding an MCP Resource.
type Resource struct {
	Name    string
	Version string // content hash of the resource
	Body    *anypb.Any
}

// Encode turns v into its xDS resources, by type URL. Every type URL of
// TypeURLs is present (possibly with no resources). Within a type,
// resources are sorted by name.
func Encode(v *View) (map[string][]Resource, error) {
	out := map[string][]Resource{}
	for _, t := range TypeURLs() {
		out[t] = nil
	}
	r, err := encodeMesh(v.Mesh)
	if err != nil {
		return nil, err
	}
	out[TypeMeshConfig] = []Resource{r}

	for t, list := range map[string][]config.Resource{
		TypePeerAuthentication:    v.PeerAuthentications,
		TypeAuthorizationPolicy:   v.AuthorizationPolicies,
		TypeRequestAuthentication: v.RequestAuthentications,
		TypeTelemetry:             v.Telemetries,
		TypeDestinationRule:       v.DestinationRules,
		TypeVirtualService:        v.VirtualServices,
		TypeGateway:               v.Gateways,
	} {
		for _, cr := range list {
			r, err := encodePolicy(cr)
			if err != nil {
				return nil, err
			}
			out[t] = append(out[t], r)
		}
	}
	for _, c := range v.Credentials {
		r, err := encodeCredential(c)
		if err != nil {
			return nil, err
		}
		out[TypeCredential] = append(out[TypeCredential], r)
	}
	for _, svc := range v.Services {
		r, err := encodeServiceResource(svc)
		if err != nil {
			return nil, err
		}
		out[TypeServiceEntry] = append(out[TypeServiceEntry], r)
	}
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	return out, nil
}

// endpointRecord is the per-endpoint part of a service that WorkloadEntry
// cannot express exactly.
type endpointRecord struct {
	Workload string `json:"workload,omitempty"`
	Identity string `json:"identity,omitempty"`
	// MTLSMode is the mode the endpoint's proxy enforces at its port
	// (automatic mTLS); empty when not resolved.
	MTLSMode string `json:"mtlsMode,omitempty"`
}

// encodeMesh is the MeshConfig resource of m.
func encodeMesh(m Mesh) (Resource, error) {
	mc, err := meshConfig(m)
	if err != nil {
		return Resource{}, err
	}
	var ann map[string]string
	if m.DNSDomain != "" {
		ann = map[string]string{annotationDNSDomain: m.DNSDomain}
	}
	return encodeOne(MeshConfigName, nil, ann, mc)
}

// encodePolicy is the resource of one PeerAuthentication,
// AuthorizationPolicy, RequestAuthentication, Telemetry, DestinationRule or
// VirtualService.
func encodePolicy(cr config.Resource) (Resource, error) {
	ann := cloneMap(cr.Annotations)
	if cr.APIVersion != "" {
		ann = setKey(ann, annotationAPIVersion, cr.APIVersion)
	}
	if cr.Source != "" {
		ann = setKey(ann, annotationSource, cr.Source)
	}
	r, err := encodeOne(cr.Key(), cr.Labels, ann, cr.Spec)
	if err != nil {
		return Resource{}, fmt.Errorf("xds: encode %s %s: %w", cr.Kind, cr.Key(), err)
	}
	return r, nil
}

// encodeServiceResource is the ServiceEntry resource of svc.
func encodeServiceResource(svc registry.Service) (Resource, error) {
	se, ann, err := encodeService(svc)
	if err != nil {
		return Resource{}, err
	}
	r, err := encodeOne(svc.Namespace+"/"+svc.Hostname, nil, ann, se)
	if err != nil {
		return Resource{}, fmt.Errorf("xds: encode service %s: %w", svc.Hostname, err)
	}
	return r, nil
}

func encodeService(svc registry.Service) (*networking.ServiceEntry, map[string]string, error) {
	se := &networking.ServiceEntry{
		Hosts:      []string{svc.Hostname},
		Addresses:  svc.Addresses,
		Location:   networking.ServiceEntry_MESH_INTERNAL,
		Resolution: networking.ServiceEntry_STATIC,
	}
	for _, p := range svc.Ports {
		se.Ports = append(se.Ports, &networking.ServicePort{Number: p.Number, Name: p.Name, Protocol: p.Protocol, TargetPort: p.TargetPort})
	}
	records := make([]endpointRecord, 0, len(svc.Endpoints))
	for _, ep := range svc.Endpoints {
		we := &networking.WorkloadEntry{Address: ep.Address, Labels: ep.Labels}
		if host, port, err := net.SplitHostPort(ep.Address); err == nil {
			if n, err := strconv.ParseUint(port, 10, 16); err == nil {
				we.Address = host
				we.Ports = map[string]uint32{"mesh": uint32(n)}
			}
		}
		if ep.TunnelPort != 0 && ep.HasProxy {
			if we.Ports == nil {
				we.Ports = map[string]uint32{}
			}
			we.Ports[portTunnel] = ep.TunnelPort
		}
		if net.ParseIP(we.Address) == nil {
			se.Resolution = networking.ServiceEntry_DNS
		}
		if _, sa, ok := nsAndSA(ep.Identity); ok {
			we.ServiceAccount = sa
		}
		se.Endpoints = append(se.Endpoints, we)
		records = append(records, endpointRecord{Workload: ep.Workload, Identity: ep.Identity, MTLSMode: ep.MTLSMode})
	}
	b, err := json.Marshal(records)
	if err != nil {
		return nil, nil, fmt.Errorf("xds: encode service %s: %w", svc.Hostname, err)
	}
	return se, map[string]string{annotationEndpoints: string(b)}, nil
}

// nsAndSA extracts namespace and service account from a SPIFFE ID of the
// form spiffe://TD/ns/NS/sa/SA.
func nsAndSA(id string) (ns, sa string, ok bool) {
	rest, found := strings.CutPrefix(id, "spiffe://")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" {
		return "", "", false
	}
	return parts[2], parts[4], true
}

// deterministic makes equal resources encode to equal bytes (maps are
// sorted), so that their versions are content hashes.
var deterministic = proto.MarshalOptions{Deterministic: true}

func encodeOne(name string, labels, annotations map[string]string, spec proto.Message) (Resource, error) {
	body := &anypb.Any{}
	if err := anypb.MarshalFrom(body, spec, deterministic); err != nil {
		return Resource{}, err
	}
	res := &mcp.Resource{
		Metadata: &mcp.Metadata{Name: name, Labels: labels, Annotations: annotations},
		Body:     body,
	}
	b, err := deterministic.Marshal(res)
	if err != nil {
		return Resource{}, err
	}
	sum := sha256.Sum256(b)
	res.Metadata.Version = hex.EncodeToString(sum[:12])
	wrapped := &anypb.Any{}
	if err := anypb.MarshalFrom(wrapped, res, deterministic); err != nil {
		return Resource{}, err
	}
	return Resource{Name: name, Version: res.Metadata.Version, Body: wrapped}, nil
}

// Decode assembles a View from the complete resource set of a proxy, by
// type URL and name, as received from the control plane. version becomes
// the View's Version. It fails on anything malformed, so that a proxy never
// applies a view it only partly understood; exactly one MeshConfig is
// required.
func Decode(version string, resources map[string]map[string]*anypb.Any) (*View, error) {
	v := &View{Version: version}
	meshes := resources[TypeMeshConfig]
	if len(meshes) != 1 {
		return nil, fmt.Errorf("xds: want exactly 1 MeshConfig, have %d", len(meshes))
	}
	for name, a := range meshes {
		res, err := unwrap(name, a)
		if err != nil {
			return nil, err
		}
		mc := &meshv1alpha1.MeshConfig{}
		if err := res.GetBody().UnmarshalTo(mc); err != nil {
			return nil, fmt.Errorf("xds: MeshConfig %s: %w", name, err)
		}
		v.Mesh = Mesh{
			TrustDomain:        mc.GetTrustDomain(),
			TrustDomainAliases: mc.GetTrustDomainAliases(),
			RootNamespace:      mc.GetRootNamespace(),
			DNSDomain:          res.GetMetadata().GetAnnotations()[annotationDNSDomain],
			ExtensionProviders: mc.GetExtensionProviders(),
		}
		if pn := mc.GetPathNormalization(); pn != nil {
			v.Mesh.PathNormalization = pn.GetNormalization().String()
		}
		if otp := mc.GetOutboundTrafficPolicy(); otp != nil {
			v.Mesh.OutboundTrafficPolicy = otp.GetMode().String()
		}
		v.Mesh.MeshMTLS = mc.GetMeshMTLS()
		if mc.GetH2UpgradePolicy() != meshv1alpha1.MeshConfig_DO_NOT_UPGRADE {
			v.Mesh.H2UpgradePolicy = mc.GetH2UpgradePolicy().String()
		}
		v.Mesh.DefaultTracingProviders = mc.GetDefaultProviders().GetTracing()
		v.Mesh.TracingSampling = mc.GetDefaultConfig().GetTracing().GetSampling()
	}
	var err error
	if v.PeerAuthentications, err = decodePolicies(resources[TypePeerAuthentication], config.KindPeerAuthentication, func() proto.Message { return &securityv1beta1.PeerAuthentication{} }); err != nil {
		return nil, err
	}
	if v.AuthorizationPolicies, err = decodePolicies(resources[TypeAuthorizationPolicy], config.KindAuthorizationPolicy, func() proto.Message { return &securityv1beta1.AuthorizationPolicy{} }); err != nil {
		return nil, err
	}
	if v.RequestAuthentications, err = decodePolicies(resources[TypeRequestAuthentication], config.KindRequestAuthentication, func() proto.Message { return &securityv1beta1.RequestAuthentication{} }); err != nil {
		return nil, err
	}
	if v.Telemetries, err = decodePolicies(resources[TypeTelemetry], config.KindTelemetry, func() proto.Message { return &telemetryv1alpha1.Telemetry{} }); err != nil {
		return nil, err
	}
	if v.DestinationRules, err = decodePolicies(resources[TypeDestinationRule], config.KindDestinationRule, func() proto.Message { return &networking.DestinationRule{} }); err != nil {
		return nil, err
	}
	if v.VirtualServices, err = decodePolicies(resources[TypeVirtualService], config.KindVirtualService, func() proto.Message { return &networking.VirtualService{} }); err != nil {
		return nil, err
	}
	if v.Gateways, err = decodePolicies(resources[TypeGateway], config.KindGateway, func() proto.Message { return &networking.Gateway{} }); err != nil {
		return nil, err
	}
	if v.Credentials, err = decodeCredentials(resources[TypeCredential]); err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(resources[TypeServiceEntry]) {
		svc, err := decodeService(name, resources[TypeServiceEntry][name])
		if err != nil {
			return nil, err
		}
		v.Services = append(v.Services, svc)
	}
	sort.Slice(v.Services, func(i, j int) bool { return v.Services[i].Hostname < v.Services[j].Hostname })
	return v, nil
}

func unwrap(name string, a *anypb.Any) (*mcp.Resource, error) {
	res := &mcp.Resource{}
	if err := a.UnmarshalTo(res); err != nil {
		return nil, fmt.Errorf("xds: resource %s: %w", name, err)
	}
	if res.GetMetadata().GetName() != name {
		return nil, fmt.Errorf("xds: resource %s: body names %q", name, res.GetMetadata().GetName())
	}
	if res.GetBody() == nil {
		return nil, fmt.Errorf("xds: resource %s: no body", name)
	}
	return res, nil
}

func splitName(name string) (ns, rest string, err error) {
	ns, rest, ok := strings.Cut(name, "/")
	if !ok || ns == "" || rest == "" {
		return "", "", fmt.Errorf("xds: resource name %q is not NAMESPACE/NAME", name)
	}
	return ns, rest, nil
}

func decodePolicies(in map[string]*anypb.Any, kind config.Kind, newSpec func() proto.Message) ([]config.Resource, error) {
	var out []config.Resource
	for _, name := range sortedKeys(in) {
		res, err := unwrap(name, in[name])
		if err != nil {
			return nil, err
		}
		ns, n, err := splitName(name)
		if err != nil {
			return nil, err
		}
		spec := newSpec()
		if err := res.GetBody().UnmarshalTo(spec); err != nil {
			return nil, fmt.Errorf("xds: %s %s: %w", kind, name, err)
		}
		ann := cloneMap(res.GetMetadata().GetAnnotations())
		apiVersion, source := ann[annotationAPIVersion], ann[annotationSource]
		delete(ann, annotationAPIVersion)
		delete(ann, annotationSource)
		if len(ann) == 0 {
			ann = nil
		}
		out = append(out, config.Resource{
			Meta: config.Meta{
				Kind:        kind,
				APIVersion:  apiVersion,
				Name:        n,
				Namespace:   ns,
				Labels:      cloneMap(res.GetMetadata().GetLabels()),
				Annotations: ann,
				Source:      source,
			},
			Spec: spec,
		})
	}
	// The order of a config.Snapshot (namespace, then name), which is
	// not the order of the names as strings ("foo-bar/a" < "foo/b"):
	// the view's version hashes the lists in order.
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// portTunnel is the WorkloadEntry port name that carries an endpoint's
// HBONE tunnel port (registry.Endpoint.TunnelPort).
const portTunnel = "tunnel"

func decodeService(name string, a *anypb.Any) (registry.Service, error) {
	res, err := unwrap(name, a)
	if err != nil {
		return registry.Service{}, err
	}
	ns, host, err := splitName(name)
	if err != nil {
		return registry.Service{}, err
	}
	se := &networking.ServiceEntry{}
	if err := res.GetBody().UnmarshalTo(se); err != nil {
		return registry.Service{}, fmt.Errorf("xds: ServiceEntry %s: %w", name, err)
	}
	if len(se.GetHosts()) != 1 || se.GetHosts()[0] != host {
		return registry.Service{}, fmt.Errorf("xds: ServiceEntry %s: hosts %v do not match its name", name, se.GetHosts())
	}
	var records []endpointRecord
	if err := json.Unmarshal([]byte(res.GetMetadata().GetAnnotations()[annotationEndpoints]), &records); err != nil {
		return registry.Service{}, fmt.Errorf("xds: ServiceEntry %s: endpoints annotation: %w", name, err)
	}
	if len(records) != len(se.GetEndpoints()) {
		return registry.Service{}, fmt.Errorf("xds: ServiceEntry %s: %d endpoint records for %d endpoints", name, len(records), len(se.GetEndpoints()))
	}
	svc := registry.Service{Hostname: host, Namespace: ns, Addresses: se.GetAddresses()}
	for _, p := range se.GetPorts() {
		svc.Ports = append(svc.Ports, registry.Port{Number: p.GetNumber(), Name: p.GetName(), Protocol: p.GetProtocol(), TargetPort: p.GetTargetPort()})
	}
	for i, we := range se.GetEndpoints() {
		switch records[i].MTLSMode {
		case "", ModeStrict, ModePermissive, ModeDisable:
		default:
			// A mode this proxy does not know: refuse the push rather
			// than guess whether to encrypt.
			return registry.Service{}, fmt.Errorf("xds: ServiceEntry %s: endpoint %d: unknown mTLS mode %q", name, i, records[i].MTLSMode)
		}
		addr := we.GetAddress()
		if port, ok := we.GetPorts()["mesh"]; ok {
			addr = net.JoinHostPort(addr, strconv.Itoa(int(port)))
		}
		svc.Endpoints = append(svc.Endpoints, registry.Endpoint{
			Address:  addr,
			Identity: records[i].Identity,
			HasProxy: we.GetLabels()[registry.LabelTLSMode] == registry.TLSModeIstio,
			Workload: records[i].Workload,
			Labels:   cloneMap(we.GetLabels()),
			MTLSMode: records[i].MTLSMode,
		})
		if tp, ok := we.GetPorts()[portTunnel]; ok && tp > 0 && tp <= 65535 && svc.Endpoints[len(svc.Endpoints)-1].HasProxy {
			svc.Endpoints[len(svc.Endpoints)-1].TunnelPort = tp
		}
	}
	return svc, nil
}

func sortedKeys(m map[string]*anypb.Any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func setKey(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// meshConfig is the MeshConfig message that carries m to proxies. Settings
// left empty in m are left unset, so that a proxy applies Istio's
// defaults.
func meshConfig(m Mesh) (*meshv1alpha1.MeshConfig, error) {
	mc := &meshv1alpha1.MeshConfig{
		TrustDomain:        m.TrustDomain,
		TrustDomainAliases: m.TrustDomainAliases,
		RootNamespace:      m.RootNamespace,
		ExtensionProviders: m.ExtensionProviders,
	}
	if m.PathNormalization != "" {
		n, ok := meshv1alpha1.MeshConfig_ProxyPathNormalization_NormalizationType_value[m.PathNormalization]
		if !ok {
			return nil, fmt.Errorf("xds: unknown path normalization %q", m.PathNormalization)
		}
		mc.PathNormalization = &meshv1alpha1.MeshConfig_ProxyPathNormalization{
			Normalization: meshv1alpha1.MeshConfig_ProxyPathNormalization_NormalizationType(n),
		}
	}
	if m.OutboundTrafficPolicy != "" {
		mode, ok := meshv1alpha1.MeshConfig_OutboundTrafficPolicy_Mode_value[m.OutboundTrafficPolicy]
		if !ok {
			return nil, fmt.Errorf("xds: unknown outbound traffic policy %q", m.OutboundTrafficPolicy)
		}
		mc.OutboundTrafficPolicy = &meshv1alpha1.MeshConfig_OutboundTrafficPolicy{
			Mode: meshv1alpha1.MeshConfig_OutboundTrafficPolicy_Mode(mode),
		}
	}
	mc.MeshMTLS = m.MeshMTLS
	if m.H2UpgradePolicy != "" {
		policy, ok := meshv1alpha1.MeshConfig_H2UpgradePolicy_value[m.H2UpgradePolicy]
		if !ok {
			return nil, fmt.Errorf("xds: unknown h2 upgrade policy %q", m.H2UpgradePolicy)
		}
		mc.H2UpgradePolicy = meshv1alpha1.MeshConfig_H2UpgradePolicy(policy)
	}
	if len(m.DefaultTracingProviders) > 0 {
		mc.DefaultProviders = &meshv1alpha1.MeshConfig_DefaultProviders{Tracing: m.DefaultTracingProviders}
	}
	if m.TracingSampling != 0 {
		mc.DefaultConfig = &meshv1alpha1.ProxyConfig{Tracing: &meshv1alpha1.Tracing{Sampling: m.TracingSampling}}
	}
	return mc, nil
}
