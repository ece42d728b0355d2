package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	goldap "github.com/go-ldap/ldap/v3"

	"github.com/portcullis-auth/portcullis/internal/smtptest"
)

// resetLink finds the reset link in a mail's text.
var resetLink = regexp.MustCompile(`https://[^\s"<>]+/reset-password/confirm\?token=[A-Za-z0-9_-]{43}`)

// A person who forgot their password asks for a link at the sign-in page, receives it by mail
// (a real SMTP server, STARTTLS checked against its certificate, AUTH), opens the link from the
// received mail, sets a new password, and signs in with it while the old one is refused. The
// users file on disk holds the new digest, a notice of the change is mailed, and the link works
// once. Every page and state is photographed at phone and desktop width.
func TestPasswordResetInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	mail := smtptest.Start(t, smtptest.WithStartTLS(), smtptest.WithAuth("portcullis", "smtp-secret"))
	ca := filepath.Join(t.TempDir(), "smtp-ca.pem")
	if err := os.WriteFile(ca, mail.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPortalSiteWith(t, `
		notifier {
			smtp {
				address submission://`+mail.Addr()+`
				username portcullis
				password smtp-secret
				sender "Portcullis <auth@example.test>"
				timeout 10s
				tls {
					ca_file `+ca+`
				}
			}
		}
		password_reset {
			disable false
		}
		identity_validation {
			reset_password {
				jwt_lifespan 10m
			}
		}`)
	// mary has an authenticator app, given by the operator
	usersFile(t, p.users, map[string]string{
		"john": "    displayname: John Doe\n    email: john@example.test\n    groups: [dev, admins]\n",
		"mary": "    displayname: Mary Major\n    email: mary@example.test\n",
	})
	var added struct {
		URI string `json:"uri"`
	}
	for deadline := time.Now().Add(10 * time.Second * slow); ; time.Sleep(200 * time.Millisecond) {
		out, errOut, code := command(t, "", "users", "totp", "add", "mary", "--json", "--address", fmt.Sprintf("localhost:%d", p.admin))
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &added); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("totp add mary: %s", errOut)
		}
	}
	marySecret := secretOfURI(t, added.URI)
	before, err := os.ReadFile(p.users)
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, exe, "10.0.0.7")

	// the sign-in page offers the reset
	b.do(chromedp.Navigate(p.url("auth", "/")))
	b.shoot("reset-signin")
	if got := b.text("a[href$='/reset-password']"); got != "Forgot password?" {
		t.Fatalf("the sign-in page's reset link says %q", got)
	}
	b.submit("a[href$='/reset-password']")
	if loc := b.location(); loc != p.url("auth", "/reset-password") {
		t.Fatalf("at %s, want the reset page", loc)
	}
	b.shoot("reset-request")
	b.do(chromedp.SendKeys(chromedp.ID("username"), "john"))
	b.submit("button[type=submit]")
	if body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`)); !strings.Contains(body, "we sent a link") {
		t.Fatalf("after asking, at %s:\n%s", b.location(), body)
	}
	if msg := b.text(".lead"); !strings.Contains(msg, "If an account matches what you entered, we sent a link") {
		t.Fatalf("after asking: %q", msg)
	}
	b.shoot("reset-sent")

	// the link comes by mail, on the issuer
	m := mail.WaitFor(t, "john@example.test", 30*time.Second*slow)
	link := resetLink.FindString(m.Text)
	if link == "" {
		t.Fatalf("no reset link in the mail's text:\n%s", m.Text)
	}
	if !strings.HasPrefix(link, p.url("auth", "/reset-password/confirm?token=")) {
		t.Errorf("the link %s is not on the issuer", link)
	}
	if !strings.Contains(m.HTML, strings.ReplaceAll(link, "&", "&amp;")) {
		t.Error("the mail's HTML part does not carry the same link")
	}
	if !strings.Contains(m.Text, "10 minutes") {
		t.Errorf("the mail does not give the link's lifespan (10m):\n%s", m.Text)
	}
	if !m.TLS || m.Username != "portcullis" {
		t.Errorf("the mail came without TLS (%v) or without AUTH (%q)", m.TLS, m.Username)
	}

	// opened from the mail: the new-password form
	b.do(chromedp.Navigate(link))
	b.shoot("reset-form")
	b.do(chromedp.SendKeys(chromedp.ID("password"), "a brand new password"), chromedp.SendKeys(chromedp.ID("password_again"), "a brand new passw0rd"))
	b.submit("button[type=submit]")
	if msg := b.text(".error"); !strings.Contains(msg, "The two passwords are not the same") {
		t.Fatalf("mismatched passwords: %q", msg)
	}
	b.shoot("reset-form-error")
	b.do(chromedp.SendKeys(chromedp.ID("password"), "a brand new password"), chromedp.SendKeys(chromedp.ID("password_again"), "a brand new password"))
	b.submit("button[type=submit]")
	if title := b.text("h1"); title != "Password changed" {
		t.Fatalf("after setting the password: %q at %s", title, b.location())
	}
	b.shoot("reset-done")

	// the file on disk changed, through the editor (the rest of the entry is kept)
	after, err := os.ReadFile(p.users)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) == string(before) || !strings.Contains(string(after), "$argon2id$") || !strings.Contains(string(after), "email: john@example.test") {
		t.Errorf("the users file did not get the new digest:\n%s", after)
	}
	notice := mail.WaitFor(t, "john@example.test", 30*time.Second*slow)
	if !strings.Contains(notice.Text, "password was changed") {
		t.Errorf("the second mail is not the notice of the change:\n%s", notice.Text)
	}

	// the old password is refused, the new one signs in
	b.submit("a.button.primary")
	b.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	b.submit("button[type=submit]")
	if msg := b.text(".error"); !strings.Contains(msg, "Incorrect username or password") {
		t.Fatalf("the old password: %q", msg)
	}
	b.do(chromedp.SendKeys(chromedp.ID("password"), "a brand new password"))
	b.submit("button[type=submit]")
	if loc := b.location(); !strings.HasPrefix(loc, p.url("auth", "/settings")) {
		t.Fatalf("after signing in with the new password at %s, want the account page", loc)
	}

	// the link worked once
	b.do(chromedp.Navigate(link))
	if title := b.text("h1"); title != "This link does not work" {
		t.Errorf("the used link: %q", title)
	}
	b.shoot("reset-link-used")

	// a name nobody has gets the same answer, and no mail
	hc := p.client()
	resp, err := hc.Get(p.url("auth", "/reset-password"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the reset page over HTTP: %d", resp.StatusCode)
	}
	n := len(mail.Mails())
	b.do(chromedp.Navigate(p.url("auth", "/reset-password")))
	b.do(chromedp.SendKeys(chromedp.ID("username"), "nobody@example.test"))
	b.submit("button[type=submit]")
	if msg := b.text(".lead"); !strings.Contains(msg, "If an account matches what you entered, we sent a link") {
		t.Errorf("an unknown name: %q", msg)
	}
	time.Sleep(time.Second)
	if len(mail.Mails()) != n {
		t.Error("a mail was sent for an unknown name")
	}
	if strings.Contains(p.s.log.String(), link[strings.Index(link, "token=")+6:]) {
		t.Error("the server's log holds the token")
	}

	// mary has a second factor: the link's form asks for her code first
	m2 := newBrowser(t, exe, "10.0.0.8")
	m2.do(chromedp.Navigate(p.url("auth", "/reset-password")))
	m2.do(chromedp.SendKeys(chromedp.ID("username"), "mary@example.test"))
	m2.submit("button[type=submit]")
	maryLink := resetLink.FindString(mail.WaitFor(t, "mary@example.test", 30*time.Second*slow).Text)
	if maryLink == "" {
		t.Fatal("no link in mary's mail")
	}
	m2.do(chromedp.Navigate(maryLink))
	m2.shoot("reset-form-totp")
	m2.do(chromedp.SendKeys(chromedp.ID("code"), "000000"), chromedp.SendKeys(chromedp.ID("password"), "mary's new password"), chromedp.SendKeys(chromedp.ID("password_again"), "mary's new password"))
	m2.submit("button[type=submit]")
	if msg := m2.text(".error"); !strings.Contains(msg, "That code is not right") {
		t.Fatalf("a wrong code: %q", msg)
	}
	m2.shoot("reset-form-totp-error")
	m2.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, marySecret, time.Now())), chromedp.SendKeys(chromedp.ID("password"), "mary's new password"), chromedp.SendKeys(chromedp.ID("password_again"), "mary's new password"))
	m2.submit("button[type=submit]")
	if title := m2.text("h1"); title != "Password changed" {
		t.Fatalf("mary with her code: %q", title)
	}
	m2.submit("a.button.primary")
	m2.do(chromedp.SendKeys(chromedp.ID("username"), "mary"), chromedp.SendKeys(chromedp.ID("password"), "mary's new password"))
	m2.submit("button[type=submit]")
	if loc := m2.location(); !strings.HasPrefix(loc, p.url("auth", "/")) || strings.Contains(m2.text("h1"), "Sign in") {
		t.Errorf("mary's new password: at %s", loc)
	}
}

// A person whose second factor is a security key proves it on the link's page (Chrome's
// virtual authenticator answers the page's WebAuthn request) before the page asks for the new
// password; the key was registered at the portal after a mailed code, as people do.
func TestPasswordResetWithASecurityKey(t *testing.T) {
	exe := chromiumPath(t)
	p, mail := startMailSite(t)
	b := newBrowser(t, exe, "10.0.0.9")
	if _, err := chromedp.Call(b.ctx, cdpwebauthn.Enable, cdpwebauthn.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(b.ctx, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{Options: &cdpwebauthn.VirtualAuthenticatorOptions{
		Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Transport: cdpwebauthn.AuthenticatorTransportUsb,
		HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
	}}); err != nil {
		t.Fatal(err)
	}
	// john registers a key (after the mailed code)
	b.signInAs(p, "john", "pw-john")
	b.do(chromedp.Navigate(p.url("auth", "/settings/webauthn")))
	b.submit("#send-code")
	b.do(chromedp.SendKeys(chromedp.ID("code"), mailedCode(t, mail)))
	b.submit(`form[action$="/settings/elevate"] button[type=submit]`)
	b.do(chromedp.SetValue(chromedp.ID("key-name"), "YubiKey 5"), chromedp.Click(chromedp.ID("webauthn-register")))
	waitLocation(t, b, p.url("auth", "/settings?notice=key-added"))

	// the reset: the key first, then the password
	b.do(chromedp.Navigate(p.url("auth", "/reset-password")))
	b.do(chromedp.SendKeys(chromedp.ID("username"), "john"))
	b.submit("button[type=submit]")
	var link string
	for link == "" { // past the notice of the key added
		link = resetLink.FindString(mail.WaitFor(t, "john@example.test", mailWait*slow).Text)
	}
	b.do(chromedp.Navigate(link))
	if n, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#password, #password_again").length`)); n != 0 {
		t.Fatal("the page asks for the password before the key")
	}
	b.shoot("reset-key")
	b.do(chromedp.Click(chromedp.ID("webauthn-login")), chromedp.WaitVisible(chromedp.ID("password_again")))
	if n, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#webauthn-login, #code").length`)); n != 0 {
		t.Error("after the key the page still asks for a second factor")
	}
	if msg := b.text(".notice"); msg != "Your security key was accepted." {
		t.Errorf("after the key the page says %q", msg)
	}
	b.shoot("reset-key-proved")
	b.do(chromedp.SendKeys(chromedp.ID("password"), "keyed new password"), chromedp.SendKeys(chromedp.ID("password_again"), "keyed new password"))
	b.submit("button[type=submit]")
	if title := b.text("h1"); title != "Password changed" {
		t.Fatalf("after the key and the password: %q", title)
	}
	b.signInAs(p, "john", "keyed new password")
	if loc := b.location(); !strings.HasPrefix(loc, p.url("auth", "/settings")) {
		t.Errorf("the new password: at %s, want the account page", loc)
	}
}

