package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis-auth/portcullis/internal/smtptest"
)

// startMailSite is startPortalSite with a notifier that mails through a real SMTP server in the
// test process (STARTTLS, its certificate trusted through ca_file) and the elevated session at
// its defaults.
func startMailSite(t *testing.T) (*portalSite, *smtptest.Server) {
	t.Helper()
	s := smtptest.Start(t, smtptest.WithStartTLS())
	ca := filepath.Join(t.TempDir(), "smtp-ca.pem")
	if err := os.WriteFile(ca, s.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	more := fmt.Sprintf(`notifier {
	smtp {
		address submission://127.0.0.1:%d
		sender "Portcullis <auth@example.test>"
		tls {
			ca_file %s
		}
	}
}
identity_validation {
	elevated_session {
		code_lifespan 5m
		elevation_lifespan 10m
		characters 8
	}
}`, s.Port(), ca)
	return startPortalSiteWith(t, more), s
}

// mailWait bounds the wait for a mail the portal sends.
var mailWait = 20 * time.Second

var codeInMail = regexp.MustCompile(`(?m)^\s+([A-Z2-9]{8})\s*$`)

// mailedCode waits for the next mail to john and reads the one-time code from its text.
func mailedCode(t *testing.T, s *smtptest.Server) string {
	t.Helper()
	m := s.WaitFor(t, "john@example.test", mailWait*slow)
	c := codeInMail.FindStringSubmatch(m.Text)
	if c == nil || !m.TLS || !strings.Contains(m.Subject, "Confirm it is you") {
		t.Fatalf("a mail without a code (TLS %v, subject %q): %q", m.TLS, m.Subject, m.Text)
	}
	if !strings.Contains(m.HTML, c[1]) {
		t.Errorf("the HTML part does not carry the code")
	}
	return c[1]
}

// signInAs signs the browser in at the portal's sign-in page.
func (b *browser) signInAs(p *portalSite, user, password string) {
	b.t.Helper()
	b.do(chromedp.Navigate(p.url("auth", "/")))
	b.do(chromedp.SetValue(chromedp.ID("username"), user), chromedp.SetValue(chromedp.ID("password"), password))
	b.submit("button[type=submit]")
}

// A person without a second factor signs in and opens the authenticator enrolment: the portal
// asks for a code mailed to them first (a password alone no longer enrols a device); the test
// reads the code from the mail the SMTP server received, and the enrolment works. From another
// address, five wrong codes are regulated: the right code is refused after them. A second code
// asked within 30 seconds is not mailed.
func TestEnrolmentNeedsTheMailedCode(t *testing.T) {
	exe := chromiumPath(t)
	p, mail := startMailSite(t)

	// a guesser at 10.0.0.7 who knows john's password: the code goes to john's mailbox, and five
	// wrong guesses ban the address for john: the right code is refused after them
	g := newBrowser(t, exe, "10.0.0.7")
	g.signInAs(p, "john", "pw-john")
	g.do(chromedp.Navigate(p.url("auth", "/settings/totp")))
	if loc := g.location(); !strings.HasPrefix(loc, p.url("auth", "/settings/elevate?")) {
		t.Fatalf("the enrolment with a password only: at %s, want the elevation page", loc)
	}
	if txt := g.text("main"); !strings.Contains(txt, "j•••@example.test") || strings.Contains(txt, "john@example.test") {
		t.Errorf("the elevation page should show the masked address only: %q", txt)
	}
	g.shoot("elevate")
	g.submit("#send-code")
	sentAt := time.Now()
	code := mailedCode(t, mail)
	if txt := g.text("main"); !strings.Contains(txt, "Enter the code we sent to j•••@example.test") {
		t.Fatalf("after sending: %q", txt)
	}
	g.shoot("elevate-code")
	for i := 0; i < 5; i++ {
		g.do(chromedp.SetValue(chromedp.ID("code"), fmt.Sprintf("WRNG%04d", 2222+i)))
		g.submit(`form[action$="/settings/elevate"] button[type=submit]`)
		if msg := g.text(".error"); !strings.Contains(msg, "not right") {
			t.Fatalf("wrong code %d: %q", i, msg)
		}
	}
	g.shoot("elevate-wrong")
	g.do(chromedp.SetValue(chromedp.ID("code"), code))
	g.submit(`form[action$="/settings/elevate"] button[type=submit]`)
	if loc := g.location(); strings.Contains(loc, "/settings/totp") || !strings.Contains(g.text(".error"), "not right") {
		t.Fatalf("the right code after five wrong ones: at %s, want refused", loc)
	}

	// john, at his own address: a code asked within 30 seconds of the last is not mailed
	a := newBrowser(t, exe, "10.0.0.1")
	a.signInAs(p, "john", "pw-john")
	a.do(chromedp.Navigate(p.url("auth", "/settings")))
	if txt := a.text("main"); !strings.Contains(txt, "Change password") {
		t.Errorf("the account page has no password change: %q", txt)
	}
	a.shoot("settings-password-link")
	a.do(chromedp.Navigate(p.url("auth", "/settings/totp")))
	a.submit("#send-code")
	if msg := a.text(".error"); !strings.Contains(msg, "sent moments ago") {
		t.Fatalf("a second code at once: %q", msg)
	}
	a.shoot("elevate-too-soon")
	time.Sleep(time.Until(sentAt.Add(31 * time.Second)))
	if n := len(mail.Mails()); n != 1 {
		t.Fatalf("%d mails after the refused one, want 1", n)
	}
	a.submit("#send-code")
	code = mailedCode(t, mail)
	// typed as a person might: small letters, a space in the middle
	a.do(chromedp.SendKeys(chromedp.ID("code"), strings.ToLower(code[:4])+" "+code[4:]))
	a.submit(`form[action$="/settings/elevate"] button[type=submit]`)
	if loc := a.location(); loc != p.url("auth", "/settings/totp") {
		t.Fatalf("after the mailed code at %s (%q), want the enrolment", loc, a.text("main"))
	}
	secret, err := chromedp.Run(a.ctx, chromedp.Evaluate[string](`document.getElementById("totp-secret").textContent.trim()`))
	if err != nil || secret == "" {
		t.Fatalf("no TOTP key on the enrolment page: %v", err)
	}
	a.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now())))
	a.submit("button[type=submit]")
	if loc := a.location(); loc != p.url("auth", "/settings?notice=totp-added") {
		t.Fatalf("after enrolment at %s: %q", loc, a.text("main"))
	}
	if m := mail.WaitFor(t, "john@example.test", mailWait*slow); !strings.Contains(m.Text, "An authenticator app was added") {
		t.Errorf("the notice of the new device: %q", m.Text)
	}
	a.shoot("settings-totp-added")
}

// Without a notifier (require_notifier at its default), no code can be sent: the page says so
// and names the operator's command, and nothing is enrolled.
func TestEnrolmentWithoutNotifier(t *testing.T) {
	exe := chromiumPath(t)
	p := startPortalSiteWith(t, "identity_validation {\n elevated_session {\n require_notifier true\n }\n}")
	a := newBrowser(t, exe, "10.0.0.1")
	a.signInAs(p, "john", "pw-john")
	a.do(chromedp.Navigate(p.url("admin", "/panel")))
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/2fa?rd=")) {
		t.Fatalf("at %s, want the second-factor page", loc)
	}
	a.submit("a.button.primary")
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/settings/elevate?")) {
		t.Fatalf("the first enrolment without a notifier: at %s, want the elevation page", loc)
	}
	txt := a.text("main")
	if !strings.Contains(txt, "no way to send mail") || !strings.Contains(txt, "caddy oidc users totp add") {
		t.Errorf("the page without a notifier: %q", txt)
	}
	if n, _ := chromedp.Run(a.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#send-code, #totp-secret").length`)); n != 0 {
		t.Error("the page offers a code or a secret")
	}
	a.shoot("elevate-no-notifier")
}
