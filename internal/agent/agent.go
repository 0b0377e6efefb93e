package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/zmesh/zmesh/internal/identity"
)

// ErrNoCertificate is returned by GetX509SVID before the first certificate.
var ErrNoCertificate = errors.New("agent: no certificate yet")

// Agent holds a workload's identity and keeps it current. Its getters are
// safe for concurrent use and never block on the network.
type Agent struct {
	cfg Config
	id  spiffeid.ID
	log *slog.Logger

	svid   atomic.Pointer[x509svid.SVID]
	bundle atomic.Pointer[x509bundle.Bundle]

	ready     chan struct{}
	readyOnce sync.Once

	mu        sync.Mutex
	updated   chan struct{}
	rotations int
	failures  uint64
	lastErr   string
	running   bool
	// held is when the current certificate was installed, by Config.Clock:
	// its renewal is scheduled from then (RenewalTimeHeld).
	held time.Time

	// expiry is the warning state of the current certificate, touched
	// only by Run.
	expiry expiryAlarm
}

// New returns an Agent for cfg. It does no I/O; Run obtains certificates.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	id, err := identity.ForServiceAccount(cfg.TrustDomain, cfg.Namespace, cfg.ServiceAccount)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{
		cfg:     cfg,
		id:      id,
		log:     cfg.Logger.With("identity", id.String()),
		ready:   make(chan struct{}),
		updated: make(chan struct{}),
	}
	a.bundle.Store(x509bundle.FromX509Authorities(cfg.TrustDomain, cfg.CARoots))
	return a, nil
}

// ID returns the SPIFFE ID the agent obtains certificates for.
func (a *Agent) ID() spiffeid.ID { return a.id }

