// Package store is Portcullis's embedded key-value store: Badger v4 behind a small interface of
// byte keys, byte values and per-key time-to-live. Badger locks its directory, so the caller
// keeps one open database per directory and shares it across config reloads (the provider's app
// does, in a caddy.UsagePool together with its in-memory caches).
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"go.uber.org/zap"
)

// ErrNotFound is returned by Get when the key does not exist or has expired.
var ErrNotFound = errors.New("store: key not found")

// ErrClosed is returned by every operation once the database has been closed (a reload moved the
// store elsewhere, or the process is stopping). HTTP handlers answer it with 503.
var ErrClosed = errors.New("store: database is closed")

// ErrUnavailable wraps every error of a shared store (PostgreSQL) that means the database cannot be
// reached or did not answer in time, as opposed to a wrong request. The gateway answers callers
// it cannot check with 503 and Retry-After, the token endpoint with 503 temporarily_unavailable;
// both recover by themselves when the database is back. Test with errors.Is.
var ErrUnavailable = errors.New("store: database unavailable")

// Entry is one key-value pair written by Put. A zero TTL means the key never expires.
type Entry struct {
	Key   []byte
	Value []byte
	TTL   time.Duration
}

// Options sizes the Badger database. A zero field means its default; the defaults suit a gateway
// on a machine with 1–2 GB of memory, where Badger's own defaults (five 64 MiB memtables, a
// 256 MiB block cache, 1 GiB value-log files) would let minting a few hundred thousand tokens add
// hundreds of MiB to the process.
//
// Token records stay in the LSM tree (Badger's value threshold is kept at 1 MiB, or 15% of the
// memtable size when that is smaller), so an expired token disappears when compaction rewrites
// its table, which the writes of newer tokens keep doing; the value log holds only values larger
// than that, and the GC loop reclaims them once they have expired or been overwritten.
type Options struct {
	// MemTableSize is the size of one in-memory write buffer (memtable), in bytes; JSON
	// memtable_size. Each memtable costs about 1.4 times this in Go heap plus as much again in a
	// memory-mapped write-ahead log, and becomes one level-0 table when full. Badger builds that
	// table in a buffer it keeps for reuse (up to eight of them, see badgerOptions), so a larger
	// memtable also grows those buffers: 1 MiB added about 15 MiB, and 2 MiB about 45 MiB, to
	// a burst of 200,000 tokens, without minting them much faster. Default: 512 KiB. At least
	// 512 KiB, at most 1 GiB.
	MemTableSize int64 `json:"memtable_size,omitempty"`

	// NumMemtables is how many full memtables may wait to be written to disk before writes wait;
	// JSON num_memtables. Default: 2. At least 1.
	NumMemtables int `json:"num_memtables,omitempty"`

	// BlockCacheSize bounds Badger's cache of table blocks, in bytes; JSON block_cache_size.
	// It speeds up reads of tokens not already in the gate's decoded-token cache. Default: 8 MiB.
	// At least 1 MiB.
	BlockCacheSize int64 `json:"block_cache_size,omitempty"`

	// IndexCacheSize bounds the memory held by table indexes and bloom filters, in bytes; JSON
	// index_cache_size. Without a bound they stay in memory for every table and grow with the
	// store. Default: 8 MiB, enough for several million tokens' indexes. At least 1 MiB.
	IndexCacheSize int64 `json:"index_cache_size,omitempty"`

	// ValueLogFileSize is the size of one value-log file, in bytes; JSON value_log_file_size.
	// Only values over the value threshold (1 MiB) go there. The value-log GC reclaims whole
	// files, so smaller files are reclaimed sooner. Default: 16 MiB. At least 1 MiB, at most 1 GiB.
	ValueLogFileSize int64 `json:"value_log_file_size,omitempty"`

	// GCInterval is how often the value log is garbage-collected; JSON gc_interval (a
	// duration such as "5m"). Each run rewrites the value-log files of which at least half is
	// expired or overwritten, for as long as there are such files. Default: 5m. At least 1s.
	GCInterval duration.Duration `json:"gc_interval,omitempty"`
}

