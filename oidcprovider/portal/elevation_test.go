package portal

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	otptotp "github.com/pquerna/otp/totp"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// newElevationWorld is newPortalWorld with the filesystem notifier (its file is returned), a
// regulator that bans after five failures, and a password checker that asks the users file.
func newElevationWorld(t *testing.T) (*portalWorld, string) {
	t.Helper()
	w := newPortalWorld(t)
	file := filepath.Join(t.TempDir(), "notification.txt")
	n, err := notify.New(notify.Config{FileSystem: &notify.FileSystemConfig{Filename: file}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := regulation.New(t.Context(), regulation.Config{MaxRetries: 5, FindTime: 10 * time.Minute, BanTime: 10 * time.Minute}, w.kv)
	if err != nil {
		t.Fatal(err)
	}
	w.p.cfg.Notifier, w.p.cfg.Regulator = n, reg
	w.p.cfg.CheckPassword = func(ctx context.Context, user, password, _ string) error {
		u, err := w.users.Lookup(ctx, user)
		if err != nil {
			return ErrBadCredentials
		}
		if ok, err := w.users.CheckPassword(ctx, u, password); err != nil {
			return err
		} else if !ok {
			return ErrBadCredentials
		}
		return nil
	}
	return w, file
}

var mailedCode = regexp.MustCompile(`(?m)^Code: (\S+)$`)

// codes are the codes in the notifier's file, oldest first.
func codes(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mailedCode.FindAllStringSubmatch(string(data), -1) {
		out = append(out, m[1])
	}
	return out
}

// askCode sends "Email me a code" for next and returns the code mailed.
func (w *portalWorld) askCode(file, next string) string {
	w.t.Helper()
	before := len(codes(w.t, file))
	rec := w.do("POST", "/settings/elevate/send", url.Values{"next": {next}})
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/settings/elevate?") {
		w.t.Fatalf("sending a code: %d %q %s", rec.Code, loc, rec.Body.String())
	}
	all := codes(w.t, file)
	if len(all) != before+1 {
		w.t.Fatalf("%d codes mailed, want %d", len(all), before+1)
	}
	return all[len(all)-1]
}

// resetSendLimit lets the next code be mailed at once (the limit lives in the store, on the
// store's clock, which the test's clock does not move).
func (w *portalWorld) resetSendLimit() {
	w.t.Helper()
	if err := w.kv.Delete(w.t.Context(), w.p.userKey("sent", "john")); err != nil {
		w.t.Fatal(err)
	}
}

func (w *portalWorld) sessionID() string { return w.cookies["portcullis_session"].Value }

// A user without a second factor cannot enrol one with the password alone: the enrolment asks
// for a mailed code first; the code is kept only as a digest, elevates the session under a new
// id, and then the enrolment works and sends the person a notice.
func TestEnrolmentAsksForAMailedCode(t *testing.T) {
	ctx := t.Context()
	w, file := newElevationWorld(t)
	w.signIn()
	rec := w.do("GET", "/settings/totp", nil)
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || loc != "/settings/elevate?next=%2Fsettings%2Ftotp" {
		t.Fatalf("enrolment with a fresh password: %d %q, want the elevation page", rec.Code, loc)
	}
	rec = w.do("GET", "/settings/elevate?next=%2Fsettings%2Ftotp", nil)
	if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, "Email me a code") || !strings.Contains(body, "j•••@example.com") || strings.Contains(body, "john@example.com") {
		t.Fatalf("elevation page: %d %s", rec.Code, body)
	}
	code := w.askCode(file, "/settings/totp")
	if len(code) != 8 || strings.ContainsAny(code, "0O1IL") {
		t.Errorf("code %q: want 8 characters without look-alikes", code)
	}
	rec = w.do("GET", "/settings/elevate?next=%2Fsettings%2Ftotp&notice=code-sent", nil)
	if body := rec.Body.String(); !strings.Contains(body, `name="code"`) || !strings.Contains(body, "Code sent") {
		t.Fatalf("after sending: want the code form: %s", body)
	}
	// the store holds no code: neither in a key nor in a value, in any spelling
	keys, err := w.kv.Keys(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range keys {
		v, _ := w.kv.Get(ctx, k)
		for _, s := range []string{code, strings.ToLower(code)} {
			if bytes.Contains(k, []byte(s)) || bytes.Contains(v, []byte(s)) {
				t.Fatalf("the store holds the code under %q", k)
			}
		}
		found = found || strings.HasPrefix(string(k), "elevation/code/")
	}
	if !found {
		t.Fatal("no code record in the store")
	}
	// a wrong code does nothing
	if rec := w.do("POST", "/settings/elevate", url.Values{"code": {"ABCDEFGH"}, "next": {"/settings/totp"}}); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "not right") {
		t.Fatalf("a wrong code: %d", rec.Code)
	}
	before := w.sessionID()
	// typed in small letters with a space: still the code
	typed := strings.ToLower(code[:4]) + " " + code[4:]
	rec = w.do("POST", "/settings/elevate", url.Values{"code": {typed}, "next": {"/settings/totp"}})
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || loc != "/settings/totp" {
		t.Fatalf("the right code: %d %q %s", rec.Code, loc, rec.Body.String())
	}
	if w.sessionID() == before {
		t.Error("the session id did not change when it was elevated")
	}
	if _, err := w.sessions.Get(ctx, before); err == nil {
		t.Error("the session id from before the elevation still works")
	}
	rec = w.do("GET", "/settings/totp", nil)
	m := regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("after the code: %d, want the enrolment page", rec.Code)
	}
	otpCode, _ := otptotp.GenerateCodeCustom(m[1], time.Now().Add(w.offset), otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if rec := w.do("POST", "/settings/totp", url.Values{"code": {otpCode}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("enrolment: %d %s", rec.Code, rec.Body.String())
	}
	if _, err := w.devices.Info(ctx, "john"); err != nil {
		t.Fatal("no device after the enrolment")
	}
	if data, _ := os.ReadFile(file); !strings.Contains(string(data), "A second factor was added") {
		t.Error("no notice of the new second factor was mailed")
	}
	// now john has a second factor: a session elevated by a code alone may not remove it
	// (require_second_factor, by default): the second-factor page is asked first
	rec = w.do("POST", "/settings/totp/remove", url.Values{})
	if loc := rec.Header().Get("Location"); !strings.HasPrefix(loc, "/2fa?rd=") {
		t.Fatalf("removal after a code alone: %d %q, want the second-factor page", rec.Code, loc)
	}
}

// Of submissions of one code racing, exactly one is accepted.
func TestElevationCodeIsSingleUse(t *testing.T) {
	w, file := newElevationWorld(t)
	w.signIn()
	for round := 0; round < 5; round++ {
		code := w.askCode(file, "/settings/totp")
		var ok atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if yes, err := w.p.spendCode(context.Background(), "john", w.sessionID(), code); err != nil {
					t.Error(err)
				} else if yes {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Fatalf("round %d: %d of 16 racing submissions accepted, want 1", round, ok.Load())
		}
		w.resetSendLimit()
	}
}

// A code expires after code_lifespan; a new code replaces the old; a person is mailed at most
// one code a SendInterval.
func TestElevationCodeExpiresAndIsRateLimited(t *testing.T) {
	w, file := newElevationWorld(t)
	w.p.cfg.Elevation.SendInterval = 2 * time.Second
	w.signIn()
	code := w.askCode(file, "/settings/totp")
	// asked again at once: refused, nothing mailed, and the first code still works later
	rec := w.do("POST", "/settings/elevate/send", url.Values{"next": {"/settings/totp"}})
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "moments ago") {
		t.Fatalf("a second code at once: %d, want 429", rec.Code)
	}
	if n := len(codes(t, file)); n != 1 {
		t.Fatalf("%d mails, want 1", n)
	}
	// 5 minutes and a second later the code has expired
	w.age(5*time.Minute + time.Second)
	if rec := w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {"/settings/totp"}}); rec.Code != http.StatusUnauthorized {
		t.Fatalf("an expired code: %d, want 401", rec.Code)
	}
	time.Sleep(2100 * time.Millisecond)
	old := w.askCode(file, "/settings/totp")
	time.Sleep(2100 * time.Millisecond)
	latest := w.askCode(file, "/settings/totp")
	if rec := w.do("POST", "/settings/elevate", url.Values{"code": {old}, "next": {"/settings/totp"}}); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a replaced code: %d, want 401", rec.Code)
	}
	if rec := w.do("POST", "/settings/elevate", url.Values{"code": {latest}, "next": {"/settings/totp"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("the latest code: %d, want 303", rec.Code)
	}
}

// Codes are compared by digestEqual (hmac.Equal, constant time).
func TestElevationCodeComparedInConstantTime(t *testing.T) {
	w, file := newElevationWorld(t)
	var calls atomic.Int32
	orig := digestEqual
	digestEqual = func(a, b []byte) bool { calls.Add(1); return orig(a, b) }
	t.Cleanup(func() { digestEqual = orig })
	w.signIn()
	code := w.askCode(file, "/settings/totp")
	w.do("POST", "/settings/elevate", url.Values{"code": {"WRONGCDE"}, "next": {"/settings/totp"}})
	w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {"/settings/totp"}})
	if calls.Load() != 2 {
		t.Errorf("digestEqual was called %d times for two submissions", calls.Load())
	}
}

