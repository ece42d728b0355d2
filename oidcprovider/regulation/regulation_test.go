package regulation

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T, cfg Config, kv store.KV) (*Regulator, *clock) {
	t.Helper()
	r, err := New(t.Context(), cfg, kv)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	r.now = c.now
	return r, c
}

var (
	guesser = netip.MustParseAddr("203.0.113.9")
	home    = netip.MustParseAddr("198.51.100.4")
)

func TestBanAfterMaxRetriesWithinFindTime(t *testing.T) {
	r, c := newTest(t, Config{MaxRetries: 3, FindTime: 2 * time.Minute, BanTime: 5 * time.Minute}, nil)
	for i := 0; i < 2; i++ {
		if banned, _ := r.Fail(t.Context(), "john", guesser); banned {
			t.Fatalf("banned after %d failures", i+1)
		}
	}
	if _, b := r.Banned("john", guesser); b {
		t.Fatal("banned before max_retries")
	}
	if banned, _ := r.Fail(t.Context(), "john", guesser); !banned {
		t.Fatal("no ban at max_retries")
	}
	until, b := r.Banned("john", guesser)
	if !b || !until.Equal(c.now().Add(5*time.Minute)) {
		t.Fatalf("ban until %v (%v)", until, b)
	}
	// the user from another address is not locked out
	if _, b := r.Banned("john", home); b {
		t.Fatal("a guesser locked the user out of another address")
	}
	c.add(5 * time.Minute)
	if _, b := r.Banned("john", guesser); b {
		t.Fatal("the ban outlived ban_time")
	}
}

func TestFailuresSpreadBeyondFindTimeDoNotBan(t *testing.T) {
	r, c := newTest(t, Config{MaxRetries: 3, FindTime: 2 * time.Minute}, nil)
	for i := 0; i < 10; i++ {
		if banned, _ := r.Fail(t.Context(), "john", guesser); banned {
			t.Fatalf("banned at failure %d though each was %s apart", i+1, time.Minute)
		}
		c.add(61 * time.Second)
	}
}

func TestAddressBanAcrossUsersAndIPv6Prefix(t *testing.T) {
	r, _ := newTest(t, Config{MaxRetries: 3}, nil) // address limit: 10
	users := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for i, u := range users {
		ip := netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1))
		if _, err := r.Fail(t.Context(), u, ip); err != nil {
			t.Fatal(err)
		}
	}
	// a spray of one failure per user from one /64 bans the /64, for every user
	if _, b := r.Banned("zed", netip.MustParseAddr("2001:db8:1:2::ffff")); !b {
		t.Fatal("a spray across users from one /64 did not ban it")
	}
	if _, b := r.Banned("zed", netip.MustParseAddr("2001:db8:1:3::1")); b {
		t.Fatal("another /64 was banned")
	}
}

func TestSuccessClearsThePair(t *testing.T) {
	r, _ := newTest(t, Config{MaxRetries: 3}, nil)
	r.Fail(t.Context(), "john", home)
	r.Fail(t.Context(), "john", home)
	r.Succeed("john", home)
	r.Fail(t.Context(), "john", home)
	r.Fail(t.Context(), "john", home)
	if _, b := r.Banned("john", home); b {
		t.Fatal("failures before a good sign-in still counted")
	}
}

func TestDisabled(t *testing.T) {
	r, _ := newTest(t, Config{MaxRetries: 0}, nil)
	for i := 0; i < 50; i++ {
		r.Fail(t.Context(), "john", guesser)
	}
	if _, b := r.Banned("john", guesser); b {
		t.Fatal("max_retries 0 must disable regulation")
	}
}

// Bans are kept in the store and survive a restart.
func TestBansSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	kv, err := store.Open(dir, store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(t.Context(), Config{MaxRetries: 2, BanTime: time.Hour}, kv)
	if err != nil {
		t.Fatal(err)
	}
	r.Fail(t.Context(), "john", guesser)
	if banned, err := r.Fail(t.Context(), "john", guesser); !banned || err != nil {
		t.Fatalf("ban: %v %v", banned, err)
	}
	kv.Destruct()
	kv, err = store.Open(dir, store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Destruct()
	r2, err := New(t.Context(), Config{MaxRetries: 2, BanTime: time.Hour}, kv)
	if err != nil {
		t.Fatal(err)
	}
	if _, b := r2.Banned("john", guesser); !b {
		t.Fatal("the ban did not survive a restart")
	}
	if _, b := r2.Banned("john", home); b {
		t.Fatal("the restart banned another address")
	}
}

func TestConcurrentFailures(t *testing.T) {
	r, _ := newTest(t, Config{MaxRetries: 5}, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				ip := netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)})
				if banned, _ := r.Fail(t.Context(), "john", ip); banned {
					t.Errorf("one failure banned john at %v", ip)
				}
				if _, b := r.Banned("john", ip); b {
					t.Errorf("john banned at %v after one failure", ip)
				}
				r.Succeed("john", ip)
			}
		}(g)
	}
	wg.Wait()

	// sixteen failures of one pair at once: none is lost and exactly one crosses max_retries
	var bans atomic.Int32
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2; i++ {
				if banned, _ := r.Fail(t.Context(), "mary", guesser); banned {
					bans.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := bans.Load(); n != 1 {
		t.Fatalf("%d concurrent failures reported the ban, want exactly one", n)
	}
	if _, b := r.Banned("mary", guesser); !b {
		t.Fatal("sixteen concurrent failures did not ban the pair")
	}
	if _, b := r.Banned("mary", home); b {
		t.Fatal("the guesser's failures banned mary at another address")
	}
}

// Second-factor failures also count per user from every address: a guesser who has the
// password cannot search the code space from many addresses; a right code clears the count.
func TestSecondFactorPerUserAcrossAddresses(t *testing.T) {
	r, err := New(t.Context(), Config{MaxRetries: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	failures := 0
	for i := 0; i < 40; i++ {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i), 1})
		for j := 0; j < 2; j++ { // under the pair's limit of 3
			if _, ok := r.BeginSecondFactor(t.Context(), "john", ip); !ok {
				goto banned
			}
			failures++
		}
	}
	t.Fatal("80 second-factor failures from 40 addresses were all checked")
banned:
	if failures != 10 {
		t.Errorf("checked %d failures before the user-wide ban, want 10 (3 × max_retries, at least 10)", failures)
	}
	// the user's password attempts are not affected, nor another user's second factor
	if _, ok := r.Begin(t.Context(), "john", netip.MustParseAddr("10.9.9.9")); !ok {
		t.Error("the second-factor ban blocked a password attempt")
	}
	if _, ok := r.BeginSecondFactor(t.Context(), "jane", netip.MustParseAddr("10.9.9.8")); !ok {
		t.Error("john's second-factor ban blocked jane")
	}
	// a right code (before the limit) clears the user-wide count
	r2, _ := New(t.Context(), Config{MaxRetries: 3}, nil)
	for i := 0; i < 9; i++ {
		r2.BeginSecondFactor(t.Context(), "john", netip.AddrFrom4([4]byte{10, 1, byte(i), 1}))
	}
	a, ok := r2.BeginSecondFactor(t.Context(), "john", netip.MustParseAddr("10.2.0.1"))
	if !ok {
		t.Fatal("the tenth attempt was refused before it ran")
	}
	a.Succeeded()
	if _, ok := r2.BeginSecondFactor(t.Context(), "john", netip.MustParseAddr("10.3.0.1")); !ok {
		t.Error("a right code did not clear the user's second-factor failures")
	}
}
