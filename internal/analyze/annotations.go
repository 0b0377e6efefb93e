package analyze

import (
	"sort"
	"strings"

	"istio.io/api/annotation"
)

// istioAnnotations indexes Istio's annotation table (istio.io/api), the
// one istioctl's analyzers read.
var istioAnnotations = func() map[string]*annotation.Instance {
	m := map[string]*annotation.Instance{}
	for _, a := range annotation.AllResourceAnnotations() {
		m[a.Name] = a
	}
	return m
}()

// ignoredAnnotations are set by Istio's own components; istioctl never
// reports them.
var ignoredAnnotations = map[string]bool{
	"sidecar.istio.io/status":             true,
	"gateway.istio.io/controller-version": true,
	"istio.io/rev":                        true,
}

// analyzeAnnotations is Istio's annotation check over what carries
// annotations: Namespaces, Services, workloads (a zmesh.dev Workload, a
// Pod, a pod template: annotations for Pods) and the Istio resources zmesh
// applies. Unknown Istio annotations are IST0108, ones on the wrong kind
// IST0107, deprecated ones IST0135, alpha ones IST0136.
func analyzeAnnotations(c *context) {
	for _, ns := range c.in.Namespaces {
		c.checkAnnotations(resourceName("Namespace", "", ns.Name), ns.Source, "Namespace", ns.Annotations, ns.Labels)
	}
	for _, s := range c.in.Services {
		c.checkAnnotations(resourceName("Service", s.Namespace, s.Name), s.Source, "Service", s.Annotations, s.Labels)
	}
	for _, w := range c.in.Workloads {
		c.checkAnnotations(resourceName(w.Kind, w.Namespace, w.Name), w.Source, "Pod", w.Annotations, w.Labels)
	}
	for _, r := range c.in.Snapshot.All() {
		c.checkAnnotations(resourceName(string(r.Kind), r.Namespace, r.Name), r.Source, string(r.Kind), r.Annotations, r.Labels)
	}
}

func (c *context) checkAnnotations(res, source, kind string, annotations, labels map[string]string) {
	names := make([]string, 0, len(annotations))
	for n := range annotations {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if !isIstioAnnotation(name) || ignoredAnnotations[name] {
			continue
		}
		def := istioAnnotations[name]
		if def == nil {
			c.report(UnknownAnnotation, res, source, name)
			continue
		}
		if def.Deprecated {
			if _, ok := labels["sidecar.istio.io/inject"]; !(ok && name == "sidecar.istio.io/inject") {
				extra := ""
				if name == "sidecar.istio.io/inject" {
					extra = ` in favor of the "sidecar.istio.io/inject" label`
				}
				c.report(DeprecatedAnnotation, res, source, name, extra)
			}
		}
		if def.FeatureStatus == annotation.Alpha && name != suppressAnnotation {
			c.report(AlphaAnnotation, res, source, name)
		}
		var kinds []string
		anyKind := false
		for _, rt := range def.Resources {
			if rt == annotation.Any {
				anyKind = true
			}
			if s := rt.String(); s != "Unknown" {
				kinds = append(kinds, s)
			}
		}
		if !anyKind && !contains(kinds, kind) {
			c.report(MisplacedAnnotation, res, source, name, strings.Join(kinds, ", "))
		}
	}
}

// isIstioAnnotation reports whether an annotation is in Istio's domain
// (its prefix ends in istio.io), or the Kubernetes one Istio documents.
func isIstioAnnotation(name string) bool {
	if name == "kubernetes.io/ingress.class" {
		return true
	}
	prefix, _, ok := strings.Cut(name, "/")
	return ok && strings.HasSuffix(prefix, "istio.io")
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
