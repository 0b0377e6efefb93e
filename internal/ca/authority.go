package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// Authority is the mesh CA. It is safe for concurrent use. Its signing
// material can change at run time only through Reload (or Rotate), which
// swaps it whole: every issuance sees one consistent signing CA and bundle.
type Authority struct {
	cfg Config

	state atomic.Pointer[signingState]
	// reloadMu serializes Reload and Rotate, which read and write the data
	// dir.
	reloadMu sync.Mutex

	updMu   sync.Mutex
	updated chan struct{}

	tokens *TokenVerifier
}

// signingState is what the Authority signs with; immutable once stored.
type signingState struct {
	signer crypto.Signer
	// caCert signs leaves; it is the root itself when self-signed.
	caCert *x509.Certificate
	// chain is what follows a leaf in an issued chain: caCert, any
	// intermediates, and the root last.
	chain []*x509.Certificate
	// roots is the trust bundle (root-cert.pem): during a root rotation,
	// more than the root of chain.
	roots []*x509.Certificate
	// pluggedIn reports whether the signing CA came from Istio cacerts files.
	pluggedIn bool
	// pool holds roots, built once for TLS verification.
	pool *x509.CertPool
	// servingSigner and servingCA sign the control plane's own serving
	// certificate when they differ from the leaf signer: between a root
	// rotation's activate and retire, the previous root does, because it
	// is the root every agent trusts (see [Authority.ServingCertificate]).
	// Nil: caCert and signer.
	servingSigner crypto.Signer
	servingCA     *x509.Certificate
	// leaves encodes and signs leaves; nil when signer cannot (leavesErr
	// says why), and Issue refuses.
	leaves    *leafIssuer
	leavesErr error
}

func newState(signer crypto.Signer, caCert *x509.Certificate, chain, roots []*x509.Certificate, plugged bool) *signingState {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	leaves, err := newLeafIssuer(signer, caCert)
	return &signingState{signer: signer, caCert: caCert, chain: chain, roots: roots, pluggedIn: plugged, pool: pool, leaves: leaves, leavesErr: err}
}

// equal reports whether two states sign with the same CA and trust the same
// roots.
func (s *signingState) equal(o *signingState) bool {
	if !s.caCert.Equal(o.caCert) || len(s.roots) != len(o.roots) || len(s.chain) != len(o.chain) {
		return false
	}
	if (s.servingCA == nil) != (o.servingCA == nil) || s.servingCA != nil && !s.servingCA.Equal(o.servingCA) {
		return false
	}
	for i := range s.roots {
		if !s.roots[i].Equal(o.roots[i]) {
			return false
		}
	}
	for i := range s.chain {
		if !s.chain[i].Equal(o.chain[i]) {
			return false
		}
	}
	return true
}

// Load opens the CA in cfg.DataDir, creating a self-signed root (and the
// bootstrap-token key) on first start. If the directory holds Istio cacerts
// files, they become the signing CA instead; a partial or inconsistent set is
// an error rather than a silent fallback to a new root, since that would
// split the mesh into two trust domains. Either way the trust bundle is
// (re)written to DataDir/root-cert.pem when it differs.
func Load(cfg Config) (*Authority, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: create data dir: %w", err)
	}
	a := &Authority{cfg: cfg, updated: make(chan struct{})}
	_ = recordLifetime(cfg.DataDir, cfg.DefaultTTL)

	st, err := a.loadState(true)
	if err != nil {
		return nil, err
	}
	a.state.Store(st)

	key, err := loadOrCreateTokenKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.tokens, err = NewTokenVerifier(key, cfg.TrustDomain, cfg.Clock)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// TrustDomain returns the trust domain the Authority signs for.
func (a *Authority) TrustDomain() spiffeid.TrustDomain { return a.cfg.TrustDomain }

