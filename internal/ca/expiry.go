package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Errors of Issue and ServingCertificate when the signing chain cannot
// vouch for a certificate now. Callers branch on them: the CSR service
// answers FailedPrecondition (the operator must renew or replace the CA;
// retrying does not help until then) and counts the refusal by reason.
var (
	// ErrCAExpired reports a signing chain (signing CA, intermediates or
	// root) that has expired, or expires too soon for a useful leaf (see
	// MinLeafTTL).
	ErrCAExpired = errors.New("ca: the signing CA has expired")
	// ErrCANotYetValid reports a signing chain whose validity starts after
	// the CA's clock: a CA made on a machine whose clock runs ahead, or a
	// CA host whose clock runs behind.
	ErrCANotYetValid = errors.New("ca: the signing CA is not valid yet")
)

// MinLeafTTL is the shortest lifetime a leaf is cut to when the signing
// chain expires before the lifetime asked for ends. A leaf is clamped to
// the chain's expiry rather than refused, because a clamped leaf keeps a
// workload serving exactly as long as any leaf issued earlier can; refusing
// would take new and renewing workloads down before the CA itself is gone.
// Below the floor the request is refused with ErrCAExpired instead: a leaf
// of a few seconds would be expired by the time it is installed or reaches
// a peer whose clock is a little ahead, and an agent renewing at half-life
// would renew in a tightening loop. A caller that asks for less than the
// floor (test meshes with 10 s certificates) needs only its own lifetime
// to fit.
const MinLeafTTL = 5 * time.Minute

// ExpiryWarning is how long before the signing chain expires Watch starts
// warning: time to rotate the root (two waits of a workload certificate
// lifetime, see rotation.go) or to replace plugged-in cacerts. The warning
// starts at three workload lifetimes if that is longer.
const ExpiryWarning = 30 * 24 * time.Hour

// Lifetime is when an Authority can issue: the span its whole signing chain
// is valid, and the expiry of the root that chain ends in.
type Lifetime struct {
	// NotBefore is the latest NotBefore of the signing chain.
	NotBefore time.Time
	// NotAfter is the earliest NotAfter of the signing chain; from then on
	// Issue refuses, and no leaf it issued is valid.
	NotAfter time.Time
	// Root is the NotAfter of the signing chain's root.
	Root time.Time
}

// ExpiryState is what Lifetime.Check finds.
type ExpiryState int

// Expiry states, from fine to unusable.
const (
	// ExpiryOK: the CA can issue and is not near its expiry.
	ExpiryOK ExpiryState = iota
	// ExpiryNear: the CA can issue but expires within the warning window.
	ExpiryNear
	// ExpiryPast: the CA has expired and refuses to issue.
	ExpiryPast
	// ExpiryNotYet: the CA's validity has not started; it refuses to issue.
	ExpiryNotYet
)

// String names the state for logs.
func (s ExpiryState) String() string {
	switch s {
	case ExpiryOK:
		return "ok"
	case ExpiryNear:
		return "near"
	case ExpiryPast:
		return "expired"
	case ExpiryNotYet:
		return "not-yet-valid"
	}
	return fmt.Sprintf("ExpiryState(%d)", int(s))
}

// Check reports the state of l at now, warning within warn of its expiry.
// It is a pure function.
func (l Lifetime) Check(now time.Time, warn time.Duration) ExpiryState {
	switch {
	case now.Before(l.NotBefore):
		return ExpiryNotYet
	case !now.Before(l.NotAfter):
		return ExpiryPast
	case l.NotAfter.Sub(now) <= warn:
		return ExpiryNear
	}
	return ExpiryOK
}

