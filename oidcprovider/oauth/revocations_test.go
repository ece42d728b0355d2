package oauth

import (
	"context"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// The structure answers exactly what was revoked: a revoked jti, and the tokens of an ended
// session issued up to its end (not after, not of another session); an entry whose token has
// expired is neither loaded nor kept past a sweep; everything written is read back by a new
// structure on the same store (a restart).
func TestRevocationsAnswerExactlyAndSurviveARestart(t *testing.T) {
	ctx := context.Background()
	kv, err := store.Open(t.TempDir(), store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	r, err := LoadRevocations(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	revoked, kept, short := mustJTI(t, now), mustJTI(t, now), mustJTI(t, now)
	if err := r.RevokeToken(ctx, kv, revoked, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := r.RevokeToken(ctx, kv, short, now.Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := r.RevokeToken(ctx, kv, mustJTI(t, now), now.Add(-time.Second)); err != nil { // expired already: nothing kept
		t.Fatal(err)
	}
	ended := now.Add(-time.Minute)
	if err := r.EndSession(ctx, kv, "sid-a", ended, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	check := func(r *Revocations, when string) {
		t.Helper()
		cases := []struct {
			name string
			jti  uuid.UUID
			sid  string
			at   time.Time
			want bool
		}{
			{"the revoked jti", revoked, "", now, true},
			{"another jti", kept, "", now, false},
			{"a token of the ended session issued before its end", kept, "sid-a", ended.Add(-time.Second), true},
			{"a token of the ended session issued at its end", kept, "sid-a", ended, true},
			{"a token of the session issued after its end (a refresh)", kept, "sid-a", ended.Add(time.Microsecond), false},
			{"a token of another session", kept, "sid-b", ended.Add(-time.Second), false},
		}
		for _, tc := range cases {
			if got := r.Revoked(tc.jti, tc.sid, tc.at); got != tc.want {
				t.Errorf("%s: %s: revoked %v, want %v", when, tc.name, got, tc.want)
			}
		}
	}
	check(r, "in memory")
	if n := r.Len(); n != 3 {
		t.Errorf("%d entries, want 3 (two tokens, one session)", n)
	}
	restarted, err := LoadRevocations(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	check(restarted, "after a restart")
	if !restarted.Revoked(short, "", now) {
		t.Error("the short-lived revocation was not read back")
	}
	if err := r.EndSession(ctx, kv, "a/b", now, now.Add(time.Hour)); err == nil {
		t.Error("a sid with a slash was kept")
	}
	// once its token has expired the entry goes: from memory at the next sweep, and from the
	// store (its time-to-live, kept a second longer, in whole seconds), so a restart does not
	// load it
	time.Sleep(3500 * time.Millisecond)
	r.mu.Lock()
	r.sweepAt = 0
	r.sweepLocked(time.Now().Unix())
	r.mu.Unlock()
	if r.Revoked(short, "", now) || r.Len() != 2 {
		t.Errorf("the expired entry is kept (%d entries)", r.Len())
	}
	if again, err := LoadRevocations(ctx, kv); err != nil || again.Revoked(short, "", now) || !again.Revoked(revoked, "", now) {
		t.Errorf("a restart after the expiry: %v", err)
	}
}

func mustJTI(t testing.TB, at time.Time) uuid.UUID {
	t.Helper()
	u, err := newJTI(at)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A jti carries its token request's time to well under a microsecond, rounded down: a cut-off
// taken just before a request never ends its token.
func TestJTITime(t *testing.T) {
	for range 1000 {
		now := time.Now()
		got := jtiTime(mustJTI(t, now))
		if got.After(now) || now.Sub(got) > time.Microsecond {
			t.Fatalf("jti time %s for %s", got.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
		}
	}
	if _, ok := jtiOf("Jx8Rn3rcF4lcBdE0p5cUQvS9kqJIUm1zSLIbMyc6b7M"); ok {
		t.Error("an opaque token's signature read as a jti")
	}
}

// What 200,000 revoked tokens cost in memory: logged for the bench's report, and held under a
// bound so a change of representation that multiplies it fails here.
func TestRevocationsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200,000 entries")
	}
	const n = 200000
	exp := time.Now().Add(time.Hour).Unix()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := &Revocations{tokens: map[uuid.UUID]int64{}, ended: map[string]sessionEnd{}}
	for range n {
		r.tokens[mustJTI(t, time.Now())] = exp
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := after.HeapAlloc - before.HeapAlloc
	t.Logf("%d revoked tokens: %.1f MiB of heap, %d bytes each", n, float64(used)/(1<<20), used/n)
	if used > 64<<20 {
		t.Errorf("%d revoked tokens take %d MiB", n, used>>20)
	}
	runtime.KeepAlive(r)
}

// Two nodes on one PostgreSQL: a JWT access token revoked on A, or ended by a sign-out on A, is
// refused by B's gate from memory (no store read) within the change feed's delay; while B does
// not follow the feed it reads the token's record instead, and refuses what A ended.
func TestRevocationsAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	signing := testKeys(t, "RS256", "ES256")
	node := func() (*jwtProvider, func()) {
		kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Destruct() })
		n := newJWTProviderOn(t, kv, signing)
		stop := n.revocations.Follow(kv, kv)
		t.Cleanup(stop)
		n.cutoffs.Follow(kv, kv)
		for !n.revocations.Trusted() { // the first read-back
			time.Sleep(time.Millisecond)
		}
		return n, stop
	}
	a, _ := node()
	b, stopB := node()
	waitRefused := func(n *jwtProvider, tok string) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			_, reads, err := n.gate(tok)
			if err != nil {
				if !gateRefused(err, "revoked") || reads != 0 {
					t.Fatalf("refused with %v after %d store reads", err, reads)
				}
				return time.Since(start)
			}
			if time.Since(start) > 2*time.Second {
				t.Fatal("B still accepts the token 2 s after A ended it")
			}
			time.Sleep(time.Millisecond)
		}
	}
	tok := a.mintCC("jmon")
	if _, reads, err := b.gate(tok); err != nil || reads != 0 {
		t.Fatalf("B: %v (%d store reads)", err, reads)
	}
	if status, _ := a.post(a.p.ServeRevocation, PathRevocation, "jmon", url.Values{"token": {tok}}); status != http.StatusOK {
		t.Fatalf("revocation on A: %d", status)
	}
	t.Logf("revocation on A to refusal by B: %v", waitRefused(b, tok))

	// a sign-out on A ends B's view of the session's tokens, by sid, even of a token whose
	// record the sign-out did not end (issued here without the session's index)
	ctx := context.Background()
	sid := a.p.sidOf("ref-x")
	if b.revocations.Revoked(uuid.New(), sid, time.Now()) {
		t.Fatal("a live session's token counts as revoked")
	}
	issued := time.Now()
	if _, err := a.p.EndBrowserSession(ctx, "ref-x"); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !b.revocations.Revoked(uuid.New(), sid, issued); time.Sleep(time.Millisecond) {
		if time.Since(start) > 2*time.Second {
			t.Fatal("B did not learn of the sign-out on A")
		}
	}

	// B stops following the feed: it may not believe its memory, so it reads the record
	live, gone := a.mintCC("jmon"), a.mintCC("jmon")
	stopB()
	if _, reads, err := b.gate(live); err != nil || reads == 0 {
		t.Fatalf("B without the feed, a live token: %v (%d store reads)", err, reads)
	}
	if status, _ := a.post(a.p.ServeRevocation, PathRevocation, "jmon", url.Values{"token": {gone}}); status != http.StatusOK {
		t.Fatalf("revocation on A: %d", status)
	}
	if _, reads, err := b.gate(gone); !gateRefused(err, "revoked") || reads == 0 {
		t.Fatalf("B without the feed, a token A revoked: %v (%d store reads)", err, reads)
	}
}
