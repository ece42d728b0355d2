package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// newRelyingPartyAt is newRelyingParty listening on a given loopback port, as an application
// whose callback is registered at http://localhost:<port>/callback: on 127.0.0.1, and on ::1
// too where the machine has it, since a browser may try either for "localhost". authURLs
// receives every authorization request URL the application sends a browser to.
func newRelyingPartyAt(t *testing.T, port int) (rp *relyingParty, authURLs <-chan string) {
	t.Helper()
	rp = &relyingParty{t: t, configs: map[string]*oauth2.Config{}, pending: map[string]pendingLogin{}, results: make(chan rpResult, 16)}
	sent := make(chan string, 16)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp.serve(w, r)
		if r.URL.Path == "/login" {
			select {
			case sent <- w.Header().Get("Location"):
			default: // nobody reads the later ones
			}
		}
	})
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("the application's port %d: %v", port, err)
	}
	rp.srv = httptest.NewUnstartedServer(handler)
	rp.srv.Listener.Close()
	rp.srv.Listener = l
	rp.srv.Start()
	t.Cleanup(rp.srv.Close)
	if l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port)); err == nil {
		s6 := &http.Server{Handler: handler}
		go func() { _ = s6.Serve(l6) }()
		t.Cleanup(func() { _ = s6.Close() })
	}
	return rp, sent
}