// Five wrong codes ban the user's second factor: the right code is refused after them.
func TestWrongCodesAreRegulated(t *testing.T) {
	w, file := newElevationWorld(t)
	w.signIn()
	code := w.askCode(file, "/settings/totp")
	for i := 0; i < 5; i++ {
		if rec := w.do("POST", "/settings/elevate", url.Values{"code": {"WRONG" + string(rune('A'+i)) + "XY"}, "next": {"/settings/totp"}}); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d", i, rec.Code)
		}
	}
	rec := w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {"/settings/totp"}})
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "not right") {
		t.Fatalf("the right code after five wrong ones: %d, want 401 and the same message", rec.Code)
	}
	if rec := w.do("GET", "/settings/totp", nil); rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/settings/elevate") {
		t.Fatalf("the session was elevated while banned: %d", rec.Code)
	}
}

// Without a notifier (require_notifier left true), or without a mail address, no code can be
// sent: the page says so and points to the operator, and no enrolment happens.
func TestNoNotifierRefusesEnrolment(t *testing.T) {
	w := newPortalWorld(t)
	w.signIn()
	rec := w.do("GET", "/settings/totp", nil)
	if loc := rec.Header().Get("Location"); !strings.HasPrefix(loc, "/settings/elevate?") {
		t.Fatalf("enrolment without a notifier: %d %q", rec.Code, loc)
	}
	rec = w.do("GET", rec.Header().Get("Location"), nil)
	if body := rec.Body.String(); !strings.Contains(body, "no way to send mail") || !strings.Contains(body, "caddy oidc users totp add") || strings.Contains(body, "Email me a code") {
		t.Fatalf("elevation page without a notifier: %s", body)
	}
	if rec := w.do("POST", "/settings/elevate/send", url.Values{"next": {"/settings/totp"}}); rec.Code != http.StatusConflict {
		t.Errorf("sending without a notifier: %d, want 409", rec.Code)
	}
	if rec := w.do("POST", "/settings/totp", url.Values{"code": {"123456"}}); rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/settings/elevate") {
		t.Errorf("an enrolment posted without a notifier: %d", rec.Code)
	}

	// jane has no mail address
	w2, file := newElevationWorld(t)
	if rec := w2.do("POST", "/", url.Values{"username": {"jane"}, "password": {"password"}}); rec.Code != http.StatusSeeOther {
		t.Fatal(rec.Code)
	}
	rec = w2.do("GET", "/settings/elevate?next=/settings/webauthn", nil)
	if body := rec.Body.String(); !strings.Contains(body, "no email address") {
		t.Fatalf("elevation page without a mail address: %s", body)
	}
	w2.do("POST", "/settings/elevate/send", url.Values{"next": {"/settings/totp"}})
	if len(codes(t, file)) != 0 {
		t.Error("a code was mailed to a user without an address")
	}

	// require_notifier false changes nothing when there is a notifier: the code is asked
	w3, _ := newElevationWorld(t)
	w3.p.cfg.Elevation.PasswordWithoutNotifier = true
	w3.signIn()
	if loc := w3.do("GET", "/settings/totp", nil).Header().Get("Location"); !strings.HasPrefix(loc, "/settings/elevate?") {
		t.Errorf("require_notifier false with a notifier: %q, want the elevation page", loc)
	}
}

