package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// FuzzParsePorts checks that ParsePorts never panics, and that what it
// accepts is canonical: no spaces, each entry a port, and parsing it again
// gives it back.
func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"80", "80, 443", "*", "", "0", "65536", "1,,2", "+80", "080", " 8080 ,9090 "} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, wildcard bool) {
		out, err := ParsePorts(s, wildcard)
		if err != nil {
			return
		}
		if strings.ContainsAny(out, " \t\n") {
			t.Fatalf("ParsePorts(%q) = %q with spaces", s, out)
		}
		if out == Wildcard && !wildcard {
			t.Fatalf("ParsePorts(%q, false) = *", s)
		}
		again, err := ParsePorts(out, wildcard)
		if err != nil || again != out {
			t.Fatalf("ParsePorts(%q) = %q, which parses to %q, %v", s, out, again, err)
		}
	})
}

// FuzzParseCIDRs checks the same of address ranges.
func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.1.2.3/8, fd00::/8", "*", "", "10.0.0.1", "::/0", "1.2.3.4/33", "fe80::1%eth0/64"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, wildcard bool) {
		out, err := ParseCIDRs(s, wildcard)
		if err != nil {
			return
		}
		if strings.ContainsAny(out, " \t\n") {
			t.Fatalf("ParseCIDRs(%q) = %q with spaces", s, out)
		}
		again, err := ParseCIDRs(out, wildcard)
		if err != nil || again != out {
			t.Fatalf("ParseCIDRs(%q) = %q, which parses to %q, %v", s, out, again, err)
		}
	})
}

// FuzzParseProxyConfig checks that any annotation text is parsed or
// refused, never a panic or a hang.
func FuzzParseProxyConfig(f *testing.F) {
	for _, s := range []string{"holdApplicationUntilProxyStarts: true", "{}", "", "null", "interceptionMode: TPROXY", "a: [", "holdApplicationUntilProxyStarts: maybe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseProxyConfig(s)
	})
}

// FuzzPodAnnotations runs injection on a pod with arbitrary traffic and
// proxy annotations: an accepted pod gets capture flags that are each one
// argument of the form --flag=VALUE with a canonical value.
func FuzzPodAnnotations(f *testing.F) {
	f.Add("80,443", "*", "10.0.0.0/8", "holdApplicationUntilProxyStarts: true", "true")
	f.Add("", "", "", "", "no")
	f.Fuzz(func(t *testing.T, ports, inbound, cidrs, proxyConfig, inject string) {
		s := testSettings(t)
		pod := &corev1.Pod{}
		pod.Labels = map[string]string{LabelInject: inject}
		pod.Annotations = map[string]string{
			AnnotationExcludeOutboundPorts:    ports,
			AnnotationIncludeInboundPorts:     inbound,
			AnnotationExcludeOutboundIPRanges: cidrs,
			AnnotationProxyConfig:             proxyConfig,
		}
		pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
		res, err := s.Pod(pod, Namespace{Name: "shop", Labels: map[string]string{LabelInjection: "enabled"}})
		if err != nil || !res.Inject {
			return
		}
		patched := applyPatch(t, pod, res.Patch)
		for _, a := range patched.Spec.InitContainers[0].Args[1:] {
			flag, val, ok := strings.Cut(a, "=")
			if !ok || !strings.HasPrefix(flag, "--") || strings.ContainsAny(val, " \t\n") {
				t.Fatalf("capture argument %q", a)
			}
		}
	})
}
