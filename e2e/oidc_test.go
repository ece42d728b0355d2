package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// relyingParty is an application that logs its users in through the provider, written as any
// Go application would be: go-oidc for discovery and ID token verification, x/oauth2 for the
// code flow with PKCE. It records what each callback brought.
type relyingParty struct {
	t        *testing.T
	srv      *httptest.Server
	ctx      context.Context // carries the HTTP client that reaches the provider
	provider *oidc.Provider
	configs  map[string]*oauth2.Config

	mu      sync.Mutex
	pending map[string]pendingLogin // by state
	results chan rpResult
}

type pendingLogin struct {
	client, verifier, nonce string
}

// rpResult is what a callback brought the application.
type rpResult struct {
	Client, Method      string // the client; GET or POST (form_post)
	Params              url.Values
	Code                string
	Verifier            string
	Token               *oauth2.Token
	IDToken             *oidc.IDToken
	Claims              map[string]any
	RawIDToken          string
	ExchangeErr, Verify string
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newRelyingParty starts the application's server; discover points it at the provider.
func newRelyingParty(t *testing.T) *relyingParty {
	rp := &relyingParty{t: t, configs: map[string]*oauth2.Config{}, pending: map[string]pendingLogin{}, results: make(chan rpResult, 16)}
	rp.srv = httptest.NewServer(http.HandlerFunc(rp.serve))
	t.Cleanup(rp.srv.Close)
	return rp
}

// discover reads the provider's discovery document and registers the application's clients.
func (rp *relyingParty) discover(issuer string, hc *http.Client, secrets map[string]string, scopes map[string][]string) {
	rp.t.Helper()
	rp.ctx = oidc.ClientContext(context.Background(), hc)
	var err error
	if rp.provider, err = oidc.NewProvider(rp.ctx, issuer); err != nil {
		rp.t.Fatalf("discovery: %v", err)
	}
	for id, secret := range secrets {
		rp.configs[id] = &oauth2.Config{ClientID: id, ClientSecret: secret, Endpoint: rp.provider.Endpoint(),
			RedirectURL: rp.srv.URL + "/callback", Scopes: scopes[id]}
	}
}

func (rp *relyingParty) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/login":
		q := r.URL.Query()
		id := q.Get("client")
		cfg := rp.configs[id]
		state, nonce, verifier := randomString(16), randomString(16), oauth2.GenerateVerifier()
		rp.mu.Lock()
		rp.pending[state] = pendingLogin{client: id, verifier: verifier, nonce: nonce}
		rp.mu.Unlock()
		opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)}
		for _, k := range []string{"prompt", "response_mode", "max_age"} {
			if v := q.Get(k); v != "" {
				opts = append(opts, oauth2.SetAuthURLParam(k, v))
			}
		}
		http.Redirect(w, r, cfg.AuthCodeURL(state, opts...), http.StatusFound)
	case "/callback":
		_ = r.ParseForm()
		res := rpResult{Method: r.Method, Params: r.Form}
		rp.mu.Lock()
		pl, ok := rp.pending[r.Form.Get("state")]
		delete(rp.pending, r.Form.Get("state"))
		rp.mu.Unlock()
		if !ok {
			http.Error(w, "unknown state", http.StatusBadRequest)
			rp.results <- res
			return
		}
		res.Client, res.Verifier = pl.client, pl.verifier
		if code := r.Form.Get("code"); code != "" {
			res.Code = code
			cfg := rp.configs[pl.client]
			tok, err := cfg.Exchange(rp.ctx, code, oauth2.VerifierOption(pl.verifier))
			if err != nil {
				res.ExchangeErr = err.Error()
			} else {
				res.Token = tok
				res.RawIDToken, _ = tok.Extra("id_token").(string)
				idt, err := rp.provider.Verifier(&oidc.Config{ClientID: pl.client}).Verify(rp.ctx, res.RawIDToken)
				switch {
				case err != nil:
					res.Verify = err.Error()
				case idt.Nonce != pl.nonce:
					res.Verify = "nonce " + idt.Nonce + " is not the one sent"
				default:
					if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
						res.Verify = "at_hash: " + err.Error()
					}
					res.IDToken = idt
					_ = idt.Claims(&res.Claims)
				}
			}
		}
		fmt.Fprintf(w, "application callback for %s", pl.client)
		rp.results <- res
	case "/bye":
		fmt.Fprintf(w, "signed out of the application, state %s", r.URL.Query().Get("state"))
	default:
		http.NotFound(w, r)
	}
}

