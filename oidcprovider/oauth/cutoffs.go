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
// load and a map lookup.
type ClientCutoffs struct {
	mu sync.Mutex // serialises Set
	m  atomic.Pointer[map[string]time.Time]
}

const cutoffPrefix = "client-cutoff/"

// LoadClientCutoffs reads the cut-offs kept in kv.
func LoadClientCutoffs(ctx context.Context, kv store.KV) (*ClientCutoffs, error) {
	c := &ClientCutoffs{}
	m := map[string]time.Time{}
	keys, err := kv.Keys(ctx, []byte(cutoffPrefix))
	if err != nil {
		return nil, fmt.Errorf("reading client cut-offs: %w", err)
	}
	for _, k := range keys {
		v, err := kv.Get(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("reading client cut-offs: %w", err)
		}
		var t time.Time
		if err := t.UnmarshalText(v); err != nil {
			continue
		}
		m[strings.TrimPrefix(string(k), cutoffPrefix)] = t
	}
	c.m.Store(&m)
	return c, nil
}

// Set makes every token of client issued at or before t count as revoked, and keeps the cut-off
// in kv (one small key per client, replaced by the next revocation).
func (c *ClientCutoffs) Set(ctx context.Context, kv store.KV, clientID string, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	text, _ := t.UTC().MarshalText()
	if err := kv.Put(ctx, store.Entry{Key: []byte(cutoffPrefix + clientID), Value: text}); err != nil {
		return fmt.Errorf("keeping the cut-off of client %s: %w", clientID, err)
	}
	next := maps.Clone(*c.m.Load())
	next[clientID] = t
	c.m.Store(&next)
	return nil
}

// Revoked reports whether a token of client issued at issuedAt falls before its cut-off.
func (c *ClientCutoffs) Revoked(clientID string, issuedAt time.Time) bool {
	if c == nil {
		return false
	}
	cut, ok := (*c.m.Load())[clientID]
	return ok && !issuedAt.After(cut)
}
