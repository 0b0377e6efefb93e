package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults of JWKSCacheConfig.
const (
	// DefaultJWKSRefreshInterval is istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL
	// default: how long a fetched key set is used before it is fetched again.
	DefaultJWKSRefreshInterval = 20 * time.Minute
	// DefaultJWKSMinRefetchInterval is the least time between two fetches of
	// one key set outside the regular refresh: after a token named a kid
	// the set lacks (the issuer may have rotated its keys), or after a
	// failed fetch. It keeps a flood of forged kids, or a dead endpoint,
	// from turning every request into a fetch.
	DefaultJWKSMinRefetchInterval = 10 * time.Second
)

// Fetcher retrieves one document by URL. It is the JWKS cache's only I/O;
// jwksfetch.HTTP is the production one.
type Fetcher interface {
	Fetch(ctx context.Context, uri string) ([]byte, error)
}

// JWKSCacheConfig configures a JWKSCache. The zero value is usable.
type JWKSCacheConfig struct {
	// Fetcher fetches JWKS (and OpenID discovery) documents, such as a
	// jwksfetch.HTTP. nil means none: every fetch fails, so tokens for
	// rules whose keys must be fetched are refused (fail closed).
	Fetcher Fetcher
	// RefreshInterval is how long a key set is used before it is fetched
	// again; 0 means DefaultJWKSRefreshInterval.
	RefreshInterval time.Duration
	// MinRefetchInterval rate-limits fetches for unknown kids and retries
	// after failures; 0 means DefaultJWKSMinRefetchInterval.
	MinRefetchInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one event per failed fetch; nil means slog.Default().
	Logger *slog.Logger
}

// JWKSCache is the KeySource for jwtRules with a jwksUri, or with neither
// jwksUri nor jwks, whose keys it finds by OpenID discovery from the issuer
// as istiod does. Key sets are fetched on first use, kept for
// RefreshInterval, refetched early (at most once per MinRefetchInterval)
// when a token names a kid the set lacks, and kept when a later fetch fails:
// a key set once fetched is never lost to an outage. Until one has been
// fetched, Keys fails and tokens for the rule are refused (fail closed).
//
// It starts no goroutine: fetches happen in the calling request, one per
// key set at a time, bounded by the rule's timeout; while a refresh is in
// flight other requests use the current set instead of waiting. A
// JWKSCache is safe for concurrent use.
type JWKSCache struct {
	fetcher    Fetcher
	refresh    time.Duration
	minRefetch time.Duration
	now        func() time.Time
	log        *slog.Logger
	mu         sync.Mutex
	entries    map[string]*jwksEntry
}

// jwksEntry is the state of one key set (one jwksUri, or one issuer's
// discovery).
type jwksEntry struct {
	mu        sync.Mutex
	set       *KeySet
	fetchedAt time.Time     // last successful fetch
	triedAt   time.Time     // last fetch attempt
	lastErr   error         // of the last attempt, nil after a success
	inflight  chan struct{} // non-nil while a fetch runs; closed when done
}

