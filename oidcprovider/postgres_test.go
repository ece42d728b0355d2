package oidcprovider

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// pgConfig is the keys form of a storage postgres block for a fresh database on srv.
func pgConfig(t *testing.T, srv *pgtest.Server, schema string) *postgres.Config {
	t.Helper()
	u, err := url.Parse(srv.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	return &postgres.Config{
		Address:  "tcp://" + srv.Host + ":" + strconv.Itoa(srv.Port),
		Database: strings.TrimPrefix(u.Path, "/"),
		Schema:   schema,
		Username: pgtest.User,
		Password: pgtest.Password,
	}
}

// provisionedOn provisions an app on the PostgreSQL store c.
func provisionedOn(t *testing.T, c *postgres.Config) *App {
	t.Helper()
	cp := *c
	a := &App{Issuer: "https://auth.example.com", Storage: StorageConfig{Postgres: &cp}, Clients: testClients}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPostgresBackend runs the provider on a real PostgreSQL: a token minted by one config is
// known to the next one (a reload: both hold the one pool, keyed by the database's identity, and
// the pool outlives the old config), another schema is another store, and a node whose database
// is down does not start, with an error naming the database but not the password.
func TestPostgresBackend(t *testing.T) {
	srv := pgtest.Start(t)
	cfg := pgConfig(t, srv, "")

	old := provisionedOn(t, cfg)
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	key := old.spec.key
	if !strings.HasPrefix(key, "postgres:") || strings.Contains(key, pgtest.Password) {
		t.Fatalf("pool key %q", key)
	}
	h := NewHandler(old)
	res := call(t, h, "POST", oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}, "uptime-kuma-monitor", "insecure_secret")
	tok, _ := res.body["access_token"].(string)
	if res.status != 200 || tok == "" {
		t.Fatalf("token on PostgreSQL: %+v", res)
	}

	// a reload: the new config starts before the old one stops, and shares its backend
	reloaded := provisionedOn(t, cfg)
	if err := reloaded.Start(); err != nil {
		t.Fatal(err)
	}
	if reloaded.running().backend != old.running().backend {
		t.Fatal("a reload opened a second pool for the same database")
	}
	if n, _ := backends.References(key); n != 2 {
		t.Fatalf("references during the reload: %d", n)
	}
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	target := audience.Target("https", "secure.example.com", "/")
	if _, err := reloaded.CheckBearer(context.Background(), tok, target); err != nil {
		t.Fatalf("the token minted before the reload: %v", err)
	}

	// another schema of the same database is another store
	other := *cfg
	other.Schema = "other"
	second := provisionedOn(t, &other)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	if second.running().backend == reloaded.running().backend {
		t.Fatal("two schemas share a backend")
	}
	if _, err := second.CheckBearer(context.Background(), tok, target); err == nil {
		t.Fatal("a token of one schema was accepted by another")
	}
	if err := second.Stop(); err != nil {
		t.Fatal(err)
	}

	// the database down: a running node's endpoints answer 503 temporarily_unavailable with
	// Retry-After, not an error of the client's and not a 500
	srv.Stop()
	rh := NewHandler(reloaded)
	for _, c := range []struct {
		path       string
		form       url.Values
		user, pass string
	}{
		{oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}, "uptime-kuma-monitor", "insecure_secret"},
		{oauth.PathIntrospection, url.Values{"token": {tok}}, "uptime-kuma-monitor", "insecure_secret"},
		{oauth.PathRevocation, url.Values{"token": {tok}}, "uptime-kuma-monitor", "insecure_secret"},
		{oauth.PathUserinfo, url.Values{"access_token": {tok}}, "", ""},
	} {
		res := call(t, rh, "POST", c.path, c.form, c.user, c.pass)
		if res.status != 503 || res.header.Get("Retry-After") == "" || res.body["error"] != "temporarily_unavailable" {
			t.Errorf("%s with the database down: %+v", c.path, res)
		}
	}
	if _, err := reloaded.CheckBearer(context.Background(), tok, target); !IsUnavailable(err) {
		t.Errorf("the gate's check with the database down: %v", err)
	}

	// a node that is not already running does not start
	third := *cfg
	third.Schema = "third"
	down := provisionedOn(t, &third)
	err := down.Start()
	addr := srv.Host + ":" + strconv.Itoa(srv.Port)
	if err == nil || !strings.Contains(err.Error(), "opening store postgres://"+pgtest.User+"@"+addr) || !strings.Contains(err.Error(), "is the database running") {
		t.Fatalf("Start with the database down: %v", err)
	}
	t.Logf("Start with the database down: %v", err)
	if strings.Contains(err.Error(), pgtest.Password) {
		t.Fatalf("the error shows the password: %v", err)
	}
	if n, _ := backends.References(down.spec.key); n != 0 {
		t.Fatalf("a failed open left %d references", n)
	}
	srv.StartAgain()
	if err := down.Start(); err != nil {
		t.Fatalf("Start once the database is back: %v", err)
	}
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := reloaded.Stop(); err != nil {
		t.Fatal(err)
	}
	if n, _ := backends.References(key); n != 0 {
		t.Fatalf("references after the last Stop: %d", n)
	}
}
