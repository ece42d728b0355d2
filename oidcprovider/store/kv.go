package store

// KV is the storage the provider needs: byte keys and values with per-key time-to-live, atomic
// multi-key writes, and prefix listing. Badger is the embedded implementation; a later backend on
// an existing database engine implements the same interface.
type KV interface {
	// Get returns a copy of the value under key, ErrNotFound, or ErrClosed.
	Get(key []byte) ([]byte, error)
	// Put writes all entries in one transaction.
	Put(entries ...Entry) error
	// PutSync writes all entries in one transaction and returns once they are on disk (fsync),
	// for records a page reports as saved (second-factor devices). Put may return before that.
	PutSync(entries ...Entry) error
	// Delete removes the keys in one transaction; missing keys are not an error.
	Delete(keys ...[]byte) error
	// Keys returns every live key that starts with prefix.
	Keys(prefix []byte) ([][]byte, error)
	// GetOrCreate returns the value under key, or stores and returns the one create makes.
	GetOrCreate(key []byte, create func() ([]byte, error)) ([]byte, error)
}

var _ KV = (*Badger)(nil)