// The elevation goes back only to the portal's settings pages, whatever next and rd say; rd is
// carried on only when it is a URL the portal may follow.
func TestElevationReturnIsNoOpenRedirect(t *testing.T) {
	w, file := newElevationWorld(t)
	w.signIn()
	for _, c := range []struct{ next, rd, want string }{
		{"https://evil.example.org/", "", "/settings"},
		{"//evil.example.org/settings", "", "/settings"},
		{"/settings/totp/../../evil", "", "/settings"},
		{"javascript:alert(1)", "", "/settings"},
		{"/settings/totp", "https://evil.example.org/x", "/settings/totp"},
		{"/settings/totp", "https://app.example.com/x", "/settings/totp?rd=https%3A%2F%2Fapp.example.com%2Fx"},
		{"/settings/password", "", "/settings/password"},
	} {
		code := w.askCode(file, "/settings/totp")
		rec := w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {c.next}, "rd": {c.rd}})
		if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || loc != c.want {
			t.Errorf("next %q rd %q: %d %q, want %q", c.next, c.rd, rec.Code, loc, c.want)
		}
		// an elevated session sent to the page goes straight back, by the same rule
		q := url.Values{"next": {c.next}, "rd": {c.rd}}
		if loc := w.do("GET", "/settings/elevate?"+q.Encode(), nil).Header().Get("Location"); loc != c.want {
			t.Errorf("elevated, GET next %q rd %q: %q, want %q", c.next, c.rd, loc, c.want)
		}
		w.signIn() // a new, unelevated session
		w.resetSendLimit()
	}
}