// NewJWKSCache returns an empty cache configured by cfg.
func NewJWKSCache(cfg JWKSCacheConfig) *JWKSCache {
	c := &JWKSCache{
		fetcher:    cfg.Fetcher,
		refresh:    cfg.RefreshInterval,
		minRefetch: cfg.MinRefetchInterval,
		now:        cfg.Now,
		log:        cfg.Logger,
		entries:    map[string]*jwksEntry{},
	}
	if c.fetcher == nil {
		c.fetcher = noFetcher{}
	}
	if c.refresh <= 0 {
		c.refresh = DefaultJWKSRefreshInterval
	}
	if c.minRefetch <= 0 {
		c.minRefetch = DefaultJWKSMinRefetchInterval
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// Keys implements KeySource.
func (c *JWKSCache) Keys(ctx context.Context, rule *Rule, kid string) (*KeySet, error) {
	key := rule.JWKSURI()
	if key == "" {
		key = "discovery:" + rule.Issuer()
	}
	e := c.entry(key)
	for {
		e.mu.Lock()
		now := c.now()
		mayFetch := e.triedAt.IsZero() || now.Sub(e.triedAt) >= c.minRefetch
		stale := e.set != nil && now.Sub(e.fetchedAt) >= c.refresh
		unknownKid := e.set != nil && kid != "" && !e.set.HasKeyID(kid)
		if ch := e.inflight; ch != nil {
			set := e.set
			e.mu.Unlock()
			// A fetch in flight: keep serving the current set, unless
			// there is none or it lacks the kid, then wait for the fetch.
			if set != nil && !unknownKid {
				return set, nil
			}
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				if set == nil {
					return nil, fmt.Errorf("authn: keys for issuer %q: %w", rule.Issuer(), ctx.Err())
				}
				return set, nil // it lacks kid: verification will say so
			}
		}
		if !mayFetch || (e.set != nil && !stale && !unknownKid) {
			set, err := e.set, e.lastErr
			e.mu.Unlock()
			if set == nil {
				return nil, fmt.Errorf("authn: no keys for issuer %q: %w", rule.Issuer(), err)
			}
			return set, nil
		}
		ch := make(chan struct{})
		e.inflight, e.triedAt = ch, now
		e.mu.Unlock()

		set, err := c.fetch(ctx, rule)

		e.mu.Lock()
		if err != nil {
			e.lastErr = err
			c.log.Warn("jwks fetch failed", "issuer", rule.Issuer(), "jwks_uri", rule.JWKSURI(),
				"policy", rule.Policy(), "kept_previous", e.set != nil, "err", err)
		} else {
			e.set, e.fetchedAt, e.lastErr = set, c.now(), nil
		}
		e.inflight = nil
		close(ch)
		e.mu.Unlock()
		// Loop once more: the entry now answers without fetching, since
		// triedAt is now.
	}
}

func (c *JWKSCache) entry(key string) *jwksEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		e = &jwksEntry{}
		c.entries[key] = e
	}
	return e
}

// fetch gets and parses the rule's key set. It runs detached from the
// caller's cancellation (other requests may be waiting on it) but bounded
// by the rule's timeout.
func (c *JWKSCache) fetch(ctx context.Context, rule *Rule) (*KeySet, error) {
	timeout := rule.Timeout()
	if timeout <= 0 {
		timeout = DefaultJWKSTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	uri := rule.JWKSURI()
	if uri == "" {
		var err error
		if uri, err = c.discover(ctx, rule.Issuer()); err != nil {
			return nil, err
		}
	}
	data, err := c.fetcher.Fetch(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("authn: fetch JWKS %s: %w", uri, err)
	}
	set, err := ParseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("authn: JWKS %s: %w", uri, err)
	}
	return set, nil
}

// discover finds the jwks_uri of an issuer from its OpenID Connect
// discovery document, as istiod does for a jwtRule without keys.
func (c *JWKSCache) discover(ctx context.Context, issuer string) (string, error) {
	if err := checkFetchURL(issuer); err != nil {
		return "", fmt.Errorf("authn: issuer %q has no jwksUri and is not a URL for discovery: %w", issuer, err)
	}
	doc := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	data, err := c.fetcher.Fetch(ctx, doc)
	if err != nil {
		return "", fmt.Errorf("authn: OpenID discovery %s: %w", doc, err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return "", fmt.Errorf("authn: OpenID discovery %s: %w", doc, err)
	}
	if err := checkFetchURL(meta.JWKSURI); err != nil {
		return "", fmt.Errorf("authn: OpenID discovery %s: jwks_uri: %w", doc, err)
	}
	return meta.JWKSURI, nil
}

// checkFetchURL accepts absolute http and https URLs with a host.
func checkFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// Prefetch fetches the key sets of every rule of p that needs one, so that
// the first request after a config push does not wait for them. It returns
// the errors of those that failed; tokens for them will be refused until a
// later fetch succeeds.
func (c *JWKSCache) Prefetch(ctx context.Context, p *RequestPolicy) error {
	var errs []error
	for _, r := range p.Rules() {
		if r.Inline() {
			continue
		}
		if _, err := c.Keys(ctx, r, ""); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var _ KeySource = (*JWKSCache)(nil)

// noFetcher is the Fetcher of a cache configured without one.
type noFetcher struct{}

func (noFetcher) Fetch(context.Context, string) ([]byte, error) {
	return nil, errors.New("no JWKS fetcher configured")
}
