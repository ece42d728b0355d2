package clients

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiterTakesAndRecovers(t *testing.T) {
	l := NewLimiter(3, 10*time.Second, 100)
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if _, ok := l.Take("k"); !ok {
			t.Fatalf("refused after %d attempts", i)
		}
	}
	if _, ok := l.Take("k"); ok || !l.Throttled("k") {
		t.Fatal("the fourth attempt within the burst must be refused")
	}
	if _, ok := l.Take("other"); !ok {
		t.Fatal("keys are independent")
	}
	now = now.Add(10 * time.Second)
	if _, ok := l.Take("k"); !ok {
		t.Fatal("one attempt comes back per interval")
	}
	if _, ok := l.Take("k"); ok {
		t.Fatal("only one came back")
	}
}

func TestGiveBackAfterTheCheck(t *testing.T) {
	l := NewLimiter(2, time.Minute, 100)
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	a, _ := l.Take("k")
	if _, ok := l.Take("k"); !ok {
		t.Fatal("burst of two")
	}
	now = now.Add(300 * time.Millisecond) // the digest check took this long and succeeded
	a.GiveBack()
	if _, ok := l.Take("k"); !ok {
		t.Fatal("a successful attempt's token must come back after the check")
	}
	if _, ok := l.Take("k"); ok {
		t.Fatal("giving back one token must not give back more")
	}
}

func TestConcurrentAttemptsCannotExceedTheBurst(t *testing.T) {
	l := NewLimiter(10, time.Hour, 100)
	var got atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, ok := l.Take("k"); ok {
				got.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got.Load() != 10 {
		t.Fatalf("%d of 40 concurrent attempts got through a burst of 10", got.Load())
	}
}

func TestBoundedKeys(t *testing.T) {
	l := NewLimiter(2, time.Minute, 50)
	for i := 0; i < 10000; i++ {
		l.Take(fmt.Sprint("ip-", i))
	}
	if n := len(l.buckets); n > 50 {
		t.Fatalf("%d keys tracked, want at most 50", n)
	}
}
