package kubesecret

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/pemcert"
)

// Root rotation in istio-ca-secret follows package ca's three steps
// (prepare, activate, retire; see ca.RotationStatus), kept in the Secret
// itself so every replica sees each step: prepare adds a new root to
// root-cert.pem and parks it and its key under zmesh-next-*; activate makes
// it ca-cert.pem/ca-key.pem and keeps the old root in root-cert.pem (and
// zmesh-previous-cert.pem); retire drops the old root. Annotations record
// when each step ran. Each step is one Update carrying the resourceVersion
// it read, so two replicas can never both apply a step: the second gets a
// conflict. Automatic rotation (RunRotation) runs on the holder of a Lease
// only.

// Keys and annotations of a rotation in istio-ca-secret.
const (
	NextCertKey           = "zmesh-next-cert.pem"
	NextKeyKey            = "zmesh-next-key.pem"
	PreviousCertKey       = "zmesh-previous-cert.pem"
	PreparedAtAnnotation  = "zmesh.io/root-prepared-at"
	ActivatedAtAnnotation = "zmesh.io/root-activated-at"
)

// RotationStatus reads where istio-ca-secret stands in a root rotation.
func RotationStatus(sec *corev1.Secret) (ca.RotationStatus, error) {
	var st ca.RotationStatus
	certs, err := pemcert.Parse(sec.Data[ca.CACertFile])
	if err != nil {
		return st, fmt.Errorf("kubesecret: %s: %w", ca.CACertFile, err)
	}
	st.Signing = certs[0]
	if b := sec.Data[NextCertKey]; len(b) > 0 {
		if st.Next, err = firstCert(NextCertKey, b); err != nil {
			return st, err
		}
	}
	if b := sec.Data[PreviousCertKey]; len(b) > 0 {
		if st.Previous, err = firstCert(PreviousCertKey, b); err != nil {
			return st, err
		}
	}
	for ann, dst := range map[string]*time.Time{PreparedAtAnnotation: &st.PreparedAt, ActivatedAtAnnotation: &st.ActivatedAt} {
		if v, ok := sec.Annotations[ann]; ok {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return st, fmt.Errorf("kubesecret: annotation %s: %w", ann, err)
			}
			*dst = t
		}
	}
	switch {
	case st.Next != nil:
		st.Phase = ca.PhasePrepared
	case st.Previous != nil && !st.Previous.Equal(st.Signing):
		st.Phase = ca.PhaseActivated
	default:
		st.Phase = ca.PhaseSteady
	}
	return st, nil
}

func firstCert(name string, b []byte) (*x509.Certificate, error) {
	certs, err := pemcert.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("kubesecret: %s: %w", name, err)
	}
	return certs[0], nil
}

// applyStep returns sec after step at now, checked against the rotation's
// order and waits; cfg makes the new root of prepare. It is a pure function
// of its arguments but for the new root's randomness: no API call.
func applyStep(sec *corev1.Secret, step ca.RotationStep, now time.Time, wait time.Duration, cfg ca.Config) (*corev1.Secret, error) {
	st, err := RotationStatus(sec)
	if err != nil {
		return nil, err
	}
	if err := st.Check(step, now, wait); err != nil {
		return nil, err
	}
	out := sec.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	d := out.Data
	stamp := now.UTC().Format(time.RFC3339)
	switch step {
	case ca.StepPrepare:
		m, err := ca.NewRootMaterial(cfg)
		if err != nil {
			return nil, err
		}
		next, err := firstCert(NextCertKey, m.CACert)
		if err != nil {
			return nil, err
		}
		d[NextCertKey], d[NextKeyKey] = m.CACert, m.CAKey
		d[ca.RootCertFile] = pemcert.Encode(st.Signing, next)
		out.Annotations[PreparedAtAnnotation] = stamp
		delete(out.Annotations, ActivatedAtAnnotation)
	case ca.StepActivate:
		d[PreviousCertKey] = pemcert.Encode(st.Signing)
		d[ca.CACertFile], d[ca.CAKeyFile] = d[NextCertKey], d[NextKeyKey]
		d[ca.RootCertFile] = pemcert.Encode(st.Next, st.Signing)
		delete(d, NextCertKey)
		delete(d, NextKeyKey)
		out.Annotations[ActivatedAtAnnotation] = stamp
	case ca.StepRetire:
		d[ca.RootCertFile] = pemcert.Encode(st.Signing)
		delete(d, PreviousCertKey)
		delete(out.Annotations, PreparedAtAnnotation)
		delete(out.Annotations, ActivatedAtAnnotation)
	}
	d[ca.CertChainFile] = nil
	// What every replica will load must load.
	if err := ca.ParseMaterial(materialOf(out), now); err != nil {
		return nil, fmt.Errorf("kubesecret: %s would leave an unusable CA: %w", step, err)
	}
	return out, nil
}

