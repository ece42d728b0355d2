package caddyauth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

const seedDigest = "$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng"

func kumaClient() oidcprovider.ClientConfig {
	return oidcprovider.ClientConfig{ID: "uptime-kuma-monitor", Secret: seedDigest, Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://secure.example.com/", "https://unruled.example.com/"}, GrantTypes: []string{"client_credentials"}, RequestedAudienceMode: "implicit"}
}

func apiClient() oidcprovider.ClientConfig {
	return oidcprovider.ClientConfig{ID: "api", Secret: "$plaintext$api-secret", Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://host.example.com/api"}, GrantTypes: []string{"client_credentials"}, RequestedAudienceMode: "implicit"}
}

func noScopeClient() oidcprovider.ClientConfig {
	return oidcprovider.ClientConfig{ID: "noscope", Secret: "$plaintext$noscope-secret", Scopes: []string{"custom"}, Audience: []string{"https://secure.example.com/"}, GrantTypes: []string{"client_credentials"}, RequestedAudienceMode: "implicit"}
}

var globalRules = []accesscontrol.Rule{
	{Domain: []string{"secure.example.com"}, Resources: []string{"^/admin"}, Policy: "two_factor"},
	{Domain: []string{"secure.example.com"}, Resources: []string{"^/public"}, Policy: "bypass"},
	{Domain: []string{"secure.example.com"}, Subject: [][]string{{"oauth2:client:uptime-kuma-monitor"}, {"oauth2:client:noscope"}}, Policy: "one_factor"},
	{Domain: []string{"host.example.com"}, Subject: [][]string{{"oauth2:client:api"}}, Policy: "one_factor"},
	{Domain: []string{"closed.example.com"}, Policy: "deny"},
}

// rulesFor keeps the global rules' client subjects that name registered clients, as a config
// must.
func rulesFor(clients []oidcprovider.ClientConfig) []accesscontrol.Rule {
	known := map[string]bool{}
	for _, c := range clients {
		known["oauth2:client:"+c.ID] = true
	}
	var out []accesscontrol.Rule
	for _, r := range globalRules {
		if len(r.Subject) > 0 {
			var subj [][]string
			for _, alt := range r.Subject {
				if known[alt[0]] {
					subj = append(subj, alt)
				}
			}
			if len(subj) == 0 {
				continue
			}
			r.Subject = subj
		}
		out = append(out, r)
	}
	return out
}

// startApp provisions and starts a real oidc app on dir with real Badger.
func startApp(t testing.TB, dir string, clients ...oidcprovider.ClientConfig) *oidcprovider.App {
	t.Helper()
	a := &oidcprovider.App{Issuer: "https://auth.example.com", Storage: oidcprovider.StorageConfig{Dir: dir}, Clients: clients, AccessControl: &accesscontrol.Config{DefaultPolicy: "deny", Rules: rulesFor(clients)}}
	return running(t, a)
}

func newHandler(t testing.TB, app *oidcprovider.App, cfg GateConfig) *Handler {
	t.Helper()
	g, err := cfg.newGate(app)
	if err != nil {
		t.Fatal(err)
	}
	return &Handler{GateConfig: cfg, gate: g}
}

// mint gets a token from the app's real token endpoint.
func mint(t testing.TB, app *oidcprovider.App, id, secret string, extra url.Values) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}}
	for k, v := range extra {
		form[k] = v
	}
	r := httptest.NewRequest("POST", "https://auth.example.com/api/oidc/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(id, secret)
	w := httptest.NewRecorder()
	if err := oidcprovider.NewHandler(app).ServeHTTP(w, r, nil); err != nil || w.Code != 200 {
		t.Fatalf("minting a token: %v %d %s", err, w.Code, w.Body.String())
	}
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &resp)
	return resp.AccessToken
}

