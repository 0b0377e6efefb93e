package xds

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/zmesh/zmesh/internal/registry"
)

// Keys of the node metadata a proxy registers itself with, named as
// Istio's proxy metadata where Istio has a name.
const (
	MetaName           = "NAME"
	MetaNamespace      = "NAMESPACE"
	MetaServiceAccount = "SERVICE_ACCOUNT"
	MetaLabels         = "LABELS"
	MetaInboundAddress = "INBOUND_ADDRESS"
	MetaServices       = "SERVICES"
	// MetaAdminAddress is zmesh's own: where the proxy's admin listener
	// (/metrics) is reached, for the control plane's web view.
	MetaAdminAddress = "ADMIN_ADDRESS"
	// MetaTunnelPort is zmesh's own: the port of the proxy's HBONE
	// tunnel on the host of its inbound address, as a decimal string.
	MetaTunnelPort = "TUNNEL_PORT"
	// MetaGateway is zmesh's own: "true" for a gateway proxy (Istio tells
	// one by its node type, router).
	MetaGateway = "ZMESH_GATEWAY"
)

// ProxyMetadata is NodeMetadata of p's workload, marked as a gateway
// when p is one.
func ProxyMetadata(p Proxy) *structpb.Struct {
	md := NodeMetadata(p.Workload)
	if p.Gateway {
		md.Fields[MetaGateway] = structpb.NewStringValue("true")
	}
	return md
}

// GatewayFromMetadata reports whether md registers a gateway proxy; a
// value other than "true" or "false" is an error.
func GatewayFromMetadata(md *structpb.Struct) (bool, error) {
	v, ok := md.GetFields()[MetaGateway]
	if !ok {
		return false, nil
	}
	switch v.GetStringValue() {
	case "true":
		return true, nil
	case "false", "":
		if _, isStr := v.GetKind().(*structpb.Value_StringValue); isStr {
			return false, nil
		}
	}
	return false, fmt.Errorf("xds: node metadata %s is not \"true\" or \"false\"", MetaGateway)
}

// NodeMetadata returns the xDS node metadata that registers w: its name,
// namespace, service account, labels, inbound address, admin address (when
// known) and the short names of the services it serves. Identity and HasProxy are not sent: the
// control plane derives them from the authenticated connection.
func NodeMetadata(w registry.Workload) *structpb.Struct {
	labels := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range w.Labels {
		labels.Fields[k] = structpb.NewStringValue(v)
	}
	services := &structpb.ListValue{}
	for _, s := range w.Services {
		services.Values = append(services.Values, structpb.NewStringValue(s))
	}
	md := &structpb.Struct{Fields: map[string]*structpb.Value{
		MetaName:           structpb.NewStringValue(w.Name),
		MetaNamespace:      structpb.NewStringValue(w.Namespace),
		MetaServiceAccount: structpb.NewStringValue(w.ServiceAccount),
		MetaLabels:         structpb.NewStructValue(labels),
		MetaInboundAddress: structpb.NewStringValue(w.Address),
		MetaServices:       structpb.NewListValue(services),
	}}
	if w.AdminAddress != "" {
		md.Fields[MetaAdminAddress] = structpb.NewStringValue(w.AdminAddress)
	}
	if w.TunnelPort != 0 {
		md.Fields[MetaTunnelPort] = structpb.NewStringValue(strconv.FormatUint(uint64(w.TunnelPort), 10))
	}
	return md
}

// WorkloadFromMetadata reads a registration written by NodeMetadata. It
// checks types only; the caller authenticates the claims and validates the
// workload.
func WorkloadFromMetadata(md *structpb.Struct) (registry.Workload, error) {
	var w registry.Workload
	f := md.GetFields()
	var err error
	str := func(key string) string {
		v, ok := f[key]
		if !ok || err != nil {
			return ""
		}
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			err = fmt.Errorf("xds: node metadata %s is not a string", key)
			return ""
		}
		return s.StringValue
	}
	w.Name = str(MetaName)
	w.Namespace = str(MetaNamespace)
	w.ServiceAccount = str(MetaServiceAccount)
	w.Address = str(MetaInboundAddress)
	w.AdminAddress = str(MetaAdminAddress)
	if tp := str(MetaTunnelPort); tp != "" && err == nil {
		n, perr := strconv.ParseUint(tp, 10, 16)
		if perr != nil || n == 0 {
			err = fmt.Errorf("xds: node metadata %s %q is not a port", MetaTunnelPort, tp)
		}
		w.TunnelPort = uint32(n)
	}
	if err != nil {
		return registry.Workload{}, err
	}
	if v, ok := f[MetaLabels]; ok {
		s := v.GetStructValue()
		if s == nil {
			return registry.Workload{}, fmt.Errorf("xds: node metadata %s is not a struct", MetaLabels)
		}
		if len(s.GetFields()) > registry.MaxLabelsPerWorkload {
			return registry.Workload{}, fmt.Errorf("xds: node metadata has %d labels, at most %d allowed", len(s.GetFields()), registry.MaxLabelsPerWorkload)
		}
		for k, lv := range s.GetFields() {
			sv, ok := lv.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return registry.Workload{}, fmt.Errorf("xds: node metadata label %q is not a string", k)
			}
			if w.Labels == nil {
				w.Labels = map[string]string{}
			}
			w.Labels[k] = sv.StringValue
		}
	}
	if v, ok := f[MetaServices]; ok {
		l := v.GetListValue()
		if l == nil {
			return registry.Workload{}, fmt.Errorf("xds: node metadata %s is not a list", MetaServices)
		}
		if len(l.GetValues()) > registry.MaxServicesPerWorkload {
			return registry.Workload{}, fmt.Errorf("xds: node metadata has %d services, at most %d allowed", len(l.GetValues()), registry.MaxServicesPerWorkload)
		}
		for _, sv := range l.GetValues() {
			s, ok := sv.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return registry.Workload{}, fmt.Errorf("xds: node metadata %s holds a non-string", MetaServices)
			}
			w.Services = append(w.Services, s.StringValue)
		}
	}
	return w, nil
}
