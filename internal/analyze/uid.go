package analyze

import "slices"

// proxyUID is the user ID Istio's proxy, and zmesh's (zmesh proxy
// --capture), runs as: capture lets its traffic out unredirected.
const proxyUID = 1337

// analyzeApplicationUID is Istio's applicationUID analyzer (IST0144): a
// Pod or Deployment whose pod, or one of whose containers other than
// istio-proxy and istio-operator, runs as user 1337. Capture lets that
// user's traffic bypass the proxy, so the app's connections would leave
// without mTLS or policy. The control plane's own (label istio, or
// release=istio) are skipped, as in Istio. Only the input's files are
// read for it: the security contexts of a cluster's Pods are not yet.
func analyzeApplicationUID(c *context) {
	for _, w := range c.workloads {
		own := w.Labels
		switch w.Kind {
		case "Pod":
		case "Deployment":
			own = w.OwnerLabels
		default:
			continue
		}
		if _, ok := own["istio"]; ok || own["release"] == "istio" {
			continue
		}
		if slices.Contains(w.RunAsUsers, proxyUID) {
			c.report(InvalidApplicationUID, resourceName(w.Kind, w.Namespace, w.Name), w.Source)
		}
	}
}