func revoke(t testing.TB, app *oidcprovider.App, id, secret, token string) {
	t.Helper()
	r := httptest.NewRequest("POST", "https://auth.example.com/api/oidc/revocation", strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(id, secret)
	w := httptest.NewRecorder()
	if err := oidcprovider.NewHandler(app).ServeHTTP(w, r, nil); err != nil || w.Code != 200 {
		t.Fatalf("revoking: %v %d", err, w.Code)
	}
}

// upstream records what reached the next handler.
type upstream struct {
	called  bool
	headers http.Header
	userID  string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.called = true
	u.headers = r.Header.Clone()
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		u.userID, _ = repl.GetString("http.auth.user.id")
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

type answer struct {
	status int
	header http.Header
	up     *upstream
}

func serve(t testing.TB, h *Handler, method, target string, headers map[string]string) answer {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if strings.HasPrefix(target, "https://") {
		r.TLS = &tls.ConnectionState{}
	}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	up := &upstream{}
	status := 0
	if err := h.ServeHTTP(w, r, up); err != nil {
		status = statusOf(err)
		if status == 500 {
			t.Fatalf("%s %s: unexpected error %v", method, target, err)
		}
	} else {
		status = w.Code
	}
	return answer{status: status, header: w.Header(), up: up}
}

func TestGateAnswers(t *testing.T) {
	dir := t.TempDir()
	app := startApp(t, dir, kumaClient(), apiClient(), noScopeClient())
	h := newHandler(t, app, GateConfig{})
	kuma := mint(t, app, "uptime-kuma-monitor", "insecure_secret", nil)
	api := mint(t, app, "api", "api-secret", nil)
	noscope := mint(t, app, "noscope", "noscope-secret", url.Values{"scope": {"custom"}})
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	// allowed: next handler, Remote-Client-Id set, spoofed Remote-* removed, placeholder set
	a := serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Authorization": "Bearer " + kuma, "Remote-User": "admin", "Remote-Groups": "admins", "Remote-Anything": "x"})
	if a.status != 200 || !a.up.called || a.up.headers.Get("Remote-Client-Id") != "uptime-kuma-monitor" || a.up.headers.Get("Remote-User") != "" || a.up.headers.Get("Remote-Groups") != "" || a.up.headers.Get("Remote-Anything") != "" || a.up.userID != "oauth2:client:uptime-kuma-monitor" {
		t.Fatalf("allowed: %+v %+v", a, a.up)
	}
	// two_factor rule: 403 insufficient_scope
	a = serve(t, h, "GET", "https://secure.example.com/admin", bearer(kuma))
	if a.status != 403 || !strings.Contains(a.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) || a.up.called {
		t.Fatalf("two_factor: %+v", a)
	}
	// invalid, foreign-audience, scope-less and revoked tokens: 401 invalid_token
	for name, tok := range map[string]string{"forged": "portcullis_at_AAAA.BBBB", "refresh": "portcullis_rt_AAAA.BBBB", "other audience": api, "no gateway scope": noscope} {
		a = serve(t, h, "GET", "https://secure.example.com/status", bearer(tok))
		if a.status != 401 || !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) || a.up.called {
			t.Fatalf("%s: %+v", name, a)
		}
	}
	// a bypass rule admits even invalid credentials; an upstream's own token passes untouched
	a = serve(t, h, "GET", "https://secure.example.com/public/x", bearer("upstream-api-token"))
	if a.status != 200 || a.up.headers.Get("Authorization") != "Bearer upstream-api-token" {
		t.Fatalf("bypass with a foreign token: %+v", a)
	}
	// a foreign token counts as absent, but where a caller is needed it is a failure, never the
	// portal: a monitor with a mistyped token must see 401 invalid_token, browser or not
	for _, accept := range []string{"application/json", "text/html"} {
		a = serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Authorization": "Bearer upstream-api-token", "Accept": accept})
		if a.status != 401 || a.header.Get("Location") != "" || !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) || a.up.called {
			t.Fatalf("foreign token where a caller is needed (Accept %s): %+v", accept, a)
		}
	}
	a = serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Proxy-Authorization": "Bearer upstream-api-token"})
	if a.status != 407 || !strings.Contains(a.header.Get("Proxy-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("foreign proxy token: %+v", a)
	}
	// an empty or tab-separated Bearer value is a Bearer value too, not "no credentials"
	for _, v := range []string{"Bearer", "Bearer ", "bearer\tupstream-token"} {
		a = serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Authorization": v, "Accept": "text/html"})
		if a.status != 401 || a.header.Get("Location") != "" {
			t.Fatalf("Authorization %q: %+v", v, a)
		}
	}
	if a = serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Authorization": "Bearer\t" + kuma}); a.status != 200 {
		t.Fatalf("a tab after Bearer: %+v", a)
	}
	// a foreign token beside a valid one: the valid one decides
	a = serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Authorization": "Bearer upstream-api-token", "Proxy-Authorization": "Bearer " + kuma})
	if a.status != 200 || a.up.headers.Get("Authorization") != "Bearer upstream-api-token" {
		t.Fatalf("foreign token beside a valid one: %+v", a)
	}
	// browsers: 302 for GET, 303 for POST, to the portal with rd and rm
	a = serve(t, h, "GET", "https://secure.example.com/status?x=1", map[string]string{"Accept": "text/html,application/xhtml+xml"})
	want := "https://auth.example.com/?rd=" + url.QueryEscape("https://secure.example.com/status?x=1") + "&rm=GET"
	if a.status != 302 || a.header.Get("Location") != want {
		t.Fatalf("browser GET: %d %q want %q", a.status, a.header.Get("Location"), want)
	}
	if a = serve(t, h, "POST", "https://secure.example.com/form", map[string]string{"Accept": "*/*"}); a.status != 303 || !strings.HasSuffix(a.header.Get("Location"), "&rm=POST") {
		t.Fatalf("browser POST: %+v", a)
	}
	if a = serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}); a.status != 401 || a.header.Get("Location") == "" {
		t.Fatalf("XHR: %+v", a)
	}
	// deny without subjects: 403 even for anonymous
	if a = serve(t, h, "GET", "https://closed.example.com/", nil); a.status != 403 {
		t.Fatalf("deny: %+v", a)
	}
	// authenticated, in the token's audience, but no rule matches the host: default_policy deny → 403
	if a = serve(t, h, "GET", "https://unruled.example.com/", bearer(kuma)); a.status != 403 || a.up.called || !strings.Contains(a.header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("default deny for an authenticated caller: %+v", a)
	}
	// path-prefix audience: /api/x yes, /apix no
	if a = serve(t, h, "GET", "https://host.example.com/api/x", bearer(api)); a.status != 200 || a.up.headers.Get("Remote-Client-Id") != "api" {
		t.Fatalf("/api/x: %+v", a)
	}
	if a = serve(t, h, "GET", "https://host.example.com/apix", bearer(api)); a.status != 401 {
		t.Fatalf("/apix: %+v", a)
	}
	// the scheme is part of the audience
	if a = serve(t, h, "GET", "http://secure.example.com/status", bearer(kuma)); a.status != 401 {
		t.Fatalf("http URL for an https audience: %+v", a)
	}
	// Proxy-Authorization: 407 with Proxy-Authenticate
	a = serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Proxy-Authorization": "Bearer portcullis_at_AAAA.BBBB"})
	if a.status != 407 || !strings.Contains(a.header.Get("Proxy-Authenticate"), "invalid_token") {
		t.Fatalf("proxy: %+v", a)
	}
	if a = serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Proxy-Authorization": "Bearer " + kuma}); a.status != 200 {
		t.Fatalf("proxy valid: %+v", a)
	}
	// revoked: 401 at once
	revoke(t, app, "uptime-kuma-monitor", "insecure_secret", kuma)
	if a = serve(t, h, "GET", "https://secure.example.com/status", bearer(kuma)); a.status != 401 {
		t.Fatalf("revoked: %+v", a)
	}
}

