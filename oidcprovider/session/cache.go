package session

import (
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// cacheShards spreads the cache over independently locked maps, so concurrent requests of
// different sessions do not wait for one another.
const cacheShards = 64

// Cache keeps decoded sessions in memory, keyed by the SHA-256 of their id, so the gateway's
// cookie check costs a map lookup rather than a store read and a JSON decode on every request.
// It belongs to the open store (one per storage directory, kept across config reloads), and the
// Store that uses it drops an entry whenever it ends, rotates or rewrites the session, so the
// cache never answers for a session the store no longer has. On a store several nodes share,
// Follow makes it drop what any node ends or rewrites, and answer nothing from memory while the
// node is not receiving the changes. Bounded: a full shard forgets an arbitrary entry, which the
// next request reads back from the store.
type Cache struct {
	shards   [cacheShards]cacheShard
	perShard int
	// epoch counts the times everything was dropped (a nil change); with a shard's gen it keeps
	// a session read from the store before a drop from being cached after it.
	epoch atomic.Uint64
	// trusted, when set (Follow), tells whether this node receives the shared store's changes.
	trusted atomic.Pointer[func() bool]
}

type cacheShard struct {
	mu  sync.RWMutex
	m   map[[32]byte]*Session
	gen atomic.Uint64 // drops in this shard; bumped under mu
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

// get returns the cached session (shared: callers copy before changing it). While the node is
// not receiving the shared store's changes it returns nothing: the caller reads the store.
func (c *Cache) get(h *[32]byte) *Session {
	if c == nil {
		return nil
	}
	if t := c.trusted.Load(); t != nil && !(*t)() {
		return nil
	}
	s := c.shard(h)
	s.mu.RLock()
	v := s.m[*h]
	s.mu.RUnlock()
	return v
}

// gen is the generation to hand to put for h: take it before reading the store.
func (c *Cache) gen(h *[32]byte) uint64 {
	if c == nil {
		return 0
	}
	return c.epoch.Load() + c.shard(h).gen.Load()
}

// put caches sess unless h's shard dropped anything (or everything was dropped) since the gen
// call that returned gen.
func (c *Cache) put(h *[32]byte, sess *Session, gen uint64) {
	if c == nil {
		return
	}
	s := c.shard(h)
	s.mu.Lock()
	if c.epoch.Load()+s.gen.Load() != gen {
		s.mu.Unlock()
		return
	}
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
	s.gen.Add(1)
	s.mu.Unlock()
}

// dropAll forgets every session, and keeps every read that began before from caching.
func (c *Cache) dropAll() {
	c.epoch.Add(1) // first: a put into a shard already cleared finds it moved
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

// EndKeyPrefix is the prefix of the keys that announce the end of sessions on a store several
// nodes share: never written, only deleted beside a session's record (sign-out, sessions end, a
// step-up that moves the session to a new id, inactivity), so the caches of every node can watch
// the ends of sessions (store.Changes sends every deleted key) without watching the records'
// prefix, which would have every sign-in and every activity write notify every node. A rewrite
// of a session (its activity) need not reach the other nodes' caches: they answer from memory
// only within the activity granularity, or for a remember-me session that inactivity does not
// end.
const EndKeyPrefix = "sess-end/"

// Follow makes the cache follow ch, the change feed of the store its sessions are read from: the
// end of a session on any node (the deletion of its end key, EndKeyPrefix) drops it, a nil key
// drops everything, and while ch is not Trusted the cache answers nothing from memory. It returns the
// function that stops following, after which the cache answers nothing from memory.
func (c *Cache) Follow(ch store.Changes) (stop func()) {
	trusted := ch.Trusted
	c.trusted.Store(&trusted)
	c.dropAll() // what was cached before may have been ended unseen
	unwatch := ch.Watch([]byte(EndKeyPrefix), func(key []byte) {
		if key == nil {
			c.dropAll()
			return
		}
		var h [32]byte
		if n, err := hex.Decode(h[:], []byte(strings.TrimPrefix(string(key), EndKeyPrefix))); err == nil && n == len(h) {
			c.drop(&h)
		}
	})
	return func() {
		unwatch()
		never := func() bool { return false }
		c.trusted.Store(&never)
	}
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
