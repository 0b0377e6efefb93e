package ui

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
)

// Inputs are what a Model is built from.
type Inputs struct {
	Now       time.Time
	Workloads []registry.Workload // the registry
	Proxies   []Proxy             // connected proxy streams
	Snapshot  *config.Snapshot    // the config in force; nil before the first load
	Mesh      xds.Mesh
	// CA are the control plane's CA certificates: the roots of the trust
	// bundle and the certificate it signs with.
	CA []CACert
	// Scrapes and Previous are the latest and the one before of each
	// proxy's metrics, by workload key; rates are their difference.
	Scrapes, Previous map[string]Scrape
}

// Proxy is what the xDS server says of one connected proxy.
type Proxy struct {
	ID           string // NAMESPACE/NAME
	Identity     string
	Synced       bool
	AckedVersion string
	LastNack     string
}

// Scrape is one reading of a proxy's metrics.
type Scrape struct {
	At     time.Time
	Sample *Sample // nil when Err is set
	Err    string
}

// Model is the web view's data, served as JSON and rendered as HTML.
type Model struct {
	Generated     time.Time  `json:"generated"`
	TrustDomain   string     `json:"trustDomain"`
	ConfigVersion string     `json:"configVersion"`
	Workloads     []Workload `json:"workloads"`
	Edges         []Edge     `json:"edges"`
	Policies      []Policy   `json:"policies"`
	CA            []CACert   `json:"ca"`
}

// CACert is one certificate of the mesh CA.
type CACert struct {
	Role      string    `json:"role"` // root or signing
	Subject   string    `json:"subject"`
	NotAfter  time.Time `json:"notAfter"`
	ExpiresIn float64   `json:"expiresInSeconds"` // set by Build
}

