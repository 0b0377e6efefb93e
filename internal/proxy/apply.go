package proxy

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/xds"
)

// Apply compiles v and makes it the configuration in force. On error
// (which the xDS client reports as a NACK) the previous configuration stays
// in force, untouched. Connections and requests already in progress finish
// under the configuration they started with. Apply is safe for concurrent
// use with serving; concurrent calls are serialised.
func (p *Proxy) Apply(v *xds.View) error {
	if v == nil {
		return errors.New("proxy: nil view")
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	st, err := p.compile(v)
	if err != nil {
		p.metrics.ConfigApplied(v.Version, err)
		p.log.Warn("config rejected; keeping the last good one", "version", v.Version, "err", err)
		return fmt.Errorf("proxy: config %s: %w", v.Version, err)
	}
	old := p.state.Load()
	if old == nil || !slices.Equal(old.trustDomains, st.trustDomains) {
		// From the next handshake on, inbound and secure naming accept
		// exactly these (trustBundles, authorizeServer).
		p.log.Info("trust domains in force", "version", v.Version, "trustDomains", trustDomainNames(st.trustDomains))
	}
	p.out.attach(st)
	p.state.Store(st)
	p.configuredOnce.Do(func() { close(p.configured) })
	p.out.prune(st, old)
	if p.gw != nil {
		p.gw.push(st)
	}
	if p.dns != nil {
		p.dns.Update(v.Services, st.dnsDomain)
	}
	if rp := st.set.RequestAuthentication(); rp != nil {
		p.schedulePrefetch(rp)
	}
	p.metrics.ConfigApplied(v.Version, nil)
	p.log.Info("config applied", "version", v.Version,
		"authorizationPolicies", len(st.set.AuthorizationPolicies),
		"requestAuthentications", len(st.set.RequestAuthentications),
		"peerAuthentication", st.mode.String(), "services", len(v.Services), "virtualServices", len(v.VirtualServices))
	return nil
}

func trustDomainNames(tds []spiffeid.TrustDomain) []string {
	out := make([]string, len(tds))
	for i, td := range tds {
		out[i] = td.Name()
	}
	return out
}
