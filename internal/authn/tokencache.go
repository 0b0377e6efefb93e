package authn

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTokenCacheSize is how many verified tokens a RequestPolicy keeps
// by default. Clients send the same token on request after request until
// it expires, so a few hundred callers per workload fit, while the memory a
// policy can hold stays bounded (an entry is the decoded claims, typically
// one or two KiB).
const DefaultTokenCacheSize = 1024

// maxCachedTokenSize bounds the tokens the cache keeps. Larger ones (rare:
// a token stuffed with claims) are verified every time, so that a few of
// them cannot pin much memory.
const maxCachedTokenSize = 8 << 10

// tokenDigest is the cache key: the SHA-256 of the token as sent. A digest
// rather than the token itself keeps bearer credentials out of the cache's
// memory, and makes a lookup compare 32 bytes that a client cannot steer
// instead of secret strings a timing attack could probe. SHA-256's
// collision resistance is what makes "same digest" mean "same token".
type tokenDigest [sha256.Size]byte

// verifiedToken is what one successful verification established: rule
// accepted the token, whose signature a key of keys verified. On a later
// request with the same token only what can change is checked again: the
// time (exp, nbf), the rule the issuer and location pick, and whether the
// rule's key set is still this one. It is immutable once built, but for
// the cache's bookkeeping.
type verifiedToken struct {
	rule *Rule
	// keys is the key set that verified the signature. A KeySet is
	// immutable and a JWKS refresh or rotation yields a new one, so a
	// pointer comparison tells whether the keys changed; holding the
	// pointer keeps the old set alive, so its address cannot be reused.
	keys      *KeySet
	pt        *parsedToken // raw cleared: the cache keeps no token
	principal string
	// claimHeaders are the rule's outputClaimToHeaders values, taken from
	// the claims as sent, before pt.claims was split on whitespace.
	claimHeaders []HeaderValue

	// Cache bookkeeping: digest and slot are guarded by tokenCache.mu; ref
	// is the CLOCK bit, set by readers under the read lock.
	digest tokenDigest
	slot   int
	ref    atomic.Bool
}

// newVerifiedToken records that rule and keys verified pt, which it takes
// over: its claims are split on whitespace for authorization after the
// claim headers are read, and its raw token is dropped.
func newVerifiedToken(rule *Rule, keys *KeySet, pt *parsedToken) *verifiedToken {
	v := &verifiedToken{rule: rule, keys: keys, pt: pt, principal: pt.iss + "/" + pt.sub}
	for _, ch := range rule.claimHeaders {
		if val, ok := claimHeaderValue(lookupClaim(pt.claims, ch.claim)); ok {
			v.claimHeaders = append(v.claimHeaders, HeaderValue{Name: ch.header, Value: val})
		}
	}
	// Split after the claim headers, which carry claims as sent.
	for _, path := range rule.spaceClaims {
		splitClaim(pt.claims, path)
	}
	pt.raw = ""
	return v
}

// tokenCache remembers the tokens a RequestPolicy has verified, so that a
// token sent again costs a hash and a map lookup instead of a JSON decode
// and a signature check (tens of microseconds for ES256 or RS256). Only
// successes are stored: a token that fails is verified, and fails, every
// time. It holds at most max entries and evicts with CLOCK (second chance):
// an entry used since the hand last passed survives one more turn. It is
// safe for concurrent use; lookups share a read lock.
type tokenCache struct {
	max     int // entries kept
	maxSize int // longest token cached, in bytes

	mu      sync.RWMutex
	entries map[tokenDigest]*verifiedToken
	ring    []*verifiedToken // the CLOCK; grows to max, then slots are reused
	hand    int
}

// newTokenCache returns a cache of max entries for tokens of up to
// maxToken bytes (and never more than maxCachedTokenSize); nil, which
// caches nothing, when max is not positive.
func newTokenCache(max, maxToken int) *tokenCache {
	if max <= 0 {
		return nil
	}
	return &tokenCache{
		max:     max,
		maxSize: min(maxToken, maxCachedTokenSize),
		entries: map[tokenDigest]*verifiedToken{},
	}
}

// digest returns the key of tok, and false when tok is not to be cached
// (no cache, or too large) so that the caller skips hashing it at all.
// The conversion copies the token once; the request already holds it as
// a string for as long, so hashing in place through unsafe would save one
// short-lived allocation and nothing of the credential's lifetime.
func (c *tokenCache) digest(tok string) (tokenDigest, bool) {
	if c == nil || len(tok) > c.maxSize {
		return tokenDigest{}, false
	}
	return sha256.Sum256([]byte(tok)), true
}

// get returns the entry of d, or nil, and marks it used.
func (c *tokenCache) get(d tokenDigest) *verifiedToken {
	c.mu.RLock()
	v := c.entries[d]
	c.mu.RUnlock()
	if v != nil && !v.ref.Load() {
		v.ref.Store(true)
	}
	return v
}

// put stores v under d, replacing an entry of the same token, or taking
// the slot of the first entry the hand finds unused since its last turn.
func (c *tokenCache) put(d tokenDigest, v *verifiedToken) {
	v.digest = d
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[d]; ok {
		v.slot = old.slot
	} else if len(c.ring) < c.max {
		v.slot = len(c.ring)
		c.ring = append(c.ring, nil)
	} else {
		// Readers may set ref bits while the hand turns, so bound the
		// sweep: after a full turn every bit has been cleared once and the
		// entry under the hand goes, used or not.
		for range c.max {
			if !c.ring[c.hand].ref.Swap(false) {
				break
			}
			c.hand = (c.hand + 1) % c.max
		}
		v.slot = c.hand
		delete(c.entries, c.ring[c.hand].digest)
		c.hand = (c.hand + 1) % c.max
	}
	c.ring[v.slot] = v
	c.entries[d] = v
}

// len returns the number of entries.
func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// cachedResult answers for a token p has verified before, when nothing
// that decided that verdict has changed; ok false sends the caller down
// the full path, which then decides, exactly as if nothing were cached.
// It reproduces the full path's choice: the first rule, in policy order,
// of the token's issuer that reads a location the token was found at. An
// earlier such rule than the cached one is passed over only when it would
// refuse the token whatever the time or the keys (wrong audience, unusable
// inline keys); otherwise the full path must try it.
func (p *RequestPolicy) cachedResult(ctx context.Context, d tokenDigest, ft foundToken, keys KeySource, now time.Time) (Result, bool) {
	v := p.tokens.get(d)
	if v == nil {
		return Result{}, false
	}
	pt := v.pt
	for _, rule := range p.rules {
		if rule.issuer != pt.iss || !rule.reads(ft.locs) {
			continue
		}
		if rule != v.rule {
			if !pt.audienceAllowed(rule.audiences) || rule.inlineErr != nil {
				continue
			}
			return Result{}, false
		}
		if pt.checkTime(now, p.skew) != 0 {
			return Result{}, false
		}
		ks := rule.inline
		if ks == nil && keys != nil {
			// Asked as the full path would, so JWKS refreshes and their
			// rate limits go on as before; a new set means new keys.
			var err error
			if ks, err = keys.Keys(ctx, rule, pt.kid); err != nil {
				return Result{}, false
			}
		}
		if ks == nil || ks != v.keys {
			return Result{}, false
		}
		return p.result(v, ft), true
	}
	return Result{}, false
}
