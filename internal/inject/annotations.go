package inject

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

// maxListAnnotation bounds a port or address list annotation; Istio's
// lists are a few entries long, and the value ends up in a container's
// arguments.
const maxListAnnotation = 4096

// maxProxyConfig bounds the proxy.istio.io/config annotation.
const maxProxyConfig = 64 << 10

// Wildcard is the list value that means "every port" or "every address".
const Wildcard = "*"

// ParsePorts checks a comma-separated port list as Istio's traffic
// annotations take it ("80, 443"; spaces around entries allowed) and
// returns it in canonical form ("80,443"). wildcard says whether "*"
// (every port) is allowed. An empty list is valid and stays empty. Each
// port is a decimal number from 1 to 65535 with no sign or leading zero:
// a list the capture rules would read differently from the user is an
// error.
func ParsePorts(s string, wildcard bool) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxListAnnotation {
		return "", fmt.Errorf("port list longer than %d bytes", maxListAnnotation)
	}
	if s == Wildcard {
		if !wildcard {
			return "", errors.New(`"*" is not allowed here`)
		}
		return Wildcard, nil
	}
	if s == "" {
		return "", nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if err := checkPort(p); err != nil {
			return "", err
		}
		parts[i] = p
	}
	return strings.Join(parts, ","), nil
}

func checkPort(p string) error {
	if p == "" {
		return errors.New("empty entry in port list")
	}
	if len(p) > 5 || p[0] == '0' || strings.TrimLeft(p, "0123456789") != "" {
		return fmt.Errorf("%q is not a port number", p)
	}
	n, _ := strconv.Atoi(p)
	if n < 1 || n > 65535 {
		return fmt.Errorf("port %s out of range 1-65535", p)
	}
	return nil
}

// ParseCIDRs checks a comma-separated list of CIDR ranges ("10.0.0.0/8,
// fd00::/8") and returns it in canonical form, each prefix masked to its
// network address. A bare address without a prefix length is an error, as
// in Istio. wildcard says whether "*" (every address) is allowed.
func ParseCIDRs(s string, wildcard bool) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxListAnnotation {
		return "", fmt.Errorf("address range list longer than %d bytes", maxListAnnotation)
	}
	if s == Wildcard {
		if !wildcard {
			return "", errors.New(`"*" is not allowed here`)
		}
		return Wildcard, nil
	}
	if s == "" {
		return "", nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return "", errors.New("empty entry in address range list")
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return "", fmt.Errorf("%q is not a CIDR range", p)
		}
		if pfx.Addr().Zone() != "" {
			return "", fmt.Errorf("%q: zones are not allowed in a CIDR range", p)
		}
		parts[i] = pfx.Masked().String()
	}
	return strings.Join(parts, ","), nil
}

// ParseProxyConfig parses the proxy.istio.io/config annotation: Istio's
// ProxyConfig in YAML (or JSON). Unknown fields and ill-typed values are
// errors, so that a typo cannot leave a setting at its default unseen.
// zmesh honours holdApplicationUntilProxyStarts; the other fields are
// accepted as Istio would and have no effect, except interceptionMode,
// which must be REDIRECT (the only capture zmesh does).
func ParseProxyConfig(s string) (*meshv1alpha1.ProxyConfig, error) {
	if len(s) > maxProxyConfig {
		return nil, fmt.Errorf("longer than %d bytes", maxProxyConfig)
	}
	js, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	pc := &meshv1alpha1.ProxyConfig{}
	if t := strings.TrimSpace(string(js)); t == "null" || t == "" {
		return pc, nil
	}
	if err := protojson.Unmarshal(js, pc); err != nil {
		// protojson varies its messages' spacing on purpose from build to
		// build; a user (and a golden file) gets the same text each time.
		msg := strings.NewReplacer("proto:\u00a0", "", "proto: ", "", "\u00a0", " ").Replace(err.Error())
		return nil, errors.New("not a valid ProxyConfig: " + strings.TrimSpace(msg))
	}
	if m := pc.GetInterceptionMode(); m != meshv1alpha1.ProxyConfig_REDIRECT {
		return nil, fmt.Errorf("interceptionMode %s is not supported (zmesh captures with REDIRECT only)", m)
	}
	return pc, nil
}
