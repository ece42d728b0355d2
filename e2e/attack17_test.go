package e2e

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/internal/smtptest"
)

// These tests replay, with the real binary, what an outsider tried against issue 17's password
// reset and got through, so each stays fixed.

var resetLinkLine = regexp.MustCompile(`(?m)^Link: (\S+)$`)

// waitResetLink waits for the next reset link appended to the filesystem notifier's file.
func waitResetLink(t *testing.T, file string, seen int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second * slow)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(file)
		if m := resetLinkLine.FindAllStringSubmatch(string(data), -1); len(m) > seen {
			return m[seen][1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no reset link in %s", file)
	return ""
}

// resetPassword asks for a link for user, opens it and sets password, as a person would.
func resetPassword(t *testing.T, v *visitor, file string, seen int, user, password string) {
	t.Helper()
	resp, page := v.do(http.MethodGet, v.p.url("auth", "/reset-password"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reset page: %d", resp.StatusCode)
	}
	f := hiddenFields(page)
	f.Set("username", user)
	if resp, page = v.do(http.MethodPost, v.p.url("auth", "/reset-password"), f); resp.StatusCode != http.StatusOK {
		t.Fatalf("asking for a link: %d: %.300s", resp.StatusCode, page)
	}
	link := waitResetLink(t, file, seen)
	if resp, page = v.do(http.MethodGet, link, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the link's page: %d: %.300s", resp.StatusCode, page)
	}
	f = hiddenFields(page)
	f.Set("password", password)
	f.Set("password_again", password)
	if resp, page = v.do(http.MethodPost, v.p.url("auth", "/reset-password/confirm"), f); resp.StatusCode != http.StatusOK {
		t.Fatalf("setting the new password: %d: %.300s", resp.StatusCode, page)
	}
}

// A thief who learnt john's password signed in to an application with offline_access. john
// resets his password: every session ends, and so must every token the thief's sign-in gave the
// application, refresh tokens included (a refresh token outlives the browser session, so ending
// the session's access tokens alone leaves the thief a way back in for as long as they refresh).
func TestAttackResetEndsRefreshTokens(t *testing.T) {
	notes := filepath.Join(t.TempDir(), "notification.txt")
	s := startOIDCHTTPSite(t, rpClient("rp", "scopes openid offline_access", "grant_types authorization_code refresh_token")+
		"\t\tnotifier {\n\t\t\tfilesystem "+notes+"\n\t\t}\n")
	thief := newVisitor(t, s.portalSite, "198.51.100.7")
	got := s.codeFlow(thief, "rp", url.Values{"scope": {"openid offline_access"}})
	refresh, _ := got.tokens["refresh_token"].(string)
	if !strings.HasPrefix(refresh, "portcullis_rt_") {
		t.Fatalf("no refresh token: %v", got.tokens)
	}
	// a second, older grant whose browser session is already gone (signed out)
	other := newVisitor(t, s.portalSite, "198.51.100.8")
	old := s.codeFlow(other, "rp", url.Values{"scope": {"openid offline_access"}})
	oldRefresh, _ := old.tokens["refresh_token"].(string)
	other.signOut()

	// and a code the thief's application got but has not exchanged yet
	pending := s.authURL("rp", url.Values{"scope": {"openid offline_access"}})
	code := thief2(t, s, pending).callback().Get("code")

	resetPassword(t, newVisitor(t, s.portalSite, "203.0.113.5"), notes, 0, "john", "john-after-the-reset")

	if status, body := s.exchange("rp", "rp-secret", code, pending.verifier); status == http.StatusOK {
		t.Errorf("a code issued before the reset gave tokens after it: %v", body)
	}

	for name, rt := range map[string]string{"the live session's": refresh, "an older grant's": oldRefresh} {
		status, body := form(t, s.hc, s.issuer+"/api/oidc/token", "rp", "rp-secret",
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if status == http.StatusOK {
			t.Errorf("%s refresh token still works after a password reset: %v", name, body)
		}
	}
	if status, _, _ := s.userinfo(got.accessToken()); status == http.StatusOK {
		t.Error("the thief's access token still works after a password reset")
	}
	if status, _, _ := s.userinfo(old.accessToken()); status == http.StatusOK {
		t.Error("an older grant's access token still works after a password reset")
	}
	// john's own new sign-in works
	newVisitor(t, s.portalSite, "203.0.113.6").signIn("", "john", "john-after-the-reset")
}

var notifierCodeLine = regexp.MustCompile(`(?m)^Code: (\S+)$`)

// waitCode waits for the seen+1-th code appended to the filesystem notifier's file.
func waitCode(t *testing.T, file string, seen int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second * slow)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(file)
		if m := notifierCodeLine.FindAllStringSubmatch(string(data), -1); len(m) > seen {
			return m[seen][1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no code in %s", file)
	return ""
}

// thief2 runs an authorization request to its callback in a new browser signed in as john.
func thief2(t *testing.T, s *oidcSite, a authRequest) step {
	t.Helper()
	v := newVisitor(t, s.portalSite, "198.51.100.9")
	st := v.authorize(a.url)
	if st.signIn {
		st = v.signInAt(st, "john", "pw-john")
	}
	if st.consent != nil {
		st = v.answerConsent(st, "accept", false)
	}
	return st
}

// The same thief; john changes his password on the account page (after the mailed code): the
// thief's refresh token must stop working as it does after a reset.
func TestAttackPasswordChangeEndsRefreshTokens(t *testing.T) {
	notes := filepath.Join(t.TempDir(), "notification.txt")
	s := startOIDCHTTPSite(t, rpClient("rp", "scopes openid offline_access", "grant_types authorization_code refresh_token")+
		"\t\tnotifier {\n\t\t\tfilesystem "+notes+"\n\t\t}\n")
	thief := newVisitor(t, s.portalSite, "198.51.100.7")
	got := s.codeFlow(thief, "rp", url.Values{"scope": {"openid offline_access"}})
	refresh, _ := got.tokens["refresh_token"].(string)
	if !strings.HasPrefix(refresh, "portcullis_rt_") {
		t.Fatalf("no refresh token: %v", got.tokens)
	}
	thief.signOut() // the browser session ends; the application keeps its refresh token

	john := newVisitor(t, s.portalSite, "203.0.113.5")
	john.signIn("", "john", "pw-john")
	resp, page := john.do(http.MethodGet, s.url("auth", "/settings/elevate?next=/settings/password"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("elevation page: %d: %.300s", resp.StatusCode, page)
	}
	f := hiddenFields(page)
	if resp, page = john.do(http.MethodPost, s.url("auth", "/settings/elevate/send"), f); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sending a code: %d: %.300s", resp.StatusCode, page)
	}
	f.Set("code", waitCode(t, notes, 0))
	if resp, page = john.do(http.MethodPost, s.url("auth", "/settings/elevate"), f); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the code: %d: %.300s", resp.StatusCode, page)
	}
	resp, page = john.do(http.MethodGet, s.url("auth", "/settings/password"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("password page: %d: %.300s", resp.StatusCode, page)
	}
	f = hiddenFields(page)
	f.Set("current", "pw-john")
	f.Set("new", "john-changed-it")
	f.Set("again", "john-changed-it")
	if resp, page = john.do(http.MethodPost, s.url("auth", "/settings/password"), f); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("changing the password: %d: %.300s", resp.StatusCode, page)
	}
	status, body := form(t, s.hc, s.issuer+"/api/oidc/token", "rp", "rp-secret",
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if status == http.StatusOK {
		t.Errorf("the thief's refresh token still works after a password change: %v", body)
	}
	// john's own browser session goes on
	if resp, _ := john.do(http.MethodGet, s.url("auth", "/settings"), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("john's own session after the change: %d", resp.StatusCode)
	}
}

// Against a real OpenLDAP and a real SMTP server: the reset form's filter injections, a name
// with a NUL and an over-long one find nobody, so no mail leaves, and their answer is the one a
// real user's request gets; a forged X-Forwarded-Host or Host port does not reach the link, which
// is built from the issuer.
func TestAttackResetOverLDAPInjectionsAndForwardedHost(t *testing.T) {
	mail := smtptest.Start(t, smtptest.WithStartTLS())
	ca := filepath.Join(t.TempDir(), "smtp-ca.pem")
	if err := os.WriteFile(ca, mail.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := startLDAPSiteWith(t, `
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
	ask := func(name string, header map[string]string) (int, string) {
		t.Helper()
		resp, err := hc.Get(p.url("auth", "/reset-password"))
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrfField.FindSubmatch(page)
		if m == nil {
			t.Fatalf("no CSRF field: %.300s", page)
		}
		req, _ := http.NewRequest(http.MethodPost, p.url("auth", "/reset-password"),
			strings.NewReader(url.Values{"csrf": {string(m[1])}, "username": {name}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err = hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	status, want := ask("ann", map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http", "Forwarded": "host=evil.example;proto=http"})
	if status != http.StatusOK {
		t.Fatalf("asking for ann: %d", status)
	}
	for _, name := range []string{"*", ")(uid=*", "john)(|(uid=*", "john@example.test)(uid=*", `\2a`, "John\x00", "J*", strings.Repeat("a", 300)} {
		if status, body := ask(name, nil); status != http.StatusOK || body != want {
			t.Errorf("%q: %d, or an answer unlike a real user's", name, status)
		}
	}
	m := mail.WaitFor(t, "ann@example.test", 30*time.Second*slow)
	link := resetLink.FindString(m.Text)
	if !strings.HasPrefix(link, p.url("auth", "/reset-password/confirm?token=")) || strings.Contains(m.Text, "evil.example") || strings.Contains(m.HTML, "evil.example") {
		t.Errorf("the link is not the issuer's: %q", link)
	}
	time.Sleep(2 * time.Second) // the background requests of the injections have ended
	if all := mail.Mails(); len(all) != 1 {
		for _, x := range all {
			t.Errorf("mail to %v", x.To)
		}
	}
}
