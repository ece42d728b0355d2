package regulation

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-crypt/crypt/algorithm/argon2"

	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// guardFixture is a guard over a real users file on a temp dir, a real regulator and a real
// verified-secret cache; it keeps every report.
type guardFixture struct {
	guard *Guard
	reg   *Regulator
	cache *digest.Cache

	mu      sync.Mutex
	reports []Report
}

// cheapDigest is an argon2id digest of password with small parameters, fast enough for tests.
func cheapDigest(t *testing.T, password string) string {
	t.Helper()
	h, err := argon2.New(argon2.WithVariantName("argon2id"), argon2.WithT(1), argon2.WithM(1024), argon2.WithP(1))
	if err != nil {
		t.Fatal(err)
	}
	d, err := h.Hash(password)
	if err != nil {
		t.Fatal(err)
	}
	return d.Encode()
}

func newGuardFixture(t *testing.T, cfg Config) *guardFixture {
	ctx := t.Context()
	t.Helper()
	file := filepath.Join(t.TempDir(), "users.yml")
	data := fmt.Sprintf(`users:
  john:
    displayname: John Doe
    password: %q
    email: john@example.com
    groups: [admins]
  mallory:
    password: %q
    disabled: true
`, cheapDigest(t, "john-password"), cheapDigest(t, "mallory-password"))
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := users.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fx := &guardFixture{reg: reg, cache: digest.NewCache(64, time.Hour)}
	fx.guard = NewGuard(GuardConfig{Regulator: reg, Users: f, Cache: fx.cache, Report: func(r Report) {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		fx.reports = append(fx.reports, r)
	}})
	return fx
}

// taken returns and forgets the reports so far.
func (fx *guardFixture) taken() []Report {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	r := fx.reports
	fx.reports = nil
	return r
}

func (fx *guardFixture) check(user, password, ip string) (*users.User, error) {
	return fx.guard.Check(context.Background(), user, password, netip.MustParseAddr(ip), "basic")
}

func TestGuardAcceptsARightPasswordThenRemembersIt(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 3})
	u, err := fx.check("john", "john-password", "192.0.2.1")
	if err != nil || u.Name != "john" || u.DisplayName != "John Doe" {
		t.Fatalf("right password: %v, %v", u, err)
	}
	if r := fx.taken(); len(r) != 1 || r[0].Outcome != Accepted || r[0].Remembered || !r[0].Known {
		t.Fatalf("the first right password must be checked: %+v", r)
	}
	if !fx.cache.Remembered("user:john", u.Digest(), "john-password") {
		t.Fatal("a right password must be remembered")
	}
	if u, err := fx.check("john", "john-password", "198.51.100.9"); err != nil || u.Name != "john" {
		t.Fatalf("remembered password: %v, %v", u, err)
	}
	if r := fx.taken(); len(r) != 1 || r[0].Outcome != Accepted || !r[0].Remembered {
		t.Fatalf("the second right password must come from memory: %+v", r)
	}
}

func TestGuardBansAfterMaxRetriesEvenARightPassword(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 3})
	if _, err := fx.check("john", "john-password", "192.0.2.1"); err != nil {
		t.Fatal(err) // remembered from here on
	}
	fx.taken()
	for i := range 3 {
		if _, err := fx.check("john", fmt.Sprint("guess-", i), "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	r := fx.taken()
	if len(r) != 3 || r[0].Outcome != Refused || r[0].NewBan || !r[2].NewBan {
		t.Fatalf("three wrong passwords must be refused, the third beginning a ban: %+v", r)
	}
	// banned: the remembered right password is refused too, as a wrong one
	if _, err := fx.check("john", "john-password", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a banned pair with the right password: %v", err)
	}
	if r := fx.taken(); len(r) != 1 || r[0].Outcome != Banned {
		t.Fatalf("the banned attempt must be reported as banned: %+v", r)
	}
	// the ban is per (user, address): john elsewhere is not locked out
	if _, err := fx.check("john", "john-password", "198.51.100.9"); err != nil {
		t.Fatalf("john from another address: %v", err)
	}
}

func TestGuardRefusesUnknownAndDisabledUsersAlike(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 3})
	if _, err := fx.check("nobody", "x", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	if r := fx.taken(); len(r) != 1 || r[0].Outcome != Refused || r[0].Known {
		t.Fatalf("an unknown user is refused and not named as known: %+v", r)
	}
	for range 2 {
		if _, err := fx.check("mallory", "mallory-password", "192.0.2.2"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("disabled user with the right password: %v", err)
		}
	}
	if r := fx.taken(); len(r) != 2 || r[1].Outcome != Refused || r[1].Remembered || !r[1].Known {
		t.Fatalf("a disabled user is refused each time, never from memory: %+v", r)
	}
	if fx.cache.Len() != 0 {
		t.Fatal("a disabled user's password must never be remembered")
	}
}

