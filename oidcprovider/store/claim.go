package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"time"
)

// Claim stores a new random value under key unless a live record holds it, atomically across
// the nodes sharing kv, and reports whether this call stored it (of calls racing for one key on
// any nodes, exactly one does), with the value it stored. The record expires after ttl: in the
// same statement on a store with Create (PostgreSQL), so no claim is ever left without an
// expiry; on one without it (Badger, which one process owns), GetOrCreate makes the record and a
// Put gives it its expiry. Claims make single-use things single-use across nodes: a code's
// exchange, a one-time password's time step, a WebAuthn ceremony.
func Claim(ctx context.Context, kv KV, key []byte, ttl time.Duration) (value []byte, claimed bool, err error) {
	mine := []byte(rand.Text())
	if c, ok := kv.(Creator); ok {
		created, err := c.Create(ctx, Entry{Key: key, Value: mine, TTL: ttl})
		if err != nil || !created {
			return nil, false, err
		}
		return mine, true, nil
	}
	v, err := kv.GetOrCreate(ctx, key, func() ([]byte, error) { return mine, nil })
	if err != nil || !bytes.Equal(v, mine) {
		return nil, false, err
	}
	// the claim is ours: give it its expiry even if the caller has gone
	if err := kv.Put(context.WithoutCancel(ctx), Entry{Key: key, Value: mine, TTL: ttl}); err != nil {
		return nil, false, err
	}
	return mine, true, nil
}
