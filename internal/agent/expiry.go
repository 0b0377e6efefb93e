package agent

import (
	"crypto/x509"
	"time"
)

// DefaultExpiryWarning is the fraction of a certificate's lifetime left
// below which a failing renewal is logged as a warning: a fifth, which with
// DefaultRenewAt means renewals have been failing for 60% of the lifetime.
const DefaultExpiryWarning = 0.2

// ExpiryStage says how close a certificate is to expiry, for the warnings
// of failing renewals.
type ExpiryStage int

// Expiry stages, in the order a certificate goes through them.
const (
	// ExpiryFar means more than the warning fraction of the lifetime is
	// left.
	ExpiryFar ExpiryStage = iota
	// ExpirySoon means less than the warning fraction is left.
	ExpirySoon
	// ExpiryPast means the certificate has expired.
	ExpiryPast
)

// ExpiryStageAt returns the stage at now of a certificate valid from
// notBefore to notAfter, warning when less than fraction of its lifetime
// is left. A fraction outside (0, 1) means DefaultExpiryWarning.
func ExpiryStageAt(notBefore, notAfter time.Time, fraction float64, now time.Time) ExpiryStage {
	if !(fraction > 0 && fraction < 1) {
		fraction = DefaultExpiryWarning
	}
	left := notAfter.Sub(now)
	switch {
	case left <= 0:
		return ExpiryPast
	case float64(left) < fraction*float64(notAfter.Sub(notBefore)):
		return ExpirySoon
	default:
		return ExpiryFar
	}
}

// expiryAlarm remembers the last stage logged for one certificate, so that
// each stage is logged once however many retries fail in it.
type expiryAlarm struct {
	leaf   *x509.Certificate
	logged ExpiryStage
}

// warnExpiry is called by Run after a failed renewal: it logs once when
// the current certificate gets within Config.ExpiryWarning of its expiry,
// and once when it expires, with the identity, the expiry and the last
// error. A stage skipped over (a clock that jumped) is not logged late; a
// new certificate starts over.
func (a *Agent) warnExpiry(err error) {
	s := a.svid.Load()
	if s == nil {
		return // never had one: every failure is logged already
	}
	leaf := s.Certificates[0]
	if a.expiry.leaf != leaf {
		a.expiry = expiryAlarm{leaf: leaf}
	}
	now := a.cfg.Clock()
	stage := ExpiryStageAt(leaf.NotBefore, leaf.NotAfter, a.cfg.ExpiryWarning, now)
	if stage <= a.expiry.logged {
		return
	}
	a.expiry.logged = stage
	notAfter := leaf.NotAfter.UTC().Format(time.RFC3339)
	switch stage {
	case ExpirySoon:
		a.log.Warn("certificate expires soon and renewal keeps failing",
			"not_after", notAfter, "remaining", leaf.NotAfter.Sub(now).Round(time.Second).String(),
			"serial", leaf.SerialNumber.Text(16), "err", err)
	case ExpiryPast:
		a.log.Error("certificate expired and renewal keeps failing; peers refuse this workload until a renewal succeeds",
			"not_after", notAfter, "serial", leaf.SerialNumber.Text(16), "err", err)
	}
}