// Concurrent distinct guesses cannot get past the limit: each counts from the moment it begins.
func TestGuardConcurrentGuessesCannotExceedTheLimit(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 3})
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := fx.check("john", fmt.Sprint("guess-", i), "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("guess %d: %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	checked := 0
	for _, r := range fx.taken() {
		if r.Outcome == Refused {
			checked++
		}
	}
	if checked != 3 {
		t.Fatalf("%d of 20 concurrent guesses were checked, want 3 (max_retries)", checked)
	}
}

// holdSlots takes every digest slot until the returned function is called.
func holdSlots(t *testing.T) (release func()) {
	t.Helper()
	done := make(chan struct{})
	var held sync.WaitGroup
	taken := make(chan struct{}, digest.Slots())
	for range digest.Slots() {
		held.Add(1)
		go func() {
			defer held.Done()
			_, _ = digest.Run(context.Background(), func() bool { taken <- struct{}{}; <-done; return true })
		}()
	}
	for range digest.Slots() {
		<-taken
	}
	var once sync.Once
	release = func() { once.Do(func() { close(done); held.Wait() }) }
	t.Cleanup(release)
	return release
}

// Identical attempts running at once (a script opening many connections) share one attempt:
// they count once and do not ban.
func TestGuardIdenticalConcurrentAttemptsCountOnce(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 3})
	release := holdSlots(t) // the first attempt waits for a slot while the others join it
	var wg, started sync.WaitGroup
	for range 20 {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			if _, err := fx.check("john", "stale-password", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("stale password: %v", err)
			}
		}()
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // let the callers reach the shared attempt
	release()
	wg.Wait()
	if r := fx.taken(); len(r) != 1 || r[0].Outcome != Refused {
		t.Fatalf("20 identical concurrent attempts made %d reports, want 1: %+v", len(r), r)
	}
	if _, banned := fx.reg.Banned("john", netip.MustParseAddr("192.0.2.1")); banned {
		t.Fatal("identical attempts must not ban")
	}
}

// One rule for a caller who leaves: ctx's error, in the banned branch as in the checked one, and
// the checked attempt counts all the same.
func TestGuardCallerWhoLeavesGetsItsContextError(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 2})
	addr := netip.MustParseAddr("192.0.2.1")
	gone, cancel := context.WithCancel(context.Background())
	cancel()

	// a checked attempt: the check runs to its end for a caller who has gone, and counts
	if _, err := fx.guard.Check(gone, "john", "guess-1", addr, "basic"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a caller who left before a check's answer: %v, want context.Canceled", err)
	}
	if r := fx.taken(); len(r) != 1 || r[0].Outcome != Refused {
		t.Fatalf("the check must run to its end and count: %+v", r)
	}
	if _, err := fx.check("john", "guess-2", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	if _, banned := fx.reg.Banned("john", addr); !banned {
		t.Fatal("the attempt of the caller who left was not counted")
	}
	fx.taken()

	// a banned attempt: the caller has gone before the equalising wait ends
	if _, err := fx.guard.Check(gone, "john", "john-password", addr, "basic"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a caller who left during a banned attempt's wait: %v, want context.Canceled", err)
	}
}

// With every digest slot busy past the wait, the attempt is given back: it neither counts nor
// bans.
func TestGuardBusySlotsGiveTheAttemptBack(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 1})
	fx.guard.cfg.SlotWait = 20 * time.Millisecond
	release := holdSlots(t)
	_, err := fx.check("john", "john-password", "192.0.2.1")
	release()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("no free digest slot: %v, want ErrBusy", err)
	}
	if r := fx.taken(); len(r) != 0 {
		t.Fatalf("an attempt that never ran must not be reported: %+v", r)
	}
	// max_retries 1: had it counted, the pair would be banned now
	if _, err := fx.check("john", "john-password", "192.0.2.1"); err != nil {
		t.Fatalf("the busy attempt was counted: %v", err)
	}
}

// An unknown user is answered no faster than a wrong password, without a digest check.
func TestGuardUnknownUserTakesAsLongAsACheck(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 10})
	for i := range 3 {
		_, _ = fx.check("john", fmt.Sprint("wrong-", i), "192.0.2.1") // the running average
	}
	avg := time.Duration(checkAverage.Load())
	if avg <= 0 {
		t.Fatal("the checks left no running average")
	}
	start := time.Now()
	if _, err := fx.check("nobody", "x", "192.0.2.2"); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	if took := time.Since(start); took < avg/2 {
		t.Fatalf("an unknown user was answered in %v, a check takes %v", took, avg)
	}
}

