package oauth

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// ClientCutoffs remembers, per client, the moment before which its tokens count as revoked:
// `caddy oidc tokens revoke` sets it, so a token minted while the revocation pass ran, or stored
// after the pass listed the store, is refused too. One belongs to each open store; the cut-offs
// are kept in the store and read when it opens. The gate reads it on every request: an atomic
// load and a map lookup. On a store several nodes share, Follow keeps it in step with the cut-offs
// any node sets.
type ClientCutoffs struct {
	mu sync.Mutex // serialises the writers of m (Set, the reloads of Follow)
	m  atomic.Pointer[map[string]time.Time]
	// feed, when set (Follow), is the shared store's change feed.
	feed atomic.Pointer[cutoffFeed]
}

// cutoffFeed is what a ClientCutoffs that follows a shared store needs to answer while its map
// may be behind: the store, whether the node receives the changes, and how many changes are not
// yet read back into the map.
type cutoffFeed struct {
	kv      store.KV
	trusted func() bool
	pending atomic.Int64
}

// stale reports whether the map may miss a cut-off another node set.
func (f *cutoffFeed) stale() bool { return f.pending.Load() > 0 || !f.trusted() }

// CutoffKeyPrefix is the store prefix of the clients' cut-offs, whose writes a ClientCutoffs
// follows on a shared store.
const CutoffKeyPrefix = "client-cutoff/"

// LoadClientCutoffs reads the cut-offs kept in kv.
func LoadClientCutoffs(ctx context.Context, kv store.KV) (*ClientCutoffs, error) {
	c := &ClientCutoffs{}
	m, err := readCutoffs(ctx, kv)
	if err != nil {
		return nil, err
	}
	c.m.Store(&m)
	return c, nil
}

// readCutoffs reads every cut-off kept in kv.
func readCutoffs(ctx context.Context, kv store.KV) (map[string]time.Time, error) {
	m := map[string]time.Time{}
	keys, err := kv.Keys(ctx, []byte(CutoffKeyPrefix))
	if err != nil {
		return nil, fmt.Errorf("reading client cut-offs: %w", err)
	}
	for _, k := range keys {
		id := strings.TrimPrefix(string(k), CutoffKeyPrefix)
		t, ok, err := readCutoff(ctx, kv, id)
		if err != nil {
			return nil, err
		}
		if ok {
			m[id] = t
		}
	}
	return m, nil
}

// readCutoff reads the cut-off of clientID kept in kv, if there is one.
func readCutoff(ctx context.Context, kv store.KV, clientID string) (time.Time, bool, error) {
	v, err := kv.Get(ctx, []byte(CutoffKeyPrefix+clientID))
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, false, nil
	} else if err != nil {
		return time.Time{}, false, fmt.Errorf("reading the cut-off of client %s: %w", clientID, err)
	}
	var t time.Time
	if err := t.UnmarshalText(v); err != nil {
		return time.Time{}, false, nil
	}
	return t, true, nil
}

// Set makes every token of client issued at or before t count as revoked, and keeps the cut-off
// in kv (one small key per client, replaced by the next revocation).
func (c *ClientCutoffs) Set(ctx context.Context, kv store.KV, clientID string, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	text, _ := t.UTC().MarshalText()
	if err := kv.Put(ctx, store.Entry{Key: []byte(CutoffKeyPrefix + clientID), Value: text}); err != nil {
		return fmt.Errorf("keeping the cut-off of client %s: %w", clientID, err)
	}
	c.installLocked(map[string]time.Time{clientID: t})
	return nil
}

// installLocked merges cut-offs into the map. A cut-off only moves forward (each is the moment
// of a revocation), so of two values for a client the later holds, whatever order two reloads
// finish in. c.mu is held.
func (c *ClientCutoffs) installLocked(cuts map[string]time.Time) {
	next := maps.Clone(*c.m.Load())
	for id, t := range cuts {
		if old, ok := next[id]; !ok || t.After(old) {
			next[id] = t
		}
	}
	c.m.Store(&next)
}

// Revoked reports whether a token of client issued at issuedAt falls before its cut-off. It
// answers from memory, except on a shared store while the map may be behind (a change not yet
// read back, or the node not receiving changes): then it reads the client's cut-off from the
// store, and a store error is returned.
func (c *ClientCutoffs) Revoked(ctx context.Context, clientID string, issuedAt time.Time) (bool, error) {
	if c == nil {
		return false, nil
	}
	cut, ok := (*c.m.Load())[clientID]
	if f := c.feed.Load(); f != nil && f.stale() {
		stored, found, err := readCutoff(ctx, f.kv, clientID)
		if err != nil {
			return false, err
		}
		if found && (!ok || stored.After(cut)) {
			cut, ok = stored, true
		}
	}
	return ok && !issuedAt.After(cut), nil
}

// Follow keeps the cut-offs in step with kv, a store several nodes share, through ch, its change
// feed: a cut-off written by any node is read back into memory (all of them after a nil key),
// and until it is, or while ch is not Trusted, Revoked reads the store. It returns the function
// that stops following, after which Revoked always reads the store.
func (c *ClientCutoffs) Follow(kv store.KV, ch store.Changes) (stop func()) {
	f := &cutoffFeed{kv: kv, trusted: ch.Trusted}
	ctx, cancel := context.WithCancel(context.Background())
	f.pending.Add(1) // what was loaded before may have changed unseen
	go c.reload(ctx, f, nil)
	c.feed.Store(f)
	unwatch := ch.Watch([]byte(CutoffKeyPrefix), func(key []byte) {
		f.pending.Add(1)
		if key != nil {
			key = []byte(strings.TrimPrefix(string(key), CutoffKeyPrefix))
		}
		go c.reload(ctx, f, key)
	})
	return func() {
		unwatch()
		cancel()
		c.feed.Store(&cutoffFeed{kv: kv, trusted: func() bool { return false }})
	}
}

// reload reads the cut-off of clientID (every cut-off when nil) back into memory, trying again
// until it succeeds or ctx ends, and then takes back the pending change it answers for.
func (c *ClientCutoffs) reload(ctx context.Context, f *cutoffFeed, clientID []byte) {
	wait := 50 * time.Millisecond
	for {
		cuts, err := c.read(ctx, f.kv, clientID)
		if err == nil {
			c.mu.Lock()
			c.installLocked(cuts)
			c.mu.Unlock()
			f.pending.Add(-1)
			return
		}
		if errors.Is(err, store.ErrClosed) {
			return // the store is gone, and the backend with it
		}
		select {
		case <-ctx.Done():
			return // stopped: the feed is replaced by one that never trusts memory
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (c *ClientCutoffs) read(ctx context.Context, kv store.KV, clientID []byte) (map[string]time.Time, error) {
	if clientID == nil {
		return readCutoffs(ctx, kv)
	}
	t, ok, err := readCutoff(ctx, kv, string(clientID))
	if err != nil || !ok {
		return nil, err
	}
	return map[string]time.Time{string(clientID): t}, nil
}