func TestSiteRulesAndStrategies(t *testing.T) {
	app := startApp(t, t.TempDir(), kumaClient())
	kuma := mint(t, app, "uptime-kuma-monitor", "insecure_secret", nil)
	h := newHandler(t, app, GateConfig{
		Rules:      []accesscontrol.Rule{{Resources: []string{"^/status$"}, Policy: "deny"}},
		Strategies: []string{StrategyProxyAuthorization},
	})
	if a := serve(t, h, "GET", "https://secure.example.com/status", map[string]string{"Proxy-Authorization": "Bearer " + kuma}); a.status != 403 {
		t.Fatalf("site rule runs first: %+v", a)
	}
	if a := serve(t, h, "GET", "https://secure.example.com/other", map[string]string{"Authorization": "Bearer " + kuma, "Accept": "application/json"}); a.status != 401 || a.header.Get("Location") == "" {
		t.Fatalf("Authorization is not a strategy of this site, so the caller is anonymous: %+v", a)
	}
	if a := serve(t, h, "GET", "https://secure.example.com/other", map[string]string{"Proxy-Authorization": "Bearer " + kuma}); a.status != 200 {
		t.Fatalf("proxy strategy: %+v", a)
	}
	for _, bad := range [][]string{{"nope"}, {"cookie"}, {"authorization", "authorization"}} {
		if _, err := (&GateConfig{Strategies: bad}).newGate(app); err == nil {
			t.Errorf("strategies %v must be refused", bad)
		}
	}
}

