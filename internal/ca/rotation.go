package ca

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// Root rotation without an outage.
//
// Peers accept a certificate only if it chains to a root in their bundle,
// and proxies learn the bundle only from time to time (with every
// certificate they get from the CA, every 12 hours by default), so a root
// cannot simply be replaced. Rotation is three steps, each run by the
// operator (`zmesh ca rotate --step ...`) once the mesh has caught up with
// the one before, as SPIRE rotates its CA keys (prepare, activate, retire):
//
//  1. prepare: a new root is made and joins the bundle. The CA still signs
//     with the old one. Every proxy that renews learns both roots.
//  2. activate: once every proxy has renewed (wait at least the workload
//     certificate lifetime), the CA signs with the new root; the old one
//     stays in the bundle, so certificates it signed are still accepted.
//  3. retire: once every certificate signed by the old root has expired
//     or been renewed (again a lifetime), the old root leaves the bundle.
//
// At every moment, each certificate in use chains to a root every peer
// trusts. Check enforces the waits (with the injected clock), and Force
// overrides them for an operator who knows better.
//
// In the data dir, the new root waits in zmesh-ca-next-{cert,key}.pem, the
// old one in zmesh-ca-previous-{cert,key}.pem, and zmesh-ca-rotation.json
// records when each step ran. The bundle, written to root-cert.pem, is the
// signing root followed by these. Plugged-in (cacerts) CAs are rotated by
// the operator editing the files the same way: first root-cert.pem gains the
// new root, then ca-cert/ca-key/cert-chain move to an intermediate of the
// new root, then the old root leaves root-cert.pem. The Authority picks up
// either kind of change with Reload.

// Files of a rotation in progress, inside Config.DataDir.
const (
	NextCertFile     = "zmesh-ca-next-cert.pem"
	NextKeyFile      = "zmesh-ca-next-key.pem"
	PreviousCertFile = "zmesh-ca-previous-cert.pem"
	PreviousKeyFile  = "zmesh-ca-previous-key.pem"
	RotationFile     = "zmesh-ca-rotation.json"
)

// RotationStep is one step of a root rotation.
type RotationStep string

// The steps of a root rotation, in order.
const (
	StepPrepare  RotationStep = "prepare"
	StepActivate RotationStep = "activate"
	StepRetire   RotationStep = "retire"
)

// RotationPhase is where a data dir stands in a root rotation.
type RotationPhase string

// Rotation phases: after no step (or after retire), after prepare, after
// activate.
const (
	PhaseSteady    RotationPhase = "steady"
	PhasePrepared  RotationPhase = "prepared"
	PhaseActivated RotationPhase = "activated"
)

// Errors of Check, for callers that branch on them.
var (
	// ErrRotationOrder reports a step that does not follow the phase.
	ErrRotationOrder = errors.New("ca: rotation step out of order")
	// ErrRotationTooEarly reports a step taken before the mesh can have
	// caught up with the previous one.
	ErrRotationTooEarly = errors.New("ca: rotation step too early")
	// ErrPluggedIn reports a rotation asked of a plugged-in CA, whose
	// roots the operator manages.
	ErrPluggedIn = errors.New("ca: the CA uses plugged-in cacerts; rotate by editing them (see package ca's rotation docs)")
)

// RotationStatus describes a data dir's root rotation.
type RotationStatus struct {
	Phase    RotationPhase
	Signing  *x509.Certificate
	Next     *x509.Certificate // the prepared root, in PhasePrepared
	Previous *x509.Certificate // the root being retired, in PhaseActivated
	// PreparedAt and ActivatedAt are when the last prepare and activate ran.
	PreparedAt  time.Time `json:"preparedAt,omitzero"`
	ActivatedAt time.Time `json:"activatedAt,omitzero"`
}