// The defaults; see Options.
const (
	DefaultMemTableSize     = 512 << 10
	DefaultNumMemtables     = 2
	DefaultBlockCacheSize   = 8 << 20
	DefaultIndexCacheSize   = 8 << 20
	DefaultValueLogFileSize = 16 << 20
	DefaultGCInterval       = duration.Duration(5 * time.Minute)
)

const (
	mib = 1 << 20
	// minMemTableSize is the smallest memtable_size.
	minMemTableSize = 512 << 10
	// gcDiscardRatio: a value-log file is rewritten when at least this share of it is garbage.
	gcDiscardRatio = 0.5
	// maxValueThreshold is Badger's largest value threshold: values up to it stay in the LSM tree.
	maxValueThreshold = 1 << 20
	// tableSize is the size of the tables compactions write, at every level (see badgerOptions).
	tableSize = 256 << 10
)

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.NumMemtables == 0 {
		o.NumMemtables = DefaultNumMemtables
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = DefaultBlockCacheSize
	}
	if o.IndexCacheSize == 0 {
		o.IndexCacheSize = DefaultIndexCacheSize
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = DefaultValueLogFileSize
	}
	if o.GCInterval == 0 {
		o.GCInterval = DefaultGCInterval
	}
	return o
}

// Validate reports the first field out of range, naming its JSON key. Zero fields are valid (they
// take the default); every Options that Validate accepts opens.
func (o Options) Validate() error {
	o = o.WithDefaults()
	switch {
	case o.MemTableSize < minMemTableSize:
		return fmt.Errorf("memtable_size must be at least 512 KiB (%d bytes), got %d", minMemTableSize, o.MemTableSize)
	case o.MemTableSize > 1<<30:
		return fmt.Errorf("memtable_size must be at most 1 GiB (%d bytes), got %d", 1<<30, o.MemTableSize)
	case o.NumMemtables < 1:
		return fmt.Errorf("num_memtables must be at least 1, got %d", o.NumMemtables)
	case o.BlockCacheSize < mib:
		return fmt.Errorf("block_cache_size must be at least 1 MiB (%d bytes), got %d", mib, o.BlockCacheSize)
	case o.IndexCacheSize < mib:
		return fmt.Errorf("index_cache_size must be at least 1 MiB (%d bytes), got %d", mib, o.IndexCacheSize)
	case o.ValueLogFileSize < mib:
		return fmt.Errorf("value_log_file_size must be at least 1 MiB (%d bytes), got %d", mib, o.ValueLogFileSize)
	case o.ValueLogFileSize > 1<<30:
		return fmt.Errorf("value_log_file_size must be at most 1 GiB (%d bytes), got %d", 1<<30, o.ValueLogFileSize)
	case time.Duration(o.GCInterval) < time.Second:
		return fmt.Errorf("gc_interval must be at least 1s, got %s", time.Duration(o.GCInterval))
	}
	return nil
}

// badgerOptions translates validated, defaulted options for dir.
//
// Badger builds every table in memory before writing it, and keeps up to eight of the builders'
// buffers in a pool for reuse (releasing one every two idle seconds), each starting at twice the
// table size and growing to hold the largest table it has built: the memtable size and the table
// size bound most of what the store adds to the Go heap under a burst of writes. So tables are
// small (256 KiB at every level: a builder starts with 512 KiB, which also holds the level-0
// table of a 512 KiB memtable) and uncompressed: compression would add a compressed copy of each block
// to the builder's buffers, while token records, random strings in a compact binary form,
// compress little.
func (o Options) badgerOptions(dir string) badger.Options {
	bo := badger.DefaultOptions(dir).
		WithNumVersionsToKeep(1).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithBaseTableSize(tableSize).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithValueLogFileSize(o.ValueLogFileSize).
		// Badger refuses a threshold above 15% of the memtable (its largest write batch).
		WithValueThreshold(min(maxValueThreshold, o.MemTableSize*15/100)).
		// Two is the fewest Badger runs; more only pay on machines with cores to spare.
		WithNumCompactors(2).
		WithCompression(options.None).
		// Every write is a whole transaction of its own (the store has no read-modify-write
		// transactions), so there is nothing for conflict detection to find.
		WithDetectConflicts(false).
		// Small memtables make many small level-0 tables; letting more of them wait before a
		// compaction (and before writes stall) batches the rewrites that random token keys cause,
		// which keeps minting as fast as with Badger's 64 MiB memtables.
		WithNumLevelZeroTables(10).
		WithNumLevelZeroTablesStall(30)
	bo.TableSizeMultiplier = 1
	return bo
}

