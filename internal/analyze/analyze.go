package analyze

import (
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// Analyze runs every analyzer over in and returns their messages, sorted
// by resource and code, without duplicates. It never fails: input it
// cannot read is a message (IST0106), not an error.
func Analyze(in Input) []Message {
	c := newContext(&in)
	for _, a := range analyzers {
		a(c)
	}
	return sortMessages(c.suppress(c.out))
}

// suppressAnnotation lists, on a resource, the message codes not to
// report on it ("*": all), as istioctl honours it.
const suppressAnnotation = "galley.istio.io/analyze-suppress"

// suppress drops the messages a resource's suppressAnnotation names.
func (c *context) suppress(ms []Message) []Message {
	codes := map[string]map[string]bool{}
	add := func(res string, annotations map[string]string) {
		v, ok := annotations[suppressAnnotation]
		if !ok {
			return
		}
		set := map[string]bool{}
		for _, code := range strings.Split(v, ",") {
			set[strings.TrimSpace(code)] = true
		}
		codes[res] = set
	}
	for _, r := range c.in.Snapshot.All() {
		add(resourceName(string(r.Kind), r.Namespace, r.Name), r.Annotations)
	}
	for _, ns := range c.in.Namespaces {
		add(resourceName("Namespace", "", ns.Name), ns.Annotations)
	}
	for _, s := range c.in.Services {
		add(resourceName("Service", s.Namespace, s.Name), s.Annotations)
	}
	for _, w := range c.in.Workloads {
		add(resourceName(w.Kind, w.Namespace, w.Name), w.Annotations)
	}
	for _, o := range c.in.Others {
		add(resourceName(o.Kind, o.Namespace, o.Name), o.Annotations)
	}
	if len(codes) == 0 {
		return ms
	}
	out := ms[:0]
	for _, m := range ms {
		if set := codes[m.Resource]; set["*"] || set[m.Type.Code] {
			continue
		}
		out = append(out, m)
	}
	return out
}

// analyzers run in this order; each appends to the context's messages.
var analyzers = []func(*context){
	analyzeSchema,
	analyzeAuthorizationPolicies,
	analyzePeerAuthentications,
	analyzeRequestAuthentications,
	analyzeServicePorts,
	analyzeDeploymentServices,
	analyzeApplicationUID,
	analyzeServiceEntries,
	analyzeAnnotations,
	analyzeDeprecated,
	analyzeDestinationRules,
	analyzeSubsets,
	analyzeVirtualServices,
	analyzeVirtualServiceHosts,
	analyzeVirtualServiceMatches,
	analyzeDestinationPorts,
	analyzeSidecars,
	analyzeSidecarSelectors,
	analyzeGateways,
	analyzeTelemetry,
	analyzeTelemetrySelectors,
	analyzeNamespaces,
	analyzeOthers,
}

// context is one run: the input, what is derived from it once, and the
// messages so far.
type context struct {
	in         *Input
	namespaces map[string]bool
	workloads  []Workload // in.Workloads and the snapshot's WorkloadEntries
	out        []Message
}

func newContext(in *Input) *context {
	c := &context{in: in, namespaces: map[string]bool{in.rootNamespace(): true}}
	c.workloads = append(c.workloads, in.Workloads...)
	for _, r := range in.Snapshot.List(config.KindWorkloadEntry) {
		we, ok := r.Spec.(*networking.WorkloadEntry)
		if !ok {
			continue
		}
		c.workloads = append(c.workloads, Workload{Kind: "WorkloadEntry", Name: r.Name, Namespace: r.Namespace,
			Labels: we.GetLabels(), ServiceAccount: we.GetServiceAccount(), Source: r.Source})
	}
	for _, ns := range in.Namespaces {
		c.namespaces[ns.Name] = true
	}
	// From files, a namespace exists when something lives in it; a
	// cluster's namespaces are the ones it lists.
	if !in.Cluster {
		for _, r := range in.Snapshot.All() {
			c.namespaces[r.Namespace] = true
		}
		for _, w := range c.workloads {
			c.namespaces[w.Namespace] = true
		}
		for _, s := range in.Services {
			c.namespaces[s.Namespace] = true
		}
		for _, o := range in.Others {
			if o.Namespace != "" {
				c.namespaces[o.Namespace] = true
			}
		}
	}
	return c
}

func (c *context) report(t Type, resource, source string, args ...any) {
	c.out = append(c.out, Message{Type: t, Resource: resource, Source: source, Args: args})
}

func (c *context) reportOn(t Type, r config.Resource, args ...any) {
	c.report(t, resourceName(string(r.Kind), r.Namespace, r.Name), r.Source, args...)
}

// workloadsKnown reports whether selectors can be checked against
// workloads: without any, every selector would match nothing.
func (c *context) workloadsKnown() bool { return len(c.workloads) > 0 || c.in.Cluster }

// selected returns the workloads a policy in ns with selector sel (nil:
// none) applies to, with Istio's scoping: a policy in the root namespace
// applies mesh-wide, others in their own namespace.
func (c *context) selected(ns string, sel map[string]string, hasSelector bool) []Workload {
	var out []Workload
	for _, w := range c.workloads {
		if ns != c.in.rootNamespace() && w.Namespace != ns {
			continue
		}
		if hasSelector && !labelsel.Matches(sel, w.Labels) {
			continue
		}
		out = append(out, w)
	}
	return out
}

// selectorString formats matchLabels as Kubernetes prints a label
// selector: "k1=v1,k2=v2", sorted by key.
func selectorString(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + sel[k]
	}
	return strings.Join(parts, ",")
}

// checkSelectorMatches reports IST0127 for a policy of r's namespace whose
// selector (or, without one, whose namespace) matches no known workload,
// as Istio's AuthorizationPolicy analyzer does.
func (c *context) checkSelectorMatches(r config.Resource, sel map[string]string, hasSelector bool) {
	if !c.workloadsKnown() {
		return
	}
	if r.Namespace == c.in.rootNamespace() && !hasSelector {
		return // mesh-wide
	}
	if len(c.selected(r.Namespace, sel, hasSelector)) == 0 {
		c.reportOn(NoMatchingWorkloadsFound, r, selectorString(sel))
	}
}

func (c *context) workloadKey(w Workload) string { return w.Namespace + "/" + w.Name }
