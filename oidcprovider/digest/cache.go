package digest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Fingerprint identifies a configured digest without revealing it.
type Fingerprint [sha256.Size]byte

// FingerprintOf is the fingerprint of a digest as configured (e.g. "$pbkdf2-sha512$…").
func FingerprintOf(digest string) Fingerprint { return sha256.Sum256([]byte(digest)) }

// cacheKey identifies one (id, digest, presented secret) combination.
type cacheKey [sha256.Size]byte

type cacheEntry struct {
	id      string
	digest  Fingerprint
	expires atomic.Int64 // unix nanoseconds; pushed forward on every use
}

// Cache remembers secrets (client secrets, user passwords) that passed a full digest check, so
// a monitor that authenticates every minute with a pbkdf2-sha512 secret, or a script sending a
// user's Basic credentials on every request, does not cost a core each time. An entry belongs to
// an id: a client id, or "user:" and a username.
//
// It holds no secret and nothing cheaper to brute-force than the digest: an entry is keyed by
// HMAC-SHA256, under a random key that lives only in this process's memory, of (id, digest,
// presented secret), and nothing of it is written to disk. Only successful checks are stored, so
// wrong guesses cannot evict good entries; an entry lives for the TTL after its last use (a
// client that keeps using its secret keeps it remembered); concurrent identical checks share one
// digest run; Retain drops the entries of an id whose digest changed. The zero value is not
// usable; call NewCache.
//
// It is a small map rather than a library cache: Retain must walk the entries to drop those of a
// changed client, and a stored match must be there for the next request, which ristretto (already
// linked, with asynchronous, admission-filtered sets and no iteration) does not promise.
type Cache struct {
	hmacKey []byte
	maxSize int
	ttl     time.Duration

	mu      sync.RWMutex
	entries map[cacheKey]*cacheEntry
	group   singleflight.Group
	now     func() time.Time
}

// NewCache returns a cache of at most maxSize entries, each remembered for ttl after its last
// use.
func NewCache(maxSize int, ttl time.Duration) *Cache {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (it crashes the program instead)
	return &Cache{hmacKey: k, maxSize: maxSize, ttl: ttl, entries: make(map[cacheKey]*cacheEntry), now: time.Now}
}

func (c *Cache) key(id, digest, secret string) cacheKey {
	m := hmac.New(sha256.New, c.hmacKey)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(digest))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	var k cacheKey
	m.Sum(k[:0])
	return k
}

// lookup returns whether k is remembered and unexpired, extending its life when it is.
func (c *Cache) lookup(k cacheKey) bool {
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok {
		return false
	}
	now := c.now()
	if now.UnixNano() >= e.expires.Load() {
		return false
	}
	e.expires.Store(now.Add(c.ttl).UnixNano())
	return true
}

// Remembered reports whether the secret was verified for this id and digest and is still
// remembered, and keeps it remembered for another TTL. It costs one HMAC and never runs the
// digest.
func (c *Cache) Remembered(id, digest, secret string) bool {
	return c.lookup(c.key(id, digest, secret))
}

// Verify returns whether secret matches, asking check (the full digest comparison) only when the
// answer is not remembered. Concurrent calls with the same arguments share one check. A match is
// remembered; a mismatch is not. cached tells whether the answer came from memory.
func (c *Cache) Verify(id, digest, secret string, check func() bool) (ok, cached bool) {
	k := c.key(id, digest, secret)
	if c.lookup(k) {
		return true, true
	}
	v, _, _ := c.group.Do(string(k[:]), func() (any, error) {
		if !check() {
			return false, nil
		}
		e := &cacheEntry{id: id, digest: FingerprintOf(digest)}
		e.expires.Store(c.now().Add(c.ttl).UnixNano())
		c.store(k, e)
		return true, nil
	})
	return v.(bool), false
}

func (c *Cache) store(k cacheKey, e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.maxSize {
		c.evictLocked()
	}
	c.entries[k] = e
}

// evictLocked drops expired entries, then, if still full, the entries closest to expiry (the
// least recently used).
func (c *Cache) evictLocked() {
	now := c.now().UnixNano()
	for k, e := range c.entries {
		if now >= e.expires.Load() {
			delete(c.entries, k)
		}
	}
	for len(c.entries) >= c.maxSize {
		var oldest cacheKey
		var oldestAt int64
		first := true
		for k, e := range c.entries {
			if exp := e.expires.Load(); first || exp < oldestAt {
				oldest, oldestAt, first = k, exp, false
			}
		}
		delete(c.entries, oldest)
	}
}

// Retain drops every entry whose id is not in current or whose digest fingerprint differs from
// the id's current one: a removed client, or one whose secret changed on reload, is forgotten
// (and so is every id current does not name).
func (c *Cache) Retain(current map[string]Fingerprint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if fp, ok := current[e.id]; !ok || fp != e.digest {
			delete(c.entries, k)
		}
	}
}

// Len is the number of remembered entries.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
