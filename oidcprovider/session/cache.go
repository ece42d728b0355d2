package session

import (
	"sync"
)

// cacheShards spreads the cache over independently locked maps, so concurrent requests of
// different sessions do not wait for one another.
const cacheShards = 64

// Cache keeps decoded sessions in memory, keyed by the SHA-256 of their id, so the gateway's
// cookie check costs a map lookup rather than a store read and a JSON decode on every request.
// It belongs to the open store (one per storage directory, kept across config reloads), and the
// Store that uses it drops an entry whenever it ends, rotates or rewrites the session, so the
// cache never answers for a session the store no longer has. Bounded: a full shard forgets an
// arbitrary entry, which the next request reads back from the store.
type Cache struct {
	shards   [cacheShards]cacheShard
	perShard int
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*Session
}

// NewCache returns a cache of at most about size sessions.
func NewCache(size int) *Cache {
	c := &Cache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*Session)
	}
	return c
}

func (c *Cache) shard(h *[32]byte) *cacheShard { return &c.shards[h[0]%cacheShards] }

// get returns the cached session (shared: callers copy before changing it).
func (c *Cache) get(h *[32]byte) *Session {
	if c == nil {
		return nil
	}
	s := c.shard(h)
	s.mu.RLock()
	v := s.m[*h]
	s.mu.RUnlock()
	return v
}

func (c *Cache) put(h *[32]byte, sess *Session) {
	if c == nil {
		return
	}
	s := c.shard(h)
	s.mu.Lock()
	if _, ok := s.m[*h]; !ok && len(s.m) >= c.perShard {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[*h] = sess
	s.mu.Unlock()
}

func (c *Cache) drop(h *[32]byte) {
	if c == nil {
		return
	}
	s := c.shard(h)
	s.mu.Lock()
	delete(s.m, *h)
	s.mu.Unlock()
}

// Len is how many sessions are cached.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
