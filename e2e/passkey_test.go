package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
)

// addAuthenticator gives the browser one of Chromium's virtual authenticators: a passkey
// provider (resident keys, user verification) or a plain security key.
func (b *browser) addAuthenticator(passkey bool) cdpwebauthn.AuthenticatorID {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, cdpwebauthn.Enable, cdpwebauthn.EnableParams{}); err != nil {
		b.t.Fatal(err)
	}
	res, err := chromedp.Call(b.ctx, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{Options: &cdpwebauthn.VirtualAuthenticatorOptions{
		Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Transport: cdpwebauthn.AuthenticatorTransportUsb,
		HasResidentKey: passkey, HasUserVerification: passkey, IsUserVerified: passkey, AutomaticPresenceSimulation: true,
	}})
	if err != nil {
		b.t.Fatal(err)
	}
	return res.AuthenticatorID
}

// presence turns the authenticator's simulated touch on or off (off: it never answers).
func (b *browser) presence(id cdpwebauthn.AuthenticatorID, on bool) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, cdpwebauthn.SetAutomaticPresenceSimulation, cdpwebauthn.SetAutomaticPresenceSimulationParams{AuthenticatorID: id, Enabled: on}); err != nil {
		b.t.Fatal(err)
	}
}

// passkeyStatus is the sign-in page's passkey message.
func (b *browser) passkeyStatus() string {
	s, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(document.getElementById("passkey-status")||{}).textContent||""`))
	return s
}

// waitPasskeyStatus waits for the sign-in page's passkey message to hold want.
func (b *browser) waitPasskeyStatus(want string) string {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second * slow)
	for time.Now().Before(deadline) {
		if s := b.passkeyStatus(); strings.Contains(s, want) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("at %s the passkey status is %q, want %q", b.location(), b.passkeyStatus(), want)
	return ""
}

// waitUpstream waits for the upstream's JSON answer to be the page (after a script's
// navigation).
func (b *browser) waitUpstream() {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second * slow)
	for time.Now().Before(deadline) {
		if ok, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.readyState === "complete" && !!document.body && document.body.innerText.trim().startsWith("{")`)); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("at %s the upstream's answer did not come", b.location())
}

// capturedAssertion is a passkey sign-in's answer as the page's script posts it, held back.
type capturedAssertion struct {
	URL  string `json:"url"`
	Body string `json:"body"`
	CSRF string `json:"csrf"`
}