// A user with a second factor: used within elevation_lifespan it elevates (skip_second_factor);
// stale, the second-factor page is asked (require_second_factor); with require_second_factor
// false a code alone elevates; with skip_second_factor false a code is asked even after it.
func TestSecondFactorElevates(t *testing.T) {
	ctx := t.Context()
	w, file := newElevationWorld(t)
	w.signIn()
	code := w.askCode(file, "/settings/totp")
	w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {"/settings/totp"}})
	m := regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`).FindStringSubmatch(w.do("GET", "/settings/totp", nil).Body.String())
	if m == nil {
		t.Fatal("no enrolment page")
	}
	gen := func(at time.Duration) string {
		c, _ := otptotp.GenerateCodeCustom(m[1], time.Now().Add(w.offset+at), otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		return c
	}
	w.do("POST", "/settings/totp", url.Values{"code": {gen(0)}})
	if rec := w.do("POST", "/2fa/totp", url.Values{"code": {gen(30 * time.Second)}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("second factor: %d", rec.Code)
	}
	if rec := w.do("GET", "/settings/password", nil); rec.Code != http.StatusOK {
		t.Fatalf("a recent second factor: %d %q, want the password form", rec.Code, rec.Header().Get("Location"))
	}
	// skip_second_factor false: a recent second factor still needs a code (a session that
	// has not given one: this browser's was elevated by the code above)
	w.p.cfg.Elevation.CodeAfterSecondFactor = true
	u, _ := w.users.Lookup(ctx, "john")
	now := w.p.cfg.Now()
	fresh := &session.Session{User: "john", Level: session.TwoFactor, PasswordAt: now, SecondFactorAt: now}
	if got := w.p.lacks(ctx, fresh, u); got != needCode {
		t.Errorf("skip_second_factor false, a recent second factor: lacks %d, want needCode", got)
	}
	fresh.ElevatedAt = now
	if got := w.p.lacks(ctx, fresh, u); got != elevated {
		t.Errorf("skip_second_factor false, a recent second factor and a code: lacks %d, want elevated", got)
	}
	w.p.cfg.Elevation.CodeAfterSecondFactor = false
	w.age(11 * time.Minute)
	if loc := w.do("POST", "/settings/totp/remove", url.Values{}).Header().Get("Location"); !strings.HasPrefix(loc, "/2fa?rd=") {
		t.Fatalf("a stale second factor: %q, want the second-factor page", loc)
	}
	w.p.cfg.Elevation.CodeAloneWithSecondFactor = true
	rec := w.do("POST", "/settings/totp/remove", url.Values{})
	if loc := rec.Header().Get("Location"); !strings.HasPrefix(loc, "/settings/elevate?") {
		t.Fatalf("require_second_factor false: %q, want the elevation page", loc)
	}
	if body := w.do("GET", rec.Header().Get("Location"), nil).Body.String(); !strings.Contains(body, "Use your second factor instead") {
		t.Error("the elevation page does not offer the second factor")
	}
	w.resetSendLimit()
	code = w.askCode(file, "/settings")
	w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {"/settings"}})
	if rec := w.do("POST", "/settings/totp/remove", url.Values{}); rec.Header().Get("Location") != "/settings?notice=totp-removed" {
		t.Fatalf("removal after a code, require_second_factor false: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if _, err := w.devices.Info(ctx, "john"); err == nil {
		t.Fatal("the device is still there")
	}

}

// The password change: elevation first; the current password checked; the new one's length
// bounded; then the directory's password changes, the other sessions end (and their tokens:
// OnSignOut), this one moves to a new id, and a notice is mailed.
func TestPasswordChange(t *testing.T) {
	ctx := t.Context()
	w, file := newElevationWorld(t)
	var ended, tokensOf []string
	w.p.cfg.OnSignOut = func(_ context.Context, user, ref string) { ended = append(ended, user+" "+ref) }
	w.p.cfg.EndUserTokens = func(_ context.Context, user string) error { tokensOf = append(tokensOf, user); return nil }
	other, otherSess, err := w.sessions.Create(ctx, "john", session.OneFactor, false)
	if err != nil {
		t.Fatal(err)
	}
	jane, _, _ := w.sessions.Create(ctx, "jane", session.OneFactor, false)
	w.signIn()
	if loc := w.do("GET", "/settings/password", nil).Header().Get("Location"); loc != "/settings/elevate?next=%2Fsettings%2Fpassword" {
		t.Fatalf("password page without elevation: %q", loc)
	}
	if loc := w.do("POST", "/settings/password", url.Values{"current": {"password"}, "new": {"a new password"}, "again": {"a new password"}}).Header().Get("Location"); !strings.HasPrefix(loc, "/settings/elevate") {
		t.Fatalf("password change without elevation: %q", loc)
	}
	code := w.askCode(file, "/settings/password")
	if loc := w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {"/settings/password"}}).Header().Get("Location"); loc != "/settings/password" {
		t.Fatalf("after the code: %q", loc)
	}
	if body := w.do("GET", "/settings/password", nil).Body.String(); !strings.Contains(body, `autocomplete="new-password"`) {
		t.Fatal("no password form")
	}
	for _, c := range []struct {
		current, new, again string
		status              int
		msg                 string
	}{
		{"wrong", "a new password", "a new password", 401, "current password is not right"},
		{"password", "short", "short", 400, "too short"},
		{"password", "a new password", "another password", 400, "not the same"},
		{"password", strings.Repeat("x", 1025), strings.Repeat("x", 1025), 400, "too long"},
		{"password", "password", "password", 400, "same as the current"},
		{"", "a new password", "a new password", 400, "Enter your current password"},
	} {
		rec := w.do("POST", "/settings/password", url.Values{"current": {c.current}, "new": {c.new}, "again": {c.again}})
		if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.msg) {
			t.Errorf("%q %q %q: %d, want %d with %q", c.current, c.new, c.again, rec.Code, c.status, c.msg)
		}
	}
	before := w.sessionID()
	rec := w.do("POST", "/settings/password", url.Values{"current": {"password"}, "new": {"correct horse battery"}, "again": {"correct horse battery"}})
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || loc != "/settings?notice=password-changed" {
		t.Fatalf("password change: %d %q %s", rec.Code, loc, rec.Body.String())
	}
	u, _ := w.users.Lookup(ctx, "john")
	if ok, _ := w.users.CheckPassword(ctx, u, "correct horse battery"); !ok {
		t.Error("the new password does not work")
	}
	if ok, _ := w.users.CheckPassword(ctx, u, "password"); ok {
		t.Error("the old password still works")
	}
	if w.sessionID() == before {
		t.Error("the session id did not change")
	}
	if _, err := w.sessions.Get(ctx, w.sessionID()); err != nil {
		t.Errorf("this browser was signed out: %v", err)
	}
	if _, err := w.sessions.Get(ctx, other); err == nil {
		t.Error("john's other session survived the password change")
	}
	if _, err := w.sessions.Get(ctx, jane); err != nil {
		t.Error("jane's session ended")
	}
	if len(ended) != 1 || ended[0] != "john "+otherSess.Ref() {
		t.Errorf("OnSignOut was told %q, want the other session", ended)
	}
	if len(tokensOf) != 1 || tokensOf[0] != "john" {
		t.Errorf("EndUserTokens was told %q, want john once", tokensOf)
	}
	if data, _ := os.ReadFile(file); !strings.Contains(string(data), "Your password was changed") {
		t.Error("no notice mailed")
	}
	if body := w.do("GET", "/settings?notice=password-changed", nil).Body.String(); !strings.Contains(body, "Your password is changed") {
		t.Error("no notice on the account page")
	}
}

// downOnSet is a users file whose SetPassword fails as a directory that is down.
type downOnSet struct{ *users.File }

func (downOnSet) SetPassword(context.Context, *users.User, string) error {
	return fmt.Errorf("ldap: %w", users.ErrUnavailable)
}

// A directory that cannot be reached while a password is set gives the directory page, 503.
func TestPasswordChangeDirectoryDown(t *testing.T) {
	w, file := newElevationWorld(t)
	w.signIn()
	code := w.askCode(file, "/settings/password")
	w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {"/settings/password"}})
	w.p.cfg.Users = downOnSet{w.users}
	rec := w.do("POST", "/settings/password", url.Values{"current": {"password"}, "new": {"a new password"}, "again": {"a new password"}})
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "directory of users cannot be reached") {
		t.Fatalf("directory down: %d %s", rec.Code, rec.Body.String())
	}
}

// At most SendsPerHour codes are mailed to a person in a clock hour, however far apart.
func TestElevationCodesAreCappedPerHour(t *testing.T) {
	w, file := newElevationWorld(t)
	w.p.cfg.Elevation.SendInterval = time.Millisecond
	w.p.cfg.Elevation.SendsPerHour = 3
	w.signIn()
	for i := range 3 {
		w.askCode(file, "/settings/totp")
		if n := len(codes(t, file)); n != i+1 {
			t.Fatalf("after %d asks: %d mails", i+1, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec := w.do("POST", "/settings/elevate/send", url.Values{"next": {"/settings/totp"}})
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "this hour") {
		t.Fatalf("a fourth code within the hour: %d, want 429", rec.Code)
	}
	if n := len(codes(t, file)); n != 3 {
		t.Fatalf("%d mails, want 3", n)
	}
}