func TestConfigChangesTakeEffect(t *testing.T) {
	dir := t.TempDir()
	app := startApp(t, dir, kumaClient(), apiClient())
	kuma := mint(t, app, "uptime-kuma-monitor", "insecure_secret", nil)
	bearer := map[string]string{"Authorization": "Bearer " + kuma}
	if a := serve(t, newHandler(t, app, GateConfig{}), "GET", "https://secure.example.com/", bearer); a.status != 200 {
		t.Fatal(a)
	}
	// a reload shares the open store; the new config decides
	noAudience := kumaClient()
	noAudience.Audience = []string{"https://elsewhere.example.com/"}
	noScope := kumaClient()
	noScope.Scopes = nil
	noScope.Audience = nil
	for name, clients := range map[string][]oidcprovider.ClientConfig{
		"client removed": {apiClient()},
		"audience moved": {noAudience, apiClient()},
		"scope removed":  {noScope, apiClient()},
	} {
		a := &oidcprovider.App{Issuer: "https://auth.example.com", Storage: oidcprovider.StorageConfig{Dir: dir}, Clients: clients, AccessControl: &accesscontrol.Config{Rules: rulesFor(clients)}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := a.Provision(ctx); err != nil {
			t.Fatal(name, err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(name, err)
		}
		if ans := serve(t, newHandler(t, a, GateConfig{}), "GET", "https://secure.example.com/", bearer); ans.status != 401 {
			t.Errorf("%s: token still accepted (%d)", name, ans.status)
		}
		_ = a.Stop()
		cancel()
	}
	if a := serve(t, newHandler(t, app, GateConfig{}), "GET", "https://secure.example.com/", bearer); a.status != 200 {
		t.Fatalf("the original config still accepts the token: %+v", a)
	}
}

func TestStoreClosedIs503(t *testing.T) {
	app := startApp(t, t.TempDir(), kumaClient())
	kuma := mint(t, app, "uptime-kuma-monitor", "insecure_secret", nil)
	h := newHandler(t, app, GateConfig{})
	_ = app.Stop()
	a := serve(t, h, "GET", "https://secure.example.com/", map[string]string{"Authorization": "Bearer " + kuma})
	if a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("closed store: %+v", a)
	}

	// the stock handler's provider answers the same, not the handler's 401
	g, err := (&GateConfig{}).newGate(app)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "https://secure.example.com/", nil)
	r.TLS = &tls.ConnectionState{}
	r.Header.Set("Authorization", "Bearer "+kuma)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	if _, ok, err := (&Provider{gate: g}).Authenticate(w, r); ok || err == nil || w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("provider on a closed store: ok %v, err %v, status %d, Retry-After %q", ok, err, w.Code, w.Header().Get("Retry-After"))
	}
}

