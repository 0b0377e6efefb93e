package analyze

import "strings"

// analyzeSchema reports what the control plane would refuse (IST0106):
// documents that do not parse or validate, names defined twice, zmesh.dev
// Workloads `zmesh up` would refuse; and Istio's validation warnings
// (IST0133).
func analyzeSchema(c *context) {
	for _, se := range c.in.Rejected {
		res := se.Source
		if se.Kind != "" && se.Key != "" {
			res = string(se.Kind) + " " + se.Key
		} else if se.Kind != "" {
			res = string(se.Kind) + " (" + se.Source + ")"
		}
		c.report(SchemaValidationError, res, se.Source, se.Err)
	}
	for _, w := range c.in.Warnings {
		// config words a resource's warning "KIND NS/NAME: what".
		res, text := w.Source, w.Message
		if head, rest, ok := strings.Cut(w.Message, ": "); ok && strings.Count(head, " ") == 1 && strings.Contains(head, "/") {
			res, text = head, rest
		}
		c.report(SchemaWarning, res, w.Source, text)
	}
}
