package oidcprovider

import (
	"sync"
	"time"
)

// bearerEntry is a decoded, checked access-token record kept for the gateway's hot path.
type bearerEntry struct {
	// token is the whole token that was verified, compared in constant time on a hit. Keeping it
	// in memory exposes nothing new: a reader of this process's memory also reads the HMAC
	// secret, with which any token can be made.
	token    string
	identity BearerIdentity
	hasScope bool
	audience []audienceURL
}

// bearerCache remembers decoded access tokens so the gate does not read and decode the store on
// every request. It is process-wide, keyed by store directory and token signature, because a
// reload shares the store between configs; every path that deletes an access token (revocation,
// deletion) forgets it here in the same call, and entries die with the token's expiry, so a
// revoked or expired token is refused on the next request.
type bearerCache struct {
	mu      sync.RWMutex
	entries map[bearerKey]*bearerEntry
	max     int
	// forgets counts forget calls: a record read from the store before a revocation must not
	// be cached after it, so put only stores when no forget happened since the read began.
	forgets uint64
}

var bearerTokens = &bearerCache{entries: map[bearerKey]*bearerEntry{}, max: 1 << 14}

// bearerKey identifies a token by store directory and signature.
type bearerKey struct{ dir, signature string }

func bearerCacheKey(dir, signature string) bearerKey { return bearerKey{dir, signature} }

// get returns the entry under key, if any, and the forget count to hand to put.
func (c *bearerCache) get(key bearerKey) (*bearerEntry, uint64) {
	c.mu.RLock()
	e, gen := c.entries[key], c.forgets
	c.mu.RUnlock()
	return e, gen
}

// put stores e unless a forget happened after the get that returned gen.
func (c *bearerCache) put(key bearerKey, e *bearerEntry, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forgets != gen {
		return
	}
	if len(c.entries) >= c.max {
		now := time.Now()
		n := c.max / 10
		for k, old := range c.entries {
			if n <= 0 && now.Before(old.identity.ExpiresAt) {
				break
			}
			delete(c.entries, k)
			n--
		}
	}
	c.entries[key] = e
}

func (c *bearerCache) forget(key bearerKey) {
	c.mu.Lock()
	delete(c.entries, key)
	c.forgets++
	c.mu.Unlock()
}
