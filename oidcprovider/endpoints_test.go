package oidcprovider

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
)

const seedDigest = "$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng"

var testClients = []ClientConfig{
	{ID: "uptime-kuma-monitor", Secret: seedDigest, Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://secure.example.com/"}, GrantTypes: []string{"client_credentials"}, RequestedAudienceMode: "implicit"},
	{ID: "explicit", Secret: "$plaintext$explicit-secret", Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://secure.example.com/api", "https://other.example.com/"}, GrantTypes: []string{"client_credentials"}},
	{ID: "poster", Secret: "poster-secret", Scopes: []string{"custom"}, Audience: []string{"urn:api"}, GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: "client_secret_post"},
	{ID: "p.c~x", Secret: "a:b%c&d +é", Scopes: []string{"custom"}, GrantTypes: []string{"client_credentials"}},
}

// startApp provisions and starts a real oidc app on a temporary Badger directory.
func startApp(t testing.TB, list []ClientConfig) (*App, *Handler) {
	t.Helper()
	return startAppIn(t, t.TempDir(), list)
}

// startAppIn is startApp on the store in dir.
func startAppIn(t testing.TB, dir string, list []ClientConfig) (*App, *Handler) {
	t.Helper()
	return runApp(t, &App{Issuer: "https://auth.example.com", Storage: StorageConfig{Dir: dir}, Clients: list})
}

// runApp provisions and starts a, which stops with t, and returns it with its handler.
func runApp(t testing.TB, a *App) (*App, *Handler) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	return a, NewHandler(a)
}

type result struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t testing.TB, h *Handler, method, path string, form url.Values, user, pass string) result {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, "https://auth.example.com"+path, body)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" || pass != "" {
		r.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nextNotFound{}); err != nil {
		t.Fatalf("handler returned error %v", err)
	}
	res := result{status: w.Code, header: w.Header()}
	if w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), &res.body); err != nil {
			t.Fatalf("%s %s: non-JSON body %q", method, path, w.Body.String())
		}
	}
	return res
}

type nextNotFound struct{}

func (nextNotFound) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	w.WriteHeader(http.StatusNotFound)
	return nil
}

