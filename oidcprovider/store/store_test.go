package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestPoolSharesOneDatabasePerDirectory(t *testing.T) {
	dir := t.TempDir()
	a, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	// a second config (a reload) names the same directory another way: same database, no lock error
	b, err := Acquire(filepath.Join(dir, "x", ".."))
	if err != nil {
		t.Fatalf("second acquire: %v", err)
	}
	if a != b {
		t.Fatal("two spellings of one directory must share one database")
	}
	if err := a.Put(Entry{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := Release(dir); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("database closed while still referenced: %v", err)
	}
	if err := Release(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("after the last release: %v, want ErrClosed", err)
	}
	if err := b.Put(Entry{Key: []byte("k"), Value: []byte("v")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}
	// reopening finds the data on disk
	c, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer Release(dir)
	if v, err := c.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("data lost across close and reopen: %v", err)
	}
}

func TestTTLAndPrefixAndDelete(t *testing.T) {
	db, err := Open(t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Destruct()
	err = db.Put(
		Entry{Key: []byte("tok/at/1"), Value: []byte("a"), TTL: time.Second},
		Entry{Key: []byte("tok/at/2"), Value: []byte("b")},
		Entry{Key: []byte("tok/rt/1"), Value: []byte("c")},
	)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := db.Keys([]byte("tok/at/"))
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], []byte("tok/at/1")) {
		t.Fatalf("prefix keys: %q %v", keys, err)
	}
	if err := db.Delete([]byte("tok/at/2"), []byte("missing")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get([]byte("tok/at/2")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := db.Get([]byte("tok/at/1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired key still readable: %v", err)
	}
	if keys, _ := db.Keys([]byte("tok/at/")); len(keys) != 0 {
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
			v, err := db.GetOrCreate([]byte("meta/secret"), func() ([]byte, error) {
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
	if _, err := db.GetOrCreate([]byte("meta/failing"), func() ([]byte, error) { return nil, errors.New("boom") }); err == nil {
		t.Fatal("a failing create must fail")
	}
	if _, err := db.Get([]byte("meta/failing")); !errors.Is(err, ErrNotFound) {
		t.Fatal("a failed create must store nothing")
	}
}
