package ca

import (
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// KeyType names the kind of key the CA generates for a self-signed root.
type KeyType string

const (
	// KeyECDSAP256 is an ECDSA key on NIST P-256, the default.
	KeyECDSAP256 KeyType = "ECDSA-P256"
	// KeyRSA2048 is a 2048-bit RSA key, for peers that cannot verify ECDSA.
	KeyRSA2048 KeyType = "RSA-2048"
	// KeyRSA3072 is a 3072-bit RSA key.
	KeyRSA3072 KeyType = "RSA-3072"
)

// Defaults for Config fields left zero.
const (
	DefaultTTL     = 24 * time.Hour
	DefaultMaxTTL  = 90 * 24 * time.Hour
	DefaultRootTTL = 10 * 365 * 24 * time.Hour
)

// Config configures an Authority. The zero value of every field but DataDir
// and TrustDomain is usable.
type Config struct {
	// DataDir holds the CA key material. It is created (mode 0700) if missing.
	DataDir string
	// TrustDomain is the trust domain of every identity the CA signs.
	TrustDomain spiffeid.TrustDomain
	// KeyType is the key of a newly created self-signed root; default ECDSA P-256.
	// It has no effect on an existing root or on plugged-in cacerts.
	KeyType KeyType
	// DefaultTTL is the lifetime of a workload certificate when the request
	// does not ask for one; default 24h.
	DefaultTTL time.Duration
	// MaxTTL caps any requested lifetime; default 90 days.
	MaxTTL time.Duration
	// RootTTL is the lifetime of a newly created self-signed root; default 10 years.
	RootTTL time.Duration
	// Clock returns the current time; default time.Now. Every validity
	// decision (issuance, expiry, token checks) reads it.
	Clock func() time.Time
}

func (c Config) withDefaults() Config {
	if c.KeyType == "" {
		c.KeyType = KeyECDSAP256
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = min(DefaultTTL, c.MaxTTL)
	}
	if c.RootTTL == 0 {
		c.RootTTL = DefaultRootTTL
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// Validate reports a configuration the Authority cannot run with.
func (c Config) Validate() error { return c.validate(true) }

// validate checks c; a CA whose material is in memory (New) needs no data
// dir.
func (c Config) validate(needDir bool) error {
	c = c.withDefaults()
	var errs []error
	if needDir && c.DataDir == "" {
		errs = append(errs, errors.New("empty data dir"))
	}
	if c.TrustDomain.IsZero() {
		errs = append(errs, errors.New("empty trust domain"))
	}
	switch c.KeyType {
	case KeyECDSAP256, KeyRSA2048, KeyRSA3072:
	default:
		errs = append(errs, fmt.Errorf("unsupported key type %q", c.KeyType))
	}
	if c.DefaultTTL < 0 || c.MaxTTL < 0 || c.RootTTL < 0 {
		errs = append(errs, errors.New("negative lifetime"))
	}
	if c.DefaultTTL > c.MaxTTL {
		errs = append(errs, fmt.Errorf("default TTL %s exceeds max TTL %s", c.DefaultTTL, c.MaxTTL))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ca: invalid config: %w", err)
	}
	return nil
}
