// Package secretcache remembers client secrets that passed a full digest check, so a monitor
// that authenticates every minute with a pbkdf2-sha512 secret does not cost a core each time.
//
// The cache holds no secret: an entry is keyed by HMAC-SHA256 under a random per-process key of
// (client id, digest, presented secret). Only successful checks are stored, so wrong guesses
// cannot evict good entries; concurrent identical checks are deduplicated; and entries of a
// client whose configured digest changed are dropped by Retain.
package secretcache

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Key identifies one (client, digest, secret) combination without revealing the secret.
type Key [sha256.Size]byte

type entry struct {
	clientID string
	digest   Key // fingerprint of the configured digest the secret was checked against
	expires  time.Time
}

// Cache is a bounded map of verified secrets. The zero value is not usable; call New.
type Cache struct {
	hmacKey []byte
	maxSize int
	ttl     time.Duration

	mu      sync.RWMutex
	entries map[Key]entry
	group   singleflight.Group
	now     func() time.Time
}

// New returns a cache of at most maxSize entries, each remembered for ttl.
func New(maxSize int, ttl time.Duration) *Cache {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("secretcache: no randomness: " + err.Error())
	}
	return &Cache{hmacKey: k, maxSize: maxSize, ttl: ttl, entries: make(map[Key]entry), now: time.Now}
}

// Fingerprint hashes a configured digest so entries can be tied to it without keeping it.
func Fingerprint(digest string) Key { return sha256.Sum256([]byte(digest)) }

func (c *Cache) key(clientID, digest, secret string) Key {
	m := hmac.New(sha256.New, c.hmacKey)
	m.Write([]byte(clientID))
	m.Write([]byte{0})
	m.Write([]byte(digest))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	var k Key
	m.Sum(k[:0])
	return k
}

// Lookup reports whether the secret was verified for this client and digest and is still
// remembered. It costs one HMAC and never runs the digest.
func (c *Cache) Lookup(clientID, digest, secret string) bool {
	k := c.key(clientID, digest, secret)
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	return ok && c.now().Before(e.expires)
}

// Verify returns whether secret matches, asking check (the full digest comparison) only when the
// answer is not remembered. Concurrent calls with the same arguments share one check. A match is
// remembered; a mismatch is not. cached tells whether the answer came from memory.
func (c *Cache) Verify(clientID, digest, secret string, check func() bool) (ok, cached bool) {
	k := c.key(clientID, digest, secret)
	c.mu.RLock()
	e, hit := c.entries[k]
	c.mu.RUnlock()
	if hit && c.now().Before(e.expires) {
		return true, true
	}
	v, _, _ := c.group.Do(string(k[:]), func() (any, error) {
		if !check() {
			return false, nil
		}
		c.store(k, entry{clientID: clientID, digest: Fingerprint(digest), expires: c.now().Add(c.ttl)})
		return true, nil
	})
	return v.(bool), false
}

func (c *Cache) store(k Key, e entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.maxSize {
		c.evictLocked()
	}
	c.entries[k] = e
}

// evictLocked drops expired entries, then, if still full, the entries closest to expiry.
func (c *Cache) evictLocked() {
	now := c.now()
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for len(c.entries) >= c.maxSize {
		var oldest Key
		var oldestAt time.Time
		first := true
		for k, e := range c.entries {
			if first || e.expires.Before(oldestAt) {
				oldest, oldestAt, first = k, e.expires, false
			}
		}
		delete(c.entries, oldest)
	}
}

// Retain drops every entry whose client is not in current or whose digest fingerprint differs
// from the client's current one: a removed client, or one whose secret changed on reload, is
// forgotten.
func (c *Cache) Retain(current map[string]Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if fp, ok := current[e.clientID]; !ok || fp != e.digest {
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