// Rotate runs one step of a root rotation on istio-ca-secret; every replica
// picks it up through Run. wait is the least time since the previous step
// (at least the workload certificate lifetime, so every proxy renewed in
// between); opts.Force skips it. A cacerts CA is rotated by its operator:
// ca.ErrPluggedIn.
func (s *Store) Rotate(ctx context.Context, step ca.RotationStep, opts ca.RotateOptions) error {
	if s.Source() == PluggedSecret {
		return ca.ErrPluggedIn
	}
	sec, err := s.secrets().Get(ctx, CASecret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kubesecret: read %s: %w", CASecret, err)
	}
	cfg := s.caCfg
	wait := opts.Wait
	if wait == 0 {
		wait = cmp.Or(cfg.DefaultTTL, ca.DefaultTTL)
	}
	if opts.Force {
		wait = 0
	}
	now := time.Now()
	if cfg.Clock != nil {
		now = cfg.Clock()
	}
	out, err := applyStep(sec, step, now, wait, cfg)
	if err != nil {
		return err
	}
	// The resourceVersion read above makes this a compare-and-swap.
	if _, err := s.client.CoreV1().Secrets(s.ns).Update(ctx, out, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kubesecret: %s: update %s: %w", step, CASecret, err)
	}
	s.log.Info("root rotation step done", "step", string(step), "secret", s.ns+"/"+CASecret)
	return nil
}

// AutoRotation is when RunRotation rotates the self-signed root on its own.
type AutoRotation struct {
	// Before starts a rotation (prepare) once the signing root has less
	// than this left to live; zero means a fifth of its lifetime, as istiod
	// does by default.
	Before time.Duration
	// Wait is the least time between steps; zero means the CA's DefaultTTL
	// (every proxy renews in between).
	Wait time.Duration
	// Every is how often the root is looked at; default one hour.
	Every time.Duration
}

// nextStep is the step automatic rotation takes at now, if any: a pure
// function of the status.
func (r AutoRotation) nextStep(st ca.RotationStatus, now time.Time) (ca.RotationStep, bool) {
	var step ca.RotationStep
	switch st.Phase {
	case ca.PhaseSteady:
		before := r.Before
		if before <= 0 {
			before = st.Signing.NotAfter.Sub(st.Signing.NotBefore) / 5
		}
		if st.Signing.NotAfter.Sub(now) > before {
			return "", false
		}
		step = ca.StepPrepare
	case ca.PhasePrepared:
		step = ca.StepActivate
	case ca.PhaseActivated:
		step = ca.StepRetire
	default:
		return "", false
	}
	return step, st.Check(step, now, r.Wait) == nil
}

// RunRotation rotates the self-signed root in istio-ca-secret as policy
// says until ctx is done. Run it on one replica at a time (package
// ca/kubelease); the compare-and-swap of each step keeps it safe anyway.
// A cacerts CA is left to its operator.
func (s *Store) RunRotation(ctx context.Context, policy AutoRotation) {
	if policy.Every <= 0 {
		policy.Every = time.Hour
	}
	if policy.Wait <= 0 {
		policy.Wait = cmp.Or(s.caCfg.DefaultTTL, ca.DefaultTTL)
	}
	t := time.NewTicker(policy.Every)
	defer t.Stop()
	for {
		if err := s.rotateIfDue(ctx, policy); err != nil && ctx.Err() == nil {
			s.log.Warn("automatic root rotation failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Store) rotateIfDue(ctx context.Context, policy AutoRotation) error {
	if s.Source() == PluggedSecret {
		return nil
	}
	sec, err := s.secrets().Get(ctx, CASecret, metav1.GetOptions{})
	if err != nil {
		return err
	}
	st, err := RotationStatus(sec)
	if err != nil {
		return err
	}
	now := time.Now()
	if s.caCfg.Clock != nil {
		now = s.caCfg.Clock()
	}
	step, due := policy.nextStep(st, now)
	if !due {
		return nil
	}
	return s.Rotate(ctx, step, ca.RotateOptions{Wait: policy.Wait})
}
