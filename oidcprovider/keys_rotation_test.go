package oidcprovider

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// startKeyedApp starts the app on the store in dir with the signing keys.
func startKeyedApp(t *testing.T, dir string, signing []SigningKey) *App {
	t.Helper()
	a := &App{Issuer: "https://auth.example.com", Storage: StorageConfig{Dir: dir}, Clients: testClients, SigningKeys: signing}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a
}

// newKeyFile writes a new RS256 key to dir/name, as caddy oidc keygen does.
func newKeyFile(t *testing.T, dir, name string) string {
	t.Helper()
	pemData, _, err := keys.Generate("RS256", 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// published returns the JWKS's key ids and the discovery document's ID token algorithms.
func published(t *testing.T, a *App) (kids []string, algs []any) {
	t.Helper()
	h := NewHandler(a)
	var set jose.JSONWebKeySet
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://auth.example.com/jwks.json", nil), nextNotFound{}); err != nil || json.Unmarshal(w.Body.Bytes(), &set) != nil {
		t.Fatalf("jwks: %v %s", err, w.Body)
	}
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	doc := call(t, h, http.MethodGet, "/.well-known/openid-configuration", nil, "", "").body
	algs, _ = doc["id_token_signing_alg_values_supported"].([]any)
	return kids, algs
}

// TestRotationFromTheGeneratedKey: configuring key files in a store that holds the generated key
// keeps the generated key in the JWKS, retired, for the longest signed-token lifespan, and then
// drops it; a retired key file stays listed and signs nothing.
func TestRotationFromTheGeneratedKey(t *testing.T) {
	dir := t.TempDir()
	a := startKeyedApp(t, dir, nil)
	generated := a.running().provider.Keys()[0].ID
	_ = a.Stop()

	keyDir := t.TempDir()
	file := newKeyFile(t, keyDir, "new.pem")
	a = startKeyedApp(t, dir, []SigningKey{{KeyID: "new", KeyFile: file}})
	kids, algs := published(t, a)
	if len(kids) != 2 || kids[0] != "new" || kids[1] != generated {
		t.Fatalf("JWKS after configuring a key file: %v, want [new %s]", kids, generated)
	}
	if len(algs) != 1 || algs[0] != "RS256" {
		t.Fatalf("ID token algorithms %v", algs)
	}
	if k, err := a.running().provider.SigningKey("", "RS256"); err != nil || k.ID != "new" {
		t.Fatalf("signer %v %v: the retired generated key must not sign", k, err)
	}
	// Its time is over once the longest signed lifespan has passed since the first start with
	// configured keys.
	kv := a.running().backend.kv
	if err := kv.Put(context.Background(), store.Entry{Key: keyGeneratedRetiredAt, Value: []byte(time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339))}); err != nil {
		t.Fatal(err)
	}
	_ = a.Stop()
	a = startKeyedApp(t, dir, []SigningKey{{KeyID: "new", KeyFile: file}, {KeyID: "old", KeyFile: newKeyFile(t, keyDir, "old.pem"), Retired: true}})
	t.Cleanup(func() { _ = a.Stop() })
	kids, _ = published(t, a)
	if k, err := a.running().provider.SigningKey("old", "RS256"); err != nil || k.ID != "new" {
		t.Fatalf("signer for the retired key's id: %v %v, want the key that signs", k, err)
	}
	if len(kids) != 2 || kids[0] != "new" || kids[1] != "old" {
		t.Fatalf("JWKS once the generated key's time is over: %v, want [new old]", kids)
	}
}
