package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// Attack run on issue 19's passkey sign-in and enrolment links, against the built binary: what
// was found (limited and fixed) and what held.

// script posts body to the portal path as the portal's script does (JSON, the CSRF token of the
// visitor's last page in a header) and returns the status and the answer.
func (v *visitor) script(path, csrf, body string) (int, string) {
	v.t.Helper()
	req, err := http.NewRequest(http.MethodPost, v.p.url("auth", path), strings.NewReader(body))
	if err != nil {
		v.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", v.p.url("auth", ""))
	req.Header.Set("X-CSRF-Token", csrf)
	resp, answer := v.send(req)
	return resp.StatusCode, answer
}

// freshBrowser is a new visitor from xff that has loaded the sign-in page, and its CSRF token.
func freshBrowser(t *testing.T, p *portalSite, xff string) (*visitor, string) {
	t.Helper()
	v := newVisitor(t, p, xff)
	_, page := v.do(http.MethodGet, p.url("auth", "/"), nil)
	csrf := hiddenFields(page).Get("csrf")
	if csrf == "" {
		t.Fatalf("no CSRF token on the sign-in page: %.300s", page)
	}
	return v, csrf
}

// Passkey sign-in attacked from outside: one address minting fresh browsers (CSRF cookies) gets
// 60 ceremonies a minute, then 429 (found: it had no limit, and each one is a stored ceremony),
// while another address is served; malformed, truncated, oversized and deeply nested answers get
// a 4xx and never a session or a 5xx; an answer without a ceremony is refused.
func TestAttack19PasskeyEndpoints(t *testing.T) {
	p := startPortalSite(t)
	ok, limited := 0, 0
	for range 65 {
		v, csrf := freshBrowser(t, p, "198.51.100.60")
		switch status, body := v.script("/passkey/options", csrf, "{}"); status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("passkey options: %d %s", status, body)
		}
	}
	if ok != 60 || limited != 5 {
		t.Errorf("one address began %d passkey sign-ins and was refused %d times, want 60 and 5", ok, limited)
	}
	other, csrf := freshBrowser(t, p, "198.51.100.61")
	if status, body := other.script("/passkey/options", csrf, "{}"); status != http.StatusOK {
		t.Fatalf("another address: %d %s", status, body)
	}

	nested := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	for name, body := range map[string]string{
		"empty":            "",
		"truncated":        `{"credential":{"id":"`,
		"an array":         `[]`,
		"a number":         `{"credential":1}`,
		"null":             `{"credential":null}`,
		"bad base64":       `{"credential":{"id":"!!","rawId":"!!","type":"public-key","response":{"clientDataJSON":"!!","authenticatorData":"!!","signature":"!!","userHandle":"!!"}}}`,
		"short authdata":   `{"credential":{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AA","signature":"AA"}}}`,
		"deeply nested":    `{"credential":` + nested + `}`,
		"oversized":        `{"credential":{"id":"` + strings.Repeat("A", 80<<10) + `"}}`,
		"huge credential":  `{"credential":{"id":"` + strings.Repeat("A", 40<<10) + `","rawId":"` + strings.Repeat("A", 20<<10) + `","type":"public-key","response":{}}}`,
		"wrong type":       `{"credential":{"id":"AAAA","rawId":"AAAA","type":"password","response":{}}}`,
		"unicode id":       `{"credential":{"id":"\u202e\u0000","rawId":"\u202e","type":"public-key","response":{}}}`,
		"remember me only": `{"remember_me":true}`,
	} {
		status, answer := other.script("/passkey/verify?rd="+url.QueryEscape("https://evil.example/"), csrf, body)
		if status < 400 || status >= 500 || strings.Contains(answer, "redirect") {
			t.Errorf("%s answer: %d %.200s", name, status, answer)
		}
		if other.cookie("portcullis_session") != "" {
			t.Fatalf("%s answer began a session", name)
		}
	}
}

