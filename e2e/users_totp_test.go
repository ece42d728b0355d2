package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// secondFactor sends code from the second-factor page of session, as a browser's form would, and
// returns the status of the answer and the session cookie it set ("" for none: an accepted code
// elevates the session under a new id).
func (p *portalSite) secondFactor(hc *http.Client, session, code string) (int, string) {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.url("auth", "/2fa"), nil)
	req.AddCookie(&http.Cookie{Name: "portcullis_session", Value: session})
	resp, err := hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if m == nil {
		// a user without a device is offered no code form: send the code as a forged form
		// would, with the token of the sign-in page
		if resp, err = hc.Get(p.url("auth", "/")); err != nil {
			p.t.Fatal(err)
		}
		page, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		m = csrfField.FindSubmatch(page)
	}
	if resp.StatusCode != http.StatusOK || m == nil {
		p.t.Fatalf("the second-factor page: %d, no form: %.300s", resp.StatusCode, page)
	}
	var csrf *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "portcullis_session_csrf") {
			csrf = c
		}
	}
	if csrf == nil {
		p.t.Fatal("no CSRF cookie from the second-factor page")
	}
	form := url.Values{"csrf": {string(m[1])}, "code": {code}}
	req, _ = http.NewRequest("POST", p.url("auth", "/2fa/totp"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", strings.TrimSuffix(p.url("auth", ""), "/"))
	req.AddCookie(csrf)
	req.AddCookie(&http.Cookie{Name: "portcullis_session", Value: session})
	if resp, err = hc.Do(req); err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "portcullis_session" && c.Value != "" {
			return resp.StatusCode, c.Value
		}
	}
	return resp.StatusCode, ""
}

// secretOfURI is the secret of an otpauth:// URI, as an authenticator app reads it.
func secretOfURI(t *testing.T, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") == "" {
		t.Fatalf("not an otpauth://totp URI with a secret: %q (%v)", uri, err)
	}
	return u.Query().Get("secret")
}

