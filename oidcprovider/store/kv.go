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

// Creator is implemented by a KV several nodes share that can store a record only where none is
// live, atomically across nodes (the PostgreSQL store). The regulator claims the places of its
// attempts with it.
type Creator interface {
	// Create stores e unless a live record holds its key (an expired one counts as absent), and
	// reports whether it stored it: of calls racing for one key on any nodes, exactly one does.
	Create(ctx context.Context, e Entry) (created bool, err error)
}

// Changes is implemented by a KV that several processes (nodes) share, such as the PostgreSQL
// store: it tells each node when a record it may hold decoded in memory was ended or changed by
// any node, so that caches in front of the store never accept what another node has ended (a
// revoked token, a signed-out session, a ban). A store only one process can open (Badger) does
// not implement it: there, the code that ends a record drops it from the caches itself.
//
// A change is delivered for every key removed by Delete, and for every key written by Put or
// PutSync under a prefix some node has passed to Watch (all nodes run the same code, so they
// watch the same prefixes). Delivery happens after the writing transaction commits, on every
// node including the writer's, in commit order per writer, normally within milliseconds.
type Changes interface {
	// Watch calls fn with the key of every change under prefix, on a goroutine of the store's,
	// one call at a time; fn must be quick and must not call the store. It returns a function
	// that stops the calls.
	Watch(prefix []byte, fn func(key []byte)) (stop func())
	// Trusted reports whether this node is receiving changes: false while its listening
	// connection is down or has just come back. Caches must not answer from memory while it is
	// false (read the store instead); when it turns true again, every Watch fn of the store has
	// first been called with a nil key, meaning "forget everything under your prefix".
	Trusted() bool
}