// A newcomer runs Caddyfile.example as the README says and points an OpenID Connect
// application at its example-app client (the callback on localhost:9092, here on a free port):
// go-oidc discovery, an authorization request with PKCE S256, john's sign-in at the portal, the
// consent page of a pre-configured client with its "remember" box, the code exchange, and an ID
// token carrying john's username, groups and email. The remembered consent lets the next
// sign-in through, the signed-in page lists it and withdraws it, and then the portal asks again;
// RP-initiated sign-out goes back to the application's registered address.
func TestExampleAppSignIn(t *testing.T) {
	exe := chromiumPath(t)
	portal, site, app := freePort(t), freePort(t), freePort(t)
	issuer := fmt.Sprintf("http://localhost:%d", portal)
	appBase := fmt.Sprintf("http://localhost:%d", app)

	rp, authURLs := newRelyingPartyAt(t, app)
	startQuickStart(t, map[string]int{"9091": portal, "8080": site, "9092": app})

	// the application is configured as the README says: the discovery URL, the client id and
	// the plain secret of the Caddyfile's comment, the scopes, and the registered callback
	const client, secret = "example-app", "insecure_app_secret"
	rp.discover(issuer, http.DefaultClient, map[string]string{client: secret},
		map[string][]string{client: {oidc.ScopeOpenID, "profile", "email", "groups"}})
	rp.configs[client].RedirectURL = appBase + "/callback"
	var disc map[string]any
	if err := rp.provider.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	if disc["issuer"] != issuer || disc["authorization_endpoint"] != issuer+"/api/oidc/authorization" ||
		disc["token_endpoint"] != issuer+"/api/oidc/token" || disc["end_session_endpoint"] != issuer+"/api/oidc/logout" ||
		!slices.Contains(asStrings(disc["code_challenge_methods_supported"]), "S256") {
		t.Fatalf("discovery: %v", disc)
	}

	b := newBrowser(t, exe, "127.0.0.1")
	login := appBase + "/login?client=" + client

	// the application sends the browser to the authorization endpoint (PKCE S256), which sends
	// it to the sign-in page
	b.do(chromedp.Navigate(login))
	authURL := <-authURLs
	if u, err := url.Parse(authURL); err != nil || !strings.HasPrefix(authURL, issuer+"/api/oidc/authorization?") ||
		u.Query().Get("code_challenge_method") != "S256" || u.Query().Get("code_challenge") == "" || u.Query().Get("redirect_uri") != appBase+"/callback" {
		t.Errorf("the authorization request %q lacks a PKCE S256 challenge or the registered callback", authURL)
	}
	if loc := b.location(); !strings.HasPrefix(loc, issuer+"/?rd=") {
		t.Fatalf("the application's sign-in went to %s, want the portal's sign-in page", loc)
	}
	b.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "password"))
	b.submit("button[type=submit]")

	// consent_mode pre-configured: the consent page, with the remember box
	if loc := b.location(); !strings.HasPrefix(loc, issuer+"/api/oidc/authorization?flow=") {
		t.Fatalf("after sign-in at %s, want the consent page", loc)
	}
	if txt := b.text("main"); !strings.Contains(txt, "Example App") || !strings.Contains(txt, "Remember this for 1 week") {
		t.Fatalf("consent page: %q", txt)
	}
	b.do(chromedp.Click(chromedp.CSS("input[name=remember]")))
	b.submit("button[value=accept]")
	res := rp.result(b)
	if res.ExchangeErr != "" || res.Verify != "" || res.IDToken == nil {
		t.Fatalf("code exchange: %q, ID token: %q, callback %s %v", res.ExchangeErr, res.Verify, res.Method, res.Params)
	}
	c := res.Claims
	for k, want := range map[string]any{"iss": issuer, "azp": client, "preferred_username": "john", "name": "John Doe",
		"email": "john@example.com", "email_verified": true} {
		if c[k] != want {
			t.Errorf("ID token %s = %v, want %v", k, c[k], want)
		}
	}
	if g := asStrings(c["groups"]); !slices.Equal(g, []string{"admins", "dev"}) {
		t.Errorf("ID token groups = %v, want users.example.yml's [admins dev]", c["groups"])
	}
	if aud := asStrings(c["aud"]); !slices.Equal(aud, []string{client}) {
		t.Errorf("ID token aud = %v", c["aud"])
	}
	if amr := asStrings(c["amr"]); !slices.Equal(amr, []string{"pwd"}) {
		t.Errorf("ID token amr = %v, want [pwd] (authorization_policy one_factor)", c["amr"])
	}
	if res.Token.RefreshToken != "" {
		t.Errorf("a refresh token without offline_access: %q", res.Token.RefreshToken)
	}
	ui, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(res.Token))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc map[string]any
	_ = ui.Claims(&uc)
	if ui.Subject != res.IDToken.Subject || uc["preferred_username"] != "john" || !slices.Equal(asStrings(uc["groups"]), []string{"admins", "dev"}) {
		t.Errorf("userinfo: %v", uc)
	}
	idToken := res.RawIDToken

	// the remembered consent: straight back to the application
	b.do(chromedp.Navigate(login))
	if res = rp.result(b); res.IDToken == nil {
		t.Fatalf("with a remembered consent: %q %q %v", res.ExchangeErr, res.Verify, res.Params)
	}

	// the signed-in page lists it; withdrawn there, the portal asks again
	b.do(chromedp.Navigate(issuer + "/settings"))
	if txt := b.text("main"); !strings.Contains(txt, "Example App") {
		t.Fatalf("the signed-in page does not list the remembered consent: %q", txt)
	}
	b.submit(`form[action$="/settings/consents/withdraw"] button`)
	if txt := b.text("main"); strings.Contains(txt, "Example App") {
		t.Errorf("after Withdraw the signed-in page still lists the consent: %q", txt)
	}
	b.do(chromedp.Navigate(login))
	if txt := b.text("main"); !strings.Contains(txt, "Example App") || !strings.Contains(txt, "Remember this for 1 week") {
		t.Fatalf("after withdrawal, at %s, want the consent page: %q", b.location(), txt)
	}
	b.submit("button[value=deny]")
	if res = rp.result(b); res.Params.Get("error") != "access_denied" || res.Code != "" {
		t.Errorf("Deny: the application got %v", res.Params)
	}

	// RP-initiated sign-out back to the registered post_logout_redirect_uri, with its state
	logout := issuer + "/api/oidc/logout?" + url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {appBase + "/"}, "state": {"bye-123"}}.Encode()
	b.do(chromedp.Navigate(logout))
	if loc := b.location(); loc != appBase+"/?state=bye-123" {
		t.Fatalf("after RP-initiated sign-out at %s, want %s/?state=bye-123", loc, appBase)
	}
	b.do(chromedp.Navigate(login + "&prompt=none"))
	if res = rp.result(b); res.Params.Get("error") != "login_required" {
		t.Errorf("after sign-out, prompt=none: %v", res.Params)
	}
}
