package postgres

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// recorder collects the keys a Watch fn receives.
type recorder struct {
	mu   sync.Mutex
	keys []string // "<nil>" for a nil key
	ch   chan string
}

func newRecorder() *recorder { return &recorder{ch: make(chan string, 10000)} }

func (r *recorder) fn(key []byte) {
	k := string(key)
	if key == nil {
		k = "<nil>"
	}
	r.mu.Lock()
	r.keys = append(r.keys, k)
	r.mu.Unlock()
	r.ch <- k
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.keys)
}

// next waits for the next key, failing after d.
func (r *recorder) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case k := <-r.ch:
		return k
	case <-time.After(d):
		t.Fatalf("no change within %v (received so far: %q)", d, r.got())
		return ""
	}
}

// none checks that nothing more arrives within d.
func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case k := <-r.ch:
		t.Fatalf("unexpected change %q", k)
	case <-time.After(d):
	}
}

// What the change feed delivers, to both nodes: every deleted key, the written keys under a
// watched prefix and no others, in commit order, and nothing once stopped.
func TestChangesContract(t *testing.T) {
	srv := newServer(t)
	dsn := srv.Database(t)
	a, b := openDSN(t, dsn, options{}), openDSN(t, dsn, options{})
	if !a.Trusted() || !b.Trusted() {
		t.Fatal("a store must be trusted once Open returns")
	}
	ctx := t.Context()
	ra, rb, rOther := newRecorder(), newRecorder(), newRecorder()
	a.Watch([]byte("tok/"), ra.fn)
	b.Watch([]byte("tok/"), rb.fn)
	stopOther := b.Watch([]byte("sess/"), rOther.fn)

	// a write under a watched prefix reaches both nodes, the writer's included
	must(t, a.Put(ctx, store.Entry{Key: []byte("tok/1"), Value: []byte("v")}, store.Entry{Key: []byte("other/1"), Value: []byte("v")}))
	for _, r := range []*recorder{ra, rb} {
		if k := r.next(t, time.Second); k != "tok/1" {
			t.Fatalf("got %q, want tok/1", k)
		}
	}
	// a delete sends every key, watched or not, present or not (sess/9 was never written), and
	// each Watch gets its prefix's keys
	must(t, b.Delete(ctx, []byte("tok/1"), []byte("sess/9"), []byte("other/1")))
	if k := ra.next(t, time.Second); k != "tok/1" {
		t.Fatalf("got %q, want tok/1", k)
	}
	if k := rOther.next(t, time.Second); k != "sess/9" {
		t.Fatalf("got %q, want sess/9", k)
	}
	// PutSync and GetOrCreate notify too; a write that fails sends nothing; the unwatched write
	// "other/1" above reached no fn
	must(t, a.PutSync(ctx, store.Entry{Key: []byte("tok/2"), Value: []byte("v")}))
	if _, err := a.GetOrCreate(ctx, []byte("tok/3"), func() ([]byte, error) { return []byte("v"), nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetOrCreate(ctx, []byte("tok/3"), func() ([]byte, error) { return []byte("w"), nil }); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{ra, rb} {
		for _, want := range []string{"tok/1", "tok/2", "tok/3"} {
			if want == "tok/1" && r == ra {
				continue // ra had its tok/1 of the delete above already
			}
			if k := r.next(t, time.Second); k != want {
				t.Fatalf("got %q, want %q (all: %q)", k, want, r.got())
			}
		}
		r.none(t, 100*time.Millisecond)
	}
	// order: one writer's changes arrive in commit order, many keys split over payloads
	var keys [][]byte
	for i := range 2000 {
		keys = append(keys, []byte(fmt.Sprintf("tok/order/%05d/%s", i, make([]byte, 20))))
	}
	must(t, a.Delete(ctx, keys[:1000]...))
	must(t, a.Delete(ctx, keys[1000:]...))
	for i := range keys {
		if k := rb.next(t, 2*time.Second); k != string(keys[i]) {
			t.Fatalf("change %d: got %q, want %q", i, k, keys[i])
		}
	}
	// a key too long for one notification makes every fn forget everything (a nil key)
	long := append([]byte("tok/"), make([]byte, 7000)...)
	must(t, a.Delete(ctx, long))
	if k := rb.next(t, time.Second); k != "<nil>" {
		t.Fatalf("a key too long for a payload: got %q, want a nil key", k)
	}
	if k := rOther.next(t, time.Second); k != "<nil>" {
		t.Fatalf("a key too long for a payload: got %q on another prefix, want a nil key", k)
	}
	// after stop, nothing
	stopOther()
	stopOther()
	must(t, a.Delete(ctx, []byte("sess/1")))
	rOther.none(t, 200*time.Millisecond)
	if counterValue(a.metrics.changesSent) < 2000 || counterValue(b.metrics.changesReceived) < 2000 {
		t.Fatalf("metrics: sent %v on a, received %v on b", counterValue(a.metrics.changesSent), counterValue(b.metrics.changesReceived))
	}
}

// The bound the caches rely on: how long after a Delete on node A node B's Watch hears of it.
func TestChangeDelay(t *testing.T) {
	srv := newServer(t)
	dsn := srv.Database(t)
	a, b := openDSN(t, dsn, options{}), openDSN(t, dsn, options{})
	ctx := t.Context()
	type arrival struct {
		key string
		at  time.Time
	}
	arrivals := make(chan arrival, 1)
	b.Watch([]byte("tok/"), func(key []byte) { arrivals <- arrival{string(key), time.Now()} })
	const tries = 200
	var sinceCall, sinceCommit []time.Duration
	for i := range tries {
		key := fmt.Sprintf("tok/%d", i)
		start := time.Now()
		must(t, a.Delete(ctx, []byte(key)))
		committed := time.Now()
		select {
		case got := <-arrivals:
			if got.key != key {
				t.Fatalf("got %q, want %q", got.key, key)
			}
			sinceCall = append(sinceCall, got.at.Sub(start))
			sinceCommit = append(sinceCommit, max(0, got.at.Sub(committed)))
		case <-time.After(2 * time.Second):
			t.Fatalf("try %d: no change within 2s", i)
		}
	}
	slices.Sort(sinceCall)
	slices.Sort(sinceCommit)
	p := func(d []time.Duration, q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
	t.Logf("Delete on A to B's Watch over %d tries: p50 %v, p99 %v, max %v (after Delete returned: p50 %v, p99 %v)",
		tries, p(sinceCall, .5), p(sinceCall, .99), sinceCall[len(sinceCall)-1], p(sinceCommit, .5), p(sinceCommit, .99))
	if p(sinceCall, .5) > 20*time.Millisecond || p(sinceCall, .99) > 100*time.Millisecond {
		t.Fatalf("change delay p50 %v, p99 %v: want well under 100 ms", p(sinceCall, .5), p(sinceCall, .99))
	}
}
