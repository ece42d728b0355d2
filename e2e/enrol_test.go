package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// enrolLink finds the link `caddy oidc users invite` printed.
var enrolLink = regexp.MustCompile(`https://auth\.example\.test:\d+/enrol\?token=[A-Za-z0-9_-]{43}`)

// linkRefused is the one page of an unknown, expired or used enrolment link.
const linkRefused = "This enrolment link has expired or was already used. Ask your administrator for a new one."

// getPage fetches target with the session cookie (none when "") from the client address ip (the
// loopback when "") and returns the status, the Location and the body.
func getPage(t *testing.T, hc *http.Client, target, session string, ip ...string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	req.Header.Set("Accept", "text/html")
	if len(ip) > 0 {
		req.Header.Set("X-Forwarded-For", ip[0])
	}
	if session != "" {
		req.AddCookie(&http.Cookie{Name: "portcullis_session", Value: session})
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// The operator runs `caddy oidc users invite john` against the running server and hands the link
// over. The person opens it in a browser (the page uses nothing up), presses Continue, and in
// the enrolment session that follows sets a password (no current one asked) and adds an
// authenticator app, while that session reaches neither the protected sites nor an application's
// authorization request; Done ends it, and they sign in with what they set up and reach the
// two_factor site. The same link is refused the second time, a link past its lifespan is
// refused, a new invite revokes the old link and --revoke revokes it; unknown and disabled
// people and lifespans out of bounds are refused; the token is never logged.
func TestEnrolmentLink(t *testing.T) {
	exe := chromiumPath(t)
	// the server lets links be as short as 2s, so the expiry is tested without waiting minutes
	t.Setenv("PORTCULLIS_TEST_INVITE_MIN_LIFESPAN", "2s")
	s := startOIDCHTTPSite(t, rpClient("app"))
	p := s.portalSite
	hc := p.client()
	admin := fmt.Sprintf("localhost:%d", p.admin)
	invite := func(args ...string) (string, string, int) {
		t.Helper()
		return command(t, "", append(append([]string{"users", "invite"}, args...), "--address", admin)...)
	}
	usersFile(t, p.users, map[string]string{
		"john": "    displayname: John Doe\n    email: john@example.test\n    groups: [dev, admins]\n",
		"mary": "    disabled: true\n    groups: [admins]\n",
	})
	for deadline := time.Now().Add(10 * time.Second * slow); ; time.Sleep(200 * time.Millisecond) {
		if _, errOut, _ := invite("mary"); strings.Contains(errOut, "disabled") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not take the new users file")
		}
	}

	// refusals
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"nobody"}, 1, `no user "nobody"`},
		{[]string{"mary"}, 1, `"mary" is disabled`},
		{[]string{"mary", "--file", p.users}, 2, `"mary" is disabled`},
		{[]string{"john", "--lifespan", "31d"}, 1, "lasts from"},
		{[]string{"john", "--lifespan", "1s"}, 1, "lasts from"},
		{[]string{"john", "--lifespan", "soon"}, 1, "not a duration"},
		{[]string{"john", "--revoke", "--lifespan", "1h"}, 2, "--lifespan makes no sense"},
		{nil, 2, "the user's name is required"},
	} {
		if _, errOut, code := invite(c.args...); code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("invite %q: exit %d %q, want %d and %q", c.args, code, errOut, c.code, c.msg)
		}
	}

	// the link
	out, errOut, code := invite("john", "--file", p.users)
	link := enrolLink.FindString(out)
	if code != 0 || link == "" || !strings.Contains(out, "valid once until") || !strings.Contains(out, "privately") {
		t.Fatalf("invite john: exit %d %q %q", code, out, errOut)
	}

	b := newBrowser(t, exe, "10.0.0.21")
	// opening it twice (a previewer, then the person) uses nothing up
	for range 2 {
		b.do(chromedp.Navigate(link))
		if h := b.text("h1"); h != "Set up your account, John Doe" {
			t.Fatalf("the link's page: %q", h)
		}
	}
	b.shoot("enrol-link")
	b.submit("button[type=submit]")
	if loc := b.location(); loc != p.url("auth", "/settings") {
		t.Fatalf("after Continue at %s, want the settings page", loc)
	}
	if body := b.text("main"); !strings.Contains(body, "You are setting up your account — add a password and a second factor, then sign in") {
		t.Errorf("the settings page of the enrolment session: %q", body)
	}
	b.shoot("enrol-settings")
	enrolment := b.cookie("portcullis_session")
	if enrolment == "" {
		t.Fatal("no session cookie after Continue")
	}

	// the enrolment session grants nothing: the gate sends it to sign in, in the browser and
	// with the cookie alone, and an application's authorization request asks for a sign-in
	b.do(chromedp.Navigate(p.url("secure", "/hello")))
	if loc := b.location(); !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
		t.Fatalf("the one_factor site in the enrolment session at %s, want the sign-in page", loc)
	}
	for _, site := range []string{"secure", "admin"} {
		if status, loc, _ := getPage(t, hc, p.url(site, "/"), enrolment); status != http.StatusFound || !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
			t.Errorf("%s with the enrolment session: %d %q, want 302 to the sign-in page", site, status, loc)
		}
	}
	authz := s.authURL("app", nil)
	if status, loc, _ := getPage(t, hc, authz.url, enrolment); status/100 != 3 || strings.Contains(loc, "code=") || !strings.Contains(loc, "/?rd=") {
		t.Errorf("/api/oidc/authorization with the enrolment session: %d %q, want the sign-in page", status, loc)
	}

	// a password, without the current one
	b.do(chromedp.Navigate(p.url("auth", "/settings")))
	b.do(chromedp.Click(chromedp.CSS(`a[href="/settings/password"]`)), chromedp.WaitVisible(chromedp.ID("new")))
	if n, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#current").length`)); n != 0 {
		t.Error("the enrolment's password form asks for the current password")
	}
	b.shoot("enrol-password")
	b.do(chromedp.SendKeys(chromedp.ID("new"), "enrolled pass 42"), chromedp.SendKeys(chromedp.ID("again"), "enrolled pass 42"))
	b.submit("button[type=submit]")
	if loc := b.location(); loc != p.url("auth", "/settings?notice=password-set") {
		t.Fatalf("after the password at %s: %q", loc, b.text("main"))
	}
	// an authenticator app
	b.do(chromedp.Navigate(p.url("auth", "/settings/totp")))
	secret, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.getElementById("totp-secret").textContent.trim()`))
	if err != nil || secret == "" {
		t.Fatalf("no TOTP key on the enrolment page at %s: %v", b.location(), err)
	}
	b.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now())))
	b.submit("button[type=submit]")
	if loc := b.location(); loc != p.url("auth", "/settings?notice=totp-added") {
		t.Fatalf("after the TOTP device at %s: %q", loc, b.text("main"))
	}
	if body := b.text("main"); !strings.Contains(body, "Authenticator app") {
		t.Errorf("the settings page does not list the device: %q", body)
	}
	b.shoot("enrol-settings-ready")
	// still nothing at the gate
	if status, _, _ := getPage(t, hc, p.url("secure", "/"), b.cookie("portcullis_session")); status != http.StatusFound {
		t.Errorf("secure with the enrolment session after the factors: %d, want 302", status)
	}

	// Done, then a normal sign-in with what was set up reaches the two_factor site
	b.submit(`form[action="/enrol/done"] button`)
	if loc := b.location(); loc != p.url("auth", "/?notice=enrolled") {
		t.Fatalf("after Done at %s", loc)
	}
	b.shoot("enrol-done")
	if status, _, _ := getPage(t, hc, p.url("auth", "/settings"), enrolment); status != http.StatusSeeOther {
		t.Errorf("the enrolment session after Done: %d, want 303 to sign in", status)
	}
	b.do(chromedp.Navigate(p.url("admin", "/panel")))
	b.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "enrolled pass 42"))
	b.submit("button[type=submit]")
	if loc := b.location(); !strings.HasPrefix(loc, p.url("auth", "/2fa?rd=")) {
		t.Fatalf("after the password at %s, want the second-factor page", loc)
	}
	// the enrolment spent this step's code: the next step's (within the skew)
	b.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now().Add(30*time.Second))))
	b.submit("button[type=submit]")
	if loc := b.location(); loc != p.url("admin", "/panel") {
		t.Fatalf("after the TOTP code at %s, want the admin site", loc)
	}
	if rec := b.upstream(); rec["path"] != "/panel" {
		t.Errorf("admin upstream saw %v", rec["path"])
	}
	// and the authorization request that refused the enrolment session answers this one
	if status, loc, _ := getPage(t, hc, authz.url, b.cookie("portcullis_session")); status/100 != 3 || !strings.HasPrefix(loc, redirectURI("app")+"?code=") {
		t.Errorf("/api/oidc/authorization with the signed-in session: %d %q, want a code", status, loc)
	}

	// the same link, the second time: refused, in the browser and to the form
	c := newBrowser(t, exe, "10.0.0.22")
	c.do(chromedp.Navigate(link))
	if msg := c.text(".error"); msg != linkRefused {
		t.Errorf("the used link: %q", msg)
	}
	c.shoot("enrol-used")
	if status, _, body := getPage(t, hc, link, ""); status != http.StatusGone || !strings.Contains(body, linkRefused) {
		t.Errorf("the used link: %d", status)
	}

	// past its lifespan
	out, _, code = invite("john", "--lifespan", "2s", "--json")
	short := enrolLink.FindString(out)
	if code != 0 || short == "" || !strings.Contains(out, `"expires"`) {
		t.Fatalf("invite --lifespan 2s --json: %d %q", code, out)
	}
	time.Sleep(2500 * time.Millisecond)
	if status, _, body := getPage(t, hc, short, ""); status != http.StatusGone || !strings.Contains(body, linkRefused) {
		t.Errorf("the link past its lifespan: %d", status)
	}

	// a new invite revokes the previous link; --revoke revokes the live one
	out, _, _ = invite("john")
	first := enrolLink.FindString(out)
	out, _, _ = invite("john")
	second := enrolLink.FindString(out)
	if !strings.Contains(out, "replaces the previous link") {
		t.Errorf("the second invite does not say it replaces the first: %q", out)
	}
	if status, _, _ := getPage(t, hc, first, ""); status != http.StatusGone {
		t.Errorf("the replaced link: %d, want 410", status)
	}
	// three bad links from this address (used, expired, replaced) are regulation's max_retries:
	// it is refused even a good link for a while, and another address is not
	if status, _, body := getPage(t, hc, second, ""); status != http.StatusTooManyRequests || !strings.Contains(body, "Too many") {
		t.Errorf("the new link from an address that tried three bad ones: %d, want 429", status)
	}
	if status, _, _ := getPage(t, hc, second, "", "203.0.113.5"); status != http.StatusOK {
		t.Errorf("the new link: %d, want 200", status)
	}
	if out, errOut, code := invite("john", "--revoke"); code != 0 || !strings.Contains(out, "Revoked the enrolment link of john") {
		t.Errorf("--revoke: %d %q %q", code, out, errOut)
	}
	if status, _, _ := getPage(t, hc, second, "", "203.0.113.5"); status != http.StatusGone {
		t.Errorf("the revoked link: %d, want 410", status)
	}
	if _, errOut, code := invite("john", "--revoke"); code != 1 || !strings.Contains(errOut, "no live enrolment link") {
		t.Errorf("--revoke without a link: %d %q", code, errOut)
	}

	// the log names the invites, never a token
	log := p.s.log.String()
	if !strings.Contains(log, "enrolment link made") || !strings.Contains(log, "enrolment link used") {
		t.Error("the invite and its use are not logged")
	}
	for _, l := range []string{link, short, first, second} {
		tok := l[strings.Index(l, "token=")+len("token="):]
		if strings.Contains(log, tok) || strings.Contains(log, url.QueryEscape(tok)) {
			t.Fatalf("the log holds a token")
		}
	}
}

// A person added without a password (`users add --no-password`) gets an enrolment link, adds a
// passkey in the enrolment session (which the gate still refuses), presses Done, and signs in
// with the passkey alone onto the two_factor site.
func TestEnrolmentLinkPasskey(t *testing.T) {
	exe := chromiumPath(t)
	p := startPortalSite(t)
	hc := p.client()
	admin := fmt.Sprintf("localhost:%d", p.admin)
	if out, errOut, code := command(t, "", "users", "add", "pat", "--file", p.users, "--no-password", "--displayname", "Pat Doe", "--group", "admins"); code != 0 {
		t.Fatalf("users add --no-password: %d %q %q", code, out, errOut)
	}
	var link string
	for deadline := time.Now().Add(10 * time.Second * slow); link == ""; time.Sleep(200 * time.Millisecond) {
		out, errOut, _ := command(t, "", "users", "invite", "pat", "--address", admin)
		if link = enrolLink.FindString(out); link == "" && time.Now().After(deadline) {
			t.Fatalf("the server did not take pat: %s", errOut)
		}
	}
	b := newBrowser(t, exe, "10.0.0.23")
	b.addAuthenticator(true)
	b.do(chromedp.Navigate(link))
	if h := b.text("h1"); h != "Set up your account, Pat Doe" {
		t.Fatalf("the link's page: %q", h)
	}
	b.submit("button[type=submit]")
	b.do(chromedp.Navigate(p.url("auth", "/settings/passkey")))
	if h := b.text("h1"); h != "Add a passkey" {
		t.Fatalf("the passkey page in the enrolment session at %s: %q", b.location(), h)
	}
	b.shoot("enrol-passkey")
	b.do(chromedp.SetValue(chromedp.ID("key-name"), "Pat's phone"), chromedp.Click(chromedp.ID("webauthn-register")))
	waitLocation(t, b, p.url("auth", "/settings?notice=passkey-added"))
	if status, _, _ := getPage(t, hc, p.url("admin", "/"), b.cookie("portcullis_session")); status != http.StatusFound {
		t.Errorf("the two_factor site with the enrolment session and a passkey: %d, want 302", status)
	}
	b.submit(`form[action="/enrol/done"] button`)
	b.do(chromedp.Navigate(p.url("admin", "/panel")))
	if loc := b.location(); !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
		t.Fatalf("after Done the admin site sent the browser to %s", loc)
	}
	b.do(chromedp.Click(chromedp.ID("passkey-login")))
	waitLocation(t, b, p.url("admin", "/panel"))
	b.waitUpstream()
	if got, _ := b.upstream()["headers"].(map[string]any)["Remote-User"].([]any); len(got) != 1 || got[0] != "pat" {
		t.Fatalf("the passkey signed in %v, want pat", got)
	}
}
