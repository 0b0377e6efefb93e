package inject

import (
	"fmt"
	"strings"
)

// captureFlag ties one of Istio's traffic annotations to the flag of the
// capture init container (`zmesh capture-init`) that carries it.
type captureFlag struct {
	annotation string
	flag       string
	parse      func(string) (string, error)
}

// captureFlags are in the order the flags are written.
var captureFlags = []captureFlag{
	{AnnotationIncludeInboundPorts, "--include-inbound-ports", func(s string) (string, error) { return ParsePorts(s, true) }},
	{AnnotationExcludeInboundPorts, "--exclude-inbound-ports", func(s string) (string, error) { return ParsePorts(s, false) }},
	{AnnotationExcludeOutboundPorts, "--exclude-outbound-ports", func(s string) (string, error) { return ParsePorts(s, false) }},
	{AnnotationIncludeOutboundIPRanges, "--include-outbound-ip-ranges", func(s string) (string, error) { return ParseCIDRs(s, true) }},
	{AnnotationExcludeOutboundIPRanges, "--exclude-outbound-ip-ranges", func(s string) (string, error) { return ParseCIDRs(s, false) }},
}

// captureArgs turns the pod's traffic annotations into the capture init
// container's flags. An annotation that is absent leaves its flag out
// (Istio's default: every inbound port, every outbound address); one that
// is present, even empty, is passed as --flag=VALUE, since for the include
// lists an empty value means "capture none", not the default.
func captureArgs(annotations map[string]string) ([]string, error) {
	if v, ok := annotations[AnnotationIncludeOutboundPorts]; ok {
		return nil, fmt.Errorf("annotation %s=%q: not supported by zmesh (outbound capture by port regardless of address); remove it or use %s", AnnotationIncludeOutboundPorts, v, AnnotationIncludeOutboundIPRanges)
	}
	if v, ok := annotations[AnnotationInterceptionMode]; ok && strings.TrimSpace(v) != "REDIRECT" {
		return nil, fmt.Errorf("annotation %s=%q: not supported by zmesh (only REDIRECT)", AnnotationInterceptionMode, v)
	}
	var args []string
	for _, cf := range captureFlags {
		v, ok := annotations[cf.annotation]
		if !ok {
			continue
		}
		canon, err := cf.parse(v)
		if err != nil {
			return nil, fmt.Errorf("annotation %s=%q: %w", cf.annotation, v, err)
		}
		args = append(args, cf.flag+"="+canon)
	}
	return args, nil
}
