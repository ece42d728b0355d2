package oauth

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
)

// secretID identifies an HMAC secret without revealing it.
type secretID [16]byte

func secretIDOf(secret []byte) secretID {
	sum := sha256.Sum256(append([]byte("portcullis token cache\x00"), secret...))
	var id secretID
	copy(id[:], sum[:])
	return id
}

// cachedToken is a decoded, checked access-token record kept for the gateway's hot path.
type cachedToken struct {
	// token is the whole token that was verified, compared in constant time on a hit. Keeping it
	// in memory exposes nothing new: a reader of this process's memory also reads the HMAC
	// secret, with which any token can be made.
	token string
	// secret identifies the HMAC secret the token was verified under: after a secret change the
	// entry is not trusted, so every token minted under the old secret ends at once.
	secret   secretID
	identity BearerIdentity
	hasScope bool
	audience audience.List
	issuedAt time.Time // the token request's time, against the client's revocation cut-off
}

// TokenCache remembers decoded access tokens so the gate does not read and decode the store on
// every request. One belongs to each open store (configs that share the store across a reload
// share it; two stores never do), keyed by token signature. Every path that deletes an access
// token (revocation, deletion) forgets it here in the same call, and entries die with the token's
// expiry, so a revoked or expired token is refused on the next request.
//
// It is a map under a read-write lock rather than a library cache: the gate reads it on every
// request, and BenchmarkBearerCheck measures the read at well under a microsecond with no
// allocation; the generation counter that keeps a revoked token from being re-cached by a racing
// read is not something a general-purpose cache offers.
type TokenCache struct {
	mu      sync.RWMutex
	entries map[string]*cachedToken
	max     int
	// forgets counts Forget calls: a record read from the store before a revocation must not be
	// cached after it, so put only stores when no forget happened since the read began.
	forgets uint64
}

// NewTokenCache returns a cache of at most max entries.
func NewTokenCache(max int) *TokenCache {
	return &TokenCache{entries: map[string]*cachedToken{}, max: max}
}

// get returns the entry for signature, if any, and the forget count to hand to put.
func (c *TokenCache) get(signature string) (*cachedToken, uint64) {
	c.mu.RLock()
	e, gen := c.entries[signature], c.forgets
	c.mu.RUnlock()
	return e, gen
}

// put stores e unless a Forget happened after the get that returned gen. When full, it drops
// expired entries and then a tenth of the rest.
func (c *TokenCache) put(signature string, e *cachedToken, gen uint64) {
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
				continue
			}
			delete(c.entries, k)
			n--
		}
	}
	c.entries[signature] = e
}

// Forget drops the token with signature, and keeps a read that began before from caching it.
func (c *TokenCache) Forget(signature string) {
	c.mu.Lock()
	delete(c.entries, signature)
	c.forgets++
	c.mu.Unlock()
}

// Len is the number of cached tokens.
func (c *TokenCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