func TestAuthenticatorProvider(t *testing.T) {
	app := startApp(t, t.TempDir(), kumaClient())
	kuma := mint(t, app, "uptime-kuma-monitor", "insecure_secret", nil)
	g, err := (&GateConfig{}).newGate(app)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{gate: g}
	check := func(target, authz string) (string, bool, http.Header) {
		r := httptest.NewRequest("GET", target, nil)
		r.TLS = &tls.ConnectionState{}
		r.Header.Set("Remote-User", "spoof")
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		w := httptest.NewRecorder()
		u, ok, err := p.Authenticate(w, r)
		if err != nil {
			t.Fatal(err)
		}
		if r.Header.Get("Remote-User") != "" {
			t.Fatal("spoofed Remote-User survived")
		}
		return u.ID, ok, w.Header()
	}
	if id, ok, _ := check("https://secure.example.com/", "Bearer "+kuma); !ok || id != "oauth2:client:uptime-kuma-monitor" {
		t.Fatalf("valid token: %q %v", id, ok)
	}
	if _, ok, h := check("https://secure.example.com/admin", "Bearer "+kuma); ok || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatal("two_factor rule must refuse")
	}
	if _, ok, h := check("https://secure.example.com/", "Bearer portcullis_at_x.y"); ok || !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatal("invalid token must refuse with a challenge")
	}
	if _, ok, _ := check("https://secure.example.com/", ""); ok {
		t.Fatal("anonymous must refuse")
	}
}

type okHandler struct{}

func (okHandler) ServeHTTP(http.ResponseWriter, *http.Request) error { return nil }

// BenchmarkBearerCheck measures the gate on the hot path, as Caddy runs it: an allowed Bearer
// request through oidc_auth (token check, rules, headers, placeholders), each with a fresh header
// map and a fresh replacer. "baseline" makes the same fresh request without the gate, so the
// difference is the gate's marginal cost.
//
// "gate-jwt" is the gate with the same client's access tokens as JWTs (RS256, RFC 9068).
func BenchmarkBearerCheck(b *testing.B) {
	app := startApp(b, b.TempDir(), kumaClient())
	kuma := mint(b, app, "uptime-kuma-monitor", "insecure_secret", nil)
	benchmarkBearerCheck(b, app, kuma)
	jwtKuma := kumaClient()
	jwtKuma.AccessTokenSignedResponseAlg = "RS256"
	jwtApp := startApp(b, b.TempDir(), jwtKuma)
	jwt := mint(b, jwtApp, "uptime-kuma-monitor", "insecure_secret", nil)
	if strings.HasPrefix(jwt, "portcullis_") {
		b.Fatalf("not a JWT: %.20s", jwt)
	}
	b.Run("gate-jwt", func(b *testing.B) { benchmarkBearerCheck(b, jwtApp, jwt) })
}

