package agent

import (
	"fmt"
	"time"
)

// SkewError reports a certificate from the CA that verifies (chain,
// signature, identity) but is not valid now by the agent's clock: the CA's
// clock and the agent's disagree by more than the CA backdates. The agent
// keeps its current certificate while that is valid and retries with
// backoff; it installs the new one only when it holds no valid one, since
// peers whose clocks agree with the CA's accept it.
type SkewError struct {
	NotBefore, NotAfter time.Time // the refused certificate's validity
	Now                 time.Time // the agent's clock when it checked
}

// Skew returns the least clock difference that explains the certificate:
// positive when the CA's clock is ahead of the agent's (the certificate is
// not yet valid), negative when it is behind (already expired). The true
// skew is larger by the CA's backdate (ahead) or by the part of the
// lifetime the certificate should still have (behind), which the agent
// cannot see.
func (e *SkewError) Skew() time.Duration {
	if e.Now.Before(e.NotBefore) {
		return e.NotBefore.Sub(e.Now)
	}
	if e.Now.After(e.NotAfter) {
		return -e.Now.Sub(e.NotAfter)
	}
	return 0
}

func (e *SkewError) Error() string {
	if s := e.Skew(); s > 0 {
		return fmt.Sprintf("agent: CA issued a certificate not valid before %s, %s after this agent's clock: the CA's clock is at least that far ahead",
			e.NotBefore.UTC().Format(time.RFC3339), s.Round(time.Second))
	}
	return fmt.Sprintf("agent: CA issued a certificate that expired at %s, %s before this agent's clock: the CA's clock is at least that far behind",
		e.NotAfter.UTC().Format(time.RFC3339), (-e.Skew()).Round(time.Second))
}

// HeldFraction returns the part of a certificate's lifetime (notBefore to
// notAfter) still ahead of now: 1 for one just issued by a CA whose clock
// agrees with now (more with its backdate not counted: a backdated
// certificate starts a little before), 0 for an expired one. The agent
// warns when a certificate arrives with less than half left, a CA clock
// behind its own by most of the lifetime.
func HeldFraction(notBefore, notAfter, now time.Time) float64 {
	life := notAfter.Sub(notBefore)
	if life <= 0 || !now.Before(notAfter) {
		return 0
	}
	return min(float64(notAfter.Sub(now))/float64(life), 1)
}

// RenewalTimeHeld returns when a certificate valid from notBefore to
// notAfter, installed at held by the agent's clock, is due for renewal:
// fraction of the validity the agent actually holds it for, from the later
// of notBefore and held to notAfter. Counting from notBefore alone would
// make a CA whose clock is behind hand out certificates already past their
// renewal time by the agent's clock, renewed again at once, in a loop;
// counting from held renews such a certificate at fraction of what is left
// of it (Istio's agent likewise counts from when it received the
// certificate). A zero held means notBefore.
func RenewalTimeHeld(notBefore, notAfter, held time.Time, fraction float64) time.Time {
	if held.After(notBefore) {
		notBefore = held
	}
	return RenewalTime(notBefore, notAfter, fraction)
}