// Check reports whether step may run at now, when each step must wait
// wait after the previous one. It is a pure function of the status.
func (s RotationStatus) Check(step RotationStep, now time.Time, wait time.Duration) error {
	var want RotationPhase
	var since time.Time
	switch step {
	case StepPrepare:
		want = PhaseSteady
	case StepActivate:
		want, since = PhasePrepared, s.PreparedAt
	case StepRetire:
		want, since = PhaseActivated, s.ActivatedAt
	default:
		return fmt.Errorf("ca: unknown rotation step %q", step)
	}
	if s.Phase != want {
		return fmt.Errorf("%w: %s needs phase %s, the data dir is %s", ErrRotationOrder, step, want, s.Phase)
	}
	if at := since.Add(wait); now.Before(at) {
		return fmt.Errorf("%w: %s is allowed from %s (%s after the previous step), so that every proxy has renewed",
			ErrRotationTooEarly, step, at.UTC().Format(time.RFC3339), wait)
	}
	return nil
}

// RotateOptions tune Rotate.
type RotateOptions struct {
	// Wait is the least time between two steps: at least the lifetime of
	// workload certificates, so every proxy renews in between. Zero means
	// the lifetime the control plane recorded in the data dir
	// (LifetimeInForce), else the Config's DefaultTTL.
	Wait time.Duration
	// Force skips the wait (never the order).
	Force bool
}

// Rotate runs one step of a root rotation on the data dir of cfg and
// rewrites root-cert.pem; a running control plane picks the change up with
// Reload. It is for `zmesh ca rotate`; in-process callers use
// (*Authority).Rotate. Steps are crash-safe: a step interrupted between its
// file writes is completed by the next Rotate or Load.
func Rotate(cfg Config, step RotationStep, opts RotateOptions) (RotationStatus, error) {
	if err := cfg.Validate(); err != nil {
		return RotationStatus{}, err
	}
	a := &Authority{cfg: cfg.withDefaults(), updated: make(chan struct{})}
	if err := a.rotate(step, opts); err != nil {
		return RotationStatus{}, err
	}
	return a.rotationStatus()
}

// Rotate runs one step of a root rotation on the Authority's data dir and
// signs with the result at once.
func (a *Authority) Rotate(step RotationStep, opts RotateOptions) error {
	if a.cfg.DataDir == "" {
		return errNoDataDir
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if err := a.rotate(step, opts); err != nil {
		return err
	}
	_, err := a.reloadLocked()
	return err
}

// RotationStatus returns the rotation phase of the Authority's data dir.
func (a *Authority) RotationStatus() (RotationStatus, error) { return a.rotationStatus() }

// ReadRotationStatus returns the rotation phase of cfg's data dir.
func ReadRotationStatus(cfg Config) (RotationStatus, error) {
	if err := cfg.Validate(); err != nil {
		return RotationStatus{}, err
	}
	a := &Authority{cfg: cfg.withDefaults()}
	return a.rotationStatus()
}

func (a *Authority) rotate(step RotationStep, opts RotateOptions) error {
	plugged, err := hasPluggedCerts(a.cfg.DataDir)
	if err != nil {
		return err
	}
	if plugged {
		return ErrPluggedIn
	}
	if err := a.recoverActivation(); err != nil {
		return err
	}
	st, err := a.rotationStatus()
	if err != nil {
		return err
	}
	if st.Signing == nil {
		return fmt.Errorf("ca: data dir %s holds no CA; start the control plane with it once first", a.cfg.DataDir)
	}
	wait := opts.Wait
	if wait == 0 {
		var ok bool
		if wait, ok = LifetimeInForce(a.cfg.DataDir); !ok {
			wait = a.cfg.DefaultTTL
		}
	}
	if opts.Force {
		wait = 0
	}
	now := a.cfg.Clock()
	if err := st.Check(step, now, wait); err != nil {
		return err
	}
	switch step {
	case StepPrepare:
		if _, _, err := a.createRoot(a.path(NextCertFile), a.path(NextKeyFile)); err != nil {
			return err
		}
		st.PreparedAt, st.ActivatedAt = now, time.Time{}
	case StepActivate:
		if err := a.activate(); err != nil {
			return err
		}
		st.ActivatedAt = now
	case StepRetire:
		for _, name := range []string{PreviousKeyFile, PreviousCertFile} {
			if err := os.Remove(a.path(name)); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("ca: retire: %w", err)
			}
		}
		st.PreparedAt, st.ActivatedAt = time.Time{}, time.Time{}
	}
	if err := a.writeRotationTimes(st); err != nil {
		return err
	}
	// Validate the result and write the new bundle.
	_, err = a.loadOrCreateSelfSigned(false)
	return err
}

