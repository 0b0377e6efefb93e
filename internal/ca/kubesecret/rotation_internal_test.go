package kubesecret

import (
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zmesh/zmesh/internal/ca"
)

var testCA = ca.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), RootTTL: 100 * 24 * time.Hour}

func newSecret(t *testing.T, cfg ca.Config) *corev1.Secret {
	t.Helper()
	m, err := ca.NewRootMaterial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{ns: "istio-system"}
	sec := s.caSecret(m)
	sec.ObjectMeta = metav1.ObjectMeta{Name: CASecret, Namespace: "istio-system"}
	return sec
}

// TestRotationSteps walks istio-ca-secret through prepare, activate and
// retire, as the API would store each step, checking the bundle every
// replica loads at each phase and that out-of-order or early steps are
// refused.
func TestRotationSteps(t *testing.T) {
	now := time.Now()
	wait := 24 * time.Hour
	sec := newSecret(t, testCA)
	st, err := RotationStatus(sec)
	if err != nil || st.Phase != ca.PhaseSteady {
		t.Fatalf("fresh secret: phase %v, %v", st.Phase, err)
	}
	oldRoot := st.Signing

	if _, err := applyStep(sec, ca.StepActivate, now, wait, testCA); !errors.Is(err, ca.ErrRotationOrder) {
		t.Fatalf("activate before prepare = %v", err)
	}
	sec, err = applyStep(sec, ca.StepPrepare, now, wait, testCA)
	if err != nil {
		t.Fatal(err)
	}
	st, _ = RotationStatus(sec)
	a := load(t, sec, now)
	if st.Phase != ca.PhasePrepared || !a.SigningCertificate().Equal(oldRoot) || len(a.Bundle()) != 2 {
		t.Fatalf("after prepare: phase %s, %d roots, signing with the old root %v", st.Phase, len(a.Bundle()), a.SigningCertificate().Equal(oldRoot))
	}
	newRoot := st.Next

	if _, err := applyStep(sec, ca.StepActivate, now.Add(time.Hour), wait, testCA); !errors.Is(err, ca.ErrRotationTooEarly) {
		t.Fatalf("activate an hour after prepare = %v", err)
	}
	now = now.Add(wait)
	sec, err = applyStep(sec, ca.StepActivate, now, wait, testCA)
	if err != nil {
		t.Fatal(err)
	}
	st, _ = RotationStatus(sec)
	a = load(t, sec, now)
	if st.Phase != ca.PhaseActivated || !a.SigningCertificate().Equal(newRoot) || len(a.Bundle()) != 2 || !st.Previous.Equal(oldRoot) {
		t.Fatalf("after activate: phase %s, %d roots", st.Phase, len(a.Bundle()))
	}

	now = now.Add(wait)
	sec, err = applyStep(sec, ca.StepRetire, now, wait, testCA)
	if err != nil {
		t.Fatal(err)
	}
	st, _ = RotationStatus(sec)
	a = load(t, sec, now)
	if st.Phase != ca.PhaseSteady || len(a.Bundle()) != 1 || !a.Bundle()[0].Equal(newRoot) {
		t.Fatalf("after retire: phase %s, %d roots", st.Phase, len(a.Bundle()))
	}
	for _, k := range []string{NextCertKey, NextKeyKey, PreviousCertKey} {
		if _, ok := sec.Data[k]; ok {
			t.Errorf("%s left after retire", k)
		}
	}
}

func load(t *testing.T, sec *corev1.Secret, now time.Time) *ca.Authority {
	t.Helper()
	key, _ := ca.NewTokenKey()
	cfg := testCA
	cfg.Clock = func() time.Time { return now }
	a, err := ca.New(cfg, materialOf(sec), key)
	if err != nil {
		t.Fatalf("replica cannot load the secret: %v", err)
	}
	return a
}

func TestAutoRotationPolicy(t *testing.T) {
	sec := newSecret(t, testCA)
	st, _ := RotationStatus(sec)
	born := st.Signing.NotBefore
	life := st.Signing.NotAfter.Sub(born)
	policy := AutoRotation{Wait: time.Hour}
	tests := []struct {
		name string
		st   ca.RotationStatus
		now  time.Time
		want ca.RotationStep
	}{
		{name: "young root: nothing", st: st, now: born.Add(life / 2)},
		{name: "root in its last fifth: prepare", st: st, now: born.Add(life * 81 / 100), want: ca.StepPrepare},
		{name: "prepared, wait not over", st: ca.RotationStatus{Phase: ca.PhasePrepared, Signing: st.Signing, PreparedAt: born}, now: born.Add(30 * time.Minute)},
		{name: "prepared, wait over: activate", st: ca.RotationStatus{Phase: ca.PhasePrepared, Signing: st.Signing, PreparedAt: born}, now: born.Add(time.Hour), want: ca.StepActivate},
		{name: "activated, wait over: retire", st: ca.RotationStatus{Phase: ca.PhaseActivated, Signing: st.Signing, ActivatedAt: born}, now: born.Add(2 * time.Hour), want: ca.StepRetire},
	}
	for _, tt := range tests {
		step, due := policy.nextStep(tt.st, tt.now)
		if (tt.want == "") == due || due && step != tt.want {
			t.Errorf("%s: nextStep = %q, %v; want %q", tt.name, step, due, tt.want)
		}
	}
}
