// Package storetest is the contract of store.KV as a table of tests that every backend runs:
// the embedded Badger store and the shared PostgreSQL store must behave alike, since the provider
// runs on either without knowing which.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Store is what a backend under test offers: the KV and its Destruct.
type Store interface {
	store.KV
	Destruct() error
}

// Open returns a new, empty store for t; the backend destructs it when t ends (Destruct may
// already have been called by the test).
type Open func(t *testing.T) Store

// Pair returns two stores over one new, empty database, as two nodes would have them.
type Pair func(t *testing.T) (a, b Store)

// Run runs the contract on stores that open makes, one store per test.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"GetPutDelete", testGetPutDelete},
		{"Keys", testKeys},
		{"TTL", testTTL},
		{"GetOrCreate", testGetOrCreate},
		{"GetOrCreateConcurrent", testGetOrCreateConcurrent},
		{"GetOrCreateReplacesExpired", testGetOrCreateReplacesExpired},
		{"MultiEntryAtomicity", testAtomicity},
		{"CancelledKeys", testCancelledKeys},
		{"ClosedAfterDestruct", testClosed},
		{"DestructWhileOperationsRun", testDestructWhileRunning},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// RunShared runs the part of the contract that concerns several nodes on one database.
func RunShared(t *testing.T, pair Pair) {
	t.Run("WritesSeenByOtherNode", func(t *testing.T) {
		a, b := pair(t)
		ctx := t.Context()
		must(t, a.Put(ctx, store.Entry{Key: []byte("n/1"), Value: []byte("from a")}))
		expectValue(t, b, "n/1", "from a")
		must(t, b.PutSync(ctx, store.Entry{Key: []byte("n/1"), Value: []byte("from b")}))
		expectValue(t, a, "n/1", "from b")
		must(t, a.Delete(ctx, []byte("n/1")))
		expectMissing(t, b, "n/1")
	})
	t.Run("GetOrCreateAgreesAcrossNodes", func(t *testing.T) {
		a, b := pair(t)
		for round := range 10 {
			key := []byte(fmt.Sprintf("meta/secret/%d", round))
			var created atomic.Int32
			values := make([][]byte, 16)
			var wg sync.WaitGroup
			for i := range values {
				s := a
				if i%2 == 1 {
					s = b
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := s.GetOrCreate(t.Context(), key, func() ([]byte, error) {
						created.Add(1)
						return []byte(fmt.Sprintf("value of caller %d", i)), nil
					})
					if err != nil {
						t.Error(err)
					}
					values[i] = v
				}()
			}
			wg.Wait()
			stored, err := a.Get(t.Context(), key)
			must(t, err)
			for i, v := range values {
				if !bytes.Equal(v, stored) {
					t.Fatalf("round %d: caller %d got %q, the store holds %q (%d values created)", round, i, v, stored, created.Load())
				}
			}
			if n := created.Load(); n < 1 || n > 2 {
				t.Fatalf("round %d: create ran %d times; at most once per node", round, n)
			}
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func expectValue(t *testing.T, s store.KV, key, want string) {
	t.Helper()
	v, err := s.Get(t.Context(), []byte(key))
	if err != nil || string(v) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, v, err, want)
	}
}

func expectMissing(t *testing.T, s store.KV, key string) {
	t.Helper()
	if v, err := s.Get(t.Context(), []byte(key)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

func expectKeys(t *testing.T, s store.KV, prefix string, want ...string) {
	t.Helper()
	keys, err := s.Keys(t.Context(), []byte(prefix))
	if err != nil {
		t.Fatalf("Keys(%q): %v", prefix, err)
	}
	got := make([]string, len(keys))
	for i, k := range keys {
		got[i] = string(k)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
		t.Fatalf("Keys(%q) = %q, want %q", prefix, got, want)
	}
}

// eventually polls cond every 20 ms for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testGetPutDelete(t *testing.T, s Store) {
	ctx := t.Context()
	expectMissing(t, s, "k")
	must(t, s.Put(ctx, store.Entry{Key: []byte("k"), Value: []byte("v1")}))
	expectValue(t, s, "k", "v1")
	must(t, s.Put(ctx, store.Entry{Key: []byte("k"), Value: []byte("v2")}))
	expectValue(t, s, "k", "v2")
	// the value is the caller's copy: changing what Get returned changes nothing stored
	v, _ := s.Get(ctx, []byte("k"))
	v[0] = 'X'
	expectValue(t, s, "k", "v2")
	// binary keys and values, and an empty value
	bin := []byte{0, 0xff, 0x80, '/', 0}
	must(t, s.PutSync(ctx, store.Entry{Key: bin, Value: []byte{0, 1, 0xff}}, store.Entry{Key: []byte("empty"), Value: nil}))
	if v, err := s.Get(ctx, bin); err != nil || !bytes.Equal(v, []byte{0, 1, 0xff}) {
		t.Fatalf("binary key: %v %v", v, err)
	}
	if v, err := s.Get(ctx, []byte("empty")); err != nil || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, err)
	}
	// several keys in one Delete; missing ones are not an error
	must(t, s.Delete(ctx, []byte("k"), bin, []byte("never-there")))
	expectMissing(t, s, "k")
	if _, err := s.Get(ctx, bin); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted binary key: %v", err)
	}
	expectValue(t, s, "empty", "")
	// no entries and no keys are no-ops
	must(t, s.Put(ctx))
	must(t, s.Delete(ctx))
	// the last write of a key in one Put wins
	must(t, s.Put(ctx, store.Entry{Key: []byte("dup"), Value: []byte("first")}, store.Entry{Key: []byte("dup"), Value: []byte("last")}))
	expectValue(t, s, "dup", "last")
}

