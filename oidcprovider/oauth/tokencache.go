package oauth

import (
	"crypto/sha256"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
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
// expiry, so a revoked or expired token is refused on the next request. On a store several nodes
// share (store.Changes), Follow makes it forget what any node deletes, and answer nothing from
// memory while the node is not receiving the changes.
//
// It is a map under a read-write lock rather than a library cache: the gate reads it on every
// request, and BenchmarkBearerCheck measures the read at well under a microsecond with no
// allocation; the generation counters that keep a revoked token from being re-cached by a racing
// read are not something a general-purpose cache offers.
type TokenCache struct {
	mu      sync.RWMutex
	entries map[string]*cachedToken
	max     int
	// gens count the forgets of the signatures that hash to each stripe, and epoch the times
	// everything was forgotten: a record read from the store before a revocation must not be
	// cached after it, so put only stores when neither moved since before the read began.
	// Bumped under mu; read without it.
	gens  [genStripes]atomic.Uint64
	epoch atomic.Uint64
	seed  maphash.Seed
	// feed, when set (Follow), tells whether this node receives the shared store's changes.
	feed atomic.Pointer[changeFeed]
}

// genStripes is how many generation counters a TokenCache spreads signatures over: a forget
// holds back the caching of only the reads of its stripe, so a cluster's steady stream of
// changes does not keep every racing read from caching.
const genStripes = 256

// changeFeed tells a cache that follows a shared store's changes whether it may answer from
// memory.
type changeFeed struct{ trusted func() bool }

// unfollowed is the feed of a cache that stopped following its store's changes: it must not
// trust its memory any more.
var unfollowed = &changeFeed{trusted: func() bool { return false }}

// NewTokenCache returns a cache of at most max entries.
func NewTokenCache(max int) *TokenCache {
	return &TokenCache{entries: map[string]*cachedToken{}, max: max, seed: maphash.MakeSeed()}
}

// get returns the entry for signature, if any. While the node is not receiving the shared
// store's changes it returns nothing: the caller reads the store.
func (c *TokenCache) get(signature string) *cachedToken {
	if f := c.feed.Load(); f != nil && !f.trusted() {
		return nil
	}
	c.mu.RLock()
	e := c.entries[signature]
	c.mu.RUnlock()
	return e
}

// gen is the generation to hand to put for signature: take it before reading the store.
func (c *TokenCache) gen(signature string) uint64 {
	return c.epoch.Load() + c.gens[c.stripe(signature)].Load()
}

func (c *TokenCache) stripe(signature string) uint64 {
	return maphash.String(c.seed, signature) % genStripes
}

// put stores e unless signature was forgotten (or everything was) after the gen call that
// returned gen. When full, it drops expired entries and then a tenth of the rest.
func (c *TokenCache) put(signature string, e *cachedToken, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch.Load()+c.gens[c.stripe(signature)].Load() != gen {
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
	c.gens[c.stripe(signature)].Add(1)
	c.mu.Unlock()
}

// ForgetAll drops every token, and keeps every read that began before from caching.
func (c *TokenCache) ForgetAll() {
	c.mu.Lock()
	clear(c.entries)
	c.epoch.Add(1)
	c.mu.Unlock()
}

// Follow makes the cache follow ch, the change feed of the store its tokens are read from: the
// end of an access token on any node (the deletion of its end key, AccessTokenEndPrefix, beside
// its record) forgets it, a nil key forgets everything, and while ch is not Trusted the cache answers nothing from memory. It returns the
// function that stops following, after which the cache answers nothing from memory.
func (c *TokenCache) Follow(ch store.Changes) (stop func()) {
	c.feed.Store(&changeFeed{trusted: ch.Trusted})
	c.ForgetAll() // what was cached before may have been ended unseen
	unwatch := ch.Watch([]byte(AccessTokenEndPrefix), func(key []byte) {
		if key == nil {
			c.ForgetAll()
			return
		}
		c.Forget(string(key[len(AccessTokenEndPrefix):]))
	})
	return func() {
		unwatch()
		c.feed.Store(unfollowed)
	}
}

// Len is the number of cached tokens.
func (c *TokenCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
