package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// A signing-key rotation as the README gives it, on the real binary: keygen makes the new key,
// a reload lists it first and marks the old one retired. The new key signs from then on; the
// JWKS lists both; a JWT access token the old key signed still passes the gate; a config that
// leaves no RS256 key that signs is refused and the running one stays.
func TestSigningKeyRotation(t *testing.T) {
	dir := t.TempDir()
	keygen := func(name string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		out, errOut, code := command(t, "", "keygen", "--out", path, "--json")
		if code != 0 {
			t.Fatalf("keygen: exit %d: %s", code, errOut)
		}
		var res struct {
			KeyID string `json:"key_id"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.KeyID == "" {
			t.Fatalf("keygen output %q: %v", out, err)
		}
		return path
	}
	oldFile, newFile := keygen("old.pem"), keygen("new.pem")
	keysBlock := func(first, second string) string {
		return "signing_key " + first + "\nsigning_key " + second + "\n"
	}
	oldKey := fmt.Sprintf("old {\n\t\t\tkey_file %s\n\t\t}", oldFile)
	client := `
		client rotating-monitor {
			secret "$plaintext$rotating-monitor-secret"
			grant_types client_credentials
			scopes authelia.bearer.authz
			audience https://secure.example.test:{portal_port}/
			requested_audience_mode implicit
			access_token_signed_response_alg RS256
		}
`
	s := startOIDCHTTPSite(t, "signing_key "+oldKey+"\n"+client)
	secure := s.url("secure", "/")
	cc := clientcredentials.Config{ClientID: "rotating-monitor", ClientSecret: "rotating-monitor-secret", TokenURL: s.issuer + "/api/oidc/token",
		Scopes: []string{"authelia.bearer.authz"}, AuthStyle: oauth2.AuthStyleInHeader}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.hc)
	mint := func() string {
		t.Helper()
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("client_credentials: %v", err)
		}
		return tok.AccessToken
	}
	kidOf := func(token string) string {
		t.Helper()
		_, h, err := verifyJWS(t, s.jwks(), token)
		if err != nil {
			t.Fatalf("the token does not verify against /jwks.json: %v", err)
		}
		return h.KeyID
	}
	before := mint()
	if kid := kidOf(before); kid != "old" {
		t.Fatalf("signed by %q before the rotation, want old", kid)
	}

	cfg, err := os.ReadFile(s.s.config)
	if err != nil {
		t.Fatal(err)
	}
	load := func(caddyfile string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/load", s.admin), strings.NewReader(caddyfile))
		req.Header.Set("Content-Type", "text/caddyfile")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	rotated := strings.Replace(string(cfg), "signing_key "+oldKey, keysBlock(fmt.Sprintf("new {\n\t\t\tkey_file %s\n\t\t}", newFile), fmt.Sprintf("old {\n\t\t\tkey_file %s\n\t\t\tretired\n\t\t}", oldFile)), 1)
	if rotated == string(cfg) {
		t.Fatal("the test's config has no signing_key block to rotate")
	}
	if code := load(rotated); code != http.StatusOK {
		t.Fatalf("the rotated config was refused: %d", code)
	}
	// while the configs are swapped a connection may be dropped or answered 503
	var after string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if tok, err := cc.Token(ctx); err == nil {
			if after = tok.AccessToken; kidOf(after) == "new" {
				break
			}
		}
	}
	if kid := kidOf(after); kid != "new" {
		t.Fatalf("signed by %q after the rotation, want new", kid)
	}
	var kids []string
	for _, k := range s.jwks().Keys {
		kids = append(kids, k.KeyID)
	}
	if strings.Join(kids, ",") != "new,old" {
		t.Errorf("JWKS after the rotation: %v, want [new old]", kids)
	}
	bearerCall(t, s.hc, secure+"api", before, http.StatusOK) // signed by the retired key
	bearerCall(t, s.hc, secure+"api", after, http.StatusOK)

	// retiring every RS256 key is refused; the running config keeps signing with the new key
	allRetired := strings.Replace(rotated, fmt.Sprintf("key_file %s\n", newFile), fmt.Sprintf("key_file %s\n\t\t\tretired\n", newFile), 1)
	if code := load(allRetired); code == http.StatusOK {
		t.Fatal("a config without an RS256 key that signs was loaded")
	}
	if kid := kidOf(mint()); kid != "new" {
		t.Errorf("after the refused load, signed by %q", kid)
	}
}