// push sends an authorization request of client to the PAR endpoint (RFC 9126) and returns
// the URL the browser opens with its request_uri.
func (rp *relyingParty) push(hc *http.Client, issuer, client string) string {
	rp.t.Helper()
	cfg := rp.configs[client]
	state, nonce, verifier := randomString(16), randomString(16), oauth2.GenerateVerifier()
	rp.mu.Lock()
	rp.pending[state] = pendingLogin{client: client, verifier: verifier, nonce: nonce}
	rp.mu.Unlock()
	form := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {cfg.RedirectURL},
		"scope": {strings.Join(cfg.Scopes, " ")}, "state": {state}, "nonce": {nonce},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(client)+":"+url.QueryEscape(cfg.ClientSecret)))
	status, out := postForm(rp.t, hc, issuer+"/api/oidc/pushed-authorization-request", form, auth)
	uri, _ := out["request_uri"].(string)
	if status != http.StatusCreated || !strings.HasPrefix(uri, "urn:ietf:params:oauth:request_uri:") {
		rp.t.Fatalf("pushed authorization request: %d %v", status, out)
	}
	return issuer + "/api/oidc/authorization?" + url.Values{"client_id": {client}, "request_uri": {uri}}.Encode()
}

// result waits for the next callback; b is the browser, to say where it stopped.
func (rp *relyingParty) result(b *browser) rpResult {
	rp.t.Helper()
	select {
	case res := <-rp.results:
		return res
	case <-time.After(20 * time.Second):
		body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		rp.t.Fatalf("no callback reached the application; the browser is at %s: %.400s", b.location(), body)
	}
	return rpResult{}
}

// oidcSite is the portal site of startPortalSite with applications registered.
func startOIDCSite(t *testing.T, rpURL string) *portalSite {
	t.Helper()
	cb, bye := rpURL+"/callback", rpURL+"/bye"
	return startPortalSiteWith(t, fmt.Sprintf(`
		client app {
			name "Example App"
			secret "$plaintext$app-secret"
			scopes openid profile email groups offline_access
			grant_types authorization_code refresh_token
			redirect_uris %[1]s
			post_logout_redirect_uris %[2]s
			authorization_policy one_factor
			consent_mode explicit
		}
		client remembered {
			name "Remembered App"
			secret "$plaintext$remembered-secret"
			scopes openid profile email groups
			redirect_uris %[1]s
			response_modes form_post query
			authorization_policy one_factor
			consent_mode pre-configured
			pre_configured_consent_duration 1w
		}
		client admin-app {
			name "Admin App"
			secret "$plaintext$admin-secret"
			scopes openid profile email groups offline_access
			grant_types authorization_code refresh_token
			redirect_uris %[1]s
			authorization_policy two_factor
			consent_mode implicit
		}
`, cb, bye))
}