// TestGuardSpellingsOfOneUserShareOneFailureCount: "John", "JOHN" and john's mail address name
// one user (the directory's spelling is the identity), so guesses under each count together and
// the ban covers every spelling.
func TestGuardSpellingsOfOneUserShareOneFailureCount(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 3})
	for i, name := range []string{"John", "JOHN", "john@example.com"} {
		if _, err := fx.check(name, fmt.Sprint("guess-", i), "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d as %q: %v", i, name, err)
		}
	}
	r := fx.taken()
	if len(r) != 3 || !r[2].NewBan {
		t.Fatalf("three guesses under three spellings must begin one ban: %+v", r)
	}
	for _, rep := range r {
		if rep.Username != "john" || !rep.Known {
			t.Fatalf("a report must name the canonical user: %+v", rep)
		}
	}
	if _, err := fx.check("john", "john-password", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("the ban must cover the canonical spelling with the right password: %v", err)
	}
	// and the right password under another spelling, elsewhere, signs john in as john
	u, err := fx.check("JoHn", "john-password", "198.51.100.9")
	if err != nil || u.Name != "john" {
		t.Fatalf("JoHn with john's password from another address: %v, %+v", err, u)
	}
}

// downDirectory is a users.Directory whose server cannot be reached.
type downDirectory struct{ users.Directory }

func (downDirectory) Lookup(context.Context, string) (*users.User, error) {
	return nil, fmt.Errorf("ldap: dial: %w", users.ErrUnavailable)
}

// flakyDirectory finds users but cannot check their passwords (the bind fails).
type flakyDirectory struct{ users.Directory }

func (flakyDirectory) CheckPassword(context.Context, *users.User, string) (bool, error) {
	return false, fmt.Errorf("ldap: bind: %w", users.ErrUnavailable)
}

// TestGuardDirectoryDownIsNeverAPassAndCountsNothing: a directory that cannot be asked gives
// an error wrapping users.ErrUnavailable (the gate's 503), never a pass and never a failure
// that counts towards a ban.
func TestGuardDirectoryDownIsNeverAPassAndCountsNothing(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 2})
	file := fx.guard.cfg.Users
	for _, dir := range []users.Directory{downDirectory{file}, flakyDirectory{file}} {
		fx.guard.cfg.Users = dir
		for range 3 {
			u, err := fx.check("john", "john-password", "192.0.2.1")
			if !errors.Is(err, users.ErrUnavailable) || u != nil {
				t.Fatalf("%T: want users.ErrUnavailable and no user, got %v, %+v", dir, err, u)
			}
		}
	}
	fx.guard.cfg.Users = file
	if _, err := fx.check("john", "john-password", "192.0.2.1"); err != nil {
		t.Fatalf("after the directory is back, nothing may have counted against john: %v", err)
	}
}

// countingDirectory counts the lookups that reach the directory.
type countingDirectory struct {
	users.Directory
	n atomic.Int64
}

func (d *countingDirectory) Lookup(ctx context.Context, name string) (*users.User, error) {
	d.n.Add(1)
	return d.Directory.Lookup(ctx, name)
}

// TestGuardBannedAddressDoesNotReachTheDirectory: once an address is banned, its attempts are
// refused before the directory is asked, so a banned guesser cannot go on making a directory
// search (and a cache entry) of every name it sends.
func TestGuardBannedAddressDoesNotReachTheDirectory(t *testing.T) {
	fx := newGuardFixture(t, Config{MaxRetries: 2, AddressRetries: 3})
	dir := &countingDirectory{Directory: fx.guard.cfg.Users}
	fx.guard.cfg.Users = dir
	for i := range 3 {
		if _, err := fx.check(fmt.Sprintf("nobody%d", i), "x", "192.0.2.9"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, banned := fx.reg.Banned("someone", netip.MustParseAddr("192.0.2.9")); !banned {
		t.Fatal("the address is not banned after AddressRetries failures")
	}
	before := dir.n.Load()
	for i := range 5 {
		if _, err := fx.check(fmt.Sprintf("fresh%d", i), "x", "192.0.2.9"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("banned guess %d: %v", i, err)
		}
	}
	if _, err := fx.check("john", "john-password", "192.0.2.9"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a right password from a banned address: %v", err)
	}
	if n := dir.n.Load() - before; n != 0 {
		t.Errorf("a banned address reached the directory %d times", n)
	}
	// another address is not affected
	if _, err := fx.check("john", "john-password", "192.0.2.10"); err != nil {
		t.Fatalf("john from another address: %v", err)
	}
}