// activate makes the prepared root the signing one. Each write is atomic;
// the order keeps every intermediate state either loadable with the old
// root still trusted, or completed by recoverActivation.
func (a *Authority) activate() error {
	copyFile := func(from, to string, mode os.FileMode) error {
		b, err := readBounded(a.path(from))
		if err != nil {
			return err
		}
		return writeFileAtomic(a.path(to), b, mode)
	}
	steps := []struct {
		from, to string
		mode     os.FileMode
	}{
		{SelfSignedKeyFile, PreviousKeyFile, 0o600}, // kept for a manual rollback until retire
		{SelfSignedCertFile, PreviousCertFile, 0o644},
		{NextKeyFile, SelfSignedKeyFile, 0o600},
		{NextCertFile, SelfSignedCertFile, 0o644},
	}
	for _, s := range steps {
		if err := copyFile(s.from, s.to, s.mode); err != nil {
			return fmt.Errorf("ca: activate: %w", err)
		}
	}
	return a.removeNext()
}

// recoverActivation completes an activation interrupted after the new key
// replaced the signing key: the signing key then matches the prepared root.
// It runs only from Load and Rotate, never from Reload, which may race with
// a Rotate in another process.
func (a *Authority) recoverActivation() error {
	next, err := readCertificates(a.path(NextCertFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if cur, err := readCertificates(a.path(SelfSignedCertFile)); err == nil && cur[0].Equal(next[0]) {
		return a.removeNext()
	}
	key, err := readPrivateKey(a.path(SelfSignedKeyFile))
	if err != nil || !publicKeysEqual(key.Public(), next[0].PublicKey) {
		return nil // not interrupted: a plain prepared state
	}
	if err := writeFileAtomic(a.path(SelfSignedCertFile), pemcert.Encode(next[0]), 0o644); err != nil {
		return fmt.Errorf("ca: complete interrupted activation: %w", err)
	}
	return a.removeNext()
}

func (a *Authority) removeNext() error {
	for _, name := range []string{NextKeyFile, NextCertFile} {
		if err := os.Remove(a.path(name)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("ca: %w", err)
		}
	}
	return nil
}

func (a *Authority) rotationStatus() (RotationStatus, error) {
	var st RotationStatus
	if b, err := readBounded(a.path(RotationFile)); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return RotationStatus{}, fmt.Errorf("ca: %s: %w", RotationFile, err)
		}
	} else if !os.IsNotExist(err) {
		return RotationStatus{}, fmt.Errorf("ca: %w", err)
	}
	if certs, err := readCertificates(a.path(SelfSignedCertFile)); err == nil {
		st.Signing = certs[0]
	} else if !os.IsNotExist(err) {
		return RotationStatus{}, fmt.Errorf("ca: %w", err)
	}
	var err error
	if st.Next, err = a.optionalRoot(NextCertFile); err != nil {
		return RotationStatus{}, err
	}
	if st.Previous, err = a.optionalRoot(PreviousCertFile); err != nil {
		return RotationStatus{}, err
	}
	switch {
	case st.Next != nil:
		st.Phase = PhasePrepared
	case st.Previous != nil && (st.Signing == nil || !st.Previous.Equal(st.Signing)):
		st.Phase = PhaseActivated
	default:
		st.Phase = PhaseSteady
	}
	return st, nil
}

func (a *Authority) writeRotationTimes(st RotationStatus) error {
	b, err := json.MarshalIndent(struct {
		PreparedAt  time.Time `json:"preparedAt,omitzero"`
		ActivatedAt time.Time `json:"activatedAt,omitzero"`
	}{st.PreparedAt, st.ActivatedAt}, "", "  ")
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := writeFileAtomic(a.path(RotationFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("ca: write %s: %w", RotationFile, err)
	}
	return nil
}