// An application logs john in through the provider with go-oidc and x/oauth2: discovery, PKCE,
// the sign-in and consent pages in a browser, the code exchange, the ID token checked against
// the JWKS claim by claim, userinfo, refresh rotation and reuse detection, code reuse,
// form_post with a remembered consent, prompt=none, a wrong redirect_uri, RP-initiated
// sign-out, a two_factor application with TOTP, and a disabled user's refresh refused.
func TestApplicationSignIn(t *testing.T) {
	exe := chromiumPath(t)
	rp := newRelyingParty(t)
	rpBase := rp.srv.URL
	p := startOIDCSite(t, rpBase)
	hc := p.client()
	issuer := p.url("auth", "")
	rp.discover(issuer, hc,
		map[string]string{"app": "app-secret", "remembered": "remembered-secret", "admin-app": "admin-secret"},
		map[string][]string{
			"app":        {oidc.ScopeOpenID, "profile", "email", "groups", oidc.ScopeOfflineAccess},
			"remembered": {oidc.ScopeOpenID, "profile", "email", "groups"},
			"admin-app":  {oidc.ScopeOpenID, "profile", "email", "groups", oidc.ScopeOfflineAccess},
		})
	// discovery lists what is served
	var disc map[string]any
	if err := rp.provider.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	if disc["issuer"] != issuer || disc["authorization_endpoint"] != issuer+"/api/oidc/authorization" ||
		disc["userinfo_endpoint"] != issuer+"/api/oidc/userinfo" || disc["end_session_endpoint"] != issuer+"/api/oidc/logout" {
		t.Errorf("discovery: %v", disc)
	}
	if !slices.Contains(asStrings(disc["code_challenge_methods_supported"]), "S256") || disc["authorization_response_iss_parameter_supported"] != true {
		t.Errorf("discovery lacks S256 or RFC 9207: %v", disc)
	}

	b := newBrowser(t, exe, "10.0.0.7")

	// prompt=none without a session: login_required at the callback, with iss
	b.do(chromedp.Navigate(rpBase + "/login?client=app&prompt=none"))
	res := rp.result(b)
	if res.Params.Get("error") != "login_required" || res.Params.Get("iss") != issuer {
		t.Fatalf("prompt=none without a session: %v", res.Params)
	}

	// a redirect_uri the client did not register: an error page, never a redirect
	bad := issuer + "/api/oidc/authorization?" + url.Values{"client_id": {"app"}, "redirect_uri": {"https://evil.example.test/cb"},
		"response_type": {"code"}, "scope": {"openid"}, "state": {"0123456789abcdef"}}.Encode()
	resp, err := hc.Get(bad)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(string(body), "cannot be completed") {
		t.Errorf("wrong redirect_uri: %d, Location %q, %.200s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	b.do(chromedp.Navigate(bad))
	if loc := b.location(); loc != bad {
		t.Errorf("wrong redirect_uri: the browser went to %s", loc)
	}
	b.shoot("authorize-error")

	// sign in, consent, and the application has its tokens
	b.do(chromedp.Navigate(rpBase + "/login?client=app"))
	if loc := b.location(); !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
		t.Fatalf("the application's sign-in at %s, want the portal", loc)
	}
	b.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	b.submit("button[type=submit]")
	if loc := b.location(); !strings.HasPrefix(loc, issuer+"/api/oidc/authorization?flow=") {
		t.Fatalf("after sign-in at %s, want the consent page", loc)
	}
	if txt := b.text("main"); !strings.Contains(txt, "Example App") || !strings.Contains(txt, "See your email address") || !strings.Contains(txt, "Stay connected") {
		t.Errorf("consent page: %q", txt)
	}
	b.shoot("consent")
	b.submit("button[value=accept]")
	res = rp.result(b)
	if res.ExchangeErr != "" || res.Verify != "" || res.IDToken == nil {
		t.Fatalf("code exchange: %q, ID token: %q, params %v", res.ExchangeErr, res.Verify, res.Params)
	}
	if res.Params.Get("iss") != issuer {
		t.Errorf("authorization response iss = %q", res.Params.Get("iss"))
	}
	c := res.Claims
	appIDToken := res.RawIDToken
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	sub, _ := c["sub"].(string)
	if !uuidRE.MatchString(sub) {
		t.Errorf("sub %q is not a UUIDv4", sub)
	}
	for k, want := range map[string]any{"iss": issuer, "azp": "app", "preferred_username": "john", "name": "John Doe",
		"email": "john@example.test", "email_verified": true} {
		if c[k] != want {
			t.Errorf("ID token %s = %v, want %v", k, c[k], want)
		}
	}
	if g := asStrings(c["groups"]); !slices.Equal(g, []string{"dev", "admins"}) {
		t.Errorf("ID token groups = %v", c["groups"])
	}
	if amr := asStrings(c["amr"]); !slices.Equal(amr, []string{"pwd"}) {
		t.Errorf("ID token amr = %v, want [pwd]", c["amr"])
	}
	if aud := asStrings(c["aud"]); !slices.Equal(aud, []string{"app"}) {
		t.Errorf("ID token aud = %v", c["aud"])
	}
	for _, k := range []string{"auth_time", "at_hash", "jti", "nonce", "iat", "exp"} {
		if c[k] == nil || c[k] == "" {
			t.Errorf("ID token lacks %s: %v", k, c)
		}
	}
	if at, _ := c["auth_time"].(float64); time.Since(time.Unix(int64(at), 0)) > time.Minute {
		t.Errorf("auth_time %v is not the sign-in's", c["auth_time"])
	}
	if res.Token.RefreshToken == "" || !strings.HasPrefix(res.Token.RefreshToken, "portcullis_rt_") {
		t.Fatalf("no refresh token for offline_access: %+v", res.Token)
	}

	// userinfo, with the token in the header (GET) and in the body (POST)
	ui, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(res.Token))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc map[string]any
	_ = ui.Claims(&uc)
	if ui.Subject != sub || uc["preferred_username"] != "john" || ui.Email != "john@example.test" || !slices.Equal(asStrings(uc["groups"]), []string{"dev", "admins"}) {
		t.Errorf("userinfo: %v", uc)
	}
	status, post := postForm(t, hc, issuer+"/api/oidc/userinfo", url.Values{"access_token": {res.Token.AccessToken}}, "")
	if status != 200 || post["sub"] != sub {
		t.Errorf("userinfo by POST: %d %v", status, post)
	}

	// refresh rotates; the spent refresh token, presented again, ends the family
	cfg := rp.configs["app"]
	first := res.Token
	expired := &oauth2.Token{RefreshToken: first.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
	second, err := cfg.TokenSource(rp.ctx, expired).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatalf("refresh did not rotate: %+v", second)
	}
	if idt, _ := second.Extra("id_token").(string); idt == "" {
		t.Error("no ID token at the refresh")
	} else if v, err := rp.provider.Verifier(&oidc.Config{ClientID: "app"}).Verify(rp.ctx, idt); err != nil || v.Subject != sub {
		t.Errorf("refreshed ID token: %v", err)
	}
	if _, err := cfg.TokenSource(rp.ctx, expired).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("a spent refresh token again: %v, want invalid_grant", err)
	}
	if _, err := cfg.TokenSource(rp.ctx, &oauth2.Token{RefreshToken: second.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token(); err == nil {
		t.Fatal("after reuse of a spent refresh token, its successor still works")
	}
	if _, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(second)); err == nil {
		t.Error("after refresh token reuse, the family's access token still works")
	}

	// form_post and a remembered consent
	b.do(chromedp.Navigate(rpBase + "/login?client=remembered&response_mode=form_post"))
	if txt := b.text("main"); !strings.Contains(txt, "Remembered App") || !strings.Contains(txt, "Remember this for 1 week") {
		t.Fatalf("consent page of a pre-configured client: %q", txt)
	}
	b.do(chromedp.Click(chromedp.CSS("input[name=remember]")))
	b.submit("button[value=accept]")
	res = rp.result(b)
	if res.Method != http.MethodPost || res.ExchangeErr != "" || res.Verify != "" {
		t.Fatalf("form_post: method %s, exchange %q, verify %q", res.Method, res.ExchangeErr, res.Verify)
	}
	// the code again: refused, and what it issued is revoked
	if _, err := rp.configs["remembered"].Exchange(rp.ctx, res.Code, oauth2.VerifierOption(res.Verifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("code reuse: %v, want invalid_grant", err)
	}
	if _, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(res.Token)); err == nil {
		t.Error("after code reuse, the code's access token still works")
	}
	// the remembered consent is used: straight back to the application
	b.do(chromedp.Navigate(rpBase + "/login?client=remembered"))
	res = rp.result(b)
	if res.IDToken == nil || res.Method != http.MethodGet {
		t.Fatalf("remembered consent: %+v", res.Params)
	}
	// a pushed authorization request: the browser carries only its request_uri, once
	pushed := rp.push(hc, issuer, "remembered")
	b.do(chromedp.Navigate(pushed))
	if res = rp.result(b); res.IDToken == nil {
		t.Fatalf("pushed authorization request: %q %q %v", res.ExchangeErr, res.Verify, res.Params)
	}
	b.do(chromedp.Navigate(pushed))
	if loc := b.location(); loc != pushed || !strings.Contains(b.text("main"), "invalid_request_uri") {
		t.Errorf("a spent request_uri: at %s: %q", loc, b.text("main"))
	}
	b.do(chromedp.Navigate(p.url("auth", "/settings")))
	if txt := b.text("main"); !strings.Contains(txt, "Remembered App") {
		t.Errorf("the signed-in page does not list the remembered consent: %q", txt)
	}
	b.shoot("settings-consents")

	// RP-initiated sign-out with id_token_hint: back to the application with its state
	logout := issuer + "/api/oidc/logout?" + url.Values{"id_token_hint": {appIDToken}, "post_logout_redirect_uri": {rpBase + "/bye"}, "state": {"st-123"}}.Encode()
	b.do(chromedp.Navigate(logout))
	if loc := b.location(); loc != rpBase+"/bye?state=st-123" {
		t.Fatalf("after RP-initiated sign-out at %s", loc)
	}
	b.do(chromedp.Navigate(rpBase + "/login?client=remembered&prompt=none"))
	if res = rp.result(b); res.Params.Get("error") != "login_required" {
		t.Fatalf("after sign-out, prompt=none: %v", res.Params)
	}
	// an unregistered post_logout_redirect_uri is refused on a page
	resp, err = hc.Get(issuer + "/api/oidc/logout?" + url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {"https://evil.example.test/"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("unregistered post_logout_redirect_uri: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// a two_factor application: password, then a TOTP device added and used; offline_access
	// asks for consent even in implicit mode
	b.do(chromedp.Navigate(rpBase + "/login?client=admin-app"))
	b.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	b.submit("button[type=submit]")
	if loc := b.location(); !strings.HasPrefix(loc, p.url("auth", "/2fa?rd=")) {
		t.Fatalf("two_factor application at %s, want the second-factor page", loc)
	}
	b.submit("a.button.primary")
	secret, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.getElementById("totp-secret").textContent.trim()`))
	if err != nil || secret == "" {
		t.Fatalf("no TOTP key on the enrolment page (at %s): %v", b.location(), err)
	}
	b.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now())))
	b.submit("button[type=submit]")
	b.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now().Add(30*time.Second))))
	b.submit("button[type=submit]")
	if txt := b.text("main"); !strings.Contains(txt, "Admin App") {
		t.Fatalf("offline_access in implicit mode: want the consent page, at %s: %q", b.location(), txt)
	}
	b.submit("button[value=accept]")
	res = rp.result(b)
	if res.IDToken == nil {
		t.Fatalf("two_factor application: %q %q %v", res.ExchangeErr, res.Verify, res.Params)
	}
	if amr := asStrings(res.Claims["amr"]); !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
		t.Errorf("amr after password and TOTP = %v", res.Claims["amr"])
	}

	// john is disabled: his refresh token and access token stop working
	data, err := os.ReadFile(p.users)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(p.users), "users.tmp")
	if err := os.WriteFile(tmp, []byte(strings.Replace(string(data), "    displayname: John Doe\n", "    displayname: John Doe\n    disabled: true\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.users); err != nil {
		t.Fatal(err)
	}
	// the file is re-read within two seconds: the access token stops working at userinfo...
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(res.Token)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a disabled user's access token still works at userinfo")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// ...and the refresh token is refused
	_, err = rp.configs["admin-app"].TokenSource(rp.ctx, &oauth2.Token{RefreshToken: res.Token.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("a disabled user's refresh: %v, want invalid_grant", err)
	}
}

func asStrings(v any) []string {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, _ := e.(string)
			out = append(out, s)
		}
		return out
	case []string:
		return x
	case string:
		return []string{x}
	}
	return nil
}

// postForm posts a form and decodes a JSON answer.
func postForm(t *testing.T, hc *http.Client, target string, form url.Values, auth string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}
