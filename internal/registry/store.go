package registry

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// LabelTLSMode is Istio's endpoint label that says the endpoint has a
// proxy able to terminate mesh mTLS. Endpoints with HasProxy always carry
// it with the value TLSModeIstio, as Istio labels injected pods.
const (
	LabelTLSMode = "security.istio.io/tlsMode"
	TLSModeIstio = "istio"
)

// Limits on what one workload may register; a registration is input from
// the network and is bounded like any parser.
const (
	MaxServicesPerWorkload = 64
	MaxLabelsPerWorkload   = 64
)

// Store holds the workloads registered with the control plane. It is safe
// for concurrent use. The zero value is not usable; call NewStore.
type Store struct {
	dnsDomain string

	mu        sync.Mutex
	workloads map[string]Workload // by NAMESPACE/NAME
	// proxied holds the keys of the workloads with a proxy (HasProxy) at
	// each address, so that Upsert finds a conflict without scanning every
	// workload under the lock (a reconnect wave of N proxies was O(N²)).
	// All the workloads at one address have the same identity (Upsert).
	proxied  map[string]map[string]struct{}
	platform []Service // SetPlatformServices
	changed  chan struct{}
}

// NewStore returns an empty store whose services are named
// NAME.NAMESPACE.svc.DNSDOMAIN (dnsDomain defaults to cluster.local).
func NewStore(dnsDomain string) *Store {
	if dnsDomain == "" {
		dnsDomain = "cluster.local"
	}
	dnsDomain = CanonicalHost(dnsDomain)
	return &Store{dnsDomain: dnsDomain, workloads: map[string]Workload{}, proxied: map[string]map[string]struct{}{}, changed: make(chan struct{})}
}

// Key returns the store key of a workload, "NAMESPACE/NAME" (the xDS node ID).
func (w Workload) Key() string { return w.Namespace + "/" + w.Name }

// Validate checks that a workload registration is well formed and only
// claims services in its own namespace: service names are short DNS labels,
// turned into hostnames of the workload's namespace by the store, so a
// workload can never register a hostname of another namespace.
func (w Workload) Validate() error {
	if !isDNSLabel(w.Namespace) {
		return fmt.Errorf("registry: workload namespace %q is not a DNS label", w.Namespace)
	}
	if w.Name == "" || len(w.Name) > 253 || strings.ContainsAny(w.Name, "/ ") {
		return fmt.Errorf("registry: workload name %q is invalid", w.Name)
	}
	if len(w.Services) > MaxServicesPerWorkload {
		return fmt.Errorf("registry: workload %s registers %d services, at most %d allowed", w.Key(), len(w.Services), MaxServicesPerWorkload)
	}
	for _, s := range w.Services {
		if !isDNSLabel(s) {
			return fmt.Errorf("registry: workload %s: service name %q must be a short name in its own namespace (a DNS label)", w.Key(), s)
		}
	}
	if len(w.Labels) > MaxLabelsPerWorkload {
		return fmt.Errorf("registry: workload %s has %d labels, at most %d allowed", w.Key(), len(w.Labels), MaxLabelsPerWorkload)
	}
	if len(w.Services) > 0 && w.Address == "" {
		return fmt.Errorf("registry: workload %s serves services but has no address", w.Key())
	}
	if w.Address != "" {
		host, port, err := net.SplitHostPort(w.Address)
		if err != nil || host == "" {
			return fmt.Errorf("registry: workload %s: address %q is not host:port", w.Key(), w.Address)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("registry: workload %s: address %q has no valid port", w.Key(), w.Address)
		}
	}
	if w.AdminAddress != "" {
		host, port, err := net.SplitHostPort(w.AdminAddress)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
			return fmt.Errorf("registry: workload %s: admin address %q is not host:port", w.Key(), w.AdminAddress)
		}
	}
	if w.TunnelPort > 65535 || w.TunnelPort != 0 && (!w.HasProxy || w.Address == "") {
		return fmt.Errorf("registry: workload %s: tunnel port %d needs a proxy with an address and must be a port", w.Key(), w.TunnelPort)
	}
	return nil
}

// Upsert adds or replaces the workload with w's key, and notifies watchers
// if anything changed. It refuses a workload with a proxy at an address
// where another workload's proxy is registered as another identity.
func (s *Store) Upsert(w Workload) error {
	if err := w.Validate(); err != nil {
		return err
	}
	w = cloneWorkload(w)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.workloads[w.Key()]
	if ok && workloadEqual(old, w) {
		return nil
	}
	if err := s.addressFreeLocked(w); err != nil {
		return err
	}
	if ok {
		s.unindexLocked(old)
	}
	s.workloads[w.Key()] = w
	s.indexLocked(w)
	s.notifyLocked()
	return nil
}

// addressFreeLocked refuses w if another workload with a proxy is
// registered at w's address as another identity. Addresses are claimed,
// not proven: without this, one workload could register another's address
// and every proxy would refuse the views that list both (Check).
func (s *Store) addressFreeLocked(w Workload) error {
	if !w.HasProxy || w.Address == "" {
		return nil
	}
	for key := range s.proxied[w.Address] {
		if o := s.workloads[key]; key != w.Key() && o.Identity != w.Identity {
			return fmt.Errorf("registry: workload %s: address %s is registered by %s as %s", w.Key(), w.Address, key, o.Identity)
		}
	}
	return nil
}

// indexLocked adds w to the address index if it has a proxy at an address.
func (s *Store) indexLocked(w Workload) {
	if !w.HasProxy || w.Address == "" {
		return
	}
	keys := s.proxied[w.Address]
	if keys == nil {
		keys = map[string]struct{}{}
		s.proxied[w.Address] = keys
	}
	keys[w.Key()] = struct{}{}
}

