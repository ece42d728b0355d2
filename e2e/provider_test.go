package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// designCaddyfile is the DESIGN.md §3 Caddyfile, as kept in the adapt fixtures, with the
// example users file in place of /etc/caddy/users.yml.
func designCaddyfile(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../oidcprovider/testdata/adapt/design_provider.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	users, err := filepath.Abs("../users.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(strings.SplitN(string(data), "----------", 2)[0], "/etc/caddy/users.yml", users, 1)
}

func writeRSAKey(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rs256.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// form posts a form with Basic client credentials and decodes the JSON answer.
func form(t *testing.T, hc *http.Client, endpoint, id, secret string, v url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestProviderLifecycle(t *testing.T) {
	adminPort, httpPort := freePort(t), freePort(t)
	store := filepath.Join(t.TempDir(), "store")
	cf := loopback(designCaddyfile(t), adminPort, httpPort, map[string]string{"127.0.0.1:8080": "127.0.0.1:9"}, map[string]string{
		"/etc/caddy/oidc/rs256.pem": writeRSAKey(t),
		"/var/lib/caddy/portcullis": store,
	})
	s := newServer(t, cf, adminPort, httpPort, "PORTCULLIS_HMAC_SECRET="+strings.Repeat("k", 48))
	s.readyURL = fmt.Sprintf("http://auth.localhost:%d/.well-known/openid-configuration", httpPort)
	s.start()

	hc := client()
	ctx := oidc.ClientContext(context.Background(), hc)
	issuer := fmt.Sprintf("http://auth.localhost:%d", httpPort)
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var meta struct {
		Introspection string `json:"introspection_endpoint"`
		Revocation    string `json:"revocation_endpoint"`
	}
	if err := provider.Claims(&meta); err != nil || meta.Introspection == "" || meta.Revocation == "" {
		t.Fatalf("discovery metadata: %v %+v", err, meta)
	}
	cc := clientcredentials.Config{
		ClientID:     "uptime-kuma-monitor",
		ClientSecret: "insecure_secret",
		TokenURL:     provider.Endpoint().TokenURL,
		Scopes:       []string{"authelia.bearer.authz"},
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	if tok.TokenType != "bearer" || tok.RefreshToken != "" || !strings.HasPrefix(tok.AccessToken, "portcullis_at_") || tok.Extra("scope") != "authelia.bearer.authz" {
		t.Fatalf("token response: %+v scope=%v", tok, tok.Extra("scope"))
	}
	introspect := func(token string) map[string]any {
		status, body := form(t, hc, meta.Introspection, "uptime-kuma-monitor", "insecure_secret", url.Values{"token": {token}})
		if status != 200 {
			t.Fatalf("introspection: %d %v", status, body)
		}
		return body
	}
	in := introspect(tok.AccessToken)
	if in["active"] != true || in["client_id"] != "uptime-kuma-monitor" || in["sub"] != "uptime-kuma-monitor" || in["scope"] != "authelia.bearer.authz" || in["token_type"] != "bearer" {
		t.Fatalf("introspection: %v", in)
	}
	if aud, _ := in["aud"].([]any); len(aud) != 1 || aud[0] != fmt.Sprintf("http://secure.localhost:%d/", httpPort) {
		t.Fatalf("implicit audience: %v", in["aud"])
	}
	if status, _ := form(t, hc, meta.Revocation, "uptime-kuma-monitor", "insecure_secret", url.Values{"token": {tok.AccessToken}}); status != 200 {
		t.Fatalf("revocation: %d", status)
	}
	if in := introspect(tok.AccessToken); in["active"] != false {
		t.Fatalf("revoked token still active: %v", in)
	}

	// a wrong secret is invalid_client, as x/oauth2 reports it
	bad := cc
	bad.ClientSecret = "wrong"
	var rerr *oauth2.RetrieveError
	if _, err := bad.Token(ctx); !errors.As(err, &rerr) || rerr.ErrorCode != "invalid_client" || rerr.Response.StatusCode != 401 {
		t.Fatalf("wrong secret: %v", err)
	}

	kept, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// reload through the admin API while requests are served: no lock error, tokens intact
	var wg sync.WaitGroup
	var ok200, other, resets atomic.Int32
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("POST", meta.Introspection, strings.NewReader(url.Values{"token": {kept.AccessToken}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("uptime-kuma-monitor", "insecure_secret")
			resp, err := hc.Do(req)
			if err != nil {
				// Caddy closes the old server's idle keep-alive connections on reload; a POST
				// that raced onto one is reset (Go does not retry non-idempotent requests).
				resets.Add(1)
				continue
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			status := resp.StatusCode
			switch {
			case status == 200 && body["active"] == true:
				ok200.Add(1)
			case status == 503:
				// the old config's app stopping under an in-flight request: retryable
			default:
				other.Add(1)
			}
		}
	}()
	// each step waits until an introspection has been answered since the last one
	introspected := func() {
		t.Helper()
		for n, deadline := ok200.Load(), time.Now().Add(30*time.Second); ok200.Load() <= n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no introspection answered for 30s (%d bad answers)\n%s", other.Load(), s.log.String())
			}
		}
	}
	introspected()
	withLate := func(secret string) string {
		return strings.Replace(cf, "\t\taccess_control {", "\t\tclient late-monitor {\n\t\t\tsecret \"$plaintext$"+secret+"\"\n\t\t\tscopes authelia.bearer.authz\n\t\t\taudience "+fmt.Sprintf("http://secure.localhost:%d/", httpPort)+"\n\t\t\tgrant_types client_credentials\n\t\t}\n\t\taccess_control {", 1)
	}
	for i := 0; i < 3; i++ {
		reloaded := withLate(fmt.Sprintf("late-secret-%d", i))
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://localhost:%d/load", adminPort), strings.NewReader(reloaded))
		req.Header.Set("Content-Type", "text/caddyfile")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := new(strings.Builder)
		_, _ = fmt.Fprint(body, resp.Status)
		buf := make([]byte, 2048)
		n, _ := resp.Body.Read(buf)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("reload %d: %s %s", i, body, buf[:n])
		}
		introspected()
	}
	close(stop)
	wg.Wait()
	if ok200.Load() == 0 || other.Load() != 0 {
		t.Fatalf("during reloads: %d good introspections, %d bad answers\n%s", ok200.Load(), other.Load(), s.log.String())
	}
	t.Logf("during 3 reloads: %d good introspections, %d connections reset by Caddy's reload", ok200.Load(), resets.Load())
	if strings.Contains(s.log.String(), "Cannot acquire directory lock") {
		t.Fatal("a reload hit Badger's directory lock")
	}
	late := clientcredentials.Config{ClientID: "late-monitor", ClientSecret: "late-secret-2", TokenURL: cc.TokenURL, Scopes: cc.Scopes, AuthStyle: oauth2.AuthStyleInHeader}
	if _, err := late.Token(ctx); err != nil {
		t.Fatalf("client added by the reload: %v", err)
	}
	if in := introspect(kept.AccessToken); in["active"] != true {
		t.Fatalf("token lost across reloads: %v", in)
	}

	// caddy validate on the same config while the server holds the store
	v := exec.Command(caddyBin, "validate", "--config", s.config, "--adapter", "caddyfile")
	v.Env = s.env
	if out, err := v.CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("caddy validate while running: %v\n%s", err, out)
	}

	// a restart keeps unrevoked tokens active and revoked ones inactive
	s.stop()
	s.start()
	if in := introspect(kept.AccessToken); in["active"] != true {
		t.Fatalf("token lost across a restart: %v", in)
	}
	if in := introspect(tok.AccessToken); in["active"] != false {
		t.Fatalf("revoked token came back after a restart: %v", in)
	}
	if strings.Contains(s.log.String(), "insecure_secret") || strings.Contains(s.log.String(), kept.AccessToken[len("portcullis_at_"):]) {
		t.Fatal("a secret or token reached the log")
	}
}