// loadState reads the signing material in the data dir: Istio cacerts if
// present, else the self-signed root, created when create is set and there
// is none.
func (a *Authority) loadState(create bool) (*signingState, error) {
	plugged, err := hasPluggedCerts(a.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if plugged {
		return a.loadPluggedCerts()
	}
	return a.loadOrCreateSelfSigned(create)
}

// Reload re-reads the signing material from the data dir and, if it
// changed, signs with it from now on; it reports whether it changed. A data
// dir that fails to load (a half-copied cacerts set, say) is an error and
// the Authority keeps what it had. Call it when the operator changed the
// data dir: on SIGHUP, or every few seconds (Watch).
func (a *Authority) Reload() (bool, error) {
	if a.cfg.DataDir == "" {
		return false, errNoDataDir
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return a.reloadLocked()
}

func (a *Authority) reloadLocked() (bool, error) {
	st, err := a.loadState(false)
	if err != nil {
		return false, err
	}
	return a.setState(st), nil
}

// Updated returns a channel closed at the next change of signing CA or
// bundle, for a control plane that pushes the bundle to proxies.
func (a *Authority) Updated() <-chan struct{} {
	a.updMu.Lock()
	defer a.updMu.Unlock()
	return a.updated
}

// Watch calls Reload every interval until ctx is done, so an operator's
// change to the data dir (a rotation step, new cacerts) takes effect
// without a restart. Failures are logged and the current CA kept; the same
// failure is repeated at most every reloadWarnEvery. It also alerts on the
// CA's own expiry, from the start and after every reload: a warning within
// ExpiryWarning of it, an error once the CA refuses to issue (see
// expiryAlarm). log nil discards.
func (a *Authority) Watch(ctx context.Context, every time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var alarm expiryAlarm
	alarm.check(a, log)
	var lastErr string
	var lastErrAt time.Time
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := a.Reload()
		if err == nil {
			lastErr = ""
		}
		switch {
		case err != nil:
			// An expired root fails every reload: say so once in a while,
			// not every tick.
			if now := a.cfg.Clock(); err.Error() != lastErr || now.Sub(lastErrAt) >= reloadWarnEvery {
				lastErr, lastErrAt = err.Error(), now
				log.Warn("CA reload failed; keeping the current CA", "err", err)
			}
		case changed:
			st := a.state.Load()
			roots := make([]string, len(st.roots))
			for i, r := range st.roots {
				roots[i] = r.Subject.String()
			}
			log.Info("CA reloaded", "signing", st.caCert.Subject.String(), "roots", roots)
		}
		alarm.check(a, log)
	}
}

// reloadWarnEvery is how often Watch repeats an unchanged reload failure.
const reloadWarnEvery = 10 * time.Minute

// Bundle returns the trusted roots. The slice is a copy; the certificates
// must not be modified.
func (a *Authority) Bundle() []*x509.Certificate {
	return append([]*x509.Certificate(nil), a.state.Load().roots...)
}

// BundlePool returns the trusted roots as a pool, for TLS verification. The
// pool is shared and must not be modified.
func (a *Authority) BundlePool() *x509.CertPool { return a.state.Load().pool }

// SigningCertificate returns the certificate that signs leaves: the
// self-signed root, or the plugged-in ca-cert.pem.
func (a *Authority) SigningCertificate() *x509.Certificate { return a.state.Load().caCert }

// PluggedIn reports whether the signing CA came from Istio cacerts files.
func (a *Authority) PluggedIn() bool { return a.state.Load().pluggedIn }

// TokenVerifier returns the verifier of bootstrap tokens issued for this
// Authority's data dir.
func (a *Authority) TokenVerifier() *TokenVerifier { return a.tokens }

// DataDir returns the directory holding the CA's key material.
func (a *Authority) DataDir() string { return a.cfg.DataDir }

// Clock returns the Authority's clock, so that code verifying what it issued
// agrees with it about the time.
func (a *Authority) Clock() func() time.Time { return a.cfg.Clock }

func (a *Authority) path(name string) string { return filepath.Join(a.cfg.DataDir, name) }

// writeBundle writes root-cert.pem when its content differs from roots.
func (a *Authority) writeBundle(roots []*x509.Certificate) error {
	want := pemcert.Encode(roots...)
	if have, err := os.ReadFile(a.path(RootCertFile)); err == nil && string(have) == string(want) {
		return nil
	}
	if err := writeFileAtomic(a.path(RootCertFile), want, 0o644); err != nil {
		return fmt.Errorf("ca: write trust bundle: %w", err)
	}
	return nil
}