// The enrolment link raced and revoked, against the binary: eight browsers posting Continue
// with the same token at once get one enrolment session between them; that session reaches no
// protected site, no authorization request and no page that removes, withdraws or steps up; and `users
// invite --revoke` after the link was used ends it (found: it went on, and --revoke said the
// person had no live link).
func TestAttack19EnrolmentLink(t *testing.T) {
	p := startPortalSite(t)
	admin := fmt.Sprintf("localhost:%d", p.admin)
	out, errOut, code := command(t, "", "users", "invite", "john", "--address", admin)
	link := enrolLink.FindString(out)
	if code != 0 || link == "" {
		t.Fatalf("users invite: %d %q %q", code, out, errOut)
	}
	type browser struct {
		v    *visitor
		form url.Values
	}
	var browsers []browser
	for i := range 8 {
		v := newVisitor(t, p, fmt.Sprintf("198.51.100.%d", 70+i))
		resp, page := v.do(http.MethodGet, link, nil)
		f := hiddenFields(page)
		if resp.StatusCode != http.StatusOK || f.Get("token") == "" || f.Get("csrf") == "" {
			t.Fatalf("the link's page: %d %.300s", resp.StatusCode, page)
		}
		browsers = append(browsers, browser{v, f})
	}
	var (
		mu      sync.Mutex
		winners []*visitor
		wg      sync.WaitGroup
	)
	for _, b := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := b.v.do(http.MethodPost, p.url("auth", "/enrol"), b.form)
			if resp.StatusCode == http.StatusSeeOther && b.v.cookie("portcullis_session") != "" {
				mu.Lock()
				winners = append(winners, b.v)
				mu.Unlock()
			} else if resp.StatusCode != http.StatusGone {
				t.Errorf("a losing Continue: %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d browsers got an enrolment session from one link", len(winners))
	}
	e := winners[0]
	if resp, page := e.do(http.MethodGet, p.url("auth", "/settings"), nil); resp.StatusCode != http.StatusOK || !strings.Contains(page, "You are setting up your account") {
		t.Fatalf("the enrolment session's settings page: %d", resp.StatusCode)
	}
	for _, target := range []string{
		p.url("secure", "/"), p.url("admin", "/"),
		p.url("auth", "/api/oidc/authorization?client_id=x&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fx.example%2F"),
		p.url("auth", "/2fa"), p.url("auth", "/settings/elevate"), p.url("auth", "/device"),
	} {
		resp, page := e.do(http.MethodGet, target, nil)
		if resp.StatusCode == http.StatusOK && (strings.Contains(page, "John") || strings.Contains(page, "john")) {
			t.Errorf("the enrolment session reached %s: %d %.200s", target, resp.StatusCode, page)
		}
		if resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther {
			if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "https://x.example") {
				t.Errorf("the enrolment session got an authorization answer: %s", loc)
			}
		}
	}
	_, page := e.do(http.MethodGet, p.url("auth", "/settings"), nil)
	csrf := hiddenFields(page).Get("csrf")
	for _, path := range []string{"/settings/totp/remove", "/settings/webauthn/remove", "/settings/consents/withdraw", "/settings/confirm", "/settings/elevate/send"} {
		resp, _ := e.do(http.MethodPost, p.url("auth", path), url.Values{"csrf": {csrf}, "id": {"x"}})
		if loc := resp.Header.Get("Location"); strings.Contains(loc, "notice=") {
			t.Errorf("the enrolment session did %s: %d %q", path, resp.StatusCode, loc)
		}
	}
	if resp, _ := e.do(http.MethodGet, p.url("auth", "/settings"), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a refused page ended the enrolment session: %d", resp.StatusCode)
	}

	// the link used, the operator revokes it: the set-up ends at once
	out, errOut, code = command(t, "", "users", "invite", "john", "--address", admin)
	if code != 0 {
		t.Fatalf("a second invite: %q %q", out, errOut)
	}
	link = enrolLink.FindString(out)
	f := newVisitor(t, p, "198.51.100.90")
	_, page = f.do(http.MethodGet, link, nil)
	if resp, _ := f.do(http.MethodPost, p.url("auth", "/enrol"), hiddenFields(page)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("Continue: %d", resp.StatusCode)
	}
	if resp, _ := f.do(http.MethodGet, p.url("auth", "/settings"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the second enrolment session: %d", resp.StatusCode)
	}
	if out, errOut, code := command(t, "", "users", "invite", "john", "--revoke", "--address", admin); code != 0 || !strings.Contains(out, "Revoked") {
		t.Fatalf("revoking the used link: %d %q %q", code, out, errOut)
	}
	if resp, _ := f.do(http.MethodGet, p.url("auth", "/settings"), nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the enrolment session after --revoke: %d, want the sign-in page", resp.StatusCode)
	}
}

// The page of an address over the passkey sign-in limit: the button says to wait a minute (the
// 429's message), and the password form still works.
func TestAttack19PasskeyLimitInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	p := startPortalSite(t)
	for range 60 {
		v, csrf := freshBrowser(t, p, "10.0.0.61")
		if status, body := v.script("/passkey/options", csrf, "{}"); status != http.StatusOK {
			t.Fatalf("options: %d %s", status, body)
		}
	}
	b := newBrowser(t, exe, "10.0.0.61")
	b.addAuthenticator(true)
	b.do(chromedp.Navigate(p.url("auth", "/")))
	b.do(chromedp.WaitVisible(chromedp.ID("passkey-login")), chromedp.Click(chromedp.ID("passkey-login")))
	b.waitPasskeyStatus("Too many passkey sign-ins")
	b.shoot("signin-passkey-limited")
	b.signInAs(p, "john", "pw-john")
	if loc := b.location(); !strings.HasPrefix(loc, p.url("auth", "/settings")) {
		t.Errorf("the password after the passkey limit: at %s", loc)
	}
	t.Logf("screenshots in %s", b.shots)
}
