package store

import "context"

// KV is the storage the provider needs: byte keys and values with per-key time-to-live, atomic
// multi-key writes, and prefix listing. Badger is the embedded implementation; a later backend on
// an existing database engine implements the same interface.
//
// Every method takes the caller's context first: a backend on a database server bounds the
// operation by its deadline and gives up when it is cancelled (returning ctx.Err()), while the
// embedded Badger store, which never waits on a network, may ignore it. A caller whose write must
// happen even when its own caller has left passes context.WithoutCancel(ctx).
type KV interface {
	// Get returns a copy of the value under key, ErrNotFound, or ErrClosed.
	Get(ctx context.Context, key []byte) ([]byte, error)
	// Put writes all entries in one transaction.
	Put(ctx context.Context, entries ...Entry) error
	// PutSync writes all entries in one transaction and returns once they are on disk (fsync),
	// for records a page reports as saved (second-factor devices). Put may return before that.
	PutSync(ctx context.Context, entries ...Entry) error
	// Delete removes the keys in one transaction; missing keys are not an error.
	Delete(ctx context.Context, keys ...[]byte) error
	// Keys returns every live key that starts with prefix.
	Keys(ctx context.Context, prefix []byte) ([][]byte, error)
	// GetOrCreate returns the value under key, or stores and returns the one create makes.
	GetOrCreate(ctx context.Context, key []byte, create func() ([]byte, error)) ([]byte, error)
}

var _ KV = (*Badger)(nil)
