package oidcprovider

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

func provisioned(t *testing.T, dir string) *App {
	t.Helper()
	a := &App{Issuer: "https://auth.example.com", Storage: StorageConfig{Dir: dir}, Clients: testClients}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// A Start that fails after opening the store lets the store go: the database can be opened again
// at once, and no reference is left in the pool (defect: it stayed open, locked, for the life of
// the process).
func TestFailedStartReleasesTheStore(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	kv, err := store.Open(dir, store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, store.Entry{Key: keySigningKey, Value: []byte("not a PEM key")}); err != nil {
		t.Fatal(err)
	}
	if err := kv.Destruct(); err != nil {
		t.Fatal(err)
	}
	a := provisioned(t, dir)
	if err := a.Start(); err == nil || !strings.Contains(err.Error(), "default signing key in store") {
		t.Fatalf("Start with a corrupt stored key: %v", err)
	}
	if n, _ := backends.References(a.dir); n != 0 {
		t.Fatalf("%d references to the store left after a failed Start", n)
	}
	again, err := store.Open(dir, store.Options{}, nil)
	if err != nil {
		t.Fatalf("the store is still held after a failed Start: %v", err)
	}
	_ = again.Destruct()
	if err := a.Cleanup(); err != nil {
		t.Fatalf("Cleanup after a failed Start: %v", err)
	}
}

// Cleanup releases a store that Stop did not (a config whose other apps failed to start).
func TestCleanupReleasesTheStore(t *testing.T) {
	a := provisioned(t, t.TempDir())
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if n, _ := backends.References(a.dir); n != 1 {
		t.Fatalf("references after Start: %d", n)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal("Stop after Cleanup must be a no-op:", err)
	}
	if n, _ := backends.References(a.dir); n != 0 {
		t.Fatalf("references after Cleanup: %d", n)
	}
}

// Two stores never share caches: a token cached for one store is unknown to the other.
func TestCachesBelongToTheStore(t *testing.T) {
	a, h := startApp(t, testClients)
	b, _ := startApp(t, testClients)
	if a.running().backend == b.running().backend || a.running().backend.tokens == b.running().backend.tokens || a.running().backend.secrets == b.running().backend.secrets {
		t.Fatal("two stores share a backend or its caches")
	}
	tok := call(t, h, "POST", oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}, "uptime-kuma-monitor", "insecure_secret").body["access_token"].(string)
	target := audience.Target("https", "secure.example.com", "/")
	if _, err := a.CheckBearer(context.Background(), tok, target); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CheckBearer(context.Background(), tok, target); err == nil {
		t.Fatal("a token of one store was accepted by another")
	}
}

// Revocation racing gate checks (run with -race): once a revocation has returned, no check that
// starts after it accepts the token, cached or not.
func TestTokenCacheRevocationRace(t *testing.T) {
	a, h := startApp(t, testClients)
	target := audience.Target("https", "secure.example.com", "/")
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}
	for round := 0; round < 20; round++ {
		tok := call(t, h, "POST", oauth.PathToken, form, "uptime-kuma-monitor", "insecure_secret").body["access_token"].(string)
		var revoked atomic.Bool
		var wg sync.WaitGroup
		var lateAccepts atomic.Int32
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					after := revoked.Load()
					if _, err := a.CheckBearer(context.Background(), tok, target); err == nil && after {
						lateAccepts.Add(1)
					}
				}
			}()
		}
		if res := call(t, h, "POST", oauth.PathRevocation, url.Values{"token": {tok}}, "uptime-kuma-monitor", "insecure_secret"); res.status != 200 {
			t.Fatal(res)
		}
		revoked.Store(true)
		wg.Wait()
		if n := lateAccepts.Load(); n != 0 {
			t.Fatalf("round %d: %d checks that began after the revocation accepted the token", round, n)
		}
		if _, err := a.CheckBearer(context.Background(), tok, target); err == nil {
			t.Fatal("revoked token accepted")
		}
	}
}

// An operator's revocation ends a client's tokens even when a token's record lands in the store
// after the revocation pass listed it (a token minted while the pass ran), and after a restart;
// tokens minted afterwards work, and other clients' tokens are untouched.
func TestRevokeClientTokensCutOff(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	start := func() (*App, *Handler) { return startAppIn(t, dir, testClients) }
	a, h := start()
	target := audience.Target("https", "secure.example.com", "/")
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}
	mint := func(h *Handler, id, secret string) string {
		t.Helper()
		f := url.Values{"grant_type": form["grant_type"], "scope": form["scope"]}
		if id == "explicit" {
			f.Set("audience", "https://other.example.com/")
		}
		res := call(t, h, "POST", oauth.PathToken, f, id, secret)
		tok, ok := res.body["access_token"].(string)
		if !ok {
			t.Fatalf("token: %+v", res)
		}
		return tok
	}
	kuma := mint(h, "uptime-kuma-monitor", "insecure_secret")
	other := mint(h, "explicit", "explicit-secret")
	kv := a.running().backend.kv
	keys, err := kv.Keys(ctx, []byte("tok/at/"))
	if err != nil {
		t.Fatal(err)
	}
	saved := map[string][]byte{}
	for _, k := range keys {
		v, _ := kv.Get(ctx, k)
		saved[string(k)] = v
	}
	if _, err := a.CheckBearer(context.Background(), kuma, target); err != nil {
		t.Fatal(err)
	}
	n, err := a.RevokeClientTokens(ctx, "uptime-kuma-monitor")
	if err != nil || n != 1 {
		t.Fatalf("revoked %d, %v", n, err)
	}
	// the record comes back, as a token stored after the pass would
	for k, v := range saved {
		if err := kv.Put(ctx, store.Entry{Key: []byte(k), Value: v, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.CheckBearer(context.Background(), kuma, target); err == nil {
		t.Fatal("a token issued before the revocation was accepted")
	}
	if res := call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {kuma}}, "uptime-kuma-monitor", "insecure_secret"); res.body["active"] != false {
		t.Fatalf("introspection of a revoked token: %+v", res.body)
	}
	if _, err := a.CheckBearer(context.Background(), other, audience.Target("https", "other.example.com", "/")); err != nil {
		t.Fatalf("another client's token: %v", err)
	}
	time.Sleep(2 * time.Millisecond)
	fresh := mint(h, "uptime-kuma-monitor", "insecure_secret")
	if _, err := a.CheckBearer(context.Background(), fresh, target); err != nil {
		t.Fatalf("a token minted after the revocation: %v", err)
	}
	// the cut-off outlives a restart
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	b, _ := start()
	if _, err := b.CheckBearer(context.Background(), kuma, target); err == nil {
		t.Fatal("after a restart, a token issued before the revocation was accepted")
	}
	if _, err := b.CheckBearer(context.Background(), fresh, target); err != nil {
		t.Fatalf("after a restart, a token minted after the revocation: %v", err)
	}
}