// unindexLocked removes w from the address index.
func (s *Store) unindexLocked(w Workload) {
	keys := s.proxied[w.Address]
	delete(keys, w.Key())
	if len(keys) == 0 {
		delete(s.proxied, w.Address)
	}
}

// Remove deletes the workload with key NAMESPACE/NAME, if present.
func (s *Store) Remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.workloads[key]
	if !ok {
		return
	}
	s.unindexLocked(w)
	delete(s.workloads, key)
	s.notifyLocked()
}

// Workload returns the workload with key NAMESPACE/NAME.
func (s *Store) Workload(key string) (Workload, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.workloads[key]
	return cloneWorkload(w), ok
}

// Workloads returns every registered workload, sorted by key; a fresh
// copy the caller may keep.
func (s *Store) Workloads() []Workload {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Workload, 0, len(s.workloads))
	for _, w := range s.workloads {
		out = append(out, cloneWorkload(w))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Changed returns a channel that is closed at the next change of the store.
// Take the channel before reading the store so no change is missed.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Services returns the services of the registered workloads (merged with
// the platform's, SetPlatformServices), sorted by hostname, each with its endpoints sorted by address and workload. The
// result is a fresh copy the caller may keep.
func (s *Store) Services() []Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	byHost := map[string]*Service{}
	for _, w := range s.workloads {
		if w.Address == "" {
			continue
		}
		for _, name := range w.Services {
			host := name + "." + w.Namespace + ".svc." + s.dnsDomain
			svc := byHost[host]
			if svc == nil {
				svc = &Service{Hostname: host, Namespace: w.Namespace}
				byHost[host] = svc
			}
			svc.Endpoints = append(svc.Endpoints, workloadEndpoint(w))
		}
	}
	out := make([]Service, 0, len(byHost))
	for _, svc := range byHost {
		out = append(out, *svc)
	}
	if len(s.platform) > 0 {
		return Merge(out, s.platform)
	}
	return normalize(out)
}

func workloadEndpoint(w Workload) Endpoint {
	ep := Endpoint{
		Address:    w.Address,
		Identity:   w.Identity,
		HasProxy:   w.HasProxy,
		Workload:   w.Key(),
		TunnelPort: w.TunnelPort,
		Labels:     cloneLabels(w.Labels),
	}
	if ep.HasProxy {
		if ep.Labels == nil {
			ep.Labels = map[string]string{}
		}
		ep.Labels[LabelTLSMode] = TLSModeIstio
	}
	return ep
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i != 0 && i != len(s)-1:
		default:
			return false
		}
	}
	return true
}

func cloneWorkload(w Workload) Workload {
	w.Labels = cloneLabels(w.Labels)
	w.Services = append([]string(nil), w.Services...)
	return w
}

func cloneLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func workloadEqual(a, b Workload) bool {
	if a.Name != b.Name || a.Namespace != b.Namespace || a.ServiceAccount != b.ServiceAccount ||
		a.Identity != b.Identity || a.Address != b.Address || a.HasProxy != b.HasProxy || a.AdminAddress != b.AdminAddress || a.TunnelPort != b.TunnelPort ||
		len(a.Services) != len(b.Services) || !maps.Equal(a.Labels, b.Labels) {
		return false
	}
	for i := range a.Services {
		if a.Services[i] != b.Services[i] {
			return false
		}
	}
	return true
}

// Merge combines service lists: services with the same hostname are joined
// (their endpoints concatenated, duplicates by address and workload
// dropped; the first list's namespace wins). The result is sorted.
func Merge(lists ...[]Service) []Service {
	byHost := map[string]*Service{}
	for _, list := range lists {
		for _, svc := range list {
			cur := byHost[svc.Hostname]
			if cur == nil {
				c := Service{Hostname: svc.Hostname, Namespace: svc.Namespace}
				cur = &c
				byHost[svc.Hostname] = cur
			}
			cur.Addresses = appendNew(cur.Addresses, svc.Addresses...)
			for _, p := range svc.Ports {
				if !hasPort(cur.Ports, p.Number) {
					cur.Ports = append(cur.Ports, p)
				}
			}
			for _, ep := range svc.Endpoints {
				ep.Labels = cloneLabels(ep.Labels)
				cur.Endpoints = append(cur.Endpoints, ep)
			}
		}
	}
	out := make([]Service, 0, len(byHost))
	for _, svc := range byHost {
		out = append(out, *svc)
	}
	return normalize(out)
}

// appendNew appends to list the values it does not hold yet.
func appendNew(list []string, values ...string) []string {
	for _, v := range values {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}

func hasPort(ports []Port, n uint32) bool {
	for _, p := range ports {
		if p.Number == n {
			return true
		}
	}
	return false
}

// normalize sorts services by hostname and endpoints by address then
// workload, dropping duplicate endpoints, so equal content compares equal.
func normalize(svcs []Service) []Service {
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Hostname < svcs[j].Hostname })
	for i := range svcs {
		sort.Strings(svcs[i].Addresses)
		sort.Slice(svcs[i].Ports, func(a, b int) bool { return svcs[i].Ports[a].Number < svcs[i].Ports[b].Number })
		eps := svcs[i].Endpoints
		sort.SliceStable(eps, func(a, b int) bool {
			if eps[a].Address != eps[b].Address {
				return eps[a].Address < eps[b].Address
			}
			return eps[a].Workload < eps[b].Workload
		})
		out := eps[:0]
		for j, ep := range eps {
			if j > 0 && ep.Address == out[len(out)-1].Address && ep.Workload == out[len(out)-1].Workload {
				continue
			}
			out = append(out, ep)
		}
		if len(out) == 0 {
			out = nil
		}
		svcs[i].Endpoints = out
	}
	return svcs
}
