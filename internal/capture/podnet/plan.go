package podnet

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Defaults for Config.
const (
	DefaultPrefix   = "zmesh"
	DefaultStateDir = "/run/zmesh"
)

// DefaultSubnet is the bridge's subnet: the host takes .1, pods .2 on.
var DefaultSubnet = netip.MustParsePrefix("10.47.0.0/24")

// Config names and addresses the pod network.
type Config struct {
	// Prefix starts the name of everything created on the host: namespaces
	// PREFIX-NAMESPACE-NAME, bridge PREFIX0, veths PREFIXv... Two meshes
	// on one host need different prefixes (and subnets).
	Prefix string
	// Subnet is the bridge's IPv4 subnet.
	Subnet netip.Prefix
	// StateDir holds PREFIX.json, the record of what was created.
	StateDir string
	// DNSDomain is the cluster's DNS suffix, for the search path of each
	// pod's resolv.conf; default cluster.local.
	DNSDomain string
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.DNSDomain == "" {
		c.DNSDomain = "cluster.local"
	}
	if !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("podnet: prefix %q: want 1-10 lower-case letters and digits, starting with a letter (link names are at most 15 bytes)", c.Prefix)
	}
	if !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 29 || c.Subnet.Bits() < 16 {
		return fmt.Errorf("podnet: subnet %s: want an IPv4 range from /16 to /29", c.Subnet)
	}
	if c.Subnet.Masked() != c.Subnet {
		return fmt.Errorf("podnet: subnet %s has host bits set", c.Subnet)
	}
	return nil
}

// Workload is the name of one workload to give a pod network.
type Workload struct{ Namespace, Name string }

// Pod is one workload's network.
type Pod struct {
	Workload
	NetNS string     // namespace name, under /run/netns
	IP    netip.Addr // its address on the bridge
	Veth  string     // host end of its veth pair (the pod end is eth0)
}

// Network is the whole plan: a bridge and the pods on it.
type Network struct {
	Bridge  string
	Gateway netip.Prefix // the host's address on the bridge, with the subnet's length
	Pods    []Pod
}

// PodEth is the name of a pod's end of its veth pair.
const PodEth = "eth0"

// Plan names and addresses the network for ws, in order, under cfg
// (validated): the same input gives the same plan.
func Plan(cfg Config, ws []Workload) (Network, error) {
	gw := cfg.Subnet.Addr().Next()
	n := Network{Bridge: cfg.Prefix + "0", Gateway: netip.PrefixFrom(gw, cfg.Subnet.Bits())}
	ip := gw
	seen := map[string]bool{}
	for _, w := range ws {
		if w.Namespace == "" || w.Name == "" || strings.ContainsAny(w.Namespace+w.Name, "/ \x00") {
			return Network{}, fmt.Errorf("podnet: workload %q/%q: invalid name", w.Namespace, w.Name)
		}
		ip = ip.Next()
		// The last address of the subnet is its broadcast address.
		if !cfg.Subnet.Contains(ip) || !cfg.Subnet.Contains(ip.Next()) {
			return Network{}, fmt.Errorf("podnet: subnet %s has no room for %d workloads", cfg.Subnet, len(ws))
		}
		p := Pod{Workload: w, NetNS: cfg.Prefix + "-" + w.Namespace + "-" + w.Name, IP: ip}
		// The host end is named by position: unique, and at most 14 bytes.
		p.Veth = fmt.Sprintf("%sv%d", cfg.Prefix, len(n.Pods))
		if seen[p.NetNS] {
			return Network{}, fmt.Errorf("podnet: workloads %s/%s: name clash on %s", w.Namespace, w.Name, p.NetNS)
		}
		seen[p.NetNS] = true
		n.Pods = append(n.Pods, p)
	}
	if len(n.Pods) == 0 {
		return Network{}, errors.New("podnet: no workload")
	}
	return n, nil
}

// ResolvConf is the resolv.conf of pod p: the name server is the host's
// bridge address (the pod's DNS is captured and answered by its proxy
// whatever server it asks; without capture, nothing answers there, so a
// lookup fails fast instead of leaking to the host's resolver), and the
// search path is Kubernetes', so short service names resolve.
func ResolvConf(cfg Config, n Network, p Pod) string {
	d := cfg.DNSDomain
	return fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
		n.Gateway.Addr(), p.Namespace, d, d, d)
}

// Hosts is the hosts file of pod p: localhost and the pod's own name.
func Hosts(p Pod) string {
	return fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", p.IP, p.Name)
}
