package analyze

import (
	"encoding/json"
	"fmt"
	"strings"
)

// systemNamespaces are never reported for injection, as istioctl skips them.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true, "istio-system": true}

// analyzeNamespaces is Istio's injection check over the namespaces
// declared (Namespace documents, or a cluster's): more than one injection
// label (IST0123) always; and, for a cluster only, a namespace without
// any (IST0102). On files IST0102 says nothing useful: every workload of
// the local mesh runs behind its own proxy, whatever its namespace's
// labels.
func analyzeNamespaces(c *context) {
	for _, ns := range c.in.Namespaces {
		if !ns.Declared || systemNamespaces[ns.Name] || ns.Name == c.in.rootNamespace() {
			continue
		}
		res := resourceName("Namespace", "", ns.Name)
		inj, hasInj := ns.Labels["istio-injection"]
		_, hasRev := ns.Labels["istio.io/rev"]
		var labels []string
		if hasInj {
			labels = append(labels, "istio-injection="+inj)
		}
		for _, l := range []string{"istio.io/rev", "istio.io/dataplane-mode"} {
			if v, ok := ns.Labels[l]; ok && (!hasInj || inj == "enabled") {
				labels = append(labels, l+"="+v)
			}
		}
		if len(labels) > 1 {
			c.report(NamespaceMultipleInjectionLabels, res, ns.Source, labels)
		}
		if ns.Labels["istio.io/dataplane-mode"] == "ambient" {
			continue
		}
		if c.in.Cluster && inj == "" && !hasRev {
			c.report(NamespaceNotInjected, res, ns.Source, ns.Name, ns.Name)
		}
	}
}

// analyzeTelemetry is Istio's IST0157: a Telemetry whose access logging
// names no provider while the mesh config has no default one is ignored.
func analyzeTelemetry(c *context) {
	analyzeParsedTelemetry(c)
	if len(c.in.Mesh.GetDefaultProviders().GetAccessLogging()) > 0 {
		return
	}
	for _, o := range c.in.Others {
		if o.Kind != "Telemetry" || !strings.HasPrefix(o.APIVersion, "telemetry.istio.io/") || len(o.Spec) == 0 {
			continue
		}
		var spec struct {
			AccessLogging []struct {
				Providers []json.RawMessage `json:"providers"`
				Disabled  *bool             `json:"disabled"`
			} `json:"accessLogging"`
		}
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			c.report(SchemaValidationError, resourceName(o.Kind, o.Namespace, o.Name), o.Source, fmt.Errorf("spec: %v", err))
			continue
		}
		for _, l := range spec.AccessLogging {
			if l.Disabled != nil && *l.Disabled {
				continue
			}
			if len(l.Providers) == 0 {
				c.report(InvalidTelemetryProvider, resourceName(o.Kind, o.Namespace, o.Name), o.Source, o.Name, o.Namespace)
			}
		}
	}
}

// analyzeOthers says, once per resource, that zmesh does not apply a kind
// it skips (ZM0010), so that nobody relies on it.
func analyzeOthers(c *context) {
	for _, o := range c.in.Others {
		c.report(NotEnforced, resourceName(o.Kind, o.Namespace, o.Name), o.Source, o.Kind)
	}
}