func testKeys(t *testing.T, s Store) {
	ctx := t.Context()
	var entries []store.Entry
	for _, k := range []string{"tok/at/2", "tok/at/1", "tok/rt/1", "tok/at", "tok/au", "tok/at/\xff\xff", "tok/a\xff", "tok/a\xff\x00", "tol", "\xff\xff"} {
		entries = append(entries, store.Entry{Key: []byte(k), Value: []byte("v")})
	}
	must(t, s.Put(ctx, entries...))
	expectKeys(t, s, "tok/at/", "tok/at/1", "tok/at/2", "tok/at/\xff\xff")
	expectKeys(t, s, "tok/at", "tok/at", "tok/at/1", "tok/at/2", "tok/at/\xff\xff")
	expectKeys(t, s, "tok/a\xff", "tok/a\xff", "tok/a\xff\x00")
	expectKeys(t, s, "tok/at/\xff", "tok/at/\xff\xff")
	expectKeys(t, s, "\xff", "\xff\xff")
	expectKeys(t, s, "none/")
	all, err := s.Keys(ctx, nil)
	if err != nil || len(all) != len(entries) {
		t.Fatalf("Keys(nil) = %d keys, %v; want all %d", len(all), err, len(entries))
	}
	for i := 1; i < len(all); i++ {
		if bytes.Compare(all[i-1], all[i]) >= 0 {
			t.Fatalf("keys not in byte order: %q before %q", all[i-1], all[i])
		}
	}
	must(t, s.Delete(ctx, []byte("tok/at/1")))
	expectKeys(t, s, "tok/at/", "tok/at/2", "tok/at/\xff\xff")
}

