package kubeauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/csr"
	"github.com/zmesh/zmesh/internal/identity"
)

// DefaultAudience is the audience Istio's agents request their CA token
// for, and the one reviews ask for by default.
const DefaultAudience = "istio-ca"

// Defaults for Config fields left zero.
const (
	DefaultCacheTTL  = 30 * time.Second
	DefaultCacheSize = 10000
	DefaultTimeout   = 5 * time.Second
)

// MaxTokenSize bounds a token before it is sent for review; projected
// service-account tokens are about 1 KiB.
const MaxTokenSize = 16 << 10

// ErrRejected is wrapped by every refusal of a token the API reviewed: not
// authenticated, for another audience, or not a service account's.
var ErrRejected = errors.New("service-account token rejected")

// Config configures an Authenticator.
type Config struct {
	// Reviews creates TokenReviews, e.g.
	// clientset.AuthenticationV1().TokenReviews(). Required. The control
	// plane's account needs "create" on tokenreviews
	// (system:auth-delegator).
	Reviews authv1client.TokenReviewInterface
	// TrustDomain names the identities. Required.
	TrustDomain spiffeid.TrustDomain
	// Audiences the token must be for; default [DefaultAudience]. A token
	// for any other audience is refused by the API.
	Audiences []string
	// CacheTTL is how long a successful review is reused, never past the
	// token's own expiry; default DefaultCacheTTL, negative disables. It is
	// also how long a token of a just-deleted service account may still be
	// honoured.
	CacheTTL time.Duration
	// CacheSize bounds the cached reviews; default DefaultCacheSize.
	CacheSize int
	// Timeout bounds one review; default DefaultTimeout.
	Timeout time.Duration
	// Clock is the cache's time; default time.Now.
	Clock func() time.Time
	// Registerer receives zmesh_ca_token_reviews_total; nil registers none.
	Registerer prometheus.Registerer
}

// Authenticator is a csr.Authenticator for Kubernetes service-account
// tokens. It is safe for concurrent use.
type Authenticator struct {
	reviews   authv1client.TokenReviewInterface
	td        spiffeid.TrustDomain
	audiences []string
	timeout   time.Duration
	clock     func() time.Time
	cache     *cache
	results   *prometheus.CounterVec
}

// New returns an Authenticator for cfg.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Reviews == nil {
		return nil, errors.New("kubeauth: no TokenReview client")
	}
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("kubeauth: empty trust domain")
	}
	if len(cfg.Audiences) == 0 {
		cfg.Audiences = []string{DefaultAudience}
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	a := &Authenticator{
		reviews:   cfg.Reviews,
		td:        cfg.TrustDomain,
		audiences: slices.Clone(cfg.Audiences),
		timeout:   cfg.Timeout,
		clock:     cfg.Clock,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zmesh_ca_token_reviews_total",
			Help: "Service-account tokens checked by the CA, by result: authenticated, rejected, error (the Kubernetes API did not answer), cached (a recent review reused).",
		}, []string{"result"}),
	}
	if cfg.CacheTTL > 0 {
		a.cache = newCache(cfg.CacheTTL, cfg.CacheSize)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(a.results); err != nil {
			return nil, fmt.Errorf("kubeauth: register metrics: %w", err)
		}
	}
	return a, nil
}

// Authenticate reviews the request's service-account token. A request
// without a bearer JWT yields csr.ErrNoCredentials, so bootstrap tokens
// and certificates are left to the other authenticators.
func (a *Authenticator) Authenticate(ctx context.Context) (spiffeid.ID, error) {
	token, ok := findJWT(csr.BearerTokens(ctx))
	if !ok {
		return spiffeid.ID{}, csr.ErrNoCredentials
	}
	if len(token) > MaxTokenSize {
		a.results.WithLabelValues("rejected").Inc()
		return spiffeid.ID{}, fmt.Errorf("kubeauth: %w: longer than %d bytes", ErrRejected, MaxTokenSize)
	}
	key := sha256.Sum256([]byte(token))
	now := a.clock()
	if id, ok := a.cache.get(key, now); ok {
		a.results.WithLabelValues("cached").Inc()
		return id, nil
	}
	id, err := a.review(ctx, token)
	switch {
	case errors.Is(err, csr.ErrUnavailable):
		a.results.WithLabelValues("error").Inc()
		return spiffeid.ID{}, err
	case err != nil:
		a.results.WithLabelValues("rejected").Inc()
		return spiffeid.ID{}, err
	}
	a.results.WithLabelValues("authenticated").Inc()
	a.cache.put(key, id, now, tokenExpiry(token))
	return id, nil
}

// review asks the API who token belongs to.
func (a *Authenticator) review(ctx context.Context, token string) (spiffeid.ID, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	tr, err := a.reviews.Create(ctx, &authv1.TokenReview{
		Spec: authv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("kubeauth: token review: %w: %v", csr.ErrUnavailable, err)
	}
	st := tr.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return spiffeid.ID{}, fmt.Errorf("kubeauth: %w: %s", ErrRejected, reason)
	}
	// The API answers with the audiences it checked, a non-empty subset of
	// those asked for; an answer outside them is not trusted.
	if !slices.ContainsFunc(st.Audiences, func(aud string) bool { return slices.Contains(a.audiences, aud) }) {
		return spiffeid.ID{}, fmt.Errorf("kubeauth: %w: token is not for audience %s", ErrRejected, strings.Join(a.audiences, ","))
	}
	ns, sa, err := ServiceAccountOf(st.User.Username)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("kubeauth: %w: %v", ErrRejected, err)
	}
	id, err := identity.ForServiceAccount(a.td, ns, sa)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("kubeauth: %w: %v", ErrRejected, err)
	}
	return id, nil
}

// ServiceAccountOf splits a Kubernetes user name of the form
// system:serviceaccount:NAMESPACE:NAME; any other user is an error.
func ServiceAccountOf(username string) (ns, sa string, err error) {
	const prefix = "system:serviceaccount:"
	rest, ok := strings.CutPrefix(username, prefix)
	if !ok {
		return "", "", fmt.Errorf("user %q is not a service account", username)
	}
	ns, sa, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return "", "", fmt.Errorf("user %q is not a service account", username)
	}
	return ns, sa, nil
}

// findJWT returns the first bearer value shaped like a JWS compact
// serialization (three base64url parts) that is not a zmesh bootstrap token.
func findJWT(tokens []string) (string, bool) {
	for _, t := range tokens {
		if !ca.IsToken(t) && isJWT(t) {
			return t, true
		}
	}
	return "", false
}

func isJWT(t string) bool {
	parts := strings.Split(t, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
				return false
			}
		}
	}
	return true
}

// tokenExpiry reads the exp claim of a JWT without verifying it. It only
// ever shortens how long a review the API accepted is cached, so a forged
// value gains nothing; zero when absent or unreadable.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}
	}
	exp, err := claims.Exp.Int64()
	if err != nil || exp <= 0 {
		return time.Time{}
	}
	return time.Unix(exp, 0)
}

var _ csr.Authenticator = (*Authenticator)(nil)
