package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The account page changes a password: the mailed code first, then the current password and
// the new one twice (a mismatch is refused with a clear message); the users file gets the new
// password, john's other browser is signed out, a notice is mailed, and at the sign-in page the
// old password fails and the new one works.
func TestPasswordChangeInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	p, mail := startMailSite(t)
	hc := p.client()

	other := newBrowser(t, exe, "10.0.0.5")
	other.signInAs(p, "john", "pw-john")
	otherSession := other.cookie("portcullis_session")
	if otherSession == "" {
		t.Fatal("the other browser did not sign in")
	}

	a := newBrowser(t, exe, "10.0.0.1")
	a.signInAs(p, "john", "pw-john")
	a.do(chromedp.Navigate(p.url("auth", "/settings")))
	a.submit(`a[href$="/settings/password"]`)
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/settings/elevate?next=%2Fsettings%2Fpassword")) {
		t.Fatalf("the password change without elevation: at %s", loc)
	}
	a.submit("#send-code")
	a.do(chromedp.SendKeys(chromedp.ID("code"), mailedCode(t, mail)))
	a.submit(`form[action$="/settings/elevate"] button[type=submit]`)
	if loc := a.location(); loc != p.url("auth", "/settings/password") {
		t.Fatalf("after the code at %s: %q", loc, a.text("main"))
	}
	a.shoot("password-change")

	a.do(chromedp.SendKeys(chromedp.ID("current"), "pw-john"), chromedp.SendKeys(chromedp.ID("new"), "a much longer one"),
		chromedp.SendKeys(chromedp.ID("again"), "a much longer on"))
	a.submit(`form[action$="/settings/password"] button[type=submit]`)
	if msg := a.text(".error"); !strings.Contains(msg, "not the same") {
		t.Fatalf("two different new passwords: %q", msg)
	}
	a.shoot("password-change-mismatch")
	a.do(chromedp.SendKeys(chromedp.ID("current"), "pw-john"), chromedp.SendKeys(chromedp.ID("new"), "a much longer one"),
		chromedp.SendKeys(chromedp.ID("again"), "a much longer one"))
	a.submit(`form[action$="/settings/password"] button[type=submit]`)
	if loc := a.location(); loc != p.url("auth", "/settings?notice=password-changed") {
		t.Fatalf("after the change at %s: %q", loc, a.text("main"))
	}
	if txt := a.text(".notice"); !strings.Contains(txt, "Your password is changed") {
		t.Errorf("notice %q", txt)
	}
	a.shoot("password-changed")
	if m := mail.WaitFor(t, "john@example.test", mailWait*slow); !strings.Contains(m.Text, "Your password was changed") && !strings.Contains(m.Subject, "Your password was changed") {
		t.Errorf("the notice mail: %q %q", m.Subject, m.Text)
	}
	data, err := readFile(p.users)
	if err != nil || !strings.Contains(data, "$argon2id$") {
		t.Errorf("the users file has no new argon2id digest: %v", err)
	}
	// the other browser's session ended; this one goes on
	if resp := getWithCookie(t, hc, p.url("secure", "/"), otherSession); resp.StatusCode != http.StatusFound {
		t.Errorf("the other browser's session after the change: %d, want 302 to the sign-in page", resp.StatusCode)
	}
	a.do(chromedp.Navigate(p.url("secure", "/still-in")))
	if loc := a.location(); loc != p.url("secure", "/still-in") {
		t.Errorf("this browser after the change: at %s", loc)
	}

	// signed out, the old password fails and the new one works
	a.do(chromedp.Navigate(p.url("auth", "/logout")))
	a.submit("button[type=submit]")
	a.signInAs(p, "john", "pw-john")
	if msg := a.text(".error"); !strings.Contains(msg, "Incorrect username or password") {
		t.Fatalf("the old password: %q at %s", msg, a.location())
	}
	a.signInAs(p, "john", "a much longer one")
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/settings")) {
		t.Fatalf("the new password: at %s: %q", loc, a.text("main"))
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
