package kubeauth

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// cache remembers successful reviews by the SHA-256 of the token, so the
// token itself is never kept. It is bounded: when full, expired entries
// are dropped, and if none has expired the new review is simply not cached.
// A nil cache caches nothing.
type cache struct {
	ttl  time.Duration
	size int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]entry
}

type entry struct {
	id      spiffeid.ID
	expires time.Time
}

func newCache(ttl time.Duration, size int) *cache {
	return &cache{ttl: ttl, size: size, entries: map[[sha256.Size]byte]entry{}}
}

func (c *cache) get(key [sha256.Size]byte, now time.Time) (spiffeid.ID, bool) {
	if c == nil {
		return spiffeid.ID{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return spiffeid.ID{}, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, key)
		return spiffeid.ID{}, false
	}
	return e.id, true
}

// put caches id until now+ttl, or until tokenExp if that is sooner (and
// not at all if the token is about to expire).
func (c *cache) put(key [sha256.Size]byte, id spiffeid.ID, now, tokenExp time.Time) {
	if c == nil {
		return
	}
	expires := now.Add(c.ttl)
	if !tokenExp.IsZero() && tokenExp.Before(expires) {
		expires = tokenExp
	}
	if !now.Before(expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.size {
			return
		}
	}
	c.entries[key] = entry{id: id, expires: expires}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