func TestTokenEndpoint(t *testing.T) {
	_, h := startApp(t, testClients)
	cc := func(extra ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Add(extra[i], extra[i+1])
		}
		return v
	}
	// the seed client, as Uptime-Kuma calls it
	res := call(t, h, "POST", oauth.PathToken, cc("scope", clients.ScopeBearerAuthz), "uptime-kuma-monitor", "insecure_secret")
	if res.status != 200 || res.body["token_type"] != "bearer" || res.body["scope"] != clients.ScopeBearerAuthz || res.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %+v", res)
	}
	tok, _ := res.body["access_token"].(string)
	if !strings.HasPrefix(tok, "portcullis_at_") || res.body["refresh_token"] != nil {
		t.Fatalf("token %q must be an opaque portcullis_at_ token, without refresh token", tok)
	}
	if exp, _ := res.body["expires_in"].(float64); exp < 3500 || exp > 3600 {
		t.Fatalf("expires_in %v", res.body["expires_in"])
	}
	in := call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {tok}}, "uptime-kuma-monitor", "insecure_secret")
	aud, _ := in.body["aud"].([]any)
	if in.body["active"] != true || in.body["sub"] != "uptime-kuma-monitor" || in.body["client_id"] != "uptime-kuma-monitor" || len(aud) != 1 || aud[0] != "https://secure.example.com/" || in.body["token_type"] != "bearer" || in.body["exp"] == nil || in.body["iat"] == nil {
		t.Fatalf("introspection (implicit audience): %+v", in.body)
	}

	// explicit mode: only what is asked, via audience (space-separated or repeated) or resource
	res = call(t, h, "POST", oauth.PathToken, cc("scope", clients.ScopeBearerAuthz, "audience", "https://secure.example.com/api/v1 https://other.example.com/"), "explicit", "explicit-secret")
	if res.status != 200 {
		t.Fatalf("explicit: %+v", res)
	}
	in = call(t, h, "POST", oauth.PathIntrospectAlias, url.Values{"token": {res.body["access_token"].(string)}}, "explicit", "explicit-secret")
	if aud, _ := in.body["aud"].([]any); len(aud) != 2 || in.body["scope"] != clients.ScopeBearerAuthz {
		t.Fatalf("explicit audience: %+v", in.body)
	}
	res = call(t, h, "POST", oauth.PathToken, cc("scope", clients.ScopeBearerAuthz, "resource", "https://secure.example.com/api/x"), "explicit", "explicit-secret")
	in = call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {res.body["access_token"].(string)}}, "explicit", "explicit-secret")
	if aud, _ := in.body["aud"].([]any); len(aud) != 1 || aud[0] != "https://secure.example.com/api/x" {
		t.Fatalf("resource audience: %+v", in.body)
	}
	res = call(t, h, "POST", oauth.PathToken, cc("scope", clients.ScopeBearerAuthz), "explicit", "explicit-secret")
	in = call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {res.body["access_token"].(string)}}, "explicit", "explicit-secret")
	if in.body["aud"] != nil && len(in.body["aud"].([]any)) != 0 {
		t.Fatalf("explicit mode without a request grants no audience: %+v", in.body)
	}
	// no scope requested: none implied
	res = call(t, h, "POST", oauth.PathToken, cc(), "uptime-kuma-monitor", "insecure_secret")
	if res.status != 200 || res.body["scope"] != "" {
		t.Fatalf("no scope: %+v", res)
	}
	// client_secret_post, and RFC 6749 §2.3.1 form-encoding of Basic credentials
	if res := call(t, h, "POST", oauth.PathToken, cc("client_id", "poster", "client_secret", "poster-secret", "scope", "custom", "audience", "urn:api"), "", ""); res.status != 200 {
		t.Fatalf("client_secret_post: %+v", res)
	}
	if res := call(t, h, "POST", oauth.PathToken, cc("scope", "custom"), "p.c~x", "a:b%c&d +é"); res.status != 200 {
		t.Fatalf("form-encoded basic credentials: %+v", res)
	}

	errs := []struct {
		name       string
		method     string
		form       url.Values
		user, pass string
		status     int
		code       string
	}{
		{"GET", "GET", nil, "uptime-kuma-monitor", "insecure_secret", 400, "invalid_request"},
		{"empty body", "POST", url.Values{}, "uptime-kuma-monitor", "insecure_secret", 400, "invalid_request"},
		{"unsupported grant", "POST", url.Values{"grant_type": {"password"}}, "uptime-kuma-monitor", "insecure_secret", 400, "unsupported_grant_type"},
		{"refresh grant", "POST", url.Values{"grant_type": {"refresh_token"}}, "uptime-kuma-monitor", "insecure_secret", 400, "unsupported_grant_type"},
		{"wrong secret", "POST", cc(), "uptime-kuma-monitor", "nope", 401, "invalid_client"},
		{"unknown client", "POST", cc(), "ghost", "x", 401, "invalid_client"},
		{"no credentials", "POST", cc(), "", "", 401, "invalid_client"},
		{"post for a basic client", "POST", cc("client_id", "uptime-kuma-monitor", "client_secret", "insecure_secret"), "", "", 401, "invalid_client"},
		{"basic for a post client", "POST", cc("scope", "custom"), "poster", "poster-secret", 401, "invalid_client"},
		{"two methods", "POST", cc("client_secret", "x"), "poster", "poster-secret", 400, "invalid_request"},
		{"assertion", "POST", cc("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion", "x.y.z"), "", "", 401, "invalid_client"},
		{"scope not registered", "POST", cc("scope", "openid"), "uptime-kuma-monitor", "insecure_secret", 400, "invalid_scope"},
		{"bearer scope with another", "POST", cc("scope", clients.ScopeBearerAuthz+" offline_access"), "explicit", "explicit-secret", 400, "invalid_scope"},
		{"audience not allowed", "POST", cc("audience", "https://evil.example.com/"), "uptime-kuma-monitor", "insecure_secret", 400, "invalid_target"},
		{"audience path outside", "POST", cc("audience", "https://secure.example.com/apix"), "explicit", "explicit-secret", 400, "invalid_target"},
		{"resource not absolute", "POST", cc("resource", "/relative"), "uptime-kuma-monitor", "insecure_secret", 400, "invalid_target"},
		{"resource with fragment", "POST", cc("resource", "https://secure.example.com/#x"), "uptime-kuma-monitor", "insecure_secret", 400, "invalid_target"},
		{"audience with a dot segment", "POST", cc("audience", "https://secure.example.com/api/../admin"), "explicit", "explicit-secret", 400, "invalid_target"},
		{"audience with an encoded dot segment", "POST", cc("audience", "https://secure.example.com/api/%2e%2e/admin"), "explicit", "explicit-secret", 400, "invalid_target"},
		{"audience with a query", "POST", cc("audience", "https://secure.example.com/api?x=1"), "explicit", "explicit-secret", 400, "invalid_target"},
		{"resource with a dot segment", "POST", cc("resource", "https://secure.example.com/api/./x"), "explicit", "explicit-secret", 400, "invalid_target"},
		{"repeated scope", "POST", cc("scope", "a", "scope", "b"), "uptime-kuma-monitor", "insecure_secret", 400, "invalid_request"},
	}
	for _, c := range errs {
		t.Run(c.name, func(t *testing.T) {
			res := call(t, h, c.method, oauth.PathToken, c.form, c.user, c.pass)
			if res.status != c.status || res.body["error"] != c.code {
				t.Fatalf("got %d %v, want %d %s", res.status, res.body, c.status, c.code)
			}
			if c.status == 401 && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Basic ") {
				t.Fatalf("401 invalid_client needs a Basic challenge, got %q", res.header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestIntrospectionAndRevocation(t *testing.T) {
	_, h := startApp(t, testClients)
	get := func(id, secret string) string {
		res := call(t, h, "POST", oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}, id, secret)
		return res.body["access_token"].(string)
	}
	kumaTok, otherTok := get("uptime-kuma-monitor", "insecure_secret"), get("explicit", "explicit-secret")

	if res := call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {kumaTok}}, "", ""); res.status != 401 || res.body["error"] != "invalid_client" {
		t.Fatalf("introspection needs client authentication: %+v", res)
	}
	for _, bogus := range []string{"garbage", "portcullis_at_x.y", kumaTok + "x", strings.Replace(kumaTok, "_at_", "_rt_", 1)} {
		if res := call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {bogus}}, "explicit", "explicit-secret"); res.status != 200 || res.body["active"] != false {
			t.Fatalf("bogus token %q: %+v", bogus, res)
		}
	}
	// a client revokes only its own tokens
	if res := call(t, h, "POST", oauth.PathRevocation, url.Values{"token": {kumaTok}}, "explicit", "explicit-secret"); res.status == 200 {
		t.Fatalf("revoking another client's token must be refused: %+v", res)
	}
	if res := call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {kumaTok}}, "explicit", "explicit-secret"); res.body["active"] != true {
		t.Fatal("a refused revocation must leave the token active")
	}
	if res := call(t, h, "POST", oauth.PathRevokeAlias, url.Values{"token": {kumaTok}}, "uptime-kuma-monitor", "insecure_secret"); res.status != 200 {
		t.Fatalf("revocation: %+v", res)
	}
	if res := call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {kumaTok}}, "uptime-kuma-monitor", "insecure_secret"); res.body["active"] != false {
		t.Fatal("revoked token still active")
	}
	if res := call(t, h, "POST", oauth.PathIntrospection, url.Values{"token": {otherTok}}, "uptime-kuma-monitor", "insecure_secret"); res.body["active"] != true {
		t.Fatal("revoking one token touched another")
	}
	for _, tok := range []string{"unknown-token", kumaTok, "portcullis_at_x.y"} {
		if res := call(t, h, "POST", oauth.PathRevocation, url.Values{"token": {tok}}, "uptime-kuma-monitor", "insecure_secret"); res.status != 200 {
			t.Fatalf("RFC 7009: unknown or revoked tokens get 200, got %+v", res)
		}
	}
	if res := call(t, h, "POST", oauth.PathRevocation, url.Values{}, "uptime-kuma-monitor", "insecure_secret"); res.status != 400 {
		t.Fatalf("missing token: %+v", res)
	}
}