func testTTL(t *testing.T, s Store) {
	ctx := t.Context()
	must(t, s.Put(ctx,
		store.Entry{Key: []byte("ttl/short"), Value: []byte("a"), TTL: time.Second},
		store.Entry{Key: []byte("ttl/long"), Value: []byte("b"), TTL: time.Hour},
		store.Entry{Key: []byte("ttl/none"), Value: []byte("c")},
		store.Entry{Key: []byte("ttl/cleared"), Value: []byte("d"), TTL: time.Second},
	))
	// a write without TTL makes the key live for ever again
	must(t, s.Put(ctx, store.Entry{Key: []byte("ttl/cleared"), Value: []byte("e")}))
	expectValue(t, s, "ttl/long", "b")
	// Badger keeps expiry in whole seconds: a 1s TTL ends within 2 s
	if !eventually(3*time.Second, func() bool {
		_, err := s.Get(ctx, []byte("ttl/short"))
		return errors.Is(err, store.ErrNotFound)
	}) {
		t.Fatal("an entry with a 1s TTL was still readable after 3s")
	}
	expectKeys(t, s, "ttl/", "ttl/cleared", "ttl/long", "ttl/none")
	expectValue(t, s, "ttl/long", "b")
	expectValue(t, s, "ttl/none", "c")
	expectValue(t, s, "ttl/cleared", "e")
	// an expired key can be written again
	must(t, s.Put(ctx, store.Entry{Key: []byte("ttl/short"), Value: []byte("again")}))
	expectValue(t, s, "ttl/short", "again")
}

func testGetOrCreate(t *testing.T, s Store) {
	ctx := t.Context()
	calls := 0
	mk := func(v string) func() ([]byte, error) {
		return func() ([]byte, error) { calls++; return []byte(v), nil }
	}
	v, err := s.GetOrCreate(ctx, []byte("meta/hmac"), mk("one"))
	if err != nil || string(v) != "one" || calls != 1 {
		t.Fatalf("first GetOrCreate: %q %v after %d calls", v, err, calls)
	}
	v, err = s.GetOrCreate(ctx, []byte("meta/hmac"), mk("two"))
	if err != nil || string(v) != "one" || calls != 1 {
		t.Fatalf("second GetOrCreate: %q %v after %d calls; want the stored value without a call", v, err, calls)
	}
	expectValue(t, s, "meta/hmac", "one")
	boom := errors.New("boom")
	if _, err := s.GetOrCreate(ctx, []byte("meta/failing"), func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("a failing create: %v, want its error", err)
	}
	expectMissing(t, s, "meta/failing")
}

func testGetOrCreateConcurrent(t *testing.T, s Store) {
	var created atomic.Int32
	values := make([][]byte, 16)
	var wg sync.WaitGroup
	for i := range values {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.GetOrCreate(t.Context(), []byte("meta/keys"), func() ([]byte, error) {
				created.Add(1)
				return []byte{byte(i)}, nil
			})
			if err != nil {
				t.Error(err)
			}
			values[i] = v
		}()
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("create ran %d times in one process, want once", created.Load())
	}
	for i, v := range values {
		if !bytes.Equal(v, values[0]) {
			t.Fatalf("caller %d got %v, caller 0 %v", i, v, values[0])
		}
	}
}

func testGetOrCreateReplacesExpired(t *testing.T, s Store) {
	ctx := t.Context()
	must(t, s.Put(ctx, store.Entry{Key: []byte("meta/x"), Value: []byte("old"), TTL: time.Second}))
	if !eventually(3*time.Second, func() bool {
		_, err := s.Get(ctx, []byte("meta/x"))
		return errors.Is(err, store.ErrNotFound)
	}) {
		t.Fatal("an entry with a 1s TTL was still readable after 3s")
	}
	v, err := s.GetOrCreate(ctx, []byte("meta/x"), func() ([]byte, error) { return []byte("new"), nil })
	if err != nil || string(v) != "new" {
		t.Fatalf("GetOrCreate over an expired entry: %q %v, want the new value", v, err)
	}
	expectValue(t, s, "meta/x", "new")
}

