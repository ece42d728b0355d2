package postgres

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Create stores where no live record is, and of calls racing on two nodes exactly one stores.
func TestCreate(t *testing.T) {
	srv := newServer(t)
	dsn := srv.Database(t)
	a, b := openDSN(t, dsn, options{}), openDSN(t, dsn, options{})
	ctx := t.Context()
	key := []byte("slot/x/0")

	var won atomic.Int32
	var winner atomic.Value
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range 20 {
		done.Add(1)
		go func() {
			defer done.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			start.Wait()
			v := fmt.Sprintf("attempt-%d", i)
			ok, err := s.Create(ctx, store.Entry{Key: key, Value: []byte(v), TTL: time.Minute})
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
				winner.Store(v)
			}
		}()
	}
	start.Done()
	done.Wait()
	if n := won.Load(); n != 1 {
		t.Fatalf("20 racing creates on two nodes: %d stored, want 1", n)
	}
	if v, err := b.Get(ctx, key); err != nil || string(v) != winner.Load().(string) {
		t.Errorf("stored %q, %v; the winner was %q", v, err, winner.Load())
	}
	// a live record stays; a deleted one can be created again
	if ok, err := a.Create(ctx, store.Entry{Key: key, Value: []byte("late")}); ok || err != nil {
		t.Errorf("create over a live record: %v %v", ok, err)
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Create(ctx, store.Entry{Key: key, Value: []byte("short"), TTL: 50 * time.Millisecond}); !ok || err != nil {
		t.Fatalf("create after a delete: %v %v", ok, err)
	}
	// an expired record counts as absent, and the TTL is the new entry's
	time.Sleep(100 * time.Millisecond)
	if ok, err := b.Create(ctx, store.Entry{Key: key, Value: []byte("forever")}); !ok || err != nil {
		t.Fatalf("create over an expired record: %v %v", ok, err)
	}
	time.Sleep(100 * time.Millisecond)
	if v, err := a.Get(ctx, key); err != nil || string(v) != "forever" {
		t.Errorf("after the TTL of the replaced record: %q, %v (the new entry has none)", v, err)
	}
}
