package agent

import (
	"time"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// Status is the agent's certificate state for the admin page /debug/certs.
// It holds no key material: ChainPEM and BundlePEM are public certificates,
// for `zmesh cert inspect --admin`.
type Status struct {
	SPIFFEID    string    `json:"spiffeId"`
	Ready       bool      `json:"ready"`
	Serial      string    `json:"serial,omitempty"`
	NotBefore   time.Time `json:"notBefore,omitzero"`
	NotAfter    time.Time `json:"notAfter,omitzero"`
	NextRenewal time.Time `json:"nextRenewal,omitzero"`
	// Rotations counts certificates that replaced an earlier one.
	Rotations int `json:"rotations"`
	// Roots lists the subjects of the trust bundle's roots.
	Roots     []string `json:"roots"`
	LastError string   `json:"lastError,omitempty"`
	// ChainPEM is the current certificate chain, leaf first.
	ChainPEM string `json:"chainPEM,omitempty"`
	// BundlePEM is the trust bundle.
	BundlePEM string `json:"bundlePEM,omitempty"`
}

// Status returns a snapshot of the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	st := Status{SPIFFEID: a.id.String(), Rotations: a.rotations, LastError: a.lastErr}
	held := a.held
	a.mu.Unlock()
	if s := a.svid.Load(); s != nil {
		leaf := s.Certificates[0]
		st.Ready = true
		st.Serial = leaf.SerialNumber.Text(16)
		st.NotBefore, st.NotAfter = leaf.NotBefore, leaf.NotAfter
		st.NextRenewal = RenewalTimeHeld(leaf.NotBefore, leaf.NotAfter, held, a.cfg.RenewAt)
		st.ChainPEM = string(pemcert.Encode(s.Certificates...))
	}
	roots := a.bundle.Load().X509Authorities()
	for _, r := range roots {
		st.Roots = append(st.Roots, r.Subject.String())
	}
	st.BundlePEM = string(pemcert.Encode(roots...))
	return st
}
