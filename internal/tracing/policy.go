package tracing

import (
	"net"
	"strconv"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// DefaultPercent is the sampling rate when neither a Telemetry nor the
// mesh config's defaultConfig.tracing.sampling sets one: istiod's default
// (PILOT_TRACE_SAMPLING).
const DefaultPercent = 1.0

// Policy is the tracing in force on one side (client or server) of one
// proxy. The zero Policy propagates trace context and reports nothing.
type Policy struct {
	// Provider names the extension provider spans go to ("" for none).
	Provider string
	// Collector is the OTLP/gRPC address (host:port) of Provider; empty
	// when spans are not reported: no provider, a provider that is not
	// an OpenTelemetry one, or disableSpanReporting.
	Collector string
	// Percent is the random sampling rate, 0 to 100, for requests that
	// come without a decision.
	Percent float64
}

// Reports reports whether p sends spans anywhere.
func (p Policy) Reports() bool { return p.Collector != "" }

// Mesh is what Resolve needs of the mesh config.
type Mesh struct {
	RootNamespace string
	// Providers are MeshConfig extensionProviders.
	Providers []*meshv1alpha1.MeshConfig_ExtensionProvider
	// DefaultProviders is MeshConfig defaultProviders.tracing: the
	// providers of workloads no Telemetry names one for.
	DefaultProviders []string
	// Sampling is MeshConfig defaultConfig.tracing.sampling; 0 means
	// DefaultPercent, as in istiod.
	Sampling float64
}

// Workload is the proxy Resolve resolves for: labelsel.Workload, one type
// for every policy engine.
type Workload = labelsel.Workload

// Resolve returns the tracing policies of a workload's client and server
// sides from the Telemetry resources that may apply (those of the root
// namespace and of the workload's namespace; others are ignored), with
// istiod's precedence: the root namespace's Telemetry without a selector
// (mesh-wide), then the namespace's without a selector, then one of the
// namespace's whose selector matches the workload; each level overrides
// the fields it sets (providers, randomSamplingPercentage,
// disableSpanReporting) and inherits the others. Where several resources
// compete for one level, the first by name wins, as istiod takes the
// oldest. Telemetries with targetRefs attach to gateways and waypoints,
// never to a sidecar. notes says what was ignored, for the proxy's log.
func Resolve(m Mesh, ts []config.Resource, w Workload) (client, server Policy, notes []string) {
	var mesh, ns, wl *telemetry.Telemetry
	for _, r := range ts {
		t, ok := r.Spec.(*telemetry.Telemetry)
		if !ok || t.GetTargetRef() != nil || len(t.GetTargetRefs()) > 0 {
			continue
		}
		sel := t.GetSelector()
		inRoot, inOwn := r.Namespace == m.RootNamespace, r.Namespace == w.Namespace
		var level **telemetry.Telemetry
		switch {
		case sel == nil && inRoot:
			level = &mesh
		case sel == nil && inOwn:
			level = &ns
		case sel != nil && inOwn && labelsel.Matches(sel.GetMatchLabels(), w.Labels):
			level = &wl
		default:
			continue
		}
		if *level != nil {
			notes = append(notes, "Telemetry "+r.Key()+" ignored: another one applies at the same level")
			continue
		}
		*level = t
	}
	levels := []*telemetry.Telemetry{mesh, ns, wl}
	client = m.resolveSide(levels, telemetry.WorkloadMode_CLIENT, &notes)
	server = m.resolveSide(levels, telemetry.WorkloadMode_SERVER, &notes)
	return client, server, notes
}

func (m Mesh) resolveSide(levels []*telemetry.Telemetry, side telemetry.WorkloadMode, notes *[]string) Policy {
	providers := m.DefaultProviders
	percent := m.Sampling
	if percent == 0 {
		percent = DefaultPercent
	}
	disabled := false
	for _, t := range levels {
		for _, tr := range t.GetTracing() {
			if mode := tr.GetMatch().GetMode(); mode != telemetry.WorkloadMode_CLIENT_AND_SERVER && mode != side {
				continue
			}
			if ps := tr.GetProviders(); len(ps) > 0 {
				providers = providers[:0:0]
				for _, p := range ps {
					providers = append(providers, p.GetName())
				}
			}
			if s := tr.GetRandomSamplingPercentage(); s != nil {
				percent = s.GetValue()
			}
			if d := tr.GetDisableSpanReporting(); d != nil {
				disabled = d.GetValue()
			}
		}
	}
	p := Policy{Percent: ClampPercent(percent)}
	if len(providers) == 0 {
		return p
	}
	p.Provider = providers[0]
	if len(providers) > 1 {
		*notes = append(*notes, "tracing providers "+quoteAll(providers[1:])+" ignored: one provider per proxy side")
	}
	if disabled {
		return p
	}
	addr, ok := m.collector(p.Provider)
	if !ok {
		*notes = append(*notes, "tracing provider "+strconv.Quote(p.Provider)+" is not an opentelemetry extension provider of the mesh config: spans are not reported")
		return p
	}
	p.Collector = addr
	return p
}

// collector returns the OTLP address of the named opentelemetry provider.
func (m Mesh) collector(name string) (string, bool) {
	for _, ep := range m.Providers {
		if ep.GetName() != name {
			continue
		}
		o := ep.GetOpentelemetry()
		if o == nil || o.GetService() == "" {
			return "", false
		}
		return CollectorAddr(o.GetService(), o.GetPort())
	}
	return "", false
}

// CollectorAddr is the address of an opentelemetry provider's service and
// port, as Istio writes them: a host (a Kubernetes service name, a DNS
// name or an IP) with the port beside it, or a service that already
// carries its port.
func CollectorAddr(service string, port uint32) (string, bool) {
	if _, _, err := net.SplitHostPort(service); err == nil {
		return service, true
	}
	if port == 0 || port > 65535 {
		return "", false
	}
	return net.JoinHostPort(service, strconv.Itoa(int(port))), true
}

func quoteAll(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(s)
	}
	return out
}
