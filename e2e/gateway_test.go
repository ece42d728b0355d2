package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// echo is an upstream that answers with the request headers it received, as JSON.
func echo(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "headers": r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

type seen struct {
	status  int
	header  http.Header
	path    string
	headers map[string][]string
}

func get(t *testing.T, hc *http.Client, method, target string, headers map[string]string) seen {
	t.Helper()
	s, err := tryGet(t, hc, method, target, headers)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryGet is get for a moment when the server may drop a connection (a config being swapped):
// the transport's error is returned, not fatal.
func tryGet(t *testing.T, hc *http.Client, method, target string, headers map[string]string) (seen, error) {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return seen{}, err
	}
	defer resp.Body.Close()
	s := seen{status: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && resp.StatusCode == 200 {
		var body struct {
			Path    string              `json:"path"`
			Headers map[string][]string `json:"headers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		s.path, s.headers = body.Path, body.Headers
	}
	return s, nil
}

// TestUptimeKumaMonitor runs examples/uptime-kuma/Caddyfile in front of a real upstream and calls
// it as Uptime-Kuma does: client_credentials with client_secret_basic, scope
// authelia.bearer.authz, no audience (implicit mode), then the Bearer token on the site.
func TestUptimeKumaMonitor(t *testing.T) {
	example, err := os.ReadFile("../examples/uptime-kuma/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	up := strings.TrimPrefix(echo(t).URL, "http://")
	adminPort, httpPort := freePort(t), freePort(t)
	cf := loopback(string(example), adminPort, httpPort, map[string]string{"127.0.0.1:8080": up, "127.0.0.1:8081": up}, nil)
	s := newServer(t, cf, adminPort, httpPort)
	s.readyURL = fmt.Sprintf("http://auth.localhost:%d/.well-known/openid-configuration", httpPort)
	s.start()

	hc := client()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	base := func(host string) string { return fmt.Sprintf("http://%s.localhost:%d", host, httpPort) }
	kuma := clientcredentials.Config{
		ClientID:     "uptime-kuma-monitor",
		ClientSecret: "insecure_secret",
		TokenURL:     base("auth") + "/api/oidc/token",
		Scopes:       []string{"authelia.bearer.authz"},
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	tok, err := kuma.Token(ctx)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	bearer := func(tok string, extra ...string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + tok}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}

	// 200 with Remote-Client-ID at the upstream, a spoofed Remote-User stripped
	r := get(t, hc, "GET", base("secure")+"/status", bearer(tok.AccessToken, "Remote-User", "admin", "Remote-Groups", "admins"))
	if r.status != 200 || r.path != "/status" || len(r.headers["Remote-Client-Id"]) != 1 || r.headers["Remote-Client-Id"][0] != "uptime-kuma-monitor" {
		t.Fatalf("monitor request: %d %v", r.status, r.headers)
	}
	if _, spoofed := r.headers["Remote-User"]; spoofed {
		t.Fatal("a spoofed Remote-User reached the upstream")
	}
	if _, spoofed := r.headers["Remote-Groups"]; spoofed {
		t.Fatal("a spoofed Remote-Groups reached the upstream")
	}
	// the same through the http.Client that x/oauth2 builds, as Uptime-Kuma's axios would send it
	mc := oauth2.NewClient(context.WithValue(ctx, oauth2.HTTPClient, hc), kuma.TokenSource(ctx))
	if resp, err := mc.Get(base("secure") + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("oauth2 client: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	// a token for another audience → 401 invalid_token
	api := clientcredentials.Config{ClientID: "api-monitor", ClientSecret: "another_insecure_secret", TokenURL: kuma.TokenURL, Scopes: kuma.Scopes, AuthStyle: oauth2.AuthStyleInHeader}
	apiTok, err := api.Token(ctx)
	if err != nil {
		t.Fatalf("api-monitor token: %v", err)
	}
	r = get(t, hc, "GET", base("secure")+"/status", bearer(apiTok.AccessToken))
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("other audience: %d %v", r.status, r.header)
	}
	// a path-prefix audience: /api/x yes, /apix no
	if r = get(t, hc, "GET", base("apps")+"/api/x", bearer(apiTok.AccessToken)); r.status != 200 || r.headers["Remote-Client-Id"][0] != "api-monitor" {
		t.Fatalf("/api/x: %d %v", r.status, r.headers)
	}
	if r = get(t, hc, "GET", base("apps")+"/apix", bearer(apiTok.AccessToken)); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("/apix: %d %v", r.status, r.header)
	}
	// a valid token on a two_factor rule → 403 insufficient_scope
	if r = get(t, hc, "GET", base("secure")+"/admin/users", bearer(tok.AccessToken)); r.status != 403 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("two_factor: %d %v", r.status, r.header)
	}
	// anonymous → 401 for an API client, 302 to the portal for a browser
	if r = get(t, hc, "GET", base("secure")+"/status", map[string]string{"Accept": "application/json"}); r.status != 401 || r.header.Get("WWW-Authenticate") == "" || r.header.Get("Location") == "" {
		t.Fatalf("anonymous API client: %d %v", r.status, r.header)
	}
	r = get(t, hc, "GET", base("secure")+"/status?a=1", map[string]string{"Accept": "text/html,application/xhtml+xml"})
	wantLoc := base("auth") + "/?rd=" + url.QueryEscape(base("secure")+"/status?a=1") + "&rm=GET"
	if r.status != 302 || r.header.Get("Location") != wantLoc {
		t.Fatalf("anonymous browser: %d %q, want %q", r.status, r.header.Get("Location"), wantLoc)
	}
	// an upstream's own API token reaches a bypass rule untouched
	r = get(t, hc, "POST", base("secure")+"/webhooks/deploy", map[string]string{"Authorization": "Bearer gitea-webhook-token-123"})
	if r.status != 200 || r.headers["Authorization"][0] != "Bearer gitea-webhook-token-123" {
		t.Fatalf("bypass with the upstream's token: %d %v", r.status, r.headers)
	}
	// a revoked token → 401 at once
	req, _ := http.NewRequest("POST", base("auth")+"/api/oidc/revocation", strings.NewReader(url.Values{"token": {tok.AccessToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("uptime-kuma-monitor", "insecure_secret")
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revocation: %v %v", err, resp)
	}
	resp.Body.Close()
	if r = get(t, hc, "GET", base("secure")+"/status", bearer(tok.AccessToken)); r.status != 401 {
		t.Fatalf("revoked token: %d", r.status)
	}
	// the wrong client secret is invalid_client for the monitor
	wrong := kuma
	wrong.ClientSecret = "nope"
	var rerr *oauth2.RetrieveError
	if _, err := wrong.Token(ctx); !errors.As(err, &rerr) || rerr.ErrorCode != "invalid_client" {
		t.Fatalf("wrong secret: %v", err)
	}
}