// Badger is an open Badger database with its background value-log garbage collection. It is
// safe for concurrent use.
type Badger struct {
	db     *badger.DB
	dir    string
	opts   Options
	logger *zap.Logger

	initMu sync.Mutex // serialises GetOrCreate so two configs never generate two keys
	// now is the clock writes take expiry times from (time.Now; a test sets it back to write
	// entries that are already expired, as Badger's WithTTL would after their TTL has passed).
	// Badger reads and compactions judge expiry by the real clock.
	now    func() time.Time
	gcRuns atomic.Uint64
	stop   chan struct{}
	done   chan struct{}

	// ops counts the operations running now, plus closedBit once Destruct has begun: an
	// operation that finds the bit set returns ErrClosed without touching Badger (which may
	// panic when used after Close), and Destruct waits for the running ones (drained) before it
	// closes the database.
	ops       atomic.Int64
	drained   chan struct{}
	drainOnce sync.Once
}

// closedBit marks Badger.ops once Destruct has begun; the bits below it count running operations.
const closedBit = 1 << 62

// enter admits an operation, or returns ErrClosed once Destruct has begun. An admitted
// operation calls leave when done.
func (b *Badger) enter() error {
	if b.ops.Add(1)&closedBit != 0 {
		b.leave()
		return ErrClosed
	}
	return nil
}

// leave ends an operation that enter admitted; the last one to leave a closing store lets
// Destruct go on.
func (b *Badger) leave() {
	if b.ops.Add(-1) == closedBit {
		b.drainOnce.Do(func() { close(b.drained) })
	}
}

// Open opens (creating if needed) the Badger database in dir with opts (zero fields take their
// defaults) and starts its value-log GC loop. Destruct closes it.
func Open(dir string, opts Options, logger *zap.Logger) (*Badger, error) {
	return open(dir, opts, logger, nil)
}

// open is Open with a hook that may adjust Badger's options (tests use it to make compaction
// start sooner).
func open(dir string, opts Options, logger *zap.Logger, adjust func(*badger.Options)) (*Badger, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("storage options: %w", err)
	}
	opts = opts.WithDefaults()
	bo := opts.badgerOptions(dir).
		WithLogger(badgerLogger{logger.Sugar()}).
		WithLoggingLevel(badger.WARNING)
	if adjust != nil {
		adjust(&bo)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("opening badger database in %s: %w", dir, err)
	}
	b := &Badger{now: time.Now, db: db, dir: dir, opts: opts, logger: logger, stop: make(chan struct{}), done: make(chan struct{}), drained: make(chan struct{})}
	go b.gcLoop()
	return b, nil
}

// Options returns the options the database was opened with, defaults filled in.
func (b *Badger) Options() Options { return b.opts }

// RunGC garbage-collects the value log: it rewrites value-log files of which at least half is
// expired, deleted or overwritten, one after the other, until no file qualifies. The GC loop calls
// it every GCInterval.
func (b *Badger) RunGC() error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.leave()
	b.gcRuns.Add(1)
	for {
		err := b.db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
			continue // a file was reclaimed; try the next
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return nil // nothing (more) to reclaim, or a run is already going
		default:
			return mapErr(err)
		}
	}
}

