package capture

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/zmesh/zmesh/internal/registry"
)

// Hook is where in the kernel's path a rule applies.
type Hook int

const (
	// HookOutput sees connections opened in the namespace (the app's and
	// the proxy's outbound).
	HookOutput Hook = iota
	// HookPrerouting sees connections arriving from outside it (inbound).
	HookPrerouting
)

func (h Hook) String() string {
	if h == HookPrerouting {
		return "prerouting"
	}
	return "output"
}

// Proto is the transport a rule matches.
type Proto uint8

const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Rule is one redirect rule, in the order the kernel tries them: the first
// rule whose every set condition holds decides, either Return (leave the
// connection as it is) or redirect to port Redirect on the namespace's
// own address. Zero fields match anything. It is an intermediate form
// between Config and the kernel's rules, so the policy can be read and
// tested without a kernel (Rule.String prints it in nft syntax).
type Rule struct {
	Hook  Hook
	Proto Proto // required

	OutLoopback bool         // leaves through lo: a local destination
	Src         netip.Prefix // source in this range
	Dst         netip.Prefix // destination in this range
	NotDst      netip.Prefix // destination not in this range
	DstPort     uint16
	NotDstPort  uint16
	// Only one of SkUID, SkGID, Mark is set: the socket's owner UID, GID,
	// or its mark (all of Mark's bits).
	SkUID, SkGID *uint32
	Mark         uint32

	Redirect uint16 // 0: return
}

// String renders r the way `nft list ruleset` would show it, for tests,
// logs and the doc.
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Hook.String() + ": meta l4proto " + r.Proto.String())
	if r.OutLoopback {
		b.WriteString(` oifname "lo"`)
	}
	addr := func(word string, p netip.Prefix, op string) {
		if p.IsValid() {
			fam := "ip"
			if p.Addr().Is6() {
				fam = "ip6"
			}
			fmt.Fprintf(&b, " %s %s %s%s", fam, word, op, prefixString(p))
		}
	}
	addr("saddr", r.Src, "")
	addr("daddr", r.Dst, "")
	addr("daddr", r.NotDst, "!= ")
	if r.DstPort != 0 {
		fmt.Fprintf(&b, " %s dport %d", r.Proto, r.DstPort)
	}
	if r.NotDstPort != 0 {
		fmt.Fprintf(&b, " %s dport != %d", r.Proto, r.NotDstPort)
	}
	if r.SkUID != nil {
		fmt.Fprintf(&b, " meta skuid %d", *r.SkUID)
	}
	if r.SkGID != nil {
		fmt.Fprintf(&b, " meta skgid %d", *r.SkGID)
	}
	if r.Mark != 0 {
		fmt.Fprintf(&b, " meta mark & 0x%x == 0x%x", r.Mark, r.Mark)
	}
	if r.Redirect != 0 {
		fmt.Fprintf(&b, " redirect to :%d", r.Redirect)
	} else {
		b.WriteString(" return")
	}
	return b.String()
}

// prefixString prints a single address without its /32 or /128.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

var (
	loopback4   = netip.MustParsePrefix("127.0.0.0/8")
	localhost4  = netip.MustParsePrefix("127.0.0.1/32")
	localhost6  = netip.MustParsePrefix("::1/128")
	passthrough = netip.MustParsePrefix("127.0.0.6/32")
)

// tunnelPort is the proxy's HBONE port: connections to it reach the
// proxy's tunnel listener directly, as Istio leaves 15008 out of the
// redirect to inbound.
const tunnelPort = registry.DefaultTunnelPort