// A password reset against a real OpenLDAP: the link mailed for a mail address of the
// directory's, opened and submitted over HTTP, changes the directory's own password (the
// password-modify extended operation): a bind with the new password works, with the old one
// fails, and the portal signs in with the new one only.
func TestPasswordResetOverLDAP(t *testing.T) {
	mail := smtptest.Start(t, smtptest.WithStartTLS())
	ca := filepath.Join(t.TempDir(), "smtp-ca.pem")
	if err := os.WriteFile(ca, mail.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	p, dir := startLDAPSiteWith(t, `
		notifier {
			smtp {
				address submission://`+mail.Addr()+`
				sender "Portcullis <auth@example.test>"
				tls {
					ca_file `+ca+`
				}
			}
		}`)
	hc := p.client()
	hc.Jar = newJar(t)
	form := func(path string) (csrf string) {
		t.Helper()
		resp, err := hc.Get(p.url("auth", path))
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrfField.FindSubmatch(page)
		if resp.StatusCode != 200 || m == nil {
			t.Fatalf("GET %s: %d %.300s", path, resp.StatusCode, page)
		}
		return string(m[1])
	}
	post := func(path string, v url.Values) (int, string) {
		t.Helper()
		resp, err := hc.PostForm(p.url("auth", path), v)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := post("/reset-password", url.Values{"csrf": {form("/reset-password")}, "username": {"JOHN@example.test"}}); code != 200 || !strings.Contains(body, "we sent a link") {
		t.Fatalf("asking: %d", code)
	}
	link := resetLink.FindString(mail.WaitFor(t, "john@example.test", 30*time.Second*slow).Text)
	if link == "" {
		t.Fatal("no reset link in the mail")
	}
	token := link[strings.Index(link, "token=")+6:]
	csrf := form(strings.TrimPrefix(link, p.url("auth", "")))
	if code, body := post("/reset-password/confirm", url.Values{"csrf": {csrf}, "token": {token}, "password": {"new-ldap-password"}, "password_again": {"new-ldap-password"}}); code != 200 || !strings.Contains(body, "Password changed") {
		t.Fatalf("setting the password: %d %.500s", code, body)
	}
	bind := func(pw string) error {
		c, err := goldap.DialURL(dir.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Bind("uid=John,ou=people,dc=example,dc=com", pw)
	}
	if err := bind("new-ldap-password"); err != nil {
		t.Errorf("the directory refuses the new password: %v", err)
	}
	if err := bind("john-ldap-pw"); err == nil {
		t.Error("the directory still takes the old password")
	}
	if code, _ := p.postSignIn(p.client(), "john", "john-ldap-pw"); code == http.StatusSeeOther {
		t.Error("the portal signed in with the old password")
	}
	if code, _ := p.postSignIn(p.client(), "john", "new-ldap-password"); code != http.StatusSeeOther {
		t.Errorf("the new password at the portal: %d, want 303", code)
	}
}
