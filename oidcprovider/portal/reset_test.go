package portal

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	otptotp "github.com/pquerna/otp/totp"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// recordingNotifier hands every message to the real filesystem notifier (so it is rendered and
// delivered as in production) and keeps a copy for the test to read.
type recordingNotifier struct {
	mu   sync.Mutex
	sent []sentMessage
	next notify.Notifier
}

type sentMessage struct {
	to  notify.Recipient
	msg notify.Message
}

func (n *recordingNotifier) Send(ctx context.Context, to notify.Recipient, msg notify.Message) error {
	n.mu.Lock()
	n.sent = append(n.sent, sentMessage{to, msg})
	n.mu.Unlock()
	return n.next.Send(ctx, to, msg)
}

func (n *recordingNotifier) Check(ctx context.Context) error { return n.next.Check(ctx) }

func (n *recordingNotifier) messages() []sentMessage {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]sentMessage(nil), n.sent...)
}

// resetWorld is a portal with the password reset on real parts: Badger, the users file (its
// editor writes the new password), sessions, TOTP devices, the regulator and the filesystem
// notifier.
type resetWorld struct {
	*portalWorld
	kv        *store.Badger
	mail      *recordingNotifier
	mailFile  string
	usersPath string
	users     *users.File
	ended     []string // OnSignOut: "user ref"
	ip        string   // the client address of the next requests
}

const resetUsers = `users:
  john:
    displayname: John Doe
    password: "` + johnDigest + `"
    email: [john@example.com, j.doe@example.org]
  jane:
    displayname: Jane Doe
    password: "` + johnDigest + `"
    email: jane@example.com
  dis:
    displayname: Disabled
    password: "` + johnDigest + `"
    email: dis@example.com
    disabled: true
  nomail:
    displayname: No Mail
    password: "` + johnDigest + `"
`

