package oidcprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// testNode is one node of a cluster in a test process: its own PostgreSQL store (pool and
// listening connection) on the shared database, and its own caches following that store's
// change feed through followChanges, as a backend's do.
type testNode struct {
	kv       *postgres.Store
	tokens   *oauth.TokenCache
	cutoffs  *oauth.ClientCutoffs
	sessions *session.Store
	reg      *regulation.Regulator
	provider *oauth.Provider
	// revocations are the node's JWT access tokens ended early.
	revocations *oauth.Revocations
}

// nodeStatus is a target inside the monitor's audience.
var nodeStatus = audience.Target("https", "status.example.com", "/api/health")

// newTestNode opens a node on dsn; everything it started ends with t.
func newTestNode(t testing.TB, dsn string, signing []*keys.Key) *testNode {
	t.Helper()
	ctx := t.Context()
	kv, err := postgres.Open(ctx, postgres.Config{DSN: dsn}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	cutoffs, err := oauth.LoadClientCutoffs(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	revocations, err := oauth.LoadRevocations(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{kv: kv, tokens: oauth.NewTokenCache(1000), cutoffs: cutoffs, revocations: revocations}
	sessions := session.NewCache(1000)
	t.Cleanup(followChanges(kv, n.tokens, sessions, cutoffs, revocations))
	n.sessions = session.NewWithCache(session.Config{}, kv, sessions)
	if n.reg, err = regulation.New(ctx, regulation.Config{MaxRetries: 3, FindTime: time.Minute, BanTime: time.Minute}, kv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.reg.Close)
	monitor, err := clients.New(clients.Config{ID: "monitor", Secret: "$plaintext$monitor-secret", GrantTypes: []string{clients.GrantClientCredentials},
		Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://status.example.com/"}}, clients.Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(id string) (*clients.Client, bool) { return monitor, id == "monitor" }
	n.provider = oauth.New(oauth.Config{
		Issuer:     "https://auth.example.com",
		Lifespans:  clients.Lifespans{AccessToken: time.Hour, RefreshToken: time.Hour, AuthorizeCode: time.Minute, IDToken: time.Hour},
		HMACSecret: bytes.Repeat([]byte("k"), 32),
		KV:         kv,
		Clients:    lookup,
		Authenticator: &clients.Authenticator{Lookup: lookup, Secrets: digest.NewCache(100, time.Hour),
			Limits: clients.NewLimits(), Logger: zap.NewNop()},
		ClientIP:    func(*http.Request) string { return "127.0.0.1" },
		Keys:        signing,
		Tokens:      n.tokens,
		Cutoffs:     cutoffs,
		Revocations: revocations,
	})
	return n
}

// post sends form to one of the node's endpoints as the monitor and returns the status and the
// JSON answer.
func (n *testNode) post(t testing.TB, serve http.HandlerFunc, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("monitor", "monitor-secret")
	w := httptest.NewRecorder()
	serve(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// mint has the node issue the monitor a gateway token.
func (n *testNode) mint(t testing.TB) string {
	t.Helper()
	status, out := n.post(t, n.provider.ServeToken, oauth.PathToken, url.Values{"grant_type": {"client_credentials"},
		"scope": {clients.ScopeBearerAuthz}, "audience": {"https://status.example.com/"}})
	tok, _ := out["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("token request: %d %v", status, out)
	}
	return tok
}

// revoke has the node revoke token at its revocation endpoint.
func (n *testNode) revoke(t *testing.T, token string) {
	t.Helper()
	if status, out := n.post(t, n.provider.ServeRevocation, oauth.PathRevocation, url.Values{"token": {token}}); status != http.StatusOK {
		t.Fatalf("revocation: %d %v", status, out)
	}
}

// accepts reports whether the node's gate accepts token (an error other than a refusal fails t).
func (n *testNode) accepts(t *testing.T, token string) bool {
	t.Helper()
	_, err := n.provider.CheckBearer(context.Background(), token, nodeStatus)
	var refused *oauth.InvalidTokenError
	switch {
	case err == nil:
		return true
	case errors.As(err, &refused):
		return false
	default:
		t.Fatalf("gate check: %v", err)
		return false
	}
}

// warm has the node's gate accept token twice: the second answer is from its cache.
func (n *testNode) warm(t *testing.T, token string) {
	t.Helper()
	for range 2 {
		if !n.accepts(t, token) {
			t.Fatal("the gate refused a live token")
		}
	}
}

// waitRefused polls the node's gate until it refuses token, and returns how long that took; it
// fails t after a second.
func (n *testNode) waitRefused(t *testing.T, token string) time.Duration {
	t.Helper()
	start := time.Now()
	for n.accepts(t, token) {
		if time.Since(start) > time.Second {
			t.Fatal("the token was still accepted a second after its end on the other node")
		}
		time.Sleep(50 * time.Microsecond)
	}
	return time.Since(start)
}

// waitTrusted waits until the node receives changes again.
func waitTrusted(t *testing.T, n *testNode, want bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for n.kv.Trusted() != want {
		if time.Now().After(deadline) {
			t.Fatalf("the change feed's Trusted stayed %v", !want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// Two nodes on one database, each with its own store, listening connection and caches: what one
// ends, the other refuses within the change feed's delivery, though it had it cached; while a
// node's listening connection is down it answers nothing from memory, and it recovers by itself.
func TestTwoNodesCachesStayTrue(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	_, key, err := keys.Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newTestNode(t, dsn, []*keys.Key{key}), newTestNode(t, dsn, []*keys.Key{key})
	ctx := t.Context()

	t.Run("revoked on A, refused on B", func(t *testing.T) {
		const tries = 200
		took := make([]time.Duration, 0, tries)
		for range tries {
			tok := a.mint(t)
			b.warm(t, tok)
			a.revoke(t, tok)
			took = append(took, b.waitRefused(t, tok))
		}
		// issuing a token sends no change: only its end does (a notifying commit costs several
		// times a plain one, and the token endpoint issues thousands a second)
		var seen atomic.Int32
		stop := b.kv.Watch([]byte("tok/at/"), func([]byte) { seen.Add(1) })
		defer stop()
		tok := a.mint(t)
		time.Sleep(50 * time.Millisecond)
		if n := seen.Load(); n != 0 {
			t.Errorf("issuing a token on A sent %d changes", n)
		}
		a.revoke(t, tok)
		for start := time.Now(); seen.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Since(start) > time.Second {
				t.Fatal("the revocation sent no change for the record")
			}
		}
		p50, p99, worst := percentile(took, 0.5), percentile(took, 0.99), slices.Max(took)
		t.Logf("revocation on A to refusal by B's warm cache, over %d tries: p50 %v, p99 %v, max %v", tries, p50, p99, worst)
		// the goal is 100 ms; on a quiet machine the p99 is under 10 ms even with -race, but a
		// 2-core machine running other tests stretches the tail, which must not fail the suite
		if p50 > 100*time.Millisecond || p99 > 250*time.Millisecond {
			t.Errorf("p50 %v, p99 %v: the goal is 100 ms", p50, p99)
		}
	})

	t.Run("a cut-off set on A applies on B", func(t *testing.T) {
		tok := a.mint(t)
		b.warm(t, tok)
		if err := a.cutoffs.Set(ctx, a.kv, "monitor", time.Now()); err != nil {
			t.Fatal(err)
		}
		t.Logf("cut-off on A to refusal by B: %v", b.waitRefused(t, tok))
		// and a token issued after the cut-off is accepted on both
		time.Sleep(10 * time.Millisecond)
		later := b.mint(t)
		if !a.accepts(t, later) || !b.accepts(t, later) {
			t.Fatal("a token issued after the cut-off was refused")
		}
	})

	t.Run("a session cached on B ended on A", func(t *testing.T) {
		id, _, err := a.sessions.Create(ctx, "john", session.OneFactor, true)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second answer is from B's cache
			if user, _, err := b.sessions.Who(ctx, id); err != nil || user != "john" {
				t.Fatalf("B: %q %v", user, err)
			}
		}
		if err := a.sessions.End(ctx, id); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for {
			_, _, err := b.sessions.Who(ctx, id)
			if errors.Is(err, session.ErrNoSession) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			if time.Since(start) > time.Second {
				t.Fatal("B still had the session a second after A ended it")
			}
			time.Sleep(50 * time.Microsecond)
		}
		t.Logf("sign-out on A to refusal by B: %v", time.Since(start))
		// every session of a user ended on B (sessions end) holds on A
		id, _, err = b.sessions.Create(ctx, "mary", session.OneFactor, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.sessions.Who(ctx, id); err != nil {
			t.Fatal(err)
		}
		if n, err := b.sessions.EndUser(ctx, "mary"); err != nil || n != 1 {
			t.Fatalf("EndUser: %d %v", n, err)
		}
		time.Sleep(100 * time.Millisecond)
		if _, _, err := a.sessions.Who(ctx, id); !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("A, 100 ms after the user's sessions ended on B: %v", err)
		}
	})

	t.Run("failures spread over A and B ban on both", func(t *testing.T) {
		guesser := netip.MustParseAddr("203.0.113.9")
		// three failures (max_retries) of one pair, alternating nodes: each node has seen fewer
		// than the limit, the cluster has not
		for i, n := range []*testNode{a, b, a} {
			if _, banned, err := n.reg.Check(ctx, "john", guesser); err != nil || banned {
				t.Fatalf("before failure %d: banned %v, %v", i+1, banned, err)
			}
			if _, err := n.reg.Fail(ctx, "john", guesser); err != nil {
				t.Fatal(err)
			}
		}
		if _, banned, err := a.reg.Check(ctx, "john", guesser); err != nil || !banned {
			t.Errorf("A after three failures over two nodes: banned %v, %v", banned, err)
		}
		// the ban A made reaches B through the change feed
		start := time.Now()
		for {
			_, banned, err := b.reg.Check(ctx, "john", guesser)
			if err != nil {
				t.Fatal(err)
			}
			if banned {
				break
			}
			if time.Since(start) > 100*time.Millisecond {
				t.Fatal("B did not hold the ban made on A within 100 ms")
			}
			time.Sleep(50 * time.Microsecond)
		}
		t.Logf("ban on A to ban on B: %v", time.Since(start))
		if _, banned := b.reg.Banned("john", guesser); !banned {
			t.Error("B's in-memory check does not hold the ban")
		}
		// another address is not banned, on either node
		if _, banned := b.reg.Banned("john", netip.MustParseAddr("198.51.100.4")); banned {
			t.Error("the guesser's failures banned another address")
		}
		// a right password on B pardons the pair on both
		other := netip.MustParseAddr("192.0.2.77")
		if _, err := a.reg.Fail(ctx, "mary", other); err != nil {
			t.Fatal(err)
		}
		att, ok, err := b.reg.Enter(ctx, "mary", other)
		if err != nil || !ok {
			t.Fatalf("Enter: %v %v", ok, err)
		}
		att.Succeeded()
		for range 2 {
			if _, err := a.reg.Fail(ctx, "mary", other); err != nil {
				t.Fatal(err)
			}
		}
		if _, banned, _ := a.reg.Check(ctx, "mary", other); banned {
			t.Error("the success on B did not clear the failures counted on A")
		}
	})

	t.Run("listener down: no answer from memory; back up: works again", func(t *testing.T) {
		tok := a.mint(t)
		b.warm(t, tok)
		id, _, err := a.sessions.Create(ctx, "john", session.OneFactor, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.sessions.Who(ctx, id); err != nil {
			t.Fatal(err)
		}
		srv.Stop()
		waitTrusted(t, b, false)
		if _, err := b.provider.CheckBearer(ctx, tok, nodeStatus); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("gate on B with the database down: %v, want store.ErrUnavailable (never the cached token)", err)
		}
		if _, _, err := b.sessions.Who(ctx, id); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("session on B with the database down: %v, want store.ErrUnavailable", err)
		}
		if _, _, err := b.reg.Check(ctx, "john", netip.MustParseAddr("192.0.2.1")); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("ban check on B with the database down: %v, want store.ErrUnavailable", err)
		}
		srv.StartAgain()
		waitTrusted(t, b, true)
		if !b.accepts(t, tok) {
			t.Error("B refused a live token after the database came back")
		}
		if user, _, err := b.sessions.Who(ctx, id); err != nil || user != "john" {
			t.Errorf("B's session after the database came back: %q %v", user, err)
		}
		// and the feed works again: a revocation on A reaches B's cache
		if !b.accepts(t, tok) {
			t.Fatal("B refused a live token")
		}
		a.revoke(t, tok)
		t.Logf("after recovery, revocation on A to refusal by B: %v", b.waitRefused(t, tok))
	})
}

// BenchmarkFollowedGateHit measures the gate's token check on a cache hit on a node of a shared
// store, whose caches follow the change feed (an atomic load and the store's Trusted on top of
// the hit on Badger, BenchmarkCheckBearerHit in package oauth).
func BenchmarkFollowedGateHit(b *testing.B) {
	srv := pgtest.Start(b)
	_, key, err := keys.Generate("ES256", 0)
	if err != nil {
		b.Fatal(err)
	}
	n := newTestNode(b, srv.Database(b), []*keys.Key{key})
	tok := n.mint(b)
	ctx := context.Background()
	if _, err := n.provider.CheckBearer(ctx, tok, nodeStatus); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.provider.CheckBearer(ctx, tok, nodeStatus); err != nil {
			b.Fatal(err)
		}
	}
}
