package ca

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/zmesh/zmesh/internal/identity"
)

// Bootstrap tokens let a machine outside Kubernetes get its first
// certificate. A token is
//
//	zmesh1.BASE64URL(JSON claims).BASE64URL(HMAC-SHA256(key, "zmesh1." + claims part))
//
// with a 32-byte key kept (mode 0600) in the CA's data dir: only someone who
// can read the CA's data dir can mint one, and only this CA accepts it. A
// token may be used until it expires (a workload that restarts presents it
// again), like a Kubernetes service-account token; keep lifetimes short.

// TokenPrefix starts every bootstrap token, so an authenticator can tell one
// from a Kubernetes JWT without trying to verify it.
const TokenPrefix = "zmesh1."

// MaxTokenSize bounds a token before any parsing.
const MaxTokenSize = 4 << 10

const tokenKeySize = 32

// maxTokenSkew is how far in the future a token's issue time may lie.
const maxTokenSkew = 5 * time.Minute

// Sentinel token errors; callers branch on them for metrics and logs.
var (
	ErrTokenMalformed = errors.New("malformed bootstrap token")
	ErrTokenSignature = errors.New("bootstrap token signature does not verify")
	ErrTokenExpired   = errors.New("bootstrap token expired")
	ErrNoTokenKey     = errors.New("no bootstrap token key")
)

// TokenClaims is what a bootstrap token asserts.
type TokenClaims struct {
	Namespace      string `json:"ns"`
	ServiceAccount string `json:"sa"`
	IssuedAt       int64  `json:"iat"`
	Expiry         int64  `json:"exp"`
	// ID is random, so two tokens for one identity differ and a leaked one
	// can be named in an audit log.
	ID string `json:"jti"`
}

// IssueToken mints a bootstrap token for ns/sa valid for ttl, signed with the
// key in dataDir. The key is created by Load (the control plane's first
// start); IssueToken never creates one, so a typo in --data-dir fails with
// ErrNoTokenKey instead of minting tokens no CA accepts.
func IssueToken(dataDir, ns, sa string, ttl time.Duration) (string, error) {
	key, err := readTokenKey(dataDir)
	if err != nil {
		return "", err
	}
	return issueToken(key, time.Now(), ns, sa, ttl)
}

// IssueToken mints a bootstrap token for ns/sa with the Authority's key and
// clock; for in-process callers such as `zmesh up`.
func (a *Authority) IssueToken(ns, sa string, ttl time.Duration) (string, error) {
	return issueToken(a.tokens.key, a.cfg.Clock(), ns, sa, ttl)
}

func issueToken(key []byte, now time.Time, ns, sa string, ttl time.Duration) (string, error) {
	if err := identity.ValidateServiceAccount(ns, sa); err != nil {
		return "", fmt.Errorf("ca: issue token: %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("ca: issue token for %s/%s: lifetime must be positive, got %s", ns, sa, ttl)
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("ca: issue token: %w", err)
	}
	claims := TokenClaims{
		Namespace:      ns,
		ServiceAccount: sa,
		IssuedAt:       now.Unix(),
		Expiry:         now.Add(ttl).Unix(),
		ID:             hex.EncodeToString(jti[:]),
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("ca: issue token: %w", err)
	}
	signed := TokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(key, signed)), nil
}

