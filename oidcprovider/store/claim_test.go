package store

import (
	"sync"
	"testing"
	"time"
)

// Of many racing claims of one key exactly one is stored, and the claim carries its expiry (the
// store's write clock set back past it makes the next claim find the key free).
func TestClaimOnce(t *testing.T) {
	db, err := Open(t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Destruct()
	key := []byte("claim/x")
	var won sync.Map
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, ok, err := Claim(t.Context(), db, key, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Store(string(v), true)
			}
		}()
	}
	wg.Wait()
	n := 0
	won.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d claims of one key were stored, want 1", n)
	}
	if _, ok, _ := Claim(t.Context(), db, key, time.Minute); ok {
		t.Fatal("a held claim was taken again")
	}
	// a claim written as if an hour ago, with a minute to live, has expired: the key is free
	db.now = func() time.Time { return time.Now().Add(-time.Hour) }
	if _, ok, err := Claim(t.Context(), db, []byte("claim/y"), time.Minute); !ok || err != nil {
		t.Fatalf("claim/y: %v %v", ok, err)
	}
	db.now = time.Now
	if _, ok, err := Claim(t.Context(), db, []byte("claim/y"), time.Minute); !ok || err != nil {
		t.Fatalf("an expired claim was not free: %v %v", ok, err)
	}
}
