// Package store is Portcullis's embedded key-value store: Badger v4 behind a small interface of
// byte keys, byte values and per-key time-to-live. One database is open per directory in the
// process, shared by every Caddy config that names the directory through a caddy.UsagePool, so a
// config reload reuses the open database instead of failing on Badger's directory lock.
package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// ErrNotFound is returned by Get when the key does not exist or has expired.
var ErrNotFound = errors.New("store: key not found")

// ErrClosed is returned by every operation once the database has been closed (a reload moved the
// store elsewhere, or the process is stopping). HTTP handlers answer it with 503.
var ErrClosed = errors.New("store: database is closed")

// Entry is one key-value pair written by Put. A zero TTL means the key never expires.
type Entry struct {
	Key   []byte
	Value []byte
	TTL   time.Duration
}

// Badger is an open Badger database with its background value-log garbage collection. It is
// the value kept in the process-wide pool and is safe for concurrent use.
type Badger struct {
	db     *badger.DB
	dir    string
	logger *zap.Logger

	initMu sync.Mutex // serialises GetOrCreate so two configs never generate two keys
	stop   chan struct{}
	done   chan struct{}
}

// gcInterval is how often the value log is garbage-collected.
const gcInterval = 5 * time.Minute

// Open opens (creating if needed) the Badger database in dir and starts its value-log GC loop.
// Most callers want Acquire, which shares one open database per directory.
func Open(dir string, logger *zap.Logger) (*Badger, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{logger.Sugar()}).
		WithLoggingLevel(badger.WARNING).
		WithValueLogFileSize(64 << 20).
		WithNumVersionsToKeep(1)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("opening badger database in %s: %w", dir, err)
	}
	b := &Badger{db: db, dir: dir, logger: logger, stop: make(chan struct{}), done: make(chan struct{})}
	go b.gcLoop()
	return b, nil
}

func (b *Badger) gcLoop() {
	defer close(b.done)
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			for b.db.RunValueLogGC(0.5) == nil {
				// keep collecting while a run reclaims a file
			}
		}
	}
}

// Destruct stops the GC loop and closes the database; it implements caddy.Destructor and runs when
// the last config using the directory releases it.
func (b *Badger) Destruct() error {
	close(b.stop)
	<-b.done
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("closing badger database in %s: %w", b.dir, err)
	}
	return nil
}

// Dir is the database directory.
func (b *Badger) Dir() string { return b.dir }

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, badger.ErrDBClosed):
		return ErrClosed
	}
	return err
}

// Get returns a copy of the value stored under key, ErrNotFound, or ErrClosed.
func (b *Badger) Get(key []byte) (value []byte, err error) {
	defer func() {
		// Badger panics on some operations after Close; a closed store is a 503, not a crash.
		if recover() != nil {
			value, err = nil, ErrClosed
		}
	}()
	err = b.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		value, err = item.ValueCopy(nil)
		return err
	})
	return value, mapErr(err)
}

// Put writes all entries in one transaction: either all of them are stored or none is.
func (b *Badger) Put(entries ...Entry) (err error) {
	defer func() {
		if recover() != nil {
			err = ErrClosed
		}
	}()
	return mapErr(b.db.Update(func(txn *badger.Txn) error {
		for _, e := range entries {
			be := badger.NewEntry(e.Key, e.Value)
			if e.TTL > 0 {
				be = be.WithTTL(e.TTL)
			}
			if err := txn.SetEntry(be); err != nil {
				return err
			}
		}
		return nil
	}))
}

// Delete removes the keys in one transaction. Deleting a missing key is not an error.
func (b *Badger) Delete(keys ...[]byte) (err error) {
	defer func() {
		if recover() != nil {
			err = ErrClosed
		}
	}()
	return mapErr(b.db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}))
}

// Keys returns every live key that starts with prefix.
func (b *Badger) Keys(prefix []byte) (keys [][]byte, err error) {
	defer func() {
		if recover() != nil {
			keys, err = nil, ErrClosed
		}
	}()
	err = b.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	return keys, mapErr(err)
}

// GetOrCreate returns the value under key, or, when there is none, stores and returns the value
// that create makes. Concurrent callers in this process get the same value; it is how generated
// secrets and keys are made once and then kept.
func (b *Badger) GetOrCreate(key []byte, create func() ([]byte, error)) ([]byte, error) {
	b.initMu.Lock()
	defer b.initMu.Unlock()
	v, err := b.Get(key)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	v, err = create()
	if err != nil {
		return nil, err
	}
	if err := b.Put(Entry{Key: key, Value: v}); err != nil {
		return nil, err
	}
	return v, nil
}

var pool = caddy.NewUsagePool()

// Key returns the pool key of a directory: absolute and cleaned, so two spellings of one
// directory share one database.
func Key(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolving storage directory %q: %w", dir, err)
	}
	return filepath.Clean(abs), nil
}

// Acquire returns the process's open database for dir, opening it on first use. Every successful
// Acquire must be paired with one Release of the same dir.
func Acquire(dir string) (*Badger, error) {
	key, err := Key(dir)
	if err != nil {
		return nil, err
	}
	v, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return Open(key, caddy.Log().Named("oidc.store"))
	})
	if err != nil {
		return nil, err
	}
	return v.(*Badger), nil
}

// Release gives back one reference taken by Acquire; the database closes with the last one.
func Release(dir string) error {
	key, err := Key(dir)
	if err != nil {
		return err
	}
	_, err = pool.Delete(key)
	return err
}

// badgerLogger routes Badger's own messages into zap.
type badgerLogger struct{ s *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.s.Errorf(f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.s.Warnf(f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.s.Infof(f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.s.Debugf(f, a...) }
