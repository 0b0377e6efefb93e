package config

import "fmt"

// exportTo values with a meaning of their own.
const (
	// ExportAll makes a resource visible in every namespace; it is
	// Istio's default for an empty exportTo.
	ExportAll = "*"
	// ExportPrivate makes a resource visible in its own namespace only.
	ExportPrivate = "."
)

// ExportedTo reports whether a resource of namespace own with exportTo is
// visible to workloads in namespace ns, as Istio reads exportTo: empty or
// "*" is every namespace, "." the resource's own, anything else a
// namespace by name. Its own namespace too sees it only when exportTo
// says so ("." or its name), as istiod indexes DestinationRules.
func ExportedTo(exportTo []string, own, ns string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case ExportAll:
			return true
		case ExportPrivate:
			if ns == own {
				return true
			}
		default:
			if e == ns {
				return true
			}
		}
	}
	return false
}

// checkExportTo applies Istio's exportTo rules for the kinds that have one
// (DestinationRule, VirtualService): "." (this namespace), "*" (every
// namespace, alone) or namespace names, none twice. "~" (export to none)
// is refused rather than read as a namespace.
func checkExportTo(c *checker, exportTo []string) {
	seen := map[string]bool{}
	for i, e := range exportTo {
		path := fmt.Sprintf("spec.exportTo[%d]", i)
		switch {
		case e == ExportAll || e == ExportPrivate:
		case e == "~":
			c.errorf("%s: \"~\" (export to none) is not supported", path)
		case checkNamespace(e) != nil:
			c.errorf("%s: %q is neither \".\", \"*\" nor a namespace name", path, e)
		}
		if seen[e] {
			c.errorf("%s: %q is listed twice", path, e)
		}
		seen[e] = true
	}
	if seen[ExportAll] && len(exportTo) > 1 {
		c.errorf("spec.exportTo: \"*\" must be alone")
	}
}