// Rules returns the redirect rules for cfg (already validated), in order.
// They follow istio-init's, with one deliberate difference: only
// 127.0.0.1 (and ::1) is left alone among loopback destinations, not the
// whole of 127.0.0.0/8, so an app cannot escape its proxy by calling a
// loopback-looking address such as a mesh service's 127.x virtual IP; the
// proxy sees such a connection and decides (a plain passthrough when it is
// no mesh address).
func Rules(cfg Config) []Rule {
	var out []Rule
	add := func(r Rule) { out = append(out, r) }
	uid, gid := cfg.ProxyUID, cfg.ProxyGID
	// owners are the ways to tell the proxy's own sockets.
	owners := []Rule{{SkUID: &uid}, {SkGID: &gid}}
	if cfg.ProxyMark != 0 {
		owners = append(owners, Rule{Mark: cfg.ProxyMark})
	}
	owned := func(r Rule, o Rule) Rule {
		r.SkUID, r.SkGID, r.Mark = o.SkUID, o.SkGID, o.Mark
		return r
	}

	if !cfg.NoOutbound {
		// The proxy's inbound side hands connections to the app from
		// 127.0.0.6 (Istio's passthrough source): leave them alone.
		add(Rule{Hook: HookOutput, Proto: TCP, OutLoopback: true, Src: passthrough})
		if !cfg.NoInbound {
			// The proxy calling its own pod (its own service) over the
			// pod's address must meet its inbound side, as any other
			// caller would, not the app directly.
			for _, o := range owners {
				for _, lo := range []netip.Prefix{loopback4, localhost6} {
					add(owned(Rule{Hook: HookOutput, Proto: TCP, OutLoopback: true, NotDst: lo,
						NotDstPort: tunnelPort, Redirect: cfg.InboundPort}, o))
				}
			}
		}
	}
	// Everything else the proxy opens goes where it asked.
	for _, o := range owners {
		add(owned(Rule{Hook: HookOutput, Proto: TCP}, o))
		if !cfg.NoDNS {
			add(owned(Rule{Hook: HookOutput, Proto: UDP, DstPort: 53}, o))
		}
	}
	// The app's DNS, wherever it was sent, to the proxy's DNS server.
	if !cfg.NoDNS {
		add(Rule{Hook: HookOutput, Proto: UDP, DstPort: 53, Redirect: cfg.DNSPort})
		add(Rule{Hook: HookOutput, Proto: TCP, DstPort: 53, Redirect: cfg.DNSPort})
	}
	if !cfg.NoOutbound {
		outboundRules(cfg, add)
	}
	if !cfg.NoInbound {
		inboundRules(cfg, add)
	}
	return out
}

// outboundRules sends the app's TCP to the proxy's outbound port, but for
// its own addresses and the exclusions.
func outboundRules(cfg Config, add func(Rule)) {
	// The app calling itself: at its own pod address (over lo), or at
	// 127.0.0.1 / ::1, which only it and its proxy listen on.
	add(Rule{Hook: HookOutput, Proto: TCP, OutLoopback: true, NotDst: loopback4})
	add(Rule{Hook: HookOutput, Proto: TCP, OutLoopback: true, NotDst: localhost6})
	add(Rule{Hook: HookOutput, Proto: TCP, Dst: localhost4})
	add(Rule{Hook: HookOutput, Proto: TCP, Dst: localhost6})
	for _, p := range cfg.ExcludeOutboundCIDRs {
		add(Rule{Hook: HookOutput, Proto: TCP, Dst: p})
	}
	for _, port := range cfg.ExcludeOutboundPorts {
		add(Rule{Hook: HookOutput, Proto: TCP, DstPort: port})
	}
	if cfg.IncludeOutboundCIDRs == nil {
		add(Rule{Hook: HookOutput, Proto: TCP, Redirect: cfg.OutboundPort})
		return
	}
	for _, p := range cfg.IncludeOutboundCIDRs {
		add(Rule{Hook: HookOutput, Proto: TCP, Dst: p, Redirect: cfg.OutboundPort})
	}
}

// inboundRules sends TCP arriving from outside to the proxy's inbound
// port, but for the proxy's own served ports and the exclusions.
func inboundRules(cfg Config, add func(Rule)) {
	seen := map[uint16]bool{}
	for _, port := range append(append([]uint16(nil), cfg.ProxyPorts...), cfg.ExcludeInboundPorts...) {
		if !seen[port] {
			seen[port] = true
			add(Rule{Hook: HookPrerouting, Proto: TCP, DstPort: port})
		}
	}
	if cfg.IncludeInboundPorts == nil {
		add(Rule{Hook: HookPrerouting, Proto: TCP, Redirect: cfg.InboundPort})
		return
	}
	for _, port := range cfg.IncludeInboundPorts {
		if !seen[port] {
			add(Rule{Hook: HookPrerouting, Proto: TCP, DstPort: port, Redirect: cfg.InboundPort})
		}
	}
}