// GCRuns is how many value-log collections RunGC has started since the database opened.
func (b *Badger) GCRuns() uint64 { return b.gcRuns.Load() }

// Size returns the bytes in the LSM tree's table files and in the value-log files, like Badger's
// DB.Size but counted now rather than on Badger's one-minute refresh. The open value-log file
// counts at its preallocated size (twice ValueLogFileSize); memtables' write-ahead logs are in
// neither figure.
func (b *Badger) Size() (lsm, vlog int64) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if ext != ".sst" && ext != ".vlog" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // deleted by a compaction or GC since the listing
		}
		if ext == ".sst" {
			lsm += fi.Size()
		} else {
			vlog += fi.Size()
		}
	}
	return lsm, vlog
}

func (b *Badger) gcLoop() {
	defer close(b.done)
	t := time.NewTicker(time.Duration(b.opts.GCInterval))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			if err := b.RunGC(); err != nil && !errors.Is(err, ErrClosed) {
				b.logger.Warn("value-log garbage collection", zap.String("dir", b.dir), zap.Error(err))
			}
		}
	}
}

// Destruct stops the GC loop, waits for the operations already running and closes the
// database; it implements caddy.Destructor. Every operation that starts once Destruct has begun
// returns ErrClosed. Calling it again does nothing.
func (b *Badger) Destruct() error {
	old := b.ops.Or(closedBit)
	if old&closedBit != 0 {
		return nil
	}
	if old == 0 {
		b.drainOnce.Do(func() { close(b.drained) })
	}
	close(b.stop)
	<-b.done
	<-b.drained
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
// A point read never waits long, so ctx is not consulted.
func (b *Badger) Get(_ context.Context, key []byte) (value []byte, err error) {
	if err := b.enter(); err != nil {
		return nil, err
	}
	defer b.leave()
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
// The write is not abandoned when ctx is cancelled: it takes microseconds.
func (b *Badger) Put(_ context.Context, entries ...Entry) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.leave()
	return mapErr(b.db.Update(func(txn *badger.Txn) error {
		for _, e := range entries {
			be := badger.NewEntry(e.Key, e.Value)
			if e.TTL > 0 {
				be.ExpiresAt = uint64(b.now().Add(e.TTL).Unix())
			}
			if err := txn.SetEntry(be); err != nil {
				return err
			}
		}
		return nil
	}))
}

// PutSync writes the entries as Put does and then syncs the database to disk, so they survive a
// power failure the moment it returns.
func (b *Badger) PutSync(ctx context.Context, entries ...Entry) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.leave()
	if err := b.Put(ctx, entries...); err != nil {
		return err
	}
	return mapErr(b.db.Sync())
}

// Delete removes the keys in one transaction. Deleting a missing key is not an error.
func (b *Badger) Delete(_ context.Context, keys ...[]byte) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.leave()
	return mapErr(b.db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}))
}

// Keys returns every live key that starts with prefix. A long listing stops with ctx.Err() once
// ctx is done.
func (b *Badger) Keys(ctx context.Context, prefix []byte) (keys [][]byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.enter(); err != nil {
		return nil, err
	}
	defer b.leave()
	err = b.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			if len(keys)%1024 == 1023 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return keys, nil
}

// GetOrCreate returns the value under key, or, when there is none, stores and returns the value
// that create makes. Concurrent callers in this process get the same value; it is how generated
// secrets and keys are made once and then kept.
func (b *Badger) GetOrCreate(ctx context.Context, key []byte, create func() ([]byte, error)) ([]byte, error) {
	b.initMu.Lock()
	defer b.initMu.Unlock()
	v, err := b.Get(ctx, key)
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
	if err := b.Put(ctx, Entry{Key: key, Value: v}); err != nil {
		return nil, err
	}
	return v, nil
}

// badgerLogger routes Badger's own messages into zap.
type badgerLogger struct{ s *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.s.Errorf(f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.s.Warnf(f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.s.Infof(f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.s.Debugf(f, a...) }