func benchmarkBearerCheck(b *testing.B, app *oidcprovider.App, kuma string) {
	h := newHandler(b, app, GateConfig{})
	proto := httptest.NewRequest("GET", "https://secure.example.com/status", nil)
	proto.TLS = &tls.ConnectionState{}
	proto.Header.Set("Authorization", "Bearer "+kuma)
	proto.Header.Set("User-Agent", "Uptime-Kuma/1.23")
	proto.Header.Set("Accept", "*/*")
	w := httptest.NewRecorder()
	fresh := func() *http.Request {
		r := proto.Clone(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		return r
	}
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = okHandler{}.ServeHTTP(w, fresh())
		}
	})
	b.Run("gate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := h.ServeHTTP(w, fresh(), okHandler{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestNetworksUseCaddysClientIP checks that networks rules see the client IP Caddy settled
// (trusted_proxies), not the TCP peer.
func TestNetworksUseCaddysClientIP(t *testing.T) {
	app := startApp(t, t.TempDir(), kumaClient())
	h := newHandler(t, app, GateConfig{Rules: []accesscontrol.Rule{{Networks: []string{"10.0.0.0/8"}, Policy: "bypass"}}})
	for ip, want := range map[string]int{"10.1.2.3": 200, "192.0.2.7": 401} {
		r := httptest.NewRequest("GET", "https://secure.example.com/", nil)
		r.TLS = &tls.ConnectionState{}
		r.RemoteAddr = "10.9.9.9:1234" // a trusted proxy inside the network
		r.Header.Set("Accept", "application/json")
		ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
		w := httptest.NewRecorder()
		status := 200
		if err := h.ServeHTTP(w, r.WithContext(ctx), okHandler{}); err != nil {
			status = statusOf(err)
		}
		if status != want {
			t.Errorf("client IP %s: %d, want %d", ip, status, want)
		}
	}
}

// A token that expires is refused at the gate at once, though the gate had cached it.
func TestTokenExpiryAtTheGate(t *testing.T) {
	a := &oidcprovider.App{
		Issuer:        "https://auth.example.com",
		Storage:       oidcprovider.StorageConfig{Dir: t.TempDir()},
		Clients:       []oidcprovider.ClientConfig{kumaClient()},
		Lifespans:     oidcprovider.Lifespans{AccessToken: caddy.Duration(time.Second)},
		AccessControl: &accesscontrol.Config{Rules: rulesFor([]oidcprovider.ClientConfig{kumaClient()})},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	h := newHandler(t, a, GateConfig{})
	kuma := mint(t, a, "uptime-kuma-monitor", "insecure_secret", nil)
	bearer := map[string]string{"Authorization": "Bearer " + kuma}
	if ans := serve(t, h, "GET", "https://secure.example.com/", bearer); ans.status != 200 {
		t.Fatalf("fresh token: %+v", ans)
	}
	time.Sleep(1100 * time.Millisecond)
	ans := serve(t, h, "GET", "https://secure.example.com/", bearer)
	if ans.status != 401 || !strings.Contains(ans.header.Get("WWW-Authenticate"), "expired") {
		t.Fatalf("expired token: %+v", ans)
	}
}

// Unsafe paths are refused with 400 before any check, whatever the credentials or the rule; safe
// paths reach the next handler unchanged.
func TestGateRefusesUnsafePaths(t *testing.T) {
	app := startApp(t, t.TempDir(), kumaClient(), apiClient())
	h := newHandler(t, app, GateConfig{})
	api := mint(t, app, "api", "api-secret", nil)
	for _, p := range []string{"/api/../admin", "/api/%2e%2e/admin", "/api/..%2fadmin", "/api/..;/admin", "/api%2fx", "/api/%5c", "/public/../x"} {
		for _, hdr := range []map[string]string{{"Authorization": "Bearer " + api}, nil} {
			r := httptest.NewRequest("GET", "https://host.example.com/", nil)
			r.URL.RawPath, r.URL.Path = p, mustUnescape(t, p)
			r.TLS = &tls.ConnectionState{}
			for k, v := range hdr {
				r.Header.Set(k, v)
			}
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			up := &upstream{}
			err := h.ServeHTTP(httptest.NewRecorder(), r, up)
			if statusOf(err) != 400 || up.called {
				t.Errorf("%s (credentials %v): %v, upstream called %v", p, hdr != nil, err, up.called)
			}
		}
	}
	if a := serve(t, h, "GET", "https://host.example.com/api/v1.2/x", map[string]string{"Authorization": "Bearer " + api}); a.status != 200 {
		t.Errorf("a safe path: %+v", a)
	}
}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	u, err := url.PathUnescape(p)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRemoteHeaderFamily(t *testing.T) {
	for k, want := range map[string]bool{"Remote-User": true, "Remote_user": true, "Remote.User": true, "REMOTE-X": true, "Remote": false, "Remotely": false, "X-Remote-User": false} {
		if got := isRemoteHeader(k); got != want {
			t.Errorf("isRemoteHeader(%q) = %v", k, got)
		}
	}
}

// The Remote-* names leave the Connection header, whatever their case, separator, line or place
// in a comma list; its other tokens stay; a header left empty goes.
func TestConnectionTokens(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"Remote-User, Remote-Groups, Remote-Email, Remote-Name"}, nil},
		{[]string{"keep-alive, remote-user ,X-Hop", "REMOTE_GROUPS,\tRemote.Email", ", Remote-Client-ID,,"}, []string{"keep-alive, X-Hop"}},
		{[]string{"close", "Upgrade"}, []string{"close", "Upgrade"}},
		{[]string{"Remotely, X-Remote-User"}, []string{"Remotely, X-Remote-User"}},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Connection"] = c.in
		r.Header.Set("Remote-User", "spoof")
		stripRemoteHeaders(r)
		if got := r.Header["Connection"]; !slices.Equal(got, c.want) || r.Header.Get("Remote-User") != "" {
			t.Errorf("Connection %q: %q, want %q", c.in, got, c.want)
		}
	}
}

// running provisions and starts a, stopping it when the test ends.
func running(t testing.TB, a *oidcprovider.App) *oidcprovider.App {
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
	return a
}
