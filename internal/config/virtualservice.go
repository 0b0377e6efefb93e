package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// KindVirtualService is Istio's VirtualService (networking.istio.io v1,
// v1beta1, v1alpha3): how a client proxy routes the requests its app sends
// to a host. It is traffic management, not policy: authorization still
// happens at the destination workload, whatever route a request took.
const KindVirtualService Kind = "VirtualService"

// GatewayMesh is the reserved gateway name of every sidecar in the mesh.
// A VirtualService with no gateways applies to sidecars, as if it named
// this one; one that names other gateways only applies to sidecars when
// it names this one too.
const GatewayMesh = "mesh"

// RetryOnDefault is Istio's retryOn when a route's retries set none, and
// (with attempts DefaultRetryAttempts) the retry policy of a route with
// no retries at all.
const RetryOnDefault = "connect-failure,refused-stream,unavailable,cancelled"

// DefaultRetryAttempts is the number of retries of Istio's default policy.
const DefaultRetryAttempts = 2

// retryConditions are the retryOn conditions zmesh understands: Envoy's
// HTTP ones and the gRPC ones Istio documents. Numeric HTTP status codes
// are accepted beside them.
var retryConditions = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "connect-failure": true,
	"retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true,
	"resource-exhausted": true, "unavailable": true,
}

// AppliesToSidecars reports whether vs binds to the mesh's sidecars: it
// names no gateway, or names "mesh".
func AppliesToSidecars(vs *networking.VirtualService) bool {
	if len(vs.GetGateways()) == 0 {
		return true
	}
	for _, g := range vs.GetGateways() {
		if g == GatewayMesh {
			return true
		}
	}
	return false
}

// validateVirtualService applies Istio's VirtualService rules, and
// refuses what zmesh would otherwise silently ignore on the HTTP path
// (delegation, exponential delays, HTTP/2 error aborts). CORS policies
// are accepted with a warning: zmesh does not enforce them yet.
func validateVirtualService(c *checker, in *networking.VirtualService) {
	sidecars := AppliesToSidecars(in)
	if len(in.GetHosts()) == 0 {
		c.errorf("spec.hosts: at least one host is required (delegate VirtualServices are not supported)")
	}
	for i, h := range in.GetHosts() {
		if h == "*" {
			if sidecars {
				c.errorf("spec.hosts[%d]: wildcard host * is not allowed for virtual services bound to the mesh gateway", i)
			}
			continue
		}
		if _, err := netip.ParseAddr(h); err == nil {
			continue
		}
		if err := checkHost(h); err != nil {
			c.errorf("spec.hosts[%d]: %v", i, err)
		}
	}
	for i, g := range in.GetGateways() {
		if err := CheckGatewayRef(g); err != nil {
			c.errorf("spec.gateways[%d]: %v", i, err)
		}
	}
	checkExportTo(c, in.GetExportTo())
	if len(in.GetHttp()) == 0 && len(in.GetTcp()) == 0 && len(in.GetTls()) == 0 {
		c.errorf("spec: http, tcp or tls must be provided in a VirtualService")
	}
	for i, r := range in.GetHttp() {
		validateHTTPRoute(c, fmt.Sprintf("spec.http[%d]", i), r)
	}
	for i, r := range in.GetTcp() {
		path := fmt.Sprintf("spec.tcp[%d]", i)
		for j, m := range r.GetMatch() {
			checkL4Match(c, fmt.Sprintf("%s.match[%d]", path, j), m)
		}
		checkRouteDestinations(c, path, r.GetRoute())
	}
	for i, r := range in.GetTls() {
		path := fmt.Sprintf("spec.tls[%d]", i)
		if len(r.GetMatch()) == 0 {
			c.errorf("%s.match: a TLS route needs at least one match", path)
		}
		for j, m := range r.GetMatch() {
			mp := fmt.Sprintf("%s.match[%d]", path, j)
			checkL4Match(c, mp, m)
			if len(m.GetSniHosts()) == 0 {
				c.errorf("%s.sniHosts: at least one is required", mp)
			}
			for k, h := range m.GetSniHosts() {
				if h == "*" {
					continue
				}
				if err := checkHost(h); err != nil {
					c.errorf("%s.sniHosts[%d]: %v", mp, k, err)
				}
			}
		}
		checkRouteDestinations(c, path, r.GetRoute())
	}
}

// l4Match is what TCP and TLS route matches share.
type l4Match interface {
	GetPort() uint32
	GetDestinationSubnets() []string
	GetSourceLabels() map[string]string
	GetSourceNamespace() string
}

func checkL4Match(c *checker, path string, m l4Match) {
	if m.GetPort() != 0 {
		checkPort(c, path+".port", m.GetPort())
	}
	checkIPs(c, path+".destinationSubnets", m.GetDestinationSubnets())
	checkLabels(c, path+".sourceLabels", m.GetSourceLabels(), true)
	if ns := m.GetSourceNamespace(); ns != "" {
		if err := checkNamespace(ns); err != nil {
			c.errorf("%s.sourceNamespace: %v", path, err)
		}
	}
}

// checkRouteDestinations checks the weighted destinations of a tcp or
// tls route.
func checkRouteDestinations(c *checker, path string, ds []*networking.RouteDestination) {
	if len(ds) == 0 {
		c.errorf("%s.route: at least one destination is required", path)
	}
	total := int64(0)
	for i, d := range ds {
		p := fmt.Sprintf("%s.route[%d]", path, i)
		if d.GetWeight() < 0 {
			c.errorf("%s.weight: must not be negative", p)
		}
		total += int64(d.GetWeight())
		checkDestination(c, p+".destination", d.GetDestination())
	}
	if len(ds) > 1 && total == 0 {
		c.errorf("%s.route: with several destinations, at least one needs a weight above 0", path)
	}
}

// RetryOn is a parsed retryOn list: the conditions named and the HTTP
// status codes listed.
type RetryOn struct {
	Conditions map[string]bool
	Codes      []int
}

// ParseRetryOn parses a retryOn list ("" is RetryOnDefault): Envoy's
// condition names and HTTP status codes, comma-separated.
func ParseRetryOn(s string) (RetryOn, error) {
	if strings.TrimSpace(s) == "" {
		s = RetryOnDefault
	}
	out := RetryOn{Conditions: map[string]bool{}}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if n, err := strconv.Atoi(part); err == nil {
			if n < 100 || n > 599 {
				return RetryOn{}, fmt.Errorf("status code %d is not in 100..599", n)
			}
			out.Codes = append(out.Codes, n)
			continue
		}
		if !retryConditions[part] {
			return RetryOn{}, fmt.Errorf("%q is not a retry condition", part)
		}
		out.Conditions[part] = true
	}
	return out, nil
}