// lifetimeOf returns the span over which every certificate of chain is
// valid; the last certificate is taken as the root.
func lifetimeOf(chain []*x509.Certificate) Lifetime {
	var l Lifetime
	for i, c := range chain {
		if i == 0 || c.NotBefore.After(l.NotBefore) {
			l.NotBefore = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(l.NotAfter) {
			l.NotAfter = c.NotAfter
		}
	}
	if n := len(chain); n > 0 {
		l.Root = chain[n-1].NotAfter
	}
	return l
}

// Lifetime returns when the Authority can issue with its current signing
// chain, for the CA's expiry metrics and alerts.
func (a *Authority) Lifetime() Lifetime { return lifetimeOf(a.state.Load().chain) }

// leafValidity returns the NotBefore and NotAfter of a leaf of lifetime ttl
// issued at now under a chain valid over l, and whether NotAfter was cut
// short by l. The leaf lies wholly within l: its backdate for clock skew
// stops at l.NotBefore, its end at l.NotAfter. It refuses (ErrCANotYetValid,
// ErrCAExpired) when now is outside l or when less than min(ttl, MinLeafTTL)
// of l remains. It is a pure function.
func leafValidity(now time.Time, ttl time.Duration, l Lifetime) (notBefore, notAfter time.Time, truncated bool, err error) {
	if now.Before(l.NotBefore) {
		return time.Time{}, time.Time{}, false, fmt.Errorf("%w: valid from %s, the CA's clock says %s",
			ErrCANotYetValid, l.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(l.NotAfter) {
		return time.Time{}, time.Time{}, false, fmt.Errorf("%w: it expired at %s",
			ErrCAExpired, l.NotAfter.UTC().Format(time.RFC3339))
	}
	// x509 validity has second precision; a leaf ends on a whole second.
	left := l.NotAfter.Truncate(time.Second).Sub(now)
	if left < min(ttl, MinLeafTTL) {
		return time.Time{}, time.Time{}, false, fmt.Errorf("%w: it expires at %s, in %s, too soon for a useful certificate",
			ErrCAExpired, l.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Second))
	}
	notAfter = now.Add(ttl)
	if notAfter.After(l.NotAfter) {
		notAfter, truncated = l.NotAfter, true
	}
	notBefore = now.Add(-backdate(ttl))
	if notBefore.Before(l.NotBefore) {
		notBefore = l.NotBefore
	}
	return notBefore, notAfter, truncated, nil
}

// expiryWarnEvery is how often Watch repeats an expiry warning whose state
// has not changed: often enough to be seen in any log window, rarely
// enough not to drown the rest.
const expiryWarnEvery = time.Hour

// expiryAlarm logs the CA's expiry state: at once when it changes, then at
// most every expiryWarnEvery, and nothing while the CA is fine. It is owned
// by one Watch loop.
type expiryAlarm struct {
	last   ExpiryState
	logged time.Time
}

// warnWindow is how long before the chain's expiry the alarm warns.
func (a *Authority) warnWindow() time.Duration { return max(ExpiryWarning, 3*a.cfg.DefaultTTL) }

func (e *expiryAlarm) check(a *Authority, log *slog.Logger) {
	now := a.cfg.Clock()
	lt := a.Lifetime()
	state := lt.Check(now, a.warnWindow())
	if state == e.last && (state == ExpiryOK || now.Sub(e.logged) < expiryWarnEvery) {
		return
	}
	e.last, e.logged = state, now
	attrs := []any{"not_before", lt.NotBefore.UTC().Format(time.RFC3339), "not_after", lt.NotAfter.UTC().Format(time.RFC3339),
		"root_not_after", lt.Root.UTC().Format(time.RFC3339), "signing", a.SigningCertificate().Subject.String()}
	switch state {
	case ExpiryOK:
		log.Info("CA validity fine again", attrs...)
	case ExpiryNear:
		log.Warn("CA expires soon; rotate the root or replace the cacerts before then, or every workload loses its identity",
			append(attrs, "expires_in", lt.NotAfter.Sub(now).Round(time.Minute).String())...)
	case ExpiryPast:
		log.Error("CA expired; refusing to issue certificates until it is replaced", attrs...)
	case ExpiryNotYet:
		log.Error("CA not valid yet (check the clock); refusing to issue certificates", attrs...)
	}
}