func TestDiscoveryAndUnavailable(t *testing.T) {
	a, h := startApp(t, testClients)
	for _, p := range []string{oauth.PathDiscoveryOIDC, oauth.PathDiscoveryOAuth} {
		res := call(t, h, "GET", p, nil, "", "")
		if res.status != 200 || res.body["issuer"] != "https://auth.example.com" || res.body["token_endpoint"] != "https://auth.example.com/api/oidc/token" || res.body["authorization_endpoint"] != nil {
			t.Fatalf("%s: %+v", p, res)
		}
	}
	for _, p := range []string{oauth.PathJWKS, oauth.PathJWKSAlias} {
		res := call(t, h, "GET", p, nil, "", "")
		keys, _ := res.body["keys"].([]any)
		if res.status != 200 || len(keys) != 1 || keys[0].(map[string]any)["alg"] != "RS256" {
			t.Fatalf("%s: %+v", p, res)
		}
	}
	if res := call(t, h, "GET", "/other", nil, "", ""); res.status != 404 {
		t.Fatalf("other paths pass to the next handler: %d", res.status)
	}
	_ = a.Stop()
	res := call(t, h, "POST", oauth.PathToken, url.Values{"grant_type": {"client_credentials"}}, "uptime-kuma-monitor", "insecure_secret")
	if res.status != 503 || res.header.Get("Retry-After") == "" {
		t.Fatalf("a stopped store answers 503 with Retry-After: %+v", res)
	}
}