// A reader never sees part of a multi-entry Put or Delete: each batch writes (then deletes) ten
// keys under its own prefix, and every listing holds all ten of a batch or none.
func testAtomicity(t *testing.T, s Store) {
	ctx := t.Context()
	const minBatches, size = 60, 10
	done := make(chan struct{})
	var wg sync.WaitGroup
	var listings atomic.Int32
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				keys, err := s.Keys(ctx, []byte("atom/"))
				if err != nil {
					t.Error(err)
					return
				}
				listings.Add(1)
				count := map[string]int{}
				for _, k := range keys {
					count[string(k[:len("atom/0000/")])]++
				}
				for b, n := range count {
					if n != size {
						t.Errorf("a listing saw %d of the %d keys of batch %s", n, size, b)
						return
					}
				}
			}
		}()
	}
	// write until the listings have had a fair chance to see a half-done batch (a loaded
	// machine runs few of them alongside 60 batches)
	kept := 0
	deadline := time.Now().Add(10 * time.Second)
	b := 0
	for ; b < minBatches || (listings.Load() < 50 && time.Now().Before(deadline) && b < 9999); b++ {
		var entries []store.Entry
		var keys [][]byte
		for i := range size {
			k := []byte(fmt.Sprintf("atom/%04d/%d", b, i))
			entries = append(entries, store.Entry{Key: k, Value: k})
			keys = append(keys, k)
		}
		put := s.Put
		if b%3 == 0 {
			put = s.PutSync
		}
		must(t, put(ctx, entries...))
		if b%2 == 0 {
			must(t, s.Delete(ctx, keys...))
		} else {
			kept++
		}
	}
	close(done)
	wg.Wait()
	if listings.Load() < 10 {
		t.Fatalf("only %d listings ran alongside %d batches of writes: the test proved little", listings.Load(), b)
	}
	keys, err := s.Keys(ctx, []byte("atom/"))
	if err != nil || len(keys) != kept*size {
		t.Fatalf("after the writes: %d keys, %v; want %d", len(keys), err, kept*size)
	}
}

func testCancelledKeys(t *testing.T, s Store) {
	must(t, s.Put(t.Context(), store.Entry{Key: []byte("k"), Value: []byte("v")}))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Keys(ctx, []byte("k")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Keys with a cancelled context: %v, want context.Canceled", err)
	}
}

func testClosed(t *testing.T, s Store) {
	ctx := t.Context()
	must(t, s.Put(ctx, store.Entry{Key: []byte("k"), Value: []byte("v")}))
	must(t, s.Destruct())
	for name, err := range map[string]error{
		"Get":     func() error { _, err := s.Get(ctx, []byte("k")); return err }(),
		"Put":     s.Put(ctx, store.Entry{Key: []byte("k"), Value: []byte("v")}),
		"PutSync": s.PutSync(ctx, store.Entry{Key: []byte("k"), Value: []byte("v")}),
		"Delete":  s.Delete(ctx, []byte("k")),
		"Keys":    func() error { _, err := s.Keys(ctx, []byte("k")); return err }(),
		"GetOrCreate": func() error {
			_, err := s.GetOrCreate(ctx, []byte("meta/x"), func() ([]byte, error) { return []byte("x"), nil })
			return err
		}(),
	} {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Destruct: %v, want ErrClosed", name, err)
		}
	}
	must(t, s.Destruct()) // a second Destruct does nothing
}

// Destruct while operations run: each finishes or returns ErrClosed, none panics or sees
// another error, and Destruct returns once they are done.
func testDestructWhileRunning(t *testing.T, s Store) {
	ctx := t.Context()
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				k := []byte{'k', byte(w), byte(i)}
				var err error
				switch i % 6 {
				case 0:
					err = s.Put(ctx, store.Entry{Key: k, Value: k})
				case 1:
					_, err = s.Get(ctx, k)
				case 2:
					_, err = s.Keys(ctx, []byte{'k', byte(w)})
				case 3:
					err = s.Delete(ctx, k)
				case 4:
					err = s.PutSync(ctx, store.Entry{Key: k, Value: k})
				case 5:
					_, err = s.GetOrCreate(ctx, k, func() ([]byte, error) { return k, nil })
				}
				if i > 20 {
					once.Do(func() { close(started) })
				}
				switch {
				case errors.Is(err, store.ErrClosed):
					return
				case err != nil && !errors.Is(err, store.ErrNotFound):
					t.Errorf("operation %d while closing: %v", i%6, err)
					return
				}
			}
		}()
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the operations did not get going")
	}
	must(t, s.Destruct())
	wg.Wait()
}
