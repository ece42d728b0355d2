package portal

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	otptotp "github.com/pquerna/otp/totp"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// johnDigest is an argon2id digest of "password".
const johnDigest = "$argon2id$v=19$m=65536,t=3,p=4$ZfApOXlumEkguxVuCeSuVA$2uw6ebDvdxh0mR3mKzllnyWrWuGLLrT5pCOdOySbvsI"

// portalWorld is a portal on real parts (Badger, sessions, TOTP devices, the users file parser)
// with a password checker that knows john's password, and a browser's cookies.
type portalWorld struct {
	t        *testing.T
	offset   time.Duration // how far the clock is ahead of time.Now
	p        *Portal
	sessions *session.Store
	devices  *totp.Devices
	cookies  map[string]*http.Cookie
	kv       *store.Badger
	users    *users.File
}

func newPortalWorld(t *testing.T) *portalWorld {
	kv, err := store.Open(t.TempDir(), store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	usersPath := filepath.Join(t.TempDir(), "users.yml")
	if err := os.WriteFile(usersPath, []byte("users:\n  john:\n    displayname: John Doe\n    email: john@example.com\n    password: \""+johnDigest+"\"\n"+
		"  jane:\n    displayname: Jane Doe\n    password: \""+johnDigest+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := users.Open(usersPath)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte(strings.Repeat("k", 32))
	sealer, err := totp.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	devices, err := totp.NewDevices(totp.Config{}, kv, sealer)
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := url.Parse("https://auth.example.com")
	w := &portalWorld{t: t, devices: devices, cookies: map[string]*http.Cookie{}, kv: kv, users: db}
	now := func() time.Time { return time.Now().Add(w.offset) }
	w.sessions = session.New(session.Config{Inactivity: time.Hour}, kv).WithClock(now)
	w.p, err = New(Config{
		Issuer: issuer, CookieName: "portcullis_session", CookieDomain: "example.com", SameSite: http.SameSiteLaxMode,
		Secure: true, RememberMe: time.Hour, Key: key, Users: db,
		CheckPassword: func(_ context.Context, user, password, _ string) error {
			if user == "john" && password == "password" {
				return nil
			}
			return ErrBadCredentials
		},
		Sessions: w.sessions, TOTP: devices, Now: now, Store: kv,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// do sends a request as the browser (its cookies, and a CSRF token from the last page for a
// POST) and keeps the cookies it gets.
func (w *portalWorld) do(method, path string, form url.Values) *httptest.ResponseRecorder {
	w.t.Helper()
	if method == "POST" && form.Get("csrf") == "" {
		if w.cookies[w.p.csrfCookie()] == nil {
			w.do("GET", "/logout", nil) // any page gives the browser its CSRF cookie
		}
		form.Set("csrf", w.p.csrfMAC(w.cookies[w.p.csrfCookie()].Value))
	}
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, "https://auth.example.com"+path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, "https://auth.example.com"+path, nil)
	}
	return w.send(r, path)
}

// send serves r (for path) with the browser's cookies, and keeps the cookies it gets.
func (w *portalWorld) send(r *http.Request, path string) *httptest.ResponseRecorder {
	for _, c := range w.cookies {
		r.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	rel, _, _ := strings.Cut(path, "?")
	w.p.ServeHTTP(rec, r, rel)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(w.cookies, c.Name)
		} else {
			w.cookies[c.Name] = c
		}
	}
	return rec
}

func (w *portalWorld) signIn() {
	w.t.Helper()
	if rec := w.do("POST", "/", url.Values{"username": {"john"}, "password": {"password"}}); rec.Code != http.StatusSeeOther {
		w.t.Fatalf("sign-in: %d %s", rec.Code, rec.Body.String())
	}
}

// age moves the clock forward by d.
func (w *portalWorld) age(d time.Duration) { w.offset += d }

// Without a notifier and with require_notifier false (the rule from before elevated sessions),
// changing devices needs the password within five minutes, and once the user has a second
// factor, that factor within five minutes too.
func TestDeviceChangesNeedFreshFactors(t *testing.T) {
	ctx := t.Context()
	w := newPortalWorld(t)
	w.p.cfg.Elevation.PasswordWithoutNotifier = true
	w.signIn()

	// a fresh password: the enrolment page shows a secret
	rec := w.do("GET", "/settings/totp", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `id="totp-secret"`) {
		t.Fatalf("fresh password: %d, want the enrolment page", rec.Code)
	}
	// six minutes later the page asks for the password again, and takes it
	w.age(6 * time.Minute)
	rec = w.do("GET", "/settings/totp", nil)
	if !strings.Contains(rec.Body.String(), `action="/settings/confirm"`) {
		t.Fatalf("stale password: %d, want the password confirmation", rec.Code)
	}
	if rec := w.do("POST", "/settings/confirm", url.Values{"password": {"wrong"}, "next": {"/settings/totp"}}); rec.Code != http.StatusUnauthorized {
		t.Errorf("a wrong confirmation: %d, want 401", rec.Code)
	}
	if rec := w.do("POST", "/settings/confirm", url.Values{"password": {"password"}, "next": {"https://evil.example.org/"}}); rec.Header().Get("Location") != "/settings" {
		t.Errorf("confirmation with an outside next: Location %q, want /settings", rec.Header().Get("Location"))
	}
	rec = w.do("GET", "/settings/totp", nil)
	m := regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("after confirming: %d, want the enrolment page", rec.Code)
	}
	code, _ := otptotp.GenerateCodeCustom(m[1], time.Now().Add(w.offset), otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if rec := w.do("POST", "/settings/totp", url.Values{"code": {code}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("enrolment: %d %s", rec.Code, rec.Body.String())
	}

	// now the user has a second factor: a one-factor session may not remove it, even with a
	// fresh password; it is sent to the second-factor page first
	rec = w.do("POST", "/settings/totp/remove", url.Values{})
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/2fa?rd=") {
		t.Fatalf("removal at one factor: %d %q, want the second-factor page", rec.Code, loc)
	}
	if _, err := w.devices.Info(ctx, "john"); err != nil {
		t.Fatal("the device was removed without the second factor")
	}
	next, _ := otptotp.GenerateCodeCustom(m[1], time.Now().Add(w.offset+30*time.Second), otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	before := w.cookies["portcullis_session"].Value
	if rec := w.do("POST", "/2fa/totp", url.Values{"code": {next}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("second factor: %d %s", rec.Code, rec.Body.String())
	}
	if w.cookies["portcullis_session"].Value == before {
		t.Error("the session id did not change at the second factor")
	}
	// a stale second factor is not enough either
	w.age(6 * time.Minute)
	if rec := w.do("POST", "/settings/totp/remove", url.Values{}); !strings.Contains(rec.Body.String(), `action="/settings/confirm"`) && !strings.HasPrefix(rec.Header().Get("Location"), "/2fa") {
		t.Fatalf("removal with stale factors: %d, want a confirmation", rec.Code)
	}
	if _, err := w.devices.Info(ctx, "john"); err != nil {
		t.Fatal("the device was removed with stale factors")
	}
}

// A sign-in ends a session id planted in the browser before it, and what that session
// authorized (OnSignOut is told, as at a sign-out).
func TestSignInEndsAPlantedSession(t *testing.T) {
	ctx := t.Context()
	w := newPortalWorld(t)
	var ended []string
	w.p.cfg.OnSignOut = func(_ context.Context, user, ref string) { ended = append(ended, user+" "+ref) }
	w.signIn()
	planted := w.cookies["portcullis_session"].Value
	before, err := w.sessions.Get(ctx, planted)
	if err != nil {
		t.Fatal(err)
	}
	w.signIn()
	if w.cookies["portcullis_session"].Value == planted {
		t.Fatal("a second sign-in kept the session id")
	}
	if _, err := w.sessions.Get(ctx, planted); err == nil {
		t.Error("the session id from before the sign-in still works")
	}
	if len(ended) != 1 || ended[0] != "john "+before.Ref() {
		t.Errorf("OnSignOut was told %q, want the replaced session's reference", ended)
	}
}

// The portal reads the session cookies by the gate's rule (session.Pick): a cookie of the name
// that speaks for no one never shadows a live one, in whatever order; the live sessions of two
// people are a 400 on the portal's pages, as at the gate, and no session for the provider's
// flows (Current), so the authorization endpoint issues nothing for either of them.
func TestSessionCookiesReadAsAtTheGate(t *testing.T) {
	ctx := t.Context()
	w := newPortalWorld(t)
	john, _, err := w.sessions.Create(ctx, "john", session.OneFactor, false)
	if err != nil {
		t.Fatal(err)
	}
	john2, _, _ := w.sessions.Create(ctx, "john", session.OneFactor, false)
	jane, _, _ := w.sessions.Create(ctx, "jane", session.OneFactor, false)
	const name = "portcullis_session="
	get := func(cookie string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "https://auth.example.com/settings", nil)
		r.Header.Set("Cookie", cookie)
		rec := httptest.NewRecorder()
		w.p.ServeHTTP(rec, r, PathSettings)
		return rec
	}
	current := func(cookie string) string {
		r := httptest.NewRequest("GET", "https://auth.example.com/api/oidc/authorization", nil)
		r.Header.Set("Cookie", cookie)
		if _, sess, _ := w.p.Current(r); sess != nil {
			return sess.User
		}
		return ""
	}
	for _, c := range []struct {
		cookie string
		status int
		user   string
	}{
		{name + "junk; " + name + john, 200, "john"},
		{name + strings.Repeat("A", 43) + "; theme=dark; " + name + john, 200, "john"},
		{name + john + "; " + name + "junk", 200, "john"},
		{name + john + "; " + name + john2, 200, "john"},
		{name + jane + "; " + name + john, 400, ""},
		{name + john + "; " + name + jane, 400, ""},
		{name + "v; " + name + "w; " + name + "x; " + name + "y; " + name + john, 400, ""},
		{name + "junk", 303, ""},
	} {
		rec := get(c.cookie)
		if rec.Code != c.status || (c.user == "john" && !strings.Contains(rec.Body.String(), "John Doe")) {
			t.Errorf("%q: the settings page answered %d, want %d (signed in as %q)", c.cookie, rec.Code, c.status, c.user)
		}
		if got := current(c.cookie); got != c.user {
			t.Errorf("%q: Current is %q, want %q", c.cookie, got, c.user)
		}
	}
	// a sign-out ends the live session behind a junk cookie
	r := httptest.NewRequest("GET", "https://auth.example.com/", nil)
	r.Header.Set("Cookie", name+"junk; "+name+john)
	if err := w.p.EndSession(httptest.NewRecorder(), r); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sessions.Get(ctx, john); err == nil {
		t.Error("a sign-out left the live session behind a junk cookie")
	}
}
