package digest

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestVerifyRemembersOnlyMatches(t *testing.T) {
	c := NewCache(8, time.Hour)
	calls := 0
	check := func(ok bool) func() bool { return func() bool { calls++; return ok } }
	if ok, cached := c.Verify("kuma", "$digest", "wrong", check(false)); ok || cached {
		t.Fatalf("wrong secret: ok=%v cached=%v", ok, cached)
	}
	if ok, _ := c.Verify("kuma", "$digest", "wrong", check(false)); ok || calls != 2 {
		t.Fatalf("a mismatch must not be remembered (calls=%d)", calls)
	}
	if ok, cached := c.Verify("kuma", "$digest", "good", check(true)); !ok || cached {
		t.Fatal("first good check must run the digest")
	}
	if ok, cached := c.Verify("kuma", "$digest", "good", check(false)); !ok || !cached || calls != 3 {
		t.Fatalf("second good check must come from memory (calls=%d)", calls)
	}
	if !c.Remembered("kuma", "$digest", "good") || c.Remembered("kuma", "$other", "good") || c.Remembered("other", "$digest", "good") {
		t.Fatal("lookup must be bound to client, digest and secret")
	}
}

func TestNoPlaintextInKeys(t *testing.T) {
	c := NewCache(8, time.Hour)
	c.Verify("kuma", "$digest", "insecure_secret", func() bool { return true })
	want := c.key("kuma", "$digest", "insecure_secret")
	for k, e := range c.entries {
		if k != want || bytes.Contains(k[:], []byte("insecure")) || e.id != "kuma" {
			t.Fatal("the entry must be keyed by the keyed hash, and hold no secret")
		}
	}
	if NewCache(8, time.Hour).key("kuma", "$digest", "insecure_secret") == want {
		t.Fatal("the hash key must differ per process (per cache)")
	}
}

func TestBoundedAndExpiring(t *testing.T) {
	c := NewCache(3, time.Minute)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		c.Verify("x", "$d", s, func() bool { return true })
		now = now.Add(time.Second)
	}
	if c.Len() != 3 {
		t.Fatalf("len = %d, want 3", c.Len())
	}
	if c.Remembered("x", "$d", "a") || !c.Remembered("x", "$d", "e") {
		t.Fatal("the oldest entries go first")
	}
	now = now.Add(2 * time.Minute)
	if c.Remembered("x", "$d", "e") {
		t.Fatal("entries expire")
	}
}

func TestWrongGuessesDoNotEvict(t *testing.T) {
	c := NewCache(2, time.Hour)
	c.Verify("kuma", "$d", "good", func() bool { return true })
	for i := 0; i < 1000; i++ {
		c.Verify("kuma", "$d", string(rune('a'+i%26))+"guess", func() bool { return false })
	}
	if !c.Remembered("kuma", "$d", "good") {
		t.Fatal("a flood of wrong guesses evicted the good entry")
	}
}

func TestRetainForgetsChangedClients(t *testing.T) {
	c := NewCache(8, time.Hour)
	c.Verify("a", "$old", "s", func() bool { return true })
	c.Verify("b", "$same", "s", func() bool { return true })
	c.Verify("gone", "$x", "s", func() bool { return true })
	c.Retain(map[string]Fingerprint{"a": FingerprintOf("$new"), "b": FingerprintOf("$same")})
	if c.Remembered("a", "$old", "s") || !c.Remembered("b", "$same", "s") || c.Remembered("gone", "$x", "s") || c.Len() != 1 {
		t.Fatalf("retain kept the wrong entries (len %d)", c.Len())
	}
}

func TestConcurrentIdenticalChecksShareOne(t *testing.T) {
	c := NewCache(8, time.Hour)
	var calls atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, _ := c.Verify("kuma", "$d", "s", func() bool { calls.Add(1); time.Sleep(50 * time.Millisecond); return true })
			if !ok {
				t.Error("verify failed")
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("digest ran %d times for 16 identical concurrent checks", n)
	}
}

func TestUseKeepsAnEntryRemembered(t *testing.T) {
	c := NewCache(8, time.Hour)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	c.Verify("kuma", "$d", "good", func() bool { return true })
	c.Verify("kuma", "$d", "idle", func() bool { return true })
	// a monitor polling every 50 minutes keeps its secret remembered for ten hours
	for i := 0; i < 12; i++ {
		now = now.Add(50 * time.Minute)
		if ok, cached := c.Verify("kuma", "$d", "good", func() bool { return false }); !ok || !cached {
			t.Fatalf("a secret in use was forgotten after %d polls", i)
		}
	}
	if c.Remembered("kuma", "$d", "idle") {
		t.Fatal("an unused entry must still expire after its TTL")
	}
}
