package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestCloseThenReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Put(t.Context(), Entry{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	// Badger locks its directory: a second Open while the first is open fails
	if other, err := Open(dir, Options{}, nil); err == nil {
		other.Destruct()
		t.Fatal("a second Open of an open directory must fail")
	}
	if err := db.Destruct(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get(t.Context(), []byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v, want ErrClosed", err)
	}
	if err := db.Put(t.Context(), Entry{Key: []byte("k"), Value: []byte("v")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v, want ErrClosed", err)
	}
	if _, err := db.Keys(t.Context(), []byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("keys after close: %v, want ErrClosed", err)
	}
	again, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Destruct()
	if v, err := again.Get(t.Context(), []byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("data lost across close and reopen: %q %v", v, err)
	}
}

func TestTTLAndPrefixAndDelete(t *testing.T) {
	db, err := Open(t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Destruct()
	err = db.Put(t.Context(),
		Entry{Key: []byte("tok/at/1"), Value: []byte("a"), TTL: time.Second},
		Entry{Key: []byte("tok/at/2"), Value: []byte("b")},
		Entry{Key: []byte("tok/rt/1"), Value: []byte("c")},
	)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := db.Keys(t.Context(), []byte("tok/at/"))
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], []byte("tok/at/1")) {
		t.Fatalf("prefix keys: %q %v", keys, err)
	}
	if err := db.Delete(t.Context(), []byte("tok/at/2"), []byte("missing")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get(t.Context(), []byte("tok/at/2")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := db.Get(t.Context(), []byte("tok/at/1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired key still readable: %v", err)
	}
	if keys, _ := db.Keys(t.Context(), []byte("tok/at/")); len(keys) != 0 {
		t.Fatalf("expired key still listed: %q", keys)
	}
}

func TestGetOrCreateMakesOneValue(t *testing.T) {
	db, err := Open(t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Destruct()
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	seen := map[string]bool{}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			v, err := db.GetOrCreate(t.Context(), []byte("meta/secret"), func() ([]byte, error) {
				mu.Lock()
				created++
				mu.Unlock()
				return []byte{byte(i)}, nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[string(v)] = true
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if created != 1 || len(seen) != 1 {
		t.Fatalf("created %d values, callers saw %d", created, len(seen))
	}
	if _, err := db.GetOrCreate(t.Context(), []byte("meta/failing"), func() ([]byte, error) { return nil, errors.New("boom") }); err == nil {
		t.Fatal("a failing create must fail")
	}
	if _, err := db.Get(t.Context(), []byte("meta/failing")); !errors.Is(err, ErrNotFound) {
		t.Fatal("a failed create must store nothing")
	}
}

func TestOptionsDefaultsAndBounds(t *testing.T) {
	d := Options{}.WithDefaults()
	if d.MemTableSize != DefaultMemTableSize || d.NumMemtables != DefaultNumMemtables ||
		d.BlockCacheSize != DefaultBlockCacheSize || d.IndexCacheSize != DefaultIndexCacheSize ||
		d.ValueLogFileSize != DefaultValueLogFileSize || d.GCInterval != DefaultGCInterval {
		t.Fatalf("defaults not applied: %+v", d)
	}
	// Badger refuses a value threshold above 15% of the memtable; the smallest memtable must open
	bo := Options{MemTableSize: minMemTableSize}.WithDefaults().badgerOptions(t.TempDir())
	if bo.ValueThreshold > bo.MemTableSize*15/100 {
		t.Fatalf("value threshold %d above 15%% of memtable %d", bo.ValueThreshold, bo.MemTableSize)
	}
	small, err := Open(t.TempDir(), Options{MemTableSize: minMemTableSize, NumMemtables: 1, BlockCacheSize: mib, IndexCacheSize: mib, ValueLogFileSize: mib, GCInterval: DefaultGCInterval}, nil)
	if err != nil {
		t.Fatalf("the smallest valid options must open: %v", err)
	}
	small.Destruct()
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{MemTableSize: minMemTableSize - 1}, "memtable_size"},
		{Options{MemTableSize: 2 << 30}, "memtable_size"},
		{Options{NumMemtables: -1}, "num_memtables"},
		{Options{BlockCacheSize: 1}, "block_cache_size"},
		{Options{IndexCacheSize: 1}, "index_cache_size"},
		{Options{ValueLogFileSize: 1}, "value_log_file_size"},
		{Options{ValueLogFileSize: 2 << 30}, "value_log_file_size"},
		{Options{GCInterval: 1}, "gc_interval"},
	} {
		err := c.opts.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error naming %s", c.opts, err, c.want)
		}
		if _, err := Open(t.TempDir(), c.opts, nil); err == nil {
			t.Errorf("%+v: Open must refuse what Validate refuses", c.opts)
		}
	}
}

// Expired tokens must not pile up: once their TTL passes and newer writes compact the tables
// (token keys are random, so new tokens' tables overlap old ones), the store shrinks back instead
// of growing with every token ever minted. The store waits for ten level-0 tables before it
// compacts; the test lets it start at one, so a few megabytes show what a busy store does.
// Entries whose expiry has passed are dropped from the tables by compaction, not only hidden
// from reads. The store's write clock is set back an hour, so entries written with a one-minute
// TTL carry an expiry that has already passed, as if an hour had gone by, without waiting.
func TestExpiredEntriesAreReclaimed(t *testing.T) {
	dir := t.TempDir()
	// the expired entries are written with compaction off, so none is dropped before the size
	// with them is measured; then compaction runs soon and often
	noCompaction := func(o *badger.Options) { o.NumCompactors = 0 }
	compactSoon := func(o *badger.Options) { o.NumLevelZeroTables = 1 }
	db, err := open(dir, Options{MemTableSize: mib}, nil, noCompaction)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Destruct() }()
	const valueSize = 300 // about an access-token record; random, so compression cannot shrink it
	write := func(n int, ttl time.Duration) (last []byte) {
		for i := 0; i < n; i += 100 {
			batch := make([]Entry, 0, 100)
			for j := i; j < i+100 && j < n; j++ {
				k, v := make([]byte, 16), make([]byte, valueSize)
				rand.Read(k)
				rand.Read(v)
				last = append([]byte("tok/"), k...)
				batch = append(batch, Entry{Key: last, Value: v, TTL: ttl})
			}
			if err := db.Put(t.Context(), batch...); err != nil {
				t.Fatal(err)
			}
		}
		return last
	}
	const expiring, live = 20000, 2000
	// closing flushes the memtables, so every entry is in a table (a flush keeps expired
	// entries), then Flatten compacts the tables onto one level, which drops the expired ones;
	// the reopened store's clock is the real one
	reopen := func(flatten bool) {
		t.Helper()
		if err := db.Destruct(); err != nil {
			t.Fatal(err)
		}
		adjust := noCompaction
		if flatten {
			adjust = compactSoon
		}
		if db, err = open(dir, Options{MemTableSize: mib}, nil, adjust); err != nil {
			t.Fatal(err)
		}
		if !flatten {
			return
		}
		if err := db.db.Flatten(1); err != nil {
			t.Fatal(err)
		}
	}
	db.now = func() time.Time { return time.Now().Add(-time.Hour) }
	old := write(expiring, time.Minute)
	db.now = time.Now
	if _, err := db.Get(t.Context(), old); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an entry written an hour ago with a minute to live is readable: %v", err)
	}
	// the same write on the real clock is readable: the clock, not the TTL, made them expire
	fresh := write(1, time.Minute)
	if _, err := db.Get(t.Context(), fresh); err != nil {
		t.Fatalf("an entry with a minute to live on the store's clock: %v", err)
	}
	if err := db.Delete(t.Context(), fresh); err != nil {
		t.Fatal(err)
	}
	reopen(false)
	before, _ := db.Size()
	if before < expiring*valueSize {
		t.Fatalf("tables hold only %d bytes before compaction: the test cannot tell reclaimed from never written", before)
	}
	write(live, 0)
	// the new entries' table overlaps the expired ones' key range, so compacting it rewrites them
	reopen(true)
	if err := db.RunGC(); err != nil {
		t.Fatal(err)
	}
	if keys, err := db.Keys(t.Context(), []byte("tok/")); err != nil || len(keys) != live {
		t.Fatalf("listed %d keys (%v), want the %d live ones", len(keys), err, live)
	}
	// the live entries are a tenth of the expired ones; allow for table overhead and for a
	// compaction that leaves some tables for later on a busy machine (without expiry, after
	// exceeds before)
	if after, _ := db.Size(); after > before*3/4 {
		t.Fatalf("tables hold %d bytes after %d expired and %d live entries (%d before): expired entries not reclaimed", after, expiring, live, before)
	}
}

// Closing while operations run: each running operation finishes or returns ErrClosed, none
// panics or sees another error, Destruct waits for the running ones (the race detector sees a
// Badger call after Close otherwise), and every operation after it returns ErrClosed.
func TestCloseWhileOperationsRun(t *testing.T) {
	ctx := t.Context()
	db, err := Open(t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				k := []byte{'k', byte(w), byte(i)}
				var err error
				switch i % 5 {
				case 0:
					err = db.Put(ctx, Entry{Key: k, Value: k})
				case 1:
					_, err = db.Get(ctx, k)
				case 2:
					_, err = db.Keys(ctx, []byte{'k', byte(w)})
				case 3:
					err = db.Delete(ctx, k)
				case 4:
					err = db.PutSync(ctx, Entry{Key: k, Value: k})
				}
				if i > 20 {
					once.Do(func() { close(started) })
				}
				switch {
				case errors.Is(err, ErrClosed):
					return
				case err != nil && !errors.Is(err, ErrNotFound):
					t.Errorf("operation %d while closing: %v", i%5, err)
					return
				}
			}
		}(w)
	}
	<-started
	if err := db.Destruct(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := db.Destruct(); err != nil {
		t.Fatalf("a second Destruct: %v", err)
	}
	if _, err := db.GetOrCreate(ctx, []byte("meta/x"), func() ([]byte, error) { return []byte("x"), nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetOrCreate after close: %v, want ErrClosed", err)
	}
	if err := db.RunGC(); !errors.Is(err, ErrClosed) {
		t.Fatalf("RunGC after close: %v, want ErrClosed", err)
	}
}

// A cancelled context stops a listing; point reads and writes are not abandoned.
func TestKeysStopsWhenCancelled(t *testing.T) {
	db, err := Open(t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Destruct()
	if err := db.Put(t.Context(), Entry{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := db.Keys(ctx, []byte("k")); !errors.Is(err, context.Canceled) {
		t.Fatalf("keys with a cancelled context: %v, want context.Canceled", err)
	}
	if v, err := db.Get(ctx, []byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("get with a cancelled context: %q %v", v, err)
	}
}