func tokenMAC(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// IsToken reports whether s looks like a bootstrap token (has TokenPrefix);
// it says nothing about validity.
func IsToken(s string) bool { return strings.HasPrefix(s, TokenPrefix) }

// ParseToken splits and decodes a token without verifying it. It is bounded
// (MaxTokenSize), strict (canonical base64, no unknown JSON fields) and
// returns ErrTokenMalformed for anything else.
func ParseToken(token string) (claims TokenClaims, signed string, mac []byte, err error) {
	if len(token) > MaxTokenSize {
		return TokenClaims{}, "", nil, fmt.Errorf("%w: longer than %d bytes", ErrTokenMalformed, MaxTokenSize)
	}
	if !IsToken(token) {
		return TokenClaims{}, "", nil, fmt.Errorf("%w: missing %q prefix", ErrTokenMalformed, TokenPrefix)
	}
	dot := strings.LastIndexByte(token, '.')
	if dot < len(TokenPrefix) {
		return TokenClaims{}, "", nil, fmt.Errorf("%w: missing signature", ErrTokenMalformed)
	}
	signed = token[:dot]
	payloadPart := signed[len(TokenPrefix):]
	mac, err = base64.RawURLEncoding.Strict().DecodeString(token[dot+1:])
	if err != nil || len(mac) != sha256.Size {
		return TokenClaims{}, "", nil, fmt.Errorf("%w: bad signature encoding", ErrTokenMalformed)
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(payloadPart)
	if err != nil {
		return TokenClaims{}, "", nil, fmt.Errorf("%w: bad claims encoding", ErrTokenMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&claims); err != nil {
		return TokenClaims{}, "", nil, fmt.Errorf("%w: bad claims", ErrTokenMalformed)
	}
	if dec.More() {
		return TokenClaims{}, "", nil, fmt.Errorf("%w: trailing data after claims", ErrTokenMalformed)
	}
	return claims, signed, mac, nil
}

// TokenVerifier checks bootstrap tokens minted with one key. It is safe for
// concurrent use.
type TokenVerifier struct {
	key   []byte
	td    spiffeid.TrustDomain
	clock func() time.Time
}

// NewTokenVerifier returns a verifier for tokens signed with key, naming
// identities in td. clock nil means time.Now.
func NewTokenVerifier(key []byte, td spiffeid.TrustDomain, clock func() time.Time) (*TokenVerifier, error) {
	if len(key) < tokenKeySize {
		return nil, fmt.Errorf("ca: token key is %d bytes, want at least %d", len(key), tokenKeySize)
	}
	if td.IsZero() {
		return nil, errors.New("ca: token verifier: empty trust domain")
	}
	if clock == nil {
		clock = time.Now
	}
	return &TokenVerifier{key: bytes.Clone(key), td: td, clock: clock}, nil
}

// Verify returns the SPIFFE ID a valid token grants. The signature is
// checked (in constant time) before any claim is trusted.
func (v *TokenVerifier) Verify(token string) (spiffeid.ID, error) {
	claims, signed, mac, err := ParseToken(token)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("ca: %w", err)
	}
	if !hmac.Equal(mac, tokenMAC(v.key, signed)) {
		return spiffeid.ID{}, fmt.Errorf("ca: %w", ErrTokenSignature)
	}
	now := v.clock()
	if claims.Expiry <= claims.IssuedAt {
		return spiffeid.ID{}, fmt.Errorf("ca: %w: expiry not after issue time", ErrTokenMalformed)
	}
	if now.Unix() >= claims.Expiry {
		return spiffeid.ID{}, fmt.Errorf("ca: %w at %s (token %s for %s/%s)", ErrTokenExpired,
			time.Unix(claims.Expiry, 0).UTC().Format(time.RFC3339), claims.ID, claims.Namespace, claims.ServiceAccount)
	}
	if time.Unix(claims.IssuedAt, 0).After(now.Add(maxTokenSkew)) {
		return spiffeid.ID{}, fmt.Errorf("ca: %w: issued in the future (token %s)", ErrTokenMalformed, claims.ID)
	}
	id, err := identity.ForServiceAccount(v.td, claims.Namespace, claims.ServiceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("ca: %w: %v", ErrTokenMalformed, err)
	}
	return id, nil
}

func tokenKeyPath(dataDir string) string { return filepath.Join(dataDir, TokenKeyFile) }

// ReadTokenKey returns the bootstrap-token key kept in dataDir, or an error
// wrapping ErrNoTokenKey if there is none.
func ReadTokenKey(dataDir string) ([]byte, error) { return readTokenKey(dataDir) }

func readTokenKey(dataDir string) ([]byte, error) {
	data, err := readBounded(tokenKeyPath(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: %w in %s: start the control plane with this --data-dir once to create it", ErrNoTokenKey, dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: read token key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) < tokenKeySize {
		return nil, fmt.Errorf("ca: token key %s is malformed", tokenKeyPath(dataDir))
	}
	return key, nil
}

// loadOrCreateTokenKey returns the data dir's token key, creating it (0600)
// on first start.
func loadOrCreateTokenKey(dataDir string) ([]byte, error) {
	key, err := readTokenKey(dataDir)
	if err == nil || !errors.Is(err, ErrNoTokenKey) {
		return key, err
	}
	key = make([]byte, tokenKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("ca: generate token key: %w", err)
	}
	enc := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	if err := writeFileAtomic(tokenKeyPath(dataDir), enc, 0o600); err != nil {
		return nil, fmt.Errorf("ca: write token key: %w", err)
	}
	return key, nil
}
