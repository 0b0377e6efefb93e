package agent

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/zmesh/zmesh/internal/identity"
)

// DefaultCAServerName is the name the control plane's serving certificate is
// checked against, Istio's name for istiod.
const DefaultCAServerName = "istiod.istio-system.svc"

// KeyType names the kind of private key the agent makes for each
// certificate.
type KeyType string

// Key types. ECDSA P-256 is the default: its handshakes are the cheapest;
// RSA is for peers outside the mesh that verify nothing else.
const (
	KeyECDSAP256 KeyType = "ECDSA-P256"
	KeyRSA2048   KeyType = "RSA-2048"
	KeyRSA3072   KeyType = "RSA-3072"
)

// Config configures an Agent.
type Config struct {
	// CAAddress is the control plane's gRPC address, host:port. Required.
	CAAddress string
	// CARoots verify the control plane's serving certificate and are the
	// initial trust bundle: the certificates of the control plane's
	// root-cert.pem (for example x509bundle.Load(td, path).X509Authorities()).
	// Required.
	CARoots []*x509.Certificate
	// CAServerName is the name expected in the serving certificate; default
	// DefaultCAServerName.
	CAServerName string
	// Token returns the bootstrap token, used when the agent holds no valid
	// certificate. Nil means renewal by certificate only.
	Token func() (string, error)
	// TrustDomain, Namespace and ServiceAccount name the identity the agent
	// expects; a certificate naming any other is refused. Required.
	TrustDomain    spiffeid.TrustDomain
	Namespace      string
	ServiceAccount string
	// RequestedTTL is the lifetime asked of the CA; 0 leaves it to the CA.
	RequestedTTL time.Duration
	// KeyType is the kind of key made for each certificate; default
	// KeyECDSAP256.
	KeyType KeyType
	// RenewAt is the fraction of the validity held (from installation, or
	// NotBefore if later, to NotAfter) after which to renew; default
	// DefaultRenewAt.
	RenewAt float64
	// ExpiryWarning is the fraction of a certificate's lifetime below which
	// a failing renewal logs a warning (once per certificate), ahead of the
	// error logged (once) when it expires; default DefaultExpiryWarning.
	// Keep it below 1-RenewAt, so that the warning means renewals have been
	// failing for a while, not that the first one did.
	ExpiryWarning float64
	// MinRetry and MaxRetry bound the backoff between failed requests;
	// defaults 200ms and 30s.
	MinRetry, MaxRetry time.Duration
	// CallTimeout bounds one CreateCertificate call; default 10s.
	CallTimeout time.Duration
	// Clock returns the current time for validity and schedule decisions;
	// default time.Now.
	Clock func() time.Time
	// Logger receives rotation events; default discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.CAServerName == "" {
		c.CAServerName = DefaultCAServerName
	}
	if c.KeyType == "" {
		c.KeyType = KeyECDSAP256
	}
	if !(c.RenewAt > 0 && c.RenewAt < 1) {
		c.RenewAt = DefaultRenewAt
	}
	if !(c.ExpiryWarning > 0 && c.ExpiryWarning < 1) {
		c.ExpiryWarning = DefaultExpiryWarning
	}
	if c.MinRetry <= 0 {
		c.MinRetry = 200 * time.Millisecond
	}
	if c.MaxRetry <= 0 {
		c.MaxRetry = 30 * time.Second
	}
	c.MaxRetry = max(c.MaxRetry, c.MinRetry)
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports a configuration the Agent cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.CAAddress == "" {
		errs = append(errs, errors.New("empty CA address"))
	}
	if len(c.CARoots) == 0 {
		errs = append(errs, errors.New("no CA roots"))
	}
	if c.RenewAt < 0 || c.RenewAt >= 1 {
		errs = append(errs, fmt.Errorf("renew-at fraction %v outside (0, 1)", c.RenewAt))
	}
	if c.ExpiryWarning < 0 || c.ExpiryWarning >= 1 {
		errs = append(errs, fmt.Errorf("expiry-warning fraction %v outside (0, 1)", c.ExpiryWarning))
	}
	if c.RequestedTTL < 0 {
		errs = append(errs, errors.New("negative requested TTL"))
	}
	switch c.KeyType {
	case "", KeyECDSAP256, KeyRSA2048, KeyRSA3072:
	default:
		errs = append(errs, fmt.Errorf("unsupported key type %q", c.KeyType))
	}
	if _, err := identity.ForServiceAccount(c.TrustDomain, c.Namespace, c.ServiceAccount); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent: invalid config: %w", err)
	}
	return nil
}
