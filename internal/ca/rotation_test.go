package ca_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/identity"
)

func TestRotationCheck(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	wait := time.Hour
	steady := ca.RotationStatus{Phase: ca.PhaseSteady}
	prepared := ca.RotationStatus{Phase: ca.PhasePrepared, PreparedAt: t0}
	activated := ca.RotationStatus{Phase: ca.PhaseActivated, PreparedAt: t0, ActivatedAt: t0}
	tests := []struct {
		name   string
		status ca.RotationStatus
		step   ca.RotationStep
		now    time.Time
		want   error
	}{
		{"prepare from steady", steady, ca.StepPrepare, t0, nil},
		{"prepare twice", prepared, ca.StepPrepare, t0.Add(wait), ca.ErrRotationOrder},
		{"activate without prepare", steady, ca.StepActivate, t0, ca.ErrRotationOrder},
		{"activate before proxies renewed", prepared, ca.StepActivate, t0.Add(wait - time.Second), ca.ErrRotationTooEarly},
		{"activate after the wait", prepared, ca.StepActivate, t0.Add(wait), nil},
		{"retire without activate", prepared, ca.StepRetire, t0.Add(wait), ca.ErrRotationOrder},
		{"retire before old leaves expired", activated, ca.StepRetire, t0.Add(wait / 2), ca.ErrRotationTooEarly},
		{"retire after the wait", activated, ca.StepRetire, t0.Add(wait), nil},
		{"prepare during a rotation", activated, ca.StepPrepare, t0.Add(wait), ca.ErrRotationOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.status.Check(tt.step, tt.now, wait)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Check = %v, want %v", err, tt.want)
			}
		})
	}
}