// Without a notifier, the operator gives a person their first TOTP device with caddy oidc users
// totp add on the running server: the printed URI's codes pass the portal's second factor and
// open a two_factor site; a second add is refused without --force and replaces the device with
// it; unknown and disabled people are refused with a message that says so (with --file, before
// the server is asked); remove takes the device away; TOTP disabled in the config refuses; the
// log never holds a secret.
func TestUsersTOTPAdd(t *testing.T) {
	p := startPortalSite(t)
	hc := p.client()
	admin := fmt.Sprintf("localhost:%d", p.admin)
	totpCmd := func(args ...string) (string, string, int) {
		t.Helper()
		return command(t, "", append(append([]string{"users", "totp"}, args...), "--address", admin)...)
	}
	usersFile(t, p.users, map[string]string{
		"john": "    displayname: John Doe\n    email: john@example.test\n    groups: [dev, admins]\n",
		"mary": "    disabled: true\n    groups: [admins]\n",
		"ann":  "    groups: [admins]\n",
	})
	// the server takes the new file within its 2-second check
	for deadline := time.Now().Add(10 * time.Second * slow); ; time.Sleep(200 * time.Millisecond) {
		_, errOut, _ := totpCmd("add", "mary")
		if strings.Contains(errOut, "disabled") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not take the new users file: %s", errOut)
		}
	}

	// unknown and disabled people: refused by the file before the server is asked, and by it
	requests := strings.Count(p.s.log.String(), "/oidc/users/totp/add")
	if _, errOut, code := totpCmd("add", "nobody", "--file", p.users); code != 2 || !strings.Contains(errOut, `has no user "nobody"`) {
		t.Errorf("add of an unknown user with --file: exit %d %q, want 2 and the file has no user", code, errOut)
	}
	if _, errOut, code := totpCmd("add", "mary", "--file", p.users); code != 2 || !strings.Contains(errOut, `"mary" is disabled`) {
		t.Errorf("add of a disabled user with --file: exit %d %q, want 2 and disabled", code, errOut)
	}
	if n := strings.Count(p.s.log.String(), "/oidc/users/totp/add"); n != requests {
		t.Errorf("a refusal by --file asked the server (%d requests, were %d)", n, requests)
	}
	if _, errOut, code := totpCmd("add", "nobody"); code != 1 || !strings.Contains(errOut, `404`) || !strings.Contains(errOut, `no user "nobody"`) {
		t.Errorf("add of an unknown user: exit %d %q, want 1, 404 and no user", code, errOut)
	}
	if _, errOut, code := totpCmd("add", "mary"); code != 1 || !strings.Contains(errOut, "409") || !strings.Contains(errOut, `"mary" is disabled`) {
		t.Errorf("add of a disabled user: exit %d %q, want 1, 409 and disabled", code, errOut)
	}
	if _, _, code := totpCmd("add"); code != 2 {
		t.Errorf("add without a name: exit %d, want 2", code)
	}

	// before a device, a password-only session does not reach the two_factor site
	session, status := p.signIn(hc, "john", "pw-john")
	if session == "" {
		t.Fatalf("sign-in: %d", status)
	}
	if resp := getWithCookie(t, hc, p.url("admin", "/"), session); resp.StatusCode != http.StatusFound {
		t.Fatalf("two_factor site with a password only: %d, want 302", resp.StatusCode)
	}

	// add by mail: the directory's spelling of the name is the user; the URI's codes sign in
	out, errOut, code := totpCmd("add", "john@example.test", "--file", p.users, "--json")
	if code != 0 {
		t.Fatalf("add: exit %d: %s", code, errOut)
	}
	var added struct {
		User string `json:"user"`
		URI  string `json:"uri"`
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.User != "john" {
		t.Fatalf("add --json printed %q (%v), want user john", out, err)
	}
	secret := secretOfURI(t, added.URI)
	if !strings.Contains(added.URI, "issuer=auth.example.test") || !strings.Contains(added.URI, "digits=6") || !strings.Contains(added.URI, "period=30") {
		t.Errorf("the URI %q does not carry the configured totp settings", added.URI)
	}
	status, elevated := p.secondFactor(hc, session, totpCode(t, secret, time.Now()))
	if status != http.StatusSeeOther || elevated == "" {
		t.Fatalf("the added device's code at /2fa: %d, want 303 and a two-factor session", status)
	}
	if resp := getWithCookie(t, hc, p.url("admin", "/"), elevated); resp.StatusCode != http.StatusOK {
		t.Fatalf("two_factor site after the added device's code: %d, want 200", resp.StatusCode)
	}

	// one device per user: refused without --force, and the device stays
	if _, errOut, code := totpCmd("add", "john"); code != 1 || !strings.Contains(errOut, "409") || !strings.Contains(errOut, "--force") {
		t.Errorf("a second add: exit %d %q, want 1, 409 naming --force", code, errOut)
	}
	// --force replaces it (text output: the QR code, the URI and the hand-over line)
	out, errOut, code = totpCmd("add", "JOHN", "--force")
	if code != 0 {
		t.Fatalf("add --force: exit %d: %s", code, errOut)
	}
	i := strings.Index(out, "otpauth://")
	if i < 0 || !strings.Contains(out, "replaces the previous one") || !strings.Contains(out, "privately") ||
		!strings.Contains(out, "6-digit code") || !strings.Contains(out, "█") || !strings.Contains(out, "▀") {
		t.Fatalf("add --force printed:\n%s", out)
	}
	uri, _, _ := strings.Cut(out[i:], "\n")
	newSecret := secretOfURI(t, uri)
	if newSecret == secret {
		t.Fatal("--force kept the secret")
	}
	second, _ := p.signIn(hc, "john", "pw-john")
	if status, _ := p.secondFactor(hc, second, totpCode(t, secret, time.Now())); status != http.StatusUnauthorized {
		t.Errorf("the replaced device's code: %d, want 401", status)
	}
	if status, _ := p.secondFactor(hc, second, totpCode(t, newSecret, time.Now())); status != http.StatusSeeOther {
		t.Fatalf("the new device's code: %d, want 303", status)
	}

	// remove takes it away
	out, errOut, code = totpCmd("remove", "john", "--file", p.users)
	if code != 0 || !strings.Contains(out, "Removed the TOTP device of john") {
		t.Fatalf("remove: exit %d %q %s", code, out, errOut)
	}
	third, _ := p.signIn(hc, "john", "pw-john")
	req, _ := http.NewRequest("GET", p.url("auth", "/2fa"), nil)
	req.AddCookie(&http.Cookie{Name: "portcullis_session", Value: third})
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(page), `action="/2fa/totp"`) {
		t.Error("after remove, the second-factor page still asks for a TOTP code")
	}
	if status, _ := p.secondFactor(hc, third, totpCode(t, newSecret, time.Now().Add(30*time.Second))); status != http.StatusUnauthorized {
		t.Errorf("a removed device's code: %d, want 401", status)
	}
	if _, errOut, code := totpCmd("remove", "john"); code != 1 || !strings.Contains(errOut, "no TOTP device") {
		t.Errorf("remove without a device: exit %d %q", code, errOut)
	}

	// the log holds the actions, never a secret or a URI
	log := p.s.log.String()
	for _, s := range []string{secret, newSecret, "otpauth://"} {
		if strings.Contains(log, s) {
			t.Errorf("the log holds %q", s)
		}
	}
	if !strings.Contains(log, "TOTP device added by the operator") || !strings.Contains(log, "TOTP device removed by the operator") {
		t.Error("the operator's actions are not logged")
	}

	// TOTP disabled in the running config: refused
	cfg, err := os.ReadFile(p.s.config)
	if err != nil {
		t.Fatal(err)
	}
	off := strings.Replace(string(cfg), "\t\tsession {", "\t\ttotp {\n\t\t\tdisable\n\t\t}\n\t\tsession {", 1)
	req, _ = http.NewRequest("POST", fmt.Sprintf("http://%s/load", admin), strings.NewReader(off))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload with totp disabled: %d %s", resp.StatusCode, body)
	}
	if _, errOut, code := totpCmd("add", "ann"); code != 1 || !strings.Contains(errOut, "TOTP is disabled") {
		t.Errorf("add with TOTP disabled: exit %d %q", code, errOut)
	}
}