// capturePasskey opens the sign-in page, clicks "Sign in with a passkey" and keeps the answer
// the script would post (the post is held back: the ceremony stays open for the test's own).
func (b *browser) capturePasskey(p *portalSite) capturedAssertion {
	b.t.Helper()
	b.do(chromedp.Navigate(p.url("auth", "/")))
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(() => {
		const f = window.fetch;
		window.fetch = (u, o) => {
			if (String(u).includes("/passkey/verify")) {
				window.__pk = JSON.stringify({url: String(u), body: o.body, csrf: o.headers["X-CSRF-Token"]});
				return new Promise(() => {});
			}
			return f(u, o);
		};
		return true;
	})()`)); err != nil {
		b.t.Fatal(err)
	}
	b.do(chromedp.Click(chromedp.ID("passkey-login")))
	deadline := time.Now().Add(15 * time.Second * slow)
	for time.Now().Before(deadline) {
		raw, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`window.__pk || ""`))
		if raw != "" {
			var c capturedAssertion
			if err := json.Unmarshal([]byte(raw), &c); err != nil {
				b.t.Fatal(err)
			}
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("no passkey answer was posted; status %q", b.passkeyStatus())
	return capturedAssertion{}
}

// otherBrowserCSRF is the CSRF cookie and token another browser gets from the sign-in page.
func otherBrowserCSRF(t *testing.T, p *portalSite) (cookie, token string) {
	t.Helper()
	resp, err := p.client().Get(p.url("auth", "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-portcullis_session_csrf" {
			cookie = c.Value
		}
	}
	if m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page); m != nil {
		token = string(m[1])
	}
	if cookie == "" || token == "" {
		t.Fatalf("no CSRF cookie or token on the sign-in page: %q %q", cookie, token)
	}
	return cookie, token
}

// postAssertion posts an answer with the given CSRF cookie value and c's token, as a script of
// the browser holding them would, and returns the status, body and cookies.
func postAssertion(t *testing.T, p *portalSite, c capturedAssertion, body, csrfCookie string) (int, string, []*http.Cookie) {
	t.Helper()
	req, err := http.NewRequest("POST", p.url("auth", "/passkey/verify"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", c.CSRF)
	req.AddCookie(&http.Cookie{Name: "__Host-portcullis_session_csrf", Value: csrfCookie})
	resp, err := p.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), resp.Cookies()
}

// tamper rewrites one field of an answer's response (or its id and rawId).
func tamper(t *testing.T, body, field, value string) string {
	t.Helper()
	var in map[string]any
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatal(err)
	}
	cred := in["credential"].(map[string]any)
	if field == "id" {
		cred["id"], cred["rawId"] = value, value
	} else {
		cred["response"].(map[string]any)[field] = value
	}
	out, _ := json.Marshal(in)
	return string(out)
}

// A person adds a passkey on the account page (behind the fresh-password rule), a plain
// security key beside it, renames one; signs out and signs in with the passkey alone (no
// username, no password) straight onto a two_factor site, with an ID token whose amr says
// hwk user pin mfa. A captured answer is refused from another browser and when replayed;
// another user's passkey signs that user in, never john, and a user handle or credential id
// changed is refused; a removed passkey and a disabled user's passkey are refused at once. A
// person added with `users add --no-password` has no password that works, at the portal or in
// Basic credentials.
func TestPasskeySignIn(t *testing.T) {
	exe := chromiumPath(t)
	rp := newRelyingParty(t)
	p := startPortalSiteWith(t, fmt.Sprintf(`
		client pk-app {
			name "Passkey App"
			secret "$plaintext$pk-secret"
			scopes openid profile groups
			redirect_uris %s/callback
			authorization_policy two_factor
			consent_mode implicit
		}
`, rp.srv.URL))
	hc := p.client()
	rp.discover(p.url("auth", ""), hc, map[string]string{"pk-app": "pk-secret"}, map[string][]string{"pk-app": {oidc.ScopeOpenID, "profile", "groups"}})

	// jane with a password; pat with none
	if _, errOut, code := command(t, "pw-jane\n", "users", "add", "jane", "--file", p.users, "--group", "admins", "--algorithm", "pbkdf2-sha512", "--iterations", "100000"); code != 0 {
		t.Fatalf("users add jane: %s", errOut)
	}
	out, errOut, code := command(t, "", "users", "add", "pat", "--file", p.users, "--no-password", "--group", "admins")
	if code != 0 || !strings.Contains(out, "without a password") {
		t.Fatalf("users add --no-password: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := command(t, "", "users", "add", "sam", "--file", p.users, "--no-password", "--algorithm", "bcrypt"); code == 0 || !strings.Contains(errOut, "--algorithm hashes a password, and --no-password gives none") {
		t.Errorf("--no-password with a hash flag: %d %q", code, errOut)
	}
	data, err := os.ReadFile(p.users)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^  pat:\n((?:    .*\n)*)`).FindStringSubmatch(string(data)); m == nil || strings.Contains(m[1], "password") {
		t.Fatalf("pat's entry:\n%s", data)
	}

	a := newBrowser(t, exe, "10.0.0.31")
	passkeys := a.addAuthenticator(true)
	a.signInAs(p, "john", "pw-john")

	// add a passkey
	a.do(chromedp.Navigate(p.url("auth", "/settings/passkey")))
	if h := a.text("h1"); h != "Add a passkey" {
		t.Fatalf("at %s: %q", a.location(), h)
	}
	a.shoot("passkey-add")
	a.do(chromedp.SetValue(chromedp.ID("key-name"), "Laptop passkey"), chromedp.Click(chromedp.ID("webauthn-register")))
	waitLocation(t, a, p.url("auth", "/settings?notice=passkey-added"))

	// and a plain security key: the second factor first (the passkey, as a second factor),
	// then another authenticator without resident keys answers the registration
	a.do(chromedp.Navigate(p.url("auth", "/settings/webauthn")))
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/2fa?rd=")) {
		t.Fatalf("adding a key with a one-factor session: at %s, want the second-factor page", loc)
	}
	a.do(chromedp.Click(chromedp.ID("webauthn-login")))
	waitLocation(t, a, p.url("auth", "/settings/webauthn"))
	a.presence(passkeys, false)
	plain := a.addAuthenticator(false)
	a.do(chromedp.WaitVisible(chromedp.ID("webauthn-register")), chromedp.SetValue(chromedp.ID("key-name"), "YubiKey"), chromedp.Click(chromedp.ID("webauthn-register")))
	waitLocation(t, a, p.url("auth", "/settings?notice=key-added"))
	if _, err := chromedp.Call(a.ctx, cdpwebauthn.RemoveVirtualAuthenticator, cdpwebauthn.RemoveVirtualAuthenticatorParams{AuthenticatorID: plain}); err != nil {
		t.Fatal(err)
	}
	a.presence(passkeys, true)
	a.do(chromedp.WaitVisible(chromedp.CSS("li.key:nth-child(2)")))
	badges, _ := chromedp.Run(a.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("li.key")].map(li => li.querySelector("strong").textContent + ": " + li.querySelector(".tag").textContent)`))
	if !slices.Equal(badges, []string{"Laptop passkey: Passkey", "YubiKey: Security key"}) {
		t.Fatalf("the account page lists %q", badges)
	}
	a.shoot("settings-passkeys")

	// rename the security key
	a.do(chromedp.Click(chromedp.CSS(`li.key:nth-child(2) summary`)))
	a.shoot("passkey-rename")
	a.do(chromedp.SetValue(chromedp.CSS(`li.key:nth-child(2) input[name=name]`), "Office YubiKey"))
	a.submit(`li.key:nth-child(2) .rename-form button`)
	if loc := a.location(); loc != p.url("auth", "/settings?notice=key-renamed") {
		t.Fatalf("after renaming at %s", loc)
	}
	if body := a.text("main"); !strings.Contains(body, "Office YubiKey") || !strings.Contains(body, "Laptop passkey") {
		t.Fatalf("after renaming: %q", body)
	}

	// sign out, then sign in with the passkey alone, onto the two_factor site
	a.do(chromedp.Navigate(p.url("auth", "/logout")))
	a.submit("button[type=submit]")
	a.do(chromedp.Navigate(p.url("admin", "/panel")))
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
		t.Fatalf("signed out, the admin site sent the browser to %s", loc)
	}
	if ac, _ := chromedp.Run(a.ctx, chromedp.Evaluate[string](`document.getElementById("username").getAttribute("autocomplete")`)); ac != "username webauthn" {
		t.Errorf("the username field's autocomplete is %q, want the passkey autofill hint", ac)
	}
	a.shoot("signin-passkey")
	a.do(chromedp.Click(chromedp.ID("passkey-login")))
	waitLocation(t, a, p.url("admin", "/panel"))
	a.waitUpstream()
	hdr := a.upstream()["headers"].(map[string]any)
	if got, _ := hdr["Remote-User"].([]any); len(got) != 1 || got[0] != "john" {
		t.Fatalf("the passkey signed in %v, want john", hdr["Remote-User"])
	}
	// an application asking for two factors gets them, and amr says how
	a.do(chromedp.Navigate(rp.srv.URL + "/login?client=pk-app"))
	res := rp.result(a)
	if res.IDToken == nil {
		t.Fatalf("the application's sign-in: %q %q %v", res.ExchangeErr, res.Verify, res.Params)
	}
	if amr := asStrings(res.Claims["amr"]); !slices.Equal(amr, []string{"hwk", "user", "pin", "mfa"}) {
		t.Errorf("amr of a passkey sign-in = %v, want [hwk user pin mfa]", res.Claims["amr"])
	}

	// a captured answer: refused from another browser (another CSRF cookie), accepted once from
	// this one, refused when replayed
	a.do(chromedp.Navigate(p.url("auth", "/logout")))
	a.submit("button[type=submit]")
	c := a.capturePasskey(p)
	csrf := a.cookie("__Host-portcullis_session_csrf")
	if csrf == "" {
		t.Fatal("no CSRF cookie")
	}
	otherCookie, otherToken := otherBrowserCSRF(t, p)
	if status, body, _ := postAssertion(t, p, capturedAssertion{CSRF: otherToken}, c.Body, otherCookie); status != http.StatusUnauthorized || !strings.Contains(body, "already used") {
		t.Errorf("the answer from another browser: %d %s", status, body)
	}
	status, body, cookies := postAssertion(t, p, c, c.Body, csrf)
	if status != http.StatusOK || !strings.Contains(body, "redirect") || !slices.ContainsFunc(cookies, func(c *http.Cookie) bool { return c.Name == "portcullis_session" && c.Value != "" }) {
		t.Fatalf("the captured answer, sent once: %d %s", status, body)
	}
	// the session the captured answer gave (a thief's, say) lives until the passkey is removed
	var elsewhere string
	for _, c := range cookies {
		if c.Name == "portcullis_session" {
			elsewhere = c.Value
		}
	}
	if resp := getWithCookie(t, p.client(), p.url("secure", "/"), elsewhere); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session of the captured answer: %d", resp.StatusCode)
	}
	if status, body, cookies := postAssertion(t, p, c, c.Body, csrf); status != http.StatusUnauthorized || slices.ContainsFunc(cookies, func(c *http.Cookie) bool { return c.Name == "portcullis_session" && c.Value != "" }) {
		t.Errorf("the captured answer replayed: %d %s", status, body)
	}

	// jane's passkey signs in jane; with john's user handle, or an unknown credential id, it
	// is refused
	j := newBrowser(t, exe, "10.0.0.32")
	j.addAuthenticator(true)
	j.signInAs(p, "jane", "pw-jane")
	j.do(chromedp.Navigate(p.url("auth", "/settings/passkey")))
	j.do(chromedp.Click(chromedp.ID("webauthn-register")))
	waitLocation(t, j, p.url("auth", "/settings?notice=passkey-added"))
	j.do(chromedp.Navigate(p.url("auth", "/logout")))
	j.submit("button[type=submit]")
	j.do(chromedp.Navigate(p.url("secure", "/jane")))
	j.do(chromedp.Click(chromedp.ID("passkey-login")))
	waitLocation(t, j, p.url("secure", "/jane"))
	j.waitUpstream()
	if got, _ := j.upstream()["headers"].(map[string]any)["Remote-User"].([]any); len(got) != 1 || got[0] != "jane" {
		t.Fatalf("jane's passkey signed in %v", got)
	}
	j.do(chromedp.Navigate(p.url("auth", "/logout")))
	j.submit("button[type=submit]")
	creds, err := chromedp.Call(a.ctx, cdpwebauthn.GetCredentials, cdpwebauthn.GetCredentialsParams{AuthenticatorID: passkeys})
	if err != nil || len(creds.Credentials) != 1 {
		t.Fatalf("john's authenticator: %v %v", creds, err)
	}
	johnHandle := base64.RawURLEncoding.EncodeToString(creds.Credentials[0].UserHandle)
	janeCSRF := func() string { return j.cookie("__Host-portcullis_session_csrf") }
	for name, change := range map[string][2]string{
		"john's user handle":       {"userHandle", johnHandle},
		"an unknown credential id": {"id", base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("u", 32)))},
	} {
		c := j.capturePasskey(p)
		if status, body, _ := postAssertion(t, p, c, tamper(t, c.Body, change[0], change[1]), janeCSRF()); status != http.StatusUnauthorized || !strings.Contains(body, "not accepted") {
			t.Errorf("jane's answer with %s: %d %s", name, status, body)
		}
	}

	// a removed passkey stops at once: john removes his (a passkey sign-in within five minutes
	// elevates), signs out, and the authenticator's answer is refused
	a.do(chromedp.Navigate(p.url("auth", "/")))
	a.do(chromedp.Click(chromedp.ID("passkey-login")))
	waitLocation(t, a, p.url("auth", "/settings"))
	a.do(chromedp.WaitVisible(chromedp.CSS("li.key")))
	if who := a.text(".who"); !strings.Contains(who, "Passkey (two factors)") {
		t.Errorf("the account page of a passkey sign-in says %q", who)
	}
	a.submit(`li.key:nth-child(1) button.danger`)
	if loc := a.location(); loc != p.url("auth", "/settings?notice=key-removed") {
		t.Fatalf("removing the passkey: at %s: %q", loc, a.text("main"))
	}
	// removing it signs out the other sessions it opened (as a password change does)
	if resp := getWithCookie(t, p.client(), p.url("secure", "/"), elsewhere); resp.StatusCode != http.StatusFound {
		t.Errorf("a session of the removed passkey elsewhere: %d, want 302 to sign in", resp.StatusCode)
	}
	a.do(chromedp.Navigate(p.url("auth", "/logout")))
	a.submit("button[type=submit]")
	a.do(chromedp.Navigate(p.url("admin", "/panel")))
	a.do(chromedp.Click(chromedp.ID("passkey-login")))
	a.waitPasskeyStatus("not accepted")
	a.shoot("signin-passkey-refused")
	if !strings.HasPrefix(a.location(), p.url("auth", "/?rd=")) {
		t.Errorf("a removed passkey: at %s", a.location())
	}

	// a disabled user's passkey is refused
	if _, errOut, code := command(t, "", "users", "disable", "jane", "--file", p.users); code != 0 {
		t.Fatalf("users disable: %s", errOut)
	}
	time.Sleep(3 * time.Second) // the server re-reads the file every 2 seconds
	j.do(chromedp.Navigate(p.url("secure", "/jane")))
	j.do(chromedp.Click(chromedp.ID("passkey-login")))
	j.waitPasskeyStatus("not accepted")

	// pat, who has no password, is invited (caddy oidc users invite), adds a passkey in the
	// enrolment session, and signs in with it alone onto the two_factor site
	out, errOut, code = command(t, "", "users", "invite", "pat", "--address", fmt.Sprintf("localhost:%d", p.admin))
	link := enrolLink.FindString(out)
	if code != 0 || link == "" {
		t.Fatalf("users invite pat: %d %q %q", code, out, errOut)
	}
	k := newBrowser(t, exe, "10.0.0.34")
	k.addAuthenticator(true)
	k.do(chromedp.Navigate(link))
	k.submit("button[type=submit]")
	k.do(chromedp.Navigate(p.url("auth", "/settings/passkey")))
	k.do(chromedp.WaitVisible(chromedp.ID("webauthn-register")), chromedp.Click(chromedp.ID("webauthn-register")))
	waitLocation(t, k, p.url("auth", "/settings?notice=passkey-added"))
	k.do(chromedp.WaitVisible(chromedp.CSS(`form[action="/enrol/done"] button`)))
	k.submit(`form[action="/enrol/done"] button`)
	k.do(chromedp.Navigate(p.url("admin", "/pat")))
	k.do(chromedp.WaitVisible(chromedp.ID("passkey-login")), chromedp.Click(chromedp.ID("passkey-login")))
	waitLocation(t, k, p.url("admin", "/pat"))
	k.waitUpstream()
	if got, _ := k.upstream()["headers"].(map[string]any)["Remote-User"].([]any); len(got) != 1 || got[0] != "pat" {
		t.Fatalf("pat's passkey signed in %v", got)
	}

	// the operator takes pat's keys away (caddy oidc users keys remove): the session pat's
	// passkey opened ends, and the passkey no longer signs in; a second removal finds no key
	admin := fmt.Sprintf("localhost:%d", p.admin)
	out, errOut, code = command(t, "", "users", "keys", "remove", "PAT", "--address", admin)
	if code != 0 || !strings.Contains(out, "Removed 1 security key(s) or passkey(s) of pat and ended 1 session(s)") {
		t.Fatalf("users keys remove pat: %d %q %q", code, out, errOut)
	}
	k.do(chromedp.Navigate(p.url("admin", "/pat-again")))
	k.do(chromedp.WaitVisible(chromedp.ID("passkey-login")))
	if !strings.HasPrefix(k.location(), p.url("auth", "/?rd=")) {
		t.Errorf("pat's session after the operator removed the keys: at %s", k.location())
	}
	k.do(chromedp.Click(chromedp.ID("passkey-login")))
	k.waitPasskeyStatus("not accepted")
	if _, errOut, code := command(t, "", "users", "keys", "remove", "pat", "--address", admin); code == 0 || !strings.Contains(errOut, "has no security key or passkey") {
		t.Errorf("a second removal: %d %q", code, errOut)
	}

	// pat has no password: none works, at the portal or in Basic credentials
	for _, pw := range []string{"x", "pw-pat", "$argon2id$"} {
		if s := get(t, hc, "GET", p.url("secure", "/"), basic("pat", pw)); s.status != http.StatusUnauthorized {
			t.Errorf("Basic pat:%q: %d", pw, s.status)
		}
	}
	g := newBrowser(t, exe, "10.0.0.33")
	g.signInAs(p, "pat", "anything")
	if msg := g.text(".error"); !strings.Contains(msg, "Incorrect username or password") {
		t.Errorf("pat with a password: %q at %s", msg, g.location())
	}
	t.Logf("screenshots in %s", a.shots)
}