// signedBy reports whether leaf's chain starts at root.
func signedBy(t *testing.T, a *ca.Authority, root *x509.Certificate) bool {
	t.Helper()
	id, err := identity.ForServiceAccount(a.TrustDomain(), "foo", "bar")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := a.Sign(parseCSR(t, catest.CSR(t, catest.NewKey(t))), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return chain[0].CheckSignatureFrom(root) == nil
}

func readBundleFile(t *testing.T, dir string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ca.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func TestRotateStepsWithClock(t *testing.T) {
	clock := catest.NewClock(time.Now())
	dir := t.TempDir()
	a := catest.NewAuthority(t, ca.Config{DataDir: dir, Clock: clock.Now, DefaultTTL: time.Hour})
	old := a.SigningCertificate()
	updated := a.Updated()

	if err := a.Rotate(ca.StepRetire, ca.RotateOptions{}); !errors.Is(err, ca.ErrRotationOrder) {
		t.Fatalf("retire in steady phase: %v", err)
	}
	if err := a.Rotate(ca.StepPrepare, ca.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-updated:
	default:
		t.Error("Updated not signalled by prepare")
	}
	bundle := a.Bundle()
	if len(bundle) != 2 || !bundle[0].Equal(old) {
		t.Fatalf("after prepare, bundle = %d roots (signing first?), want old+new", len(bundle))
	}
	next := bundle[1]
	if !signedBy(t, a, old) {
		t.Error("after prepare, leaves are not signed by the old root")
	}
	if got := readBundleFile(t, dir); len(got) != 2 {
		t.Errorf("root-cert.pem holds %d roots after prepare, want 2", len(got))
	}

	if err := a.Rotate(ca.StepActivate, ca.RotateOptions{}); !errors.Is(err, ca.ErrRotationTooEarly) {
		t.Fatalf("activate at once: %v", err)
	}
	clock.Add(time.Hour) // DefaultTTL: every proxy has renewed since
	if err := a.Rotate(ca.StepActivate, ca.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !a.SigningCertificate().Equal(next) || !signedBy(t, a, next) {
		t.Fatal("after activate, the CA does not sign with the new root")
	}
	if b := a.Bundle(); len(b) != 2 || !b[0].Equal(next) || !b[1].Equal(old) {
		t.Fatal("after activate, the bundle is not new+old")
	}
	tlsCfg, err := ca.ServerTLSConfig(a)
	if err != nil {
		t.Fatal(err)
	}
	// Until retire, the control plane serves from the old root, which
	// every agent trusts, even one that never learnt the new root.
	serving, err := tlsCfg.GetCertificate(nil)
	if err != nil || serving.Leaf.CheckSignatureFrom(old) != nil {
		t.Errorf("serving certificate between activate and retire not from the old root: %v", err)
	}

	if err := a.Rotate(ca.StepRetire, ca.RotateOptions{Wait: 2 * time.Hour}); !errors.Is(err, ca.ErrRotationTooEarly) {
		t.Fatalf("retire before the wait: %v", err)
	}
	if err := a.Rotate(ca.StepRetire, ca.RotateOptions{Wait: 2 * time.Hour, Force: true}); err != nil {
		t.Fatalf("forced retire: %v", err)
	}
	if b := a.Bundle(); len(b) != 1 || !b[0].Equal(next) {
		t.Fatal("after retire, the bundle is not the new root alone")
	}
	if serving, err = tlsCfg.GetCertificate(nil); err != nil || serving.Leaf.CheckSignatureFrom(next) != nil {
		t.Errorf("serving certificate after retire not from the new root: %v", err)
	}
	for _, f := range []string{ca.NextCertFile, ca.NextKeyFile, ca.PreviousCertFile, ca.PreviousKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s left after retire", f)
		}
	}
	st, err := a.RotationStatus()
	if err != nil || st.Phase != ca.PhaseSteady {
		t.Errorf("status after retire = %v, %v", st.Phase, err)
	}
}

// TestReloadPicksUpRotationFromAnotherProcess runs the steps as `zmesh ca
// rotate` does, on the data dir only, and checks a running Authority
// follows with Reload.
func TestReloadPicksUpRotationFromAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	a := catest.NewAuthority(t, ca.Config{DataDir: dir})
	cfg := ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain}
	if changed, err := a.Reload(); err != nil || changed {
		t.Fatalf("Reload of an unchanged dir = %v, %v", changed, err)
	}
	st, err := ca.Rotate(cfg, ca.StepPrepare, ca.RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != ca.PhasePrepared || st.Next == nil {
		t.Fatalf("status after prepare = %+v", st.Phase)
	}
	if changed, err := a.Reload(); err != nil || !changed {
		t.Fatalf("Reload after prepare = %v, %v", changed, err)
	}
	if len(a.Bundle()) != 2 {
		t.Fatal("Reload did not pick up the prepared root")
	}
	if _, err := ca.Rotate(cfg, ca.StepActivate, ca.RotateOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if !a.SigningCertificate().Equal(st.Next) {
		t.Error("Reload did not pick up the activation")
	}
}

func TestLoadCompletesAnInterruptedActivation(t *testing.T) {
	dir := t.TempDir()
	a := catest.NewAuthority(t, ca.Config{DataDir: dir})
	if err := a.Rotate(ca.StepPrepare, ca.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	next := a.Bundle()[1]
	// Crash after the new key replaced the signing key, before the cert.
	copyFile(t, filepath.Join(dir, ca.SelfSignedKeyFile), filepath.Join(dir, ca.PreviousKeyFile))
	copyFile(t, filepath.Join(dir, ca.SelfSignedCertFile), filepath.Join(dir, ca.PreviousCertFile))
	copyFile(t, filepath.Join(dir, ca.NextKeyFile), filepath.Join(dir, ca.SelfSignedKeyFile))

	if _, err := a.Reload(); err == nil {
		t.Error("Reload accepted a signing key that does not match its certificate")
	}
	b := catest.NewAuthority(t, ca.Config{DataDir: dir})
	if !b.SigningCertificate().Equal(next) {
		t.Fatal("Load did not complete the activation")
	}
	if len(b.Bundle()) != 2 {
		t.Errorf("bundle after recovery has %d roots, want 2", len(b.Bundle()))
	}
}

func TestRotateRefusesPluggedInCA(t *testing.T) {
	dir := t.TempDir()
	root := newTestCA(t, "root", nil, caOpts{})
	writeFile(t, dir, ca.CACertFile, pemCerts(root.cert))
	writeFile(t, dir, ca.CAKeyFile, pemKey(t, root.key))
	writeFile(t, dir, ca.CertChainFile, pemCerts(root.cert))
	writeFile(t, dir, ca.RootCertFile, pemCerts(root.cert))
	a := catest.NewAuthority(t, ca.Config{DataDir: dir})
	if err := a.Rotate(ca.StepPrepare, ca.RotateOptions{}); !errors.Is(err, ca.ErrPluggedIn) {
		t.Fatalf("Rotate of a plugged-in CA: %v", err)
	}
	// The operator's own rotation: root-cert.pem gains a second root.
	other := newTestCA(t, "root-2", nil, caOpts{})
	writeFile(t, dir, ca.RootCertFile, pemCerts(root.cert, other.cert))
	if changed, err := a.Reload(); err != nil || !changed || len(a.Bundle()) != 2 {
		t.Fatalf("Reload after the operator added a root = %v, %v, %d roots", changed, err, len(a.Bundle()))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWatchReloadsTheDataDir(t *testing.T) {
	dir := t.TempDir()
	a := catest.NewAuthority(t, ca.Config{DataDir: dir})
	updated := a.Updated()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Watch(ctx, 10*time.Millisecond, nil) }()
	defer func() { cancel(); <-done }()
	if _, err := ca.Rotate(ca.Config{DataDir: dir, TrustDomain: catest.TrustDomain}, ca.StepPrepare, ca.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-updated:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not pick up the prepared root")
	}
	if len(a.Bundle()) != 2 {
		t.Errorf("bundle has %d roots after Watch, want 2", len(a.Bundle()))
	}
}

// TestRotateWaitsTheLifetimeInForce: `zmesh ca rotate`, a separate process
// that is not told the certificate lifetime, waits the one the control
// plane recorded in the data dir, not its own default of a day.
func TestRotateWaitsTheLifetimeInForce(t *testing.T) {
	clock := catest.NewClock(time.Now())
	dir := t.TempDir()
	catest.NewAuthority(t, ca.Config{DataDir: dir, Clock: clock.Now, DefaultTTL: 10 * time.Minute})
	if d, ok := ca.LifetimeInForce(dir); !ok || d != 10*time.Minute {
		t.Fatalf("LifetimeInForce = %v, %v; want 10m", d, ok)
	}
	// The rotating process's own Config says nothing of lifetimes.
	cli := ca.Config{DataDir: dir, TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), Clock: clock.Now}
	if _, err := ca.Rotate(cli, ca.StepPrepare, ca.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	clock.Add(5 * time.Minute)
	if _, err := ca.Rotate(cli, ca.StepActivate, ca.RotateOptions{}); !errors.Is(err, ca.ErrRotationTooEarly) {
		t.Fatalf("activate half a lifetime after prepare: %v", err)
	}
	clock.Add(6 * time.Minute)
	if _, err := ca.Rotate(cli, ca.StepActivate, ca.RotateOptions{}); err != nil {
		t.Fatalf("activate a lifetime after prepare (the CLI's default would wait a day): %v", err)
	}
}
