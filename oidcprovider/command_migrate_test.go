package oidcprovider

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// writeConfig writes a Caddyfile with an oidc block of storage lines and returns its path.
func writeConfig(t *testing.T, storage string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	cf := "{\n\toidc {\n\t\tissuer https://auth.example.com\n" + storage + "\t}\n}\n\nauth.example.com {\n\toidc_provider\n}\n"
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The migration target is the oidc app's storage postgres, placeholders resolved; a config
// without one is refused with the fix.
func TestMigrationTarget(t *testing.T) {
	t.Setenv("PORTCULLIS_TEST_DB_PASSWORD", "from-the-environment")
	cfg, err := migrationTarget(writeConfig(t, "\t\tstorage postgres {\n\t\t\taddress tcp://db.example.com:5433\n\t\t\tdatabase portcullis\n\t\t\tusername caddy\n\t\t\tpassword {env.PORTCULLIS_TEST_DB_PASSWORD}\n\t\t}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "tcp://db.example.com:5433" || cfg.Database != "portcullis" || cfg.Username != "caddy" || cfg.Password != "from-the-environment" {
		t.Errorf("target %+v", cfg)
	}
	for name, tc := range map[string]struct{ storage, want string }{
		"badger":         {"\t\tstorage /var/lib/portcullis\n", "storage postgres"},
		"default":        {"", "storage postgres"},
		"invalid":        {"\t\tstorage postgres {\n\t\t\tdatabase portcullis\n\t\t}\n", "address"},
		"no such config": {"", "reading"},
	} {
		path := writeConfig(t, tc.storage)
		if name == "no such config" {
			path += ".missing"
		}
		if _, err := migrationTarget(path, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, tc.want)
		}
	}
	noApp := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(noApp, []byte("example.com {\n\trespond ok\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := migrationTarget(noApp, ""); err == nil || !strings.Contains(err.Error(), "no oidc app") {
		t.Errorf("a config without the oidc app: %v", err)
	}
}

// A Badger store with real state (tokens minted and revoked by the provider, the generated
// secret and key, and records of every other kind) arrives in PostgreSQL whole: every key with
// its value and its expiry; a second run changes nothing; a store holding another provider's
// records is refused unless --force; and a provider started on PostgreSQL accepts the tokens
// minted on Badger, with the same key, and still refuses the revoked one.
func TestMigrate(t *testing.T) {
	ctx := t.Context()
	pg := pgtest.Start(t)
	dsn := pg.Database(t)
	dbName := dsn[strings.LastIndexByte(dsn, '/')+1 : strings.IndexByte(dsn, '?')]

	// real state on Badger
	dir := t.TempDir()
	a, h := startAppIn(t, dir, testClients)
	mint := func(h *Handler, id, secret string) string {
		t.Helper()
		res := call(t, h, "POST", oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}, id, secret)
		tok, ok := res.body["access_token"].(string)
		if !ok {
			t.Fatalf("token: %+v", res)
		}
		return tok
	}
	kuma := mint(h, "uptime-kuma-monitor", "insecure_secret")
	revoked := mint(h, "explicit", "explicit-secret")
	if n, err := a.RevokeClientTokens(ctx, "explicit"); err != nil || n != 1 {
		t.Fatalf("revoked %d: %v", n, err)
	}
	kid := a.running().provider.Keys()[0].ID
	kv := a.running().backend.kv
	if err := kv.Put(ctx,
		store.Entry{Key: []byte("sess/0123abcd"), Value: []byte(`{"user":"john"}`), TTL: 30 * time.Minute},
		store.Entry{Key: []byte("ban/user/john/192.0.2.1"), Value: []byte("x"), TTL: 5 * time.Minute},
		store.Entry{Key: []byte("mfa/john/totp"), Value: []byte("device")},
		store.Entry{Key: []byte("sub/sector/john"), Value: bytes.Repeat([]byte{7}, 2<<20)}, // in the value log
	); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}

	t.Setenv("PORTCULLIS_TEST_DB_PASSWORD", pgtest.Password)
	cfg, err := migrationTarget(writeConfig(t, fmt.Sprintf("\t\tstorage postgres {\n\t\t\taddress tcp://%s:%d\n\t\t\tdatabase %s\n\t\t\tusername %s\n\t\t\tpassword {env.PORTCULLIS_TEST_DB_PASSWORD}\n\t\t}\n",
		pg.Host, pg.Port, dbName, pgtest.User)), "")
	if err != nil {
		t.Fatal(err)
	}
	run := func(force bool) (*migration, error) {
		t.Helper()
		src, err := store.OpenReadOnly(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Destruct()
		dst, err := postgres.Open(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Destruct()
		return migrate(ctx, src, dst, force)
	}
	res, err := run(false)
	if err != nil {
		t.Fatal(err)
	}

	// every live Badger record, with its value and expiry
	want := map[string]struct {
		value []byte
		exp   time.Time
	}{}
	src, err := store.OpenReadOnly(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Each(ctx, func(k, v []byte, exp time.Time) error {
		want[string(k)] = struct {
			value []byte
			exp   time.Time
		}{v, exp}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	src.Destruct()
	for _, k := range []string{"meta/hmac_secret", "meta/signing_key/default", "sess/0123abcd", "ban/user/john/192.0.2.1", "mfa/john/totp", "sub/sector/john"} {
		if _, ok := want[k]; !ok {
			t.Fatalf("the Badger store lacks %s: %v", k, want)
		}
	}
	copied := 0
	for _, n := range res.Copied {
		copied += n
	}
	if copied != len(want) || res.Copied["meta"] != 2 || res.Copied["tok"] < 1 || res.Copied["client-cutoff"] != 1 || res.Removed != 0 {
		t.Errorf("copied %v (%d), want the %d records of the Badger store", res.Copied, copied, len(want))
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT key, value, expires_at FROM public.portcullis_kv")
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for rows.Next() {
		var k, v []byte
		var exp *time.Time
		if err := rows.Scan(&k, &v, &exp); err != nil {
			t.Fatal(err)
		}
		got++
		w, ok := want[string(k)]
		switch {
		case !ok:
			t.Errorf("PostgreSQL holds %q, which the Badger store does not", k)
		case !bytes.Equal(v, w.value):
			t.Errorf("%s: value differs (%d bytes, want %d)", k, len(v), len(w.value))
		case w.exp.IsZero() != (exp == nil):
			t.Errorf("%s: expiry %v, want %v", k, exp, w.exp)
		case exp != nil && (exp.Sub(w.exp) > 2*time.Second || w.exp.Sub(*exp) > 2*time.Second):
			t.Errorf("%s: expires at %v, want %v (Badger keeps seconds)", k, exp, w.exp)
		}
	}
	if rows.Err() != nil || got != len(want) {
		t.Errorf("PostgreSQL holds %d records (%v), want %d", got, rows.Err(), len(want))
	}

	// a second run writes the same again
	again, err := run(false)
	if err != nil {
		t.Fatalf("a second run: %v", err)
	}
	if fmt.Sprint(again.Copied) != fmt.Sprint(res.Copied) {
		t.Errorf("a second run copied %v, the first %v", again.Copied, res.Copied)
	}

	// another provider's records: refused, unless forced
	if _, err := conn.Exec(ctx, "INSERT INTO public.portcullis_kv (key, value) VALUES ('tok/at/foreign', 'x')"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(false); err == nil || !strings.Contains(err.Error(), "1 record(s) the Badger store does not hold") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("a store with a foreign record: %v", err)
	}
	if _, err := conn.Exec(ctx, "UPDATE public.portcullis_kv SET value = 'another' WHERE key = 'meta/hmac_secret'"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(false); err == nil || !strings.Contains(err.Error(), "another HMAC secret") {
		t.Errorf("a store with another secret: %v", err)
	}
	forced, err := run(true)
	if err != nil || forced.Removed != 1 {
		t.Fatalf("--force: %+v %v", forced, err)
	}
	var secret []byte
	if err := conn.QueryRow(ctx, "SELECT value FROM public.portcullis_kv WHERE key = 'meta/hmac_secret'").Scan(&secret); err != nil || !bytes.Equal(secret, want["meta/hmac_secret"].value) {
		t.Errorf("after --force the secret is %q (%v), want the Badger store's", secret, err)
	}
	if err := conn.QueryRow(ctx, "SELECT 1 FROM public.portcullis_kv WHERE key = 'tok/at/foreign'").Scan(new(int)); err != pgx.ErrNoRows {
		t.Errorf("after --force the foreign record is still there: %v", err)
	}

	// the provider on PostgreSQL: the same key, the Badger tokens as they were
	p := &App{Issuer: "https://auth.example.com", Storage: StorageConfig{Postgres: &postgres.Config{DSN: dsn}}, Clients: testClients}
	pctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := p.Provision(pctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	ph := NewHandler(p)
	if got := p.running().provider.Keys()[0].ID; got != kid {
		t.Errorf("the provider on PostgreSQL signs with %s, the Badger one with %s", got, kid)
	}
	in := call(t, ph, "POST", oauth.PathIntrospection, url.Values{"token": {kuma}}, "uptime-kuma-monitor", "insecure_secret")
	if in.body["active"] != true || in.body["sub"] != "uptime-kuma-monitor" {
		t.Errorf("a token minted on Badger, introspected on PostgreSQL: %+v", in.body)
	}
	if in := call(t, ph, "POST", oauth.PathIntrospection, url.Values{"token": {revoked}}, "explicit", "explicit-secret"); in.body["active"] != false {
		t.Errorf("a token revoked on Badger is active on PostgreSQL: %+v", in.body)
	}
}
