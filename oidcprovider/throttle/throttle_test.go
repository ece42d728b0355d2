package throttle

import (
	"fmt"
	"testing"
	"time"
)

func TestThrottleAndRecover(t *testing.T) {
	l := New(3, 10*time.Second, 100)
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if th, _ := l.Throttled("k"); th {
			t.Fatalf("throttled after %d failures", i)
		}
		l.Fail("k")
	}
	th, wait := l.Throttled("k")
	if !th || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("want throttled with a wait, got %v %v", th, wait)
	}
	if th, _ := l.Throttled("other"); th {
		t.Fatal("keys are independent")
	}
	now = now.Add(10 * time.Second)
	if th, _ := l.Throttled("k"); th {
		t.Fatal("one failure comes back per interval")
	}
	l.Fail("k")
	if th, _ := l.Throttled("k"); !th {
		t.Fatal("used the regained token")
	}
}

func TestBoundedKeys(t *testing.T) {
	l := New(2, time.Minute, 50)
	for i := 0; i < 10000; i++ {
		l.Fail(fmt.Sprint("ip-", i))
	}
	if n := len(l.buckets); n > 50 {
		t.Fatalf("%d keys tracked, want at most 50", n)
	}
}
