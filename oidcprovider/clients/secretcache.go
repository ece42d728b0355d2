package clients

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Fingerprint identifies a configured secret digest without revealing it.
type Fingerprint [sha256.Size]byte

func fingerprintOf(digest string) Fingerprint { return sha256.Sum256([]byte(digest)) }

// secretKey identifies one (client, digest, presented secret) combination.
type secretKey [sha256.Size]byte

type secretEntry struct {
	clientID string
	digest   Fingerprint
	expires  atomic.Int64 // unix nanoseconds; pushed forward on every use
}

// SecretCache remembers client secrets that passed a full digest check, so a monitor that
// authenticates every minute with a pbkdf2-sha512 secret does not cost a core each time.
//
// It holds no secret and nothing cheaper to brute-force than the client's digest: an entry is
// keyed by HMAC-SHA256, under a random key that lives only in this process's memory, of (client
// id, digest, presented secret), and nothing of it is written to disk. Only successful checks are
// stored, so wrong guesses cannot evict good entries; an entry lives for the TTL after its last
// use (a client that keeps using its secret keeps it remembered); concurrent identical checks
// share one digest run; Retain drops the entries of a client whose digest changed. The zero value
// is not usable; call NewSecretCache.
//
// It is a small map rather than a library cache: Retain must walk the entries to drop those of a
// changed client, and a stored match must be there for the next request, which ristretto (already
// linked, with asynchronous, admission-filtered sets and no iteration) does not promise.
type SecretCache struct {
	hmacKey []byte
	maxSize int
	ttl     time.Duration

	mu      sync.RWMutex
	entries map[secretKey]*secretEntry
	group   singleflight.Group
	now     func() time.Time
}

// NewSecretCache returns a cache of at most maxSize entries, each remembered for ttl after its
// last use.
func NewSecretCache(maxSize int, ttl time.Duration) *SecretCache {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("clients: no randomness: " + err.Error())
	}
	return &SecretCache{hmacKey: k, maxSize: maxSize, ttl: ttl, entries: make(map[secretKey]*secretEntry), now: time.Now}
}

func (c *SecretCache) key(clientID, digest, secret string) secretKey {
	m := hmac.New(sha256.New, c.hmacKey)
	m.Write([]byte(clientID))
	m.Write([]byte{0})
	m.Write([]byte(digest))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	var k secretKey
	m.Sum(k[:0])
	return k
}

// Remembered reports whether the secret was verified for this id and digest within the last
// TTL, without checking anything else (extending its life when it was).
func (c *SecretCache) Remembered(clientID, digest, secret string) bool {
	return c.lookup(c.key(clientID, digest, secret))
}

// lookup returns whether k is remembered and unexpired, extending its life when it is.
func (c *SecretCache) lookup(k secretKey) bool {
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

// Lookup reports whether the secret was verified for this client and digest and is still
// remembered, and keeps it remembered for another TTL. It costs one HMAC and never runs the
// digest.
func (c *SecretCache) Lookup(clientID, digest, secret string) bool {
	return c.lookup(c.key(clientID, digest, secret))
}

// Verify returns whether secret matches, asking check (the full digest comparison) only when the
// answer is not remembered. Concurrent calls with the same arguments share one check. A match is
// remembered; a mismatch is not. cached tells whether the answer came from memory.
func (c *SecretCache) Verify(clientID, digest, secret string, check func() bool) (ok, cached bool) {
	k := c.key(clientID, digest, secret)
	if c.lookup(k) {
		return true, true
	}
	v, _, _ := c.group.Do(string(k[:]), func() (any, error) {
		if !check() {
			return false, nil
		}
		e := &secretEntry{clientID: clientID, digest: fingerprintOf(digest)}
		e.expires.Store(c.now().Add(c.ttl).UnixNano())
		c.store(k, e)
		return true, nil
	})
	return v.(bool), false
}

func (c *SecretCache) store(k secretKey, e *secretEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.maxSize {
		c.evictLocked()
	}
	c.entries[k] = e
}

// evictLocked drops expired entries, then, if still full, the entries closest to expiry (the
// least recently used).
func (c *SecretCache) evictLocked() {
	now := c.now().UnixNano()
	for k, e := range c.entries {
		if now >= e.expires.Load() {
			delete(c.entries, k)
		}
	}
	for len(c.entries) >= c.maxSize {
		var oldest secretKey
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

// Retain drops every entry whose client is not in current or whose digest fingerprint differs
// from the client's current one: a removed client, or one whose secret changed on reload, is
// forgotten.
func (c *SecretCache) Retain(current map[string]Fingerprint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if fp, ok := current[e.clientID]; !ok || fp != e.digest {
			delete(c.entries, k)
		}
	}
}

// Len is the number of remembered entries.
func (c *SecretCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
