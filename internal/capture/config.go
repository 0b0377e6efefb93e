package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Istio's defaults, which a Config's zero values stand for.
const (
	DefaultProxyUID     = 1337  // istio-proxy's UID and GID
	DefaultOutboundPort = 15001 // the proxy's listener for captured outbound TCP
	DefaultInboundPort  = 15006 // the proxy's listener for captured inbound TCP
	DefaultDNSPort      = 15053 // the proxy's DNS server (UDP and TCP)
)

// DefaultProxyPorts are the ports the proxy itself serves to the outside
// (tunnel 15008, admin and metrics 15020, health 15021, Envoy-style
// metrics 15090): inbound connections to them are never redirected, as
// Istio leaves them out of ISTIO_INBOUND.
var DefaultProxyPorts = []uint16{15008, 15020, 15021, 15090}

// Config says what to capture in one network namespace. Its fields are
// istio-init's knobs (and the pod annotations behind them); zero values
// mean Istio's defaults.
type Config struct {
	// ProxyUID and ProxyGID identify the proxy's sockets, whose traffic is
	// never redirected (it would loop to the proxy itself). 0 means 1337;
	// root cannot be the proxy's identity, or every root process in the
	// namespace would escape capture.
	ProxyUID, ProxyGID uint32
	// ProxyMark, when not 0, also exempts sockets carrying this mark
	// (SO_MARK; all of its bits set), for a proxy that cannot change UID.
	ProxyMark uint32

	OutboundPort, InboundPort, DNSPort uint16 // 0: 15001, 15006, 15053

	// NoDNS leaves the app's DNS alone. By default UDP and TCP to port 53
	// from anything but the proxy goes to DNSPort, where the proxy answers
	// mesh names.
	NoDNS bool

	// IncludeInboundPorts limits inbound capture to these ports; nil
	// captures every port (Istio's "*"). NoInbound captures none (Istio's
	// empty includeInboundPorts).
	IncludeInboundPorts []uint16
	NoInbound           bool
	// ExcludeInboundPorts are never redirected inbound, besides ProxyPorts.
	ExcludeInboundPorts []uint16
	// ProxyPorts are the proxy's own served ports; nil means
	// DefaultProxyPorts.
	ProxyPorts []uint16

	// IncludeOutboundCIDRs limits outbound capture to these destinations;
	// nil captures every destination (Istio's "*"). NoOutbound captures
	// none.
	IncludeOutboundCIDRs []netip.Prefix
	NoOutbound           bool
	// ExcludeOutboundCIDRs and ExcludeOutboundPorts are never redirected
	// outbound.
	ExcludeOutboundCIDRs []netip.Prefix
	ExcludeOutboundPorts []uint16

	// NetNS is the path of the network namespace to act on
	// (/run/netns/NAME, /proc/PID/ns/net); empty: the caller's.
	NetNS string
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if c.ProxyUID == 0 {
		c.ProxyUID = DefaultProxyUID
	}
	if c.ProxyGID == 0 {
		c.ProxyGID = DefaultProxyUID
	}
	if c.OutboundPort == 0 {
		c.OutboundPort = DefaultOutboundPort
	}
	if c.InboundPort == 0 {
		c.InboundPort = DefaultInboundPort
	}
	if c.DNSPort == 0 {
		c.DNSPort = DefaultDNSPort
	}
	if c.ProxyPorts == nil {
		c.ProxyPorts = slices.Clone(DefaultProxyPorts)
	}
	for _, p := range []uint16{c.OutboundPort, c.InboundPort, c.DNSPort} {
		if slices.Contains(c.ProxyPorts, p) && p != c.InboundPort {
			return fmt.Errorf("capture: port %d is both a capture port and a proxy port", p)
		}
	}
	if c.OutboundPort == c.InboundPort {
		return fmt.Errorf("capture: outbound and inbound capture ports are both %d", c.OutboundPort)
	}
	if slices.Contains(c.IncludeInboundPorts, 0) || slices.Contains(c.ExcludeInboundPorts, 0) ||
		slices.Contains(c.ExcludeOutboundPorts, 0) || slices.Contains(c.ProxyPorts, 0) {
		return errors.New("capture: port 0 in a port list")
	}
	for _, p := range slices.Concat(c.IncludeOutboundCIDRs, c.ExcludeOutboundCIDRs) {
		if !p.IsValid() {
			return errors.New("capture: invalid CIDR in an outbound list")
		}
	}
	return nil
}

// ParsePorts parses a comma-separated port list as Istio's port
// annotations and istio-init's flags take it ("80,443", spaces allowed).
// "*" means every port and yields all=true; "" yields an empty list.
func ParsePorts(s string) (ports []uint16, all bool, err error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return nil, true, nil
	}
	if s == "" {
		return []uint16{}, false, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, false, fmt.Errorf("capture: %q is not a port (1-65535)", f)
		}
		if !slices.Contains(ports, uint16(n)) {
			ports = append(ports, uint16(n))
		}
	}
	return ports, false, nil
}

// ParseCIDRs parses a comma-separated list of IPv4 and IPv6 ranges as
// Istio's IP range annotations take it ("10.0.0.0/8,fd00::/8"); a bare
// address is a range of one. "*" means every address and yields all=true;
// "" yields an empty list. Host bits set in a range are an error, since
// they usually mean a typo in the prefix length.
func ParseCIDRs(s string) (cidrs []netip.Prefix, all bool, err error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return nil, true, nil
	}
	if s == "" {
		return []netip.Prefix{}, false, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		var p netip.Prefix
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(f); err == nil && a.Zone() == "" {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || !p.IsValid() || p.Addr().Is4In6() {
			return nil, false, fmt.Errorf("capture: %q is not an IP range (IPv4 in its own form)", f)
		}
		if p.Masked() != p {
			return nil, false, fmt.Errorf("capture: %q has host bits set (did you mean %s?)", f, p.Masked())
		}
		if !slices.Contains(cidrs, p) {
			cidrs = append(cidrs, p)
		}
	}
	return cidrs, false, nil
}