// Run obtains the first certificate, retrying with backoff while the CA is
// unreachable, then renews each certificate at Config.RenewAt of the
// validity it holds (RenewalTimeHeld) until ctx is done. Failed renewals are retried with backoff,
// past expiry if need be (falling back to the token). It returns nil when
// ctx is cancelled, and an error only if called twice concurrently.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("agent: already running")
	}
	a.running = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running = false
		a.mu.Unlock()
	}()

	failures := 0
	for {
		if cur := a.svid.Load(); cur != nil && validAt(cur.Certificates[0], a.cfg.Clock()) {
			leaf := cur.Certificates[0]
			due := RenewalTimeHeld(leaf.NotBefore, leaf.NotAfter, a.heldSince(), a.cfg.RenewAt)
			if wait := due.Sub(a.cfg.Clock()); wait > 0 {
				if !sleep(ctx, wait) {
					return nil
				}
				continue
			}
		}
		skewed, err := a.rotate(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && !skewed {
			failures = 0
			continue
		}
		// A failure, or a certificate installed although this agent's
		// clock disagrees with it: either way the next request waits a
		// growing backoff, so a skewed CA is not asked again in a loop.
		failures++
		wait := jitter(Backoff(failures, a.cfg.MinRetry, a.cfg.MaxRetry))
		if err != nil {
			a.setErr(err)
			a.log.Warn("certificate request failed", "err", err, "attempt", failures, "retry_in", wait.String())
			a.warnExpiry(err)
		} else if cur := a.svid.Load(); cur != nil {
			// The skewed certificate just installed serves peers whose
			// clocks agree with the CA's for its lifetime only: ask again
			// within half of it, whatever the backoff has grown to.
			leaf := cur.Certificates[0]
			wait = min(wait, max(leaf.NotAfter.Sub(leaf.NotBefore)/2, a.cfg.MinRetry))
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// nearlyExpiredOnArrival is the fraction of its lifetime below which a
// certificate that has just arrived counts as skewed: renewing it at half
// of what is left would ask the CA again within moments, so the agent
// backs off instead.
const nearlyExpiredOnArrival = 0.1

// rotate obtains a new certificate and installs it. It reports skewed when
// the certificate it installed is not valid by the agent's clock, or
// arrived nearly expired (see SkewError): the caller then backs off
// before asking again. A certificate that is not valid by the agent's
// clock is refused (a *SkewError) while the current one is still valid.
func (a *Agent) rotate(ctx context.Context) (skewed bool, err error) {
	svid, roots, method, err := a.request(ctx)
	var skew *SkewError
	if errors.As(err, &skew) && svid != nil {
		if a.validCertificate() != nil {
			return false, fmt.Errorf("%w; keeping the current certificate, valid until %s",
				err, a.svid.Load().Certificates[0].NotAfter.UTC().Format(time.RFC3339))
		}
		// No valid certificate to keep: one that peers whose clocks
		// agree with the CA's accept is better than none, which every
		// peer refuses. Its chain and identity were verified.
		a.log.Error("installing a certificate this agent's clock says is not valid, for want of a valid one; fix the clocks (NTP)",
			"skew_at_least", skew.Skew().Round(time.Second).String(), "not_before", skew.NotBefore.UTC().Format(time.RFC3339),
			"not_after", skew.NotAfter.UTC().Format(time.RFC3339), "now", skew.Now.UTC().Format(time.RFC3339))
		skewed, err = true, nil
	}
	if err != nil {
		return false, err
	}
	// Bundle before certificate: a peer that sees the new certificate must
	// never find this proxy still missing its root.
	if len(roots) > 0 {
		a.storeBundle(roots)
	}
	now := a.cfg.Clock()
	old := a.svid.Swap(svid)
	a.mu.Lock()
	if old != nil {
		a.rotations++
	}
	a.lastErr = ""
	a.held = now
	rotations := a.rotations
	a.mu.Unlock()

	leaf := svid.Certificates[0]
	a.log.Info("certificate installed", "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "auth", method, "rotations", rotations)
	if held := HeldFraction(leaf.NotBefore, leaf.NotAfter, now); !skewed && held < 0.5 {
		// Issued with more than half its lifetime already gone by this
		// clock: the CA's clock is behind by about that much, less the
		// CA's backdate (at most a tenth of the lifetime).
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		behind := time.Duration((1-held)*float64(life)) - life/10
		a.log.Warn("certificate arrived with most of its lifetime gone by this agent's clock: the CA's clock is behind; renewing at half of what is left",
			"remaining", leaf.NotAfter.Sub(now).Round(time.Millisecond).String(), "lifetime", life.String(),
			"ca_behind_about", max(behind, 0).Round(time.Second).String())
		skewed = held < nearlyExpiredOnArrival
	}
	a.readyOnce.Do(func() { close(a.ready) })
	a.notify()
	return skewed, nil
}

// heldSince returns when the current certificate was installed, by the
// agent's clock.
func (a *Agent) heldSince() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

// validAt reports whether leaf is valid at now.
func validAt(leaf *x509.Certificate, now time.Time) bool {
	return !now.Before(leaf.NotBefore) && now.Before(leaf.NotAfter)
}

// GetX509SVID returns the current SVID. Each call reads one atomic pointer,
// so handshakes during a rotation see either the old or the new SVID whole.
// The returned SVID must not be modified.
func (a *Agent) GetX509SVID() (*x509svid.SVID, error) {
	s := a.svid.Load()
	if s == nil {
		return nil, ErrNoCertificate
	}
	return s, nil
}

// GetX509BundleForTrustDomain returns the trust bundle for the agent's trust
// domain; any other trust domain is an error (no federation yet).
func (a *Agent) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != a.cfg.TrustDomain {
		return nil, fmt.Errorf("agent: no bundle for trust domain %q", td)
	}
	return a.bundle.Load(), nil
}

// SetBundle replaces the trust bundle, for a control plane that pushes it
// (xDS) between certificate renewals; the agent also adopts the bundle of
// every CA response. It ignores an empty set, which would make every peer
// untrusted.
func (a *Agent) SetBundle(roots []*x509.Certificate) {
	if len(roots) == 0 {
		a.log.Warn("ignoring empty trust bundle")
		return
	}
	if a.storeBundle(roots) {
		a.notify()
	}
}

// storeBundle replaces the bundle with roots and reports whether it
// changed.
func (a *Agent) storeBundle(roots []*x509.Certificate) bool {
	b := x509bundle.FromX509Authorities(a.cfg.TrustDomain, roots)
	if b.Equal(a.bundle.Load()) {
		return false
	}
	a.bundle.Store(b)
	subjects := make([]string, len(roots))
	for i, r := range roots {
		subjects[i] = r.Subject.String()
	}
	a.log.Info("trust bundle updated", "roots", subjects)
	return true
}

// Ready is closed once the agent holds its first certificate.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Updated returns a channel closed at the next change of certificate or
// bundle. Take the channel before reading the state it guards, so no change
// slips between the read and the wait:
//
//	for {
//		ch := a.Updated()
//		use(a.GetX509SVID())
//		<-ch
//	}
func (a *Agent) Updated() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.updated
}

func (a *Agent) notify() {
	a.mu.Lock()
	close(a.updated)
	a.updated = make(chan struct{})
	a.mu.Unlock()
}

func (a *Agent) setErr(err error) {
	a.mu.Lock()
	a.lastErr = err.Error()
	a.failures++
	a.mu.Unlock()
}

// Rotations returns how many certificates have replaced an earlier one.
func (a *Agent) Rotations() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return uint64(a.rotations)
}

// RenewalFailures returns how many certificate requests have failed, each
// retry counted.
func (a *Agent) RenewalFailures() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failures
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter spreads retries over [d/2, d) so proxies that lost the control plane
// together do not return together.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

var (
	_ x509svid.Source   = (*Agent)(nil)
	_ x509bundle.Source = (*Agent)(nil)
)