func TestDefaultKeyAndSecretPersist(t *testing.T) {
	dir := t.TempDir()
	kid := func() string {
		a := &App{Issuer: "https://auth.example.com", Storage: StorageConfig{Dir: dir}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		if err := a.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		defer a.Stop()
		return a.running().provider.Keys()[0].ID
	}
	first, second := kid(), kid()
	if first != second || !strings.HasSuffix(first, "-rs256") || len(first) != len("0000000-rs256") {
		t.Fatalf("default key must be generated once and kept: %q vs %q", first, second)
	}
}

// FuzzTokenEndpoint sends arbitrary bodies, content types and Authorization headers to the token,
// introspection and revocation endpoints: the answer is always an RFC 6749 JSON error or success,
// never a 500 or a panic.
func FuzzTokenEndpoint(f *testing.F) {
	_, h := startApp(f, testClients)
	f.Add("grant_type=client_credentials&scope=authelia.bearer.authz", "Basic dXB0aW1lLWt1bWEtbW9uaXRvcjppbnNlY3VyZV9zZWNyZXQ=", "application/x-www-form-urlencoded", uint8(0))
	f.Add("grant_type=client_credentials&client_id=poster&client_secret=poster-secret&audience=urn:api", "", "application/x-www-form-urlencoded", uint8(0))
	f.Add("token=portcullis_at_a.b", "Basic %%%", "multipart/form-data; boundary=x", uint8(1))
	f.Add("%zz=&&&", "Bearer x", "text/plain", uint8(2))
	f.Fuzz(func(t *testing.T, body, authz, ctype string, which uint8) {
		path := []string{oauth.PathToken, oauth.PathIntrospection, oauth.PathRevocation}[int(which)%3]
		r := httptest.NewRequest("POST", "https://auth.example.com"+path, strings.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nextNotFound{}); err != nil {
			t.Fatalf("handler error: %v", err)
		}
		if w.Code >= 500 {
			t.Fatalf("%s answered %d: %s", path, w.Code, w.Body.String())
		}
		if w.Body.Len() > 0 && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s answered non-JSON %q", path, w.Body.String())
		}
	})
}

// BenchmarkTokenEndpoint measures a token request with the seed's pbkdf2-sha512 client secret:
// the first request of a client (full digest check) and a remembered one.
func BenchmarkTokenEndpoint(b *testing.B) {
	a, h := startApp(b, testClients)
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}
	run := func(b *testing.B, forget bool) {
		b.ReportAllocs()
		for b.Loop() {
			if forget {
				a.running().backend.secrets.Retain(nil)
			}
			if res := call(b, h, "POST", oauth.PathToken, form, "uptime-kuma-monitor", "insecure_secret"); res.status != 200 {
				b.Fatal(res)
			}
		}
	}
	b.Run("first", func(b *testing.B) { run(b, true) })
	b.Run("remembered", func(b *testing.B) { run(b, false) })
}