// Workload is one registered workload.
type Workload struct {
	Key          string            `json:"key"` // NAMESPACE/NAME
	Identity     string            `json:"identity"`
	Address      string            `json:"address"`
	AdminAddress string            `json:"adminAddress,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Services     []string          `json:"services,omitempty"`
	Connected    bool              `json:"connected"`
	Synced       bool              `json:"synced"`
	// ConfigVersion is the view version the proxy ACKed.
	ConfigVersion string `json:"configVersion,omitempty"`
	LastNack      string `json:"lastNack,omitempty"`
	// MTLSMode is the PeerAuthentication mode of the workload's inbound
	// (its ports without a port-level setting), MTLSPolicy the policy that
	// decided it ("" for the PERMISSIVE default), PortModes the
	// exceptions ("8080=DISABLE").
	MTLSMode   string   `json:"mtlsMode"`
	MTLSPolicy string   `json:"mtlsPolicy,omitempty"`
	PortModes  []string `json:"portModes,omitempty"`
	Cert       *Cert    `json:"cert,omitempty"`
	// Denied counts the requests its proxy denied, by policy ("" when no
	// ALLOW policy matched).
	Denied       map[string]float64 `json:"denied,omitempty"`
	MetricsError string             `json:"metricsError,omitempty"`
}

// Cert is a workload certificate as its proxy reports it.
type Cert struct {
	NotAfter        time.Time `json:"notAfter"`
	ExpiresIn       float64   `json:"expiresInSeconds"`
	Rotations       float64   `json:"rotations"`
	RenewalFailures float64   `json:"renewalFailures"`
}

// Edge is the traffic from one source to one destination workload (or,
// for destinations without a scraped proxy, service), as the proxies
// counted it.
type Edge struct {
	Source               string `json:"source"` // NAMESPACE/NAME, or the principal, or "unknown"
	SourcePrincipal      string `json:"sourcePrincipal"`
	Destination          string `json:"destination"` // NAMESPACE/NAME, or the service
	DestinationPrincipal string `json:"destinationPrincipal"`
	Service              string `json:"service"`
	Protocol             string `json:"protocol"`
	// Security is mutual_tls, none, or mixed when both were seen.
	Security string `json:"security"`
	// Reporter is the proxy whose counts these are: destination, or
	// source where the destination's are not available.
	Reporter string `json:"reporter"`
	// Requests counts requests (TCP: connections) since the proxies
	// started; Denied those refused by authorization (response flags RBAC
	// or UAEX), Errors the 5xx.
	Requests float64 `json:"requests"`
	Denied   float64 `json:"denied"`
	Errors   float64 `json:"errors"`
	// Rate and DeniedRate are per second between the last two readings.
	Rate       float64            `json:"rate"`
	DeniedRate float64            `json:"deniedRate"`
	Codes      map[string]float64 `json:"codes,omitempty"`
}

// Policy is one policy resource and the workloads it applies to, as the
// xDS server selects them for their proxies.
type Policy struct {
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Action    string   `json:"action,omitempty"` // AuthorizationPolicy action; PeerAuthentication mode
	Rules     int      `json:"rules"`
	DryRun    bool     `json:"dryRun,omitempty"`
	Selects   []string `json:"selects"`
}

// Build returns the Model of in. It is pure.
func Build(in Inputs) *Model {
	m := &Model{Generated: in.Now, TrustDomain: in.Mesh.TrustDomain, Workloads: []Workload{}, Edges: []Edge{}, Policies: []Policy{}, CA: []CACert{}}
	for _, c := range in.CA {
		c.NotAfter = c.NotAfter.UTC()
		c.ExpiresIn = math.Round(c.NotAfter.Sub(in.Now).Seconds())
		m.CA = append(m.CA, c)
	}
	if in.Snapshot != nil {
		m.ConfigVersion = in.Snapshot.Version
	}
	proxies := map[string]Proxy{}
	for _, p := range in.Proxies {
		proxies[p.ID] = p
	}
	views := map[string]*xds.View{}
	for _, w := range in.Workloads {
		mw := Workload{Key: w.Key(), Identity: w.Identity, Address: w.Address, AdminAddress: w.AdminAddress, Labels: w.Labels, Services: w.Services}
		if p, ok := proxies[w.Key()]; ok {
			mw.Connected, mw.Synced, mw.ConfigVersion, mw.LastNack = true, p.Synced, p.AckedVersion, p.LastNack
		}
		mw.MTLSMode = authn.ModePermissive.String()
		if in.Snapshot != nil {
			// The proxy's own view, from the same function that builds
			// what it is pushed: what selects it here is what it enforces.
			v := xds.Build(in.Snapshot, nil, in.Mesh, xds.Proxy{ID: w.Key(), Workload: w})
			views[w.Key()] = v
			pp := authn.CompilePeer(v.PeerAuthentications, authn.Workload{Namespace: w.Namespace, Labels: w.Labels}, in.Mesh.RootNamespace)
			mw.MTLSMode, mw.MTLSPolicy = pp.Mode(0).String(), pp.Source(0)
			for _, port := range pp.Ports() {
				mw.PortModes = append(mw.PortModes, strconv.Itoa(int(port))+"="+pp.Mode(port).String())
			}
		}
		if s, ok := in.Scrapes[w.Key()]; ok {
			if s.Sample == nil {
				mw.MetricsError = s.Err
			} else {
				if s.Sample.CertExpiry > 0 {
					na := time.Unix(0, int64(s.Sample.CertExpiry*float64(time.Second))).UTC()
					mw.Cert = &Cert{NotAfter: na, ExpiresIn: math.Round(na.Sub(in.Now).Seconds()),
						Rotations: s.Sample.CertRotations, RenewalFailures: s.Sample.RenewalFailures}
				}
				if len(s.Sample.Denied) > 0 {
					mw.Denied = s.Sample.Denied
				}
			}
		}
		m.Workloads = append(m.Workloads, mw)
	}
	m.Edges = edges(in)
	if in.Snapshot != nil {
		m.Policies = policies(in, views)
	}
	return m
}

// edgeKey identifies one Edge.
type edgeKey struct{ src, srcPrincipal, dst, dstPrincipal, service, protocol, reporter string }

// edges aggregates the proxies' request and connection counters into
// edges. A call is counted by both proxies; the destination's count is
// used, and the source's only where the destination has no reading (no
// proxy, or its metrics could not be read).
func edges(in Inputs) []Edge {
	read := map[string]bool{}
	for key, s := range in.Scrapes {
		if s.Sample != nil {
			read[key] = true
		}
	}
	byKey := map[edgeKey]*Edge{}
	var order []edgeKey
	keys := make([]string, 0, len(in.Scrapes))
	for k := range in.Scrapes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, proxyKey := range keys {
		s := in.Scrapes[proxyKey]
		if s.Sample == nil {
			continue
		}
		prev := map[string]float64{}
		var dt float64
		if p, ok := in.Previous[proxyKey]; ok && p.Sample != nil && s.At.After(p.At) {
			dt = s.At.Sub(p.At).Seconds()
			for _, ps := range p.Sample.Series {
				prev[seriesID(ps)] = ps.Value
			}
		}
		for _, se := range s.Sample.Series {
			dst := workloadKey(se.DestinationNamespace, se.DestinationWorkload)
			switch {
			case se.Reporter == "destination":
			case se.Reporter == "source" && (dst == "" || !read[dst]):
			default:
				continue
			}
			if dst == "" {
				dst = orUnknown(se.Service)
			}
			src := workloadKey(se.SourceNamespace, se.SourceWorkload)
			if src == "" {
				src = orUnknown(strings.TrimPrefix(se.SourcePrincipal, "unknown"))
			}
			k := edgeKey{src, se.SourcePrincipal, dst, se.DestinationPrincipal, se.Service, se.Protocol, se.Reporter}
			e := byKey[k]
			if e == nil {
				e = &Edge{Source: src, SourcePrincipal: se.SourcePrincipal, Destination: dst, DestinationPrincipal: se.DestinationPrincipal,
					Service: se.Service, Protocol: se.Protocol, Security: se.Security, Reporter: se.Reporter, Codes: map[string]float64{}}
				byKey[k] = e
				order = append(order, k)
			} else if e.Security != se.Security {
				e.Security = "mixed"
			}
			denied := se.Flags == "RBAC" || se.Flags == "UAEX"
			e.Requests += se.Value
			if se.Code != "" {
				e.Codes[se.Code] += se.Value
			}
			if denied {
				e.Denied += se.Value
			}
			if strings.HasPrefix(se.Code, "5") {
				e.Errors += se.Value
			}
			if dt > 0 {
				d := se.Value - prev[seriesID(se)]
				if d < 0 { // the proxy restarted: its counter began again
					d = se.Value
				}
				e.Rate += d / dt
				if denied {
					e.DeniedRate += d / dt
				}
			}
		}
	}
	out := make([]Edge, 0, len(order))
	for _, k := range order {
		e := byKey[k]
		e.Rate, e.DeniedRate = round2(e.Rate), round2(e.DeniedRate)
		if len(e.Codes) == 0 {
			e.Codes = nil
		}
		out = append(out, *e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Source != out[j].Source {
			return out[i].Source < out[j].Source
		}
		if out[i].Destination != out[j].Destination {
			return out[i].Destination < out[j].Destination
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out
}

// seriesID identifies a series across two readings of one proxy.
func seriesID(s Series) string {
	return strings.Join([]string{s.Reporter, s.SourceWorkload, s.SourceNamespace, s.SourcePrincipal, s.DestinationWorkload,
		s.DestinationNamespace, s.DestinationPrincipal, s.Service, s.Protocol, s.Code, s.Flags, s.Security}, "\x00")
}

func workloadKey(ns, name string) string {
	if ns == "" || name == "" || ns == "unknown" || name == "unknown" {
		return ""
	}
	return ns + "/" + name
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// policies lists the policy resources of the snapshot with the workloads
// each applies to: AuthorizationPolicies and RequestAuthentications as
// xds.Build selects them for each proxy, PeerAuthentications where they
// decide a workload's mode (authn.CompilePeer, as the proxy resolves it).
func policies(in Inputs, views map[string]*xds.View) []Policy {
	selected := map[string][]string{} // kind + key -> workload keys
	for _, w := range in.Workloads {
		v := views[w.Key()]
		if v == nil {
			continue
		}
		for _, r := range v.AuthorizationPolicies {
			selected[string(r.Kind)+" "+r.Key()] = append(selected[string(r.Kind)+" "+r.Key()], w.Key())
		}
		for _, r := range v.RequestAuthentications {
			selected[string(r.Kind)+" "+r.Key()] = append(selected[string(r.Kind)+" "+r.Key()], w.Key())
		}
		pp := authn.CompilePeer(v.PeerAuthentications, authn.Workload{Namespace: w.Namespace, Labels: w.Labels}, in.Mesh.RootNamespace)
		seen := map[string]bool{}
		for _, port := range append([]uint32{0}, pp.Ports()...) {
			if src := pp.Source(port); src != "" && !seen[src] {
				seen[src] = true
				k := string(config.KindPeerAuthentication) + " " + src
				selected[k] = append(selected[k], w.Key())
			}
		}
	}
	var out []Policy
	for _, kind := range []config.Kind{config.KindPeerAuthentication, config.KindAuthorizationPolicy, config.KindRequestAuthentication} {
		for _, r := range in.Snapshot.List(kind) {
			p := Policy{Kind: string(kind), Namespace: r.Namespace, Name: r.Name, Selects: selected[string(kind)+" "+r.Key()]}
			if p.Selects == nil {
				p.Selects = []string{}
			}
			switch spec := r.Spec.(type) {
			case *security.AuthorizationPolicy:
				p.Action, p.Rules = spec.GetAction().String(), len(spec.GetRules())
				p.DryRun = r.Annotations["istio.io/dry-run"] == "true"
			case *security.PeerAuthentication:
				p.Action = spec.GetMtls().GetMode().String()
				p.Rules = len(spec.GetPortLevelMtls())
			case *security.RequestAuthentication:
				p.Rules = len(spec.GetJwtRules())
			}
			out = append(out, p)
		}
	}
	return out
}
