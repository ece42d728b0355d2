package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// ErrLocked is returned by OpenReadOnly when another process (a running Caddy) has the database
// open for writing.
var ErrLocked = errors.New("store: the database is in use by another process")

// OpenReadOnly opens the existing Badger database in dir for reading, as `caddy oidc migrate`
// does: it writes nothing to the directory and runs no garbage collection, and it fails with
// ErrLocked while another process has the database open for writing. A database whose last
// writer was killed (its write-ahead log must be replayed, which a read-only open cannot do) is
// opened for writing instead, under Badger's lock, which replays the log. A directory without a
// Badger database is an error rather than a new, empty database. Destruct closes it.
func OpenReadOnly(dir string, logger *zap.Logger) (*Badger, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if _, err := os.Stat(filepath.Join(dir, badger.ManifestFilename)); err != nil {
		return nil, fmt.Errorf("no Portcullis store in %s (it holds no Badger %s file): %w", dir, badger.ManifestFilename, err)
	}
	opts := Options{}.WithDefaults()
	bo := opts.badgerOptions(dir).
		WithLogger(badgerLogger{logger.Sugar()}).
		WithLoggingLevel(badger.WARNING)
	db, err := badger.Open(bo.WithReadOnly(true))
	// Badger wraps its errors into text: match ErrTruncateNeeded's
	if err != nil && strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error()) {
		db, err = badger.Open(bo)
	}
	if err != nil {
		// Badger's lock error wraps no error value; its message is the same on every system
		if strings.Contains(err.Error(), "Another process is using this Badger database") {
			return nil, fmt.Errorf("opening badger database in %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("opening badger database in %s: %w", dir, err)
	}
	b := &Badger{now: time.Now, db: db, dir: dir, opts: opts, logger: logger, stop: make(chan struct{}), done: make(chan struct{}), drained: make(chan struct{})}
	close(b.done) // no GC loop to wait for
	return b, nil
}

// Each calls fn with every live key, its value and the moment it expires (the zero time for a
// key that never expires), in key order, from one consistent snapshot of the database. Keys and
// values are copies fn may keep. It stops at fn's first error, which it returns, and with
// ctx.Err() once ctx is done. Badger keeps expiry times to the second.
func (b *Badger) Each(ctx context.Context, fn func(key, value []byte, expiresAt time.Time) error) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.leave()
	return mapErr(b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			value, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("reading the value of %q: %w", item.Key(), err)
			}
			var expiresAt time.Time
			if e := item.ExpiresAt(); e != 0 {
				expiresAt = time.Unix(int64(e), 0)
			}
			if err := fn(item.KeyCopy(nil), value, expiresAt); err != nil {
				return err
			}
		}
		return nil
	}))
}