func newResetWorld(t *testing.T, reset *PasswordReset) *resetWorld {
	t.Helper()
	kv, err := store.Open(t.TempDir(), store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	w := &resetWorld{kv: kv, ip: "192.0.2.10", usersPath: filepath.Join(t.TempDir(), "users.yml"), mailFile: filepath.Join(t.TempDir(), "notification.txt")}
	if err := os.WriteFile(w.usersPath, []byte(resetUsers), 0o600); err != nil {
		t.Fatal(err)
	}
	if w.users, err = users.Open(w.usersPath); err != nil {
		t.Fatal(err)
	}
	fs, err := notify.New(notify.Config{FileSystem: &notify.FileSystemConfig{Filename: w.mailFile}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	w.mail = &recordingNotifier{next: fs}
	key := []byte(strings.Repeat("k", 32))
	sealer, _ := totp.NewSealer(key)
	devices, err := totp.NewDevices(totp.Config{}, kv, sealer)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := regulation.New(t.Context(), regulation.Config{MaxRetries: 3}, kv)
	if err != nil {
		t.Fatal(err)
	}
	if reset != nil && reset.CustomURL == "" {
		reset.Store = kv
	}
	issuer, _ := url.Parse("https://auth.example.com")
	pw := &portalWorld{t: t, devices: devices, cookies: map[string]*http.Cookie{}}
	w.portalWorld = pw
	now := func() time.Time { return time.Now().Add(pw.offset) }
	pw.sessions = session.New(session.Config{Inactivity: time.Hour}, kv).WithClock(now)
	pw.p, err = New(Config{
		Issuer: issuer, CookieName: "portcullis_session", CookieDomain: "example.com", SameSite: http.SameSiteLaxMode,
		Secure: true, RememberMe: time.Hour, Key: key, Users: w.users,
		CheckPassword: func(context.Context, string, string, string) error { return ErrBadCredentials },
		ClientIP: func(r *http.Request) string {
			h, _, _ := net.SplitHostPort(r.RemoteAddr)
			return h
		},
		Sessions: pw.sessions, TOTP: devices, Regulator: reg, Now: now,
		Notifier: w.mail, PasswordReset: reset,
		OnSignOut: func(_ context.Context, user, ref string) { w.ended = append(w.ended, user+" "+ref) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// request is a request as the browser sends it (its cookies; a CSRF token for a POST).
func (w *resetWorld) request(method, path string, form url.Values) *http.Request {
	w.t.Helper()
	if method == "POST" && form.Get("csrf") == "" {
		if w.cookies[w.p.csrfCookie()] == nil {
			w.do("GET", "/logout", nil)
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
	r.RemoteAddr = w.ip + ":4711"
	for _, c := range w.cookies {
		r.AddCookie(c)
	}
	return r
}

// send serves r and keeps the cookies of the answer.
func (w *resetWorld) send(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	rel, _, _ := strings.Cut(r.URL.Path, "?")
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

func (w *resetWorld) call(method, path string, form url.Values) *httptest.ResponseRecorder {
	w.t.Helper()
	return w.send(w.request(method, path, form))
}

// ask asks for a link for name and waits until the background work is done.
func (w *resetWorld) ask(name string) *httptest.ResponseRecorder {
	w.t.Helper()
	rec := w.call("POST", PathResetPassword, url.Values{"username": {name}})
	w.p.reset.wg.Wait()
	return rec
}

// lastLink is the link of the last reset mail, and its token.
func (w *resetWorld) lastLink() (link, token string) {
	w.t.Helper()
	msgs := w.mail.messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].msg.Kind == notify.KindResetLink {
			u, err := url.Parse(msgs[i].msg.Link)
			if err != nil {
				w.t.Fatal(err)
			}
			return msgs[i].msg.Link, u.Query().Get("token")
		}
	}
	w.t.Fatal("no reset mail was sent")
	return "", ""
}

func (w *resetWorld) confirmPath(token string) string {
	return PathResetConfirm + "?token=" + url.QueryEscape(token)
}

func (w *resetWorld) setPassword(token, pw, again string, more url.Values) *httptest.ResponseRecorder {
	w.t.Helper()
	form := url.Values{"token": {token}, "password": {pw}, "password_again": {again}}
	for k, v := range more {
		form[k] = v
	}
	return w.call("POST", PathResetConfirm, form)
}

// passwordIs reports whether user's password in the file on disk is pw.
func (w *resetWorld) passwordIs(user, pw string) bool {
	w.t.Helper()
	f, err := users.Open(w.usersPath)
	if err != nil {
		w.t.Fatal(err)
	}
	u, err := f.Lookup(context.Background(), user)
	if err != nil {
		w.t.Fatal(err)
	}
	ok, _ := f.CheckPassword(context.Background(), u, pw)
	return ok
}

// The whole way: a link by mail, built from the issuer; its page shown twice without using it;
// the form refuses bad passwords with clear messages; the new password is written to the users
// file; every session of the user ends with what it authorized; a notice is mailed; the link
// works once. The store never holds the token, only its digest.
func TestPasswordResetByMail(t *testing.T) {
	ctx := t.Context()
	w := newResetWorld(t, &PasswordReset{})
	// two sessions of john's on other browsers
	_, s1, _ := w.sessions.Create(ctx, "john", session.OneFactor, false)
	_, s2, _ := w.sessions.Create(ctx, "john", session.TwoFactor, true)
	_, jane, _ := w.sessions.Create(ctx, "jane", session.OneFactor, false)

	rec := w.call("GET", PathSignIn, nil)
	if !strings.Contains(rec.Body.String(), `href="/reset-password">Forgot password?</a>`) {
		t.Fatalf("the sign-in page has no Forgot password? link:\n%s", rec.Body.String())
	}
	rec = w.call("GET", PathResetPassword, nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Username or email") {
		t.Fatalf("request page: %d", rec.Code)
	}
	if rec := w.call("POST", PathResetPassword, url.Values{"username": {"  "}}); rec.Code != 400 || !strings.Contains(rec.Body.String(), "Enter your username or mail address.") {
		t.Errorf("an empty name: %d", rec.Code)
	}
	rec = w.ask("john")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "If an account matches what you entered, we sent a link to its mail address.") {
		t.Fatalf("request: %d %s", rec.Code, rec.Body.String())
	}
	msgs := w.mail.messages()
	if len(msgs) != 1 || msgs[0].to.Address != "john@example.com" || msgs[0].to.Name != "John Doe" || msgs[0].msg.Lifespan != DefaultResetLifespan || msgs[0].msg.RemoteIP != "192.0.2.10" {
		t.Fatalf("mails: %+v", msgs)
	}
	link, token := w.lastLink()
	if !strings.HasPrefix(link, "https://auth.example.com/reset-password/confirm?token=") || len(token) != 43 {
		t.Fatalf("link %q", link)
	}
	if data, _ := os.ReadFile(w.mailFile); !bytes.Contains(data, []byte(link)) {
		t.Error("the filesystem notifier did not deliver the link")
	}
	// the store holds the digest, never the token
	keys, err := w.kv.Keys(ctx, []byte("pwreset/"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range keys {
		v, _ := w.kv.Get(ctx, k)
		if bytes.Contains(k, []byte(token)) || bytes.Contains(v, []byte(token)) {
			t.Errorf("the store holds the token under %q", k)
		}
		found = found || string(k) == "pwreset/t/"+tokenDigest(token)
	}
	if !found {
		t.Errorf("no record under the token's digest among %q", keys)
	}

	// a mail scanner opens the link first: the page does not use it up
	for i := range 2 {
		rec := w.call("GET", w.confirmPath(token), nil)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `name="password_again"`) || strings.Contains(rec.Body.String(), `name="code"`) {
			t.Fatalf("opening the link (%d): %d", i, rec.Code)
		}
		if rec.Header().Get("Referrer-Policy") != "strict-origin" {
			t.Error("the link's page may send its URL as a Referer")
		}
	}
	for _, c := range []struct{ pw, again, want string }{
		{"", "", "Enter the new password twice."},
		{"new-password-1", "new-password-2", "The two passwords are not the same."},
		{"short", "short", "too short: use at least 8 characters"},
		{strings.Repeat("x", 1025), strings.Repeat("x", 1025), "too long: use at most 1024 bytes"},
	} {
		rec := w.setPassword(token, c.pw, c.again, nil)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("passwords %.10q/%.10q: %d, want 400 saying %q", c.pw, c.again, rec.Code, c.want)
		}
	}
	if !w.passwordIs("john", "password") {
		t.Fatal("a refused form changed the password")
	}
	rec = w.setPassword(token, "a new password", "a new password", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Every session of your account was signed out") || !strings.Contains(rec.Body.String(), `href="/"`) {
		t.Fatalf("setting the password: %d %s", rec.Code, rec.Body.String())
	}
	if !w.passwordIs("john", "a new password") || w.passwordIs("john", "password") {
		t.Error("the users file does not hold the new password")
	}
	if data, _ := os.ReadFile(w.usersPath); !bytes.Contains(data, []byte("displayname: John Doe")) || !bytes.Contains(data, []byte("email: [john@example.com, j.doe@example.org]")) {
		t.Errorf("the editor did not keep the file's text:\n%s", data)
	}
	if len(w.ended) != 2 || !strings.Contains(strings.Join(w.ended, ","), "john "+s1.Ref()) || !strings.Contains(strings.Join(w.ended, ","), "john "+s2.Ref()) {
		t.Errorf("OnSignOut was told %q, want john's two sessions", w.ended)
	}
	if n, _ := w.kv.Keys(ctx, []byte("pwreset/t/")); len(n) != 0 {
		t.Error("the used link is still stored")
	}
	_ = jane
	w.p.reset.wg.Wait()
	msgs = w.mail.messages()
	if last := msgs[len(msgs)-1]; last.msg.Kind != notify.KindEvent || last.to.Address != "john@example.com" || !strings.Contains(last.msg.Event, "password was changed") {
		t.Errorf("the last mail is %+v, want the notice of the change", last)
	}
	// used: the link no longer works, and says what to do
	for _, rec := range []*httptest.ResponseRecorder{w.call("GET", w.confirmPath(token), nil), w.setPassword(token, "another password", "another password", nil)} {
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "This link does not work") || !strings.Contains(rec.Body.String(), `action="/reset-password"`) {
			t.Errorf("a used link: %d", rec.Code)
		}
	}
	if !w.passwordIs("john", "a new password") {
		t.Error("a used link changed the password again")
	}
}

// Jane's sessions are not john's: only the user's own sessions end.
func TestPasswordResetEndsOnlyTheUsersSessions(t *testing.T) {
	ctx := t.Context()
	w := newResetWorld(t, &PasswordReset{})
	johnID, _, _ := w.sessions.Create(ctx, "john", session.OneFactor, false)
	janeID, _, _ := w.sessions.Create(ctx, "jane", session.OneFactor, false)
	w.ask("john@example.com") // by mail address
	_, token := w.lastLink()
	if rec := w.setPassword(token, "a new password", "a new password", nil); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	if _, err := w.sessions.Get(ctx, johnID); err == nil {
		t.Error("john's session survived the reset")
	}
	if _, err := w.sessions.Get(ctx, janeID); err != nil {
		t.Errorf("jane's session ended with john's reset: %v", err)
	}
}

// The link is built from the issuer, whatever Host and X-Forwarded-Host the request carries.
func TestPasswordResetLinkFromTheIssuer(t *testing.T) {
	w := newResetWorld(t, &PasswordReset{})
	r := w.request("POST", PathResetPassword, url.Values{"username": {"john"}})
	r.Host = "evil.example.org"
	r.Header.Set("X-Forwarded-Host", "evil.example.org")
	r.Header.Set("Forwarded", "host=evil.example.org")
	w.send(r)
	w.p.reset.wg.Wait()
	if link, _ := w.lastLink(); !strings.HasPrefix(link, "https://auth.example.com/reset-password/confirm?token=") {
		t.Errorf("link %q is not on the issuer", link)
	}
}

// Unknown, disabled and mail-less users, and a second request within a minute, get the same
// answer as a known user, and no mail.
func TestPasswordResetSameAnswerForEveryone(t *testing.T) {
	w := newResetWorld(t, &PasswordReset{})
	strip := regexp.MustCompile(`value="[A-Za-z0-9_-]{43}"`) // the CSRF token
	want := w.ask("john")
	wantBody := strip.ReplaceAllString(want.Body.String(), "")
	if n := len(w.mail.messages()); n != 1 {
		t.Fatalf("%d mails for john, want 1", n)
	}
	for _, name := range []string{"nobody", "dis", "nomail", "JOHN", "j.doe@example.org", "nobody@example.com", strings.Repeat("n", 300)} {
		rec := w.ask(name)
		if rec.Code != want.Code || strip.ReplaceAllString(rec.Body.String(), "") != wantBody {
			t.Errorf("%.20q: %d, a different answer than john's", name, rec.Code)
		}
	}
	if msgs := w.mail.messages(); len(msgs) != 1 {
		t.Errorf("%d mails, want only john's first: %+v", len(msgs), msgs)
	}
}

// A newer link voids the older one; a link ends at its lifespan; a password changed another way
// voids it too.
func TestPasswordResetLinkLife(t *testing.T) {
	ctx := t.Context()
	w := newResetWorld(t, &PasswordReset{Lifespan: time.Second})
	w.ask("john")
	_, first := w.lastLink()
	if rec := w.call("GET", w.confirmPath(first), nil); rec.Code != 200 {
		t.Fatalf("a fresh link: %d", rec.Code)
	}
	time.Sleep(2100 * time.Millisecond)
	if rec := w.call("GET", w.confirmPath(first), nil); rec.Code != 400 {
		t.Errorf("an expired link: %d, want 400", rec.Code)
	}

	w = newResetWorld(t, &PasswordReset{})
	w.ask("john")
	_, first = w.lastLink()
	_ = w.kv.Delete(ctx, []byte(resetMailPrefix+"john")) // as if a minute had passed
	w.ask("john")
	_, second := w.lastLink()
	if first == second {
		t.Fatal("the same token twice")
	}
	if rec := w.setPassword(first, "a new password", "a new password", nil); rec.Code != 400 {
		t.Errorf("the older link after a newer one: %d, want 400", rec.Code)
	}
	if rec := w.call("GET", w.confirmPath(second), nil); rec.Code != 200 {
		t.Errorf("the newer link: %d, want 200", rec.Code)
	}
	// the password changes another way (the operator's CLI, the account page)
	u, _ := w.users.Lookup(ctx, "john")
	if err := w.users.SetPassword(ctx, u, "changed elsewhere"); err != nil {
		t.Fatal(err)
	}
	if rec := w.call("GET", w.confirmPath(second), nil); rec.Code != 400 {
		t.Errorf("a link from before a password change: %d, want 400", rec.Code)
	}
	for _, bad := range []string{"", "x", strings.Repeat("A", 43), first + "A", "../../etc"} {
		if rec := w.call("GET", w.confirmPath(bad), nil); rec.Code != 400 {
			t.Errorf("token %q: %d, want 400", bad, rec.Code)
		}
	}
}

// Two submissions of one link at once: one sets the password, the other is refused.
func TestPasswordResetLinkIsSingleUse(t *testing.T) {
	w := newResetWorld(t, &PasswordReset{})
	w.ask("john")
	_, token := w.lastLink()
	w.call("GET", w.confirmPath(token), nil) // the CSRF cookie
	var reqs []*http.Request
	for _, pw := range []string{"first password", "second password"} {
		reqs = append(reqs, w.request("POST", PathResetConfirm, url.Values{"token": {token}, "password": {pw}, "password_again": {pw}}))
	}
	codes := make([]int, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			w.p.ServeHTTP(rec, r, PathResetConfirm)
			codes[i] = rec.Code
		})
	}
	wg.Wait()
	if !((codes[0] == 200 && codes[1] == 400) || (codes[0] == 400 && codes[1] == 200)) {
		t.Fatalf("two submissions answered %v, want one 200 and one 400", codes)
	}
	first, second := w.passwordIs("john", "first password"), w.passwordIs("john", "second password")
	if first == second || first != (codes[0] == 200) {
		t.Errorf("the password is the first's: %v, the second's: %v (answers %v)", first, second, codes)
	}
}

// A user with an authenticator app proves it on the link's form: a wrong code is refused and
// regulated (three wrong codes ban the pair, and then even the right code is refused there);
// the right code from another address sets the password.
func TestPasswordResetNeedsTheSecondFactor(t *testing.T) {
	ctx := t.Context()
	w := newResetWorld(t, &PasswordReset{})
	e, err := w.devices.StartEnrolment(ctx, "john", "k")
	if err != nil {
		t.Fatal(err)
	}
	code := func(at time.Time) string {
		c, _ := otptotp.GenerateCodeCustom(e.Secret, at, otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		return c
	}
	if err := w.devices.FinishEnrolment(ctx, "john", "k", code(time.Now().Add(-30*time.Second)), time.Now()); err != nil {
		t.Fatal(err)
	}
	w.ask("john")
	_, token := w.lastLink()
	if rec := w.call("GET", w.confirmPath(token), nil); !strings.Contains(rec.Body.String(), `name="code"`) {
		t.Fatalf("the form does not ask for the code: %d", rec.Code)
	}
	if rec := w.setPassword(token, "a new password", "a new password", nil); rec.Code != 401 {
		t.Errorf("without a code: %d, want 401", rec.Code)
	}
	for i := range 2 {
		if rec := w.setPassword(token, "a new password", "a new password", url.Values{"code": {"000000"}}); rec.Code != 401 || !strings.Contains(rec.Body.String(), "That code is not right") {
			t.Errorf("wrong code %d: %d, want 401", i, rec.Code)
		}
	}
	// three failures: the pair is banned, the right code is refused here
	if rec := w.setPassword(token, "a new password", "a new password", url.Values{"code": {code(time.Now())}}); rec.Code != 401 {
		t.Errorf("the right code while banned: %d, want 401", rec.Code)
	}
	if !w.passwordIs("john", "password") {
		t.Fatal("the password changed without the second factor")
	}
	w.ip = "198.51.100.7"
	if rec := w.setPassword(token, "a new password", "a new password", url.Values{"code": {code(time.Now().Add(30 * time.Second))}}); rec.Code != 200 {
		t.Fatalf("the right code: %d %s", rec.Code, rec.Body.String())
	}
	if !w.passwordIs("john", "a new password") {
		t.Error("the password did not change")
	}
}

// A user whose only second factor is a security key is shown the key first (no password form),
// gets WebAuthn options for this link, has a bogus assertion refused, and cannot set a password
// without the key; once the key is proved on the link, the form asks for the password alone.
func TestPasswordResetKeyOnlyUser(t *testing.T) {
	ctx := t.Context()
	w := newResetWorld(t, &PasswordReset{})
	cfg := w.p.cfg
	var err error
	if cfg.WebAuthn, err = webauthn.New(webauthn.Config{RPID: "example.com", RPOrigins: []string{"https://auth.example.com"}}, w.kv, []byte(strings.Repeat("h", 32))); err != nil {
		t.Fatal(err)
	}
	if w.p, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	// john's key as the devices store one (the real ceremony runs in the browser test)
	id := []byte("credential-1")
	rec := fmt.Sprintf(`{"credential":{"id":%q,"publicKey":"","attestationType":"none"},"name":"Key","created":%q}`,
		base64.StdEncoding.EncodeToString(id), time.Now().UTC().Format(time.RFC3339))
	if err := w.kv.Put(ctx, store.Entry{Key: []byte("mfa/webauthn/cred/" + base64.RawURLEncoding.EncodeToString([]byte("john")) + "/" + base64.RawURLEncoding.EncodeToString(id)), Value: []byte(rec)}); err != nil {
		t.Fatal(err)
	}
	if keys, err := cfg.WebAuthn.List(ctx, "john"); err != nil || len(keys) != 1 {
		t.Fatalf("the stored key: %v %v", keys, err)
	}
	w.ask("john")
	_, token := w.lastLink()
	body := w.call("GET", w.confirmPath(token), nil).Body.String()
	if !strings.Contains(body, `id="webauthn-login"`) || strings.Contains(body, `name="password"`) || !strings.Contains(body, "/reset-password/webauthn/options?token="+token) {
		t.Fatalf("a key-only user's page:\n%s", body)
	}
	if rec := w.setPassword(token, "a new password", "a new password", nil); rec.Code != 401 || !strings.Contains(rec.Body.String(), "security key first") {
		t.Errorf("a password without the key: %d", rec.Code)
	}
	csrf := w.p.csrfMAC(w.cookies[w.p.csrfCookie()].Value)
	script := func(path string, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "https://auth.example.com"+path+"?token="+token, strings.NewReader(body))
		r.Header.Set("X-CSRF-Token", csrf)
		r.RemoteAddr = w.ip + ":4711"
		for _, c := range w.cookies {
			r.AddCookie(c)
		}
		return w.send(r)
	}
	if rec := script(pathResetKeyOptions, "{}"); rec.Code != 200 || !strings.Contains(rec.Body.String(), base64.RawURLEncoding.EncodeToString(id)) {
		t.Errorf("options: %d %s", rec.Code, rec.Body.String())
	}
	if rec := script(pathResetKeyVerify, `{"id":"x"}`); rec.Code != 401 {
		t.Errorf("a bogus assertion: %d, want 401", rec.Code)
	}
	if !w.passwordIs("john", "password") {
		t.Fatal("the password changed without the key")
	}
	// the key proved on this link (what a verified assertion records)
	if err := w.kv.Put(ctx, store.Entry{Key: []byte(resetKeyPrefix + tokenDigest(token)), Value: []byte{1}, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	body = w.call("GET", w.confirmPath(token), nil).Body.String()
	if strings.Contains(body, `id="webauthn-login"`) || !strings.Contains(body, `name="password"`) || strings.Contains(body, `name="code"`) {
		t.Errorf("after the key:\n%s", body)
	}
	if rec := w.setPassword(token, "a new password", "a new password", nil); rec.Code != 200 {
		t.Errorf("after the key: %d", rec.Code)
	}
}

// custom_url points "Forgot password?" elsewhere and turns the built-in pages off; without a
// password reset there is no link and no page.
func TestPasswordResetCustomURLAndOff(t *testing.T) {
	for _, c := range []struct {
		name  string
		reset *PasswordReset
		link  string
	}{
		{"custom", &PasswordReset{CustomURL: "https://accounts.example.com/forgot?x=1&y=2"}, `href="https://accounts.example.com/forgot?x=1&amp;y=2">Forgot password?`},
		{"off", nil, ""},
	} {
		w := newResetWorld(t, c.reset)
		body := w.call("GET", PathSignIn, nil).Body.String()
		if c.link != "" && !strings.Contains(body, c.link) {
			t.Errorf("%s: the sign-in page's link is not %s:\n%s", c.name, c.link, body)
		}
		if c.link == "" && strings.Contains(body, "Forgot password?") {
			t.Errorf("%s: the sign-in page offers a reset", c.name)
		}
		for _, path := range []string{PathResetPassword, PathResetConfirm + "?token=x"} {
			if rec := w.call("GET", path, nil); rec.Code != 404 {
				t.Errorf("%s: GET %s: %d, want 404", c.name, path, rec.Code)
			}
		}
		if rec := w.call("POST", PathResetPassword, url.Values{"username": {"john"}}); rec.Code != 404 {
			t.Errorf("%s: POST: %d, want 404", c.name, rec.Code)
		}
		if n := len(w.mail.messages()); n != 0 {
			t.Errorf("%s: %d mails", c.name, n)
		}
	}
	// the built-in pages need a notifier and a store
	w := newResetWorld(t, nil)
	cfg := w.p.cfg
	cfg.PasswordReset, cfg.Notifier = &PasswordReset{Store: w.kv}, nil
	if _, err := New(cfg); err == nil {
		t.Error("a password reset without a notifier was accepted")
	}
}

// Too many requests from one address are refused, whoever they name.
func TestPasswordResetAddressLimit(t *testing.T) {
	w := newResetWorld(t, &PasswordReset{})
	for i := range resetAddressLimit {
		if rec := w.ask("nobody"); rec.Code != 200 {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
	for _, name := range []string{"nobody", "john"} {
		if rec := w.ask(name); rec.Code != http.StatusTooManyRequests {
			t.Errorf("%s past the limit: %d, want 429", name, rec.Code)
		}
	}
	if n := len(w.mail.messages()); n != 0 {
		t.Errorf("%d mails past the limit", n)
	}
	w.ip = "192.0.2.11"
	if w.ask("john"); len(w.mail.messages()) != 1 {
		t.Error("another address was refused too")
	}
}

// failingDirectory is the users file behind a directory that cannot store passwords (an LDAP
// server that refuses the change or is down), and, when down is set, cannot be asked at all.
type failingDirectory struct {
	users.Directory
	down bool
}

func (d *failingDirectory) Lookup(ctx context.Context, name string) (*users.User, error) {
	if d.down {
		return nil, fmt.Errorf("ldap: dialing: %w", users.ErrUnavailable)
	}
	return d.Directory.Lookup(ctx, name)
}

func (d *failingDirectory) SetPassword(context.Context, *users.User, string) error {
	return fmt.Errorf("ldap: setting the password: %w", users.ErrUnavailable)
}

// A directory that cannot store the password, or cannot be asked, gets a page that says so
// (503, never a 500), and the link still works once it answers again.
func TestPasswordResetDirectoryErrors(t *testing.T) {
	w := newResetWorld(t, &PasswordReset{})
	dir := &failingDirectory{Directory: w.users}
	cfg := w.p.cfg
	cfg.Users = dir
	var err error
	if w.p, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	w.ask("john")
	_, token := w.lastLink()
	rec := w.setPassword(token, "a new password", "a new password", nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Your password was not changed") || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a directory that refuses the password: %d %s", rec.Code, rec.Body.String())
	}
	dir.down = true
	if rec := w.call("GET", w.confirmPath(token), nil); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "cannot be reached") {
		t.Errorf("a directory that is down: %d", rec.Code)
	}
	// back: the link was not used up
	cfg.Users = w.users
	if w.p, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if rec := w.setPassword(token, "a new password", "a new password", nil); rec.Code != 200 {
		t.Errorf("the link once the directory answers: %d", rec.Code)
	}
}

// A new password that is not UTF-8 is refused with a message, as on the change page.
func TestResetRefusesAPasswordThatIsNotUTF8(t *testing.T) {
	bad := "abcdefgh\xff\xfe"
	if msg := newPasswordProblem(bad, bad); !strings.Contains(msg, "cannot be stored") {
		t.Fatalf("newPasswordProblem(invalid UTF-8) = %q", msg)
	}
	if msg := newPasswordProblem("correct horse", "correct horse"); msg != "" {
		t.Fatalf("a good password: %q", msg)
	}
}
