package caddyauth

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// johnDigest is an argon2id digest of "password" (Authelia's default parameters).
const johnDigest = "$argon2id$v=19$m=65536,t=3,p=4$ZfApOXlumEkguxVuCeSuVA$2uw6ebDvdxh0mR3mKzllnyWrWuGLLrT5pCOdOySbvsI"

// startPeopleApp starts an app with john (groups dev, admins) in a users file, and rules: secure
// needs one factor for dev, admin two factors for admins.
func startPeopleApp(t testing.TB, dir string) *oidcprovider.App {
	t.Helper()
	users := johnFile(t, dir)
	a := &oidcprovider.App{
		Issuer: "https://auth.example.com", Storage: oidcprovider.StorageConfig{Dir: filepath.Join(dir, "store")}, UsersFile: users,
		Session: &oidcprovider.SessionConfig{CookieDomain: "example.com"},
		AccessControl: &accesscontrol.Config{DefaultPolicy: "deny", Rules: []accesscontrol.Rule{
			{Domain: []string{"secure.example.com"}, Subject: [][]string{{"group:dev"}}, Policy: "one_factor"},
			{Domain: []string{"admin.example.com"}, Subject: [][]string{{"group:admins"}}, Policy: "two_factor"},
		}},
	}
	return running(t, a)
}

// johnFile writes a users file with john (groups dev, admins; password "password") in dir.
func johnFile(t testing.TB, dir string) string {
	t.Helper()
	users := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(users, []byte("users:\n  john:\n    displayname: John Doe\n    email: john@example.com\n    groups: [dev, admins]\n    password: \""+johnDigest+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return users
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs john in through the provider's real portal and returns the session cookie.
func signIn(t testing.TB, app *oidcprovider.App) string {
	t.Helper()
	return signInAs(t, app, "john")
}

// signInAs signs user (password "password") in through the provider's real portal and returns
// the session cookie.
func signInAs(t testing.TB, app *oidcprovider.App, user string) string {
	t.Helper()
	h := oidcprovider.NewHandler(app)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, httptest.NewRequest("GET", "https://auth.example.com/", nil), okHandler{}); err != nil {
		t.Fatal(err)
	}
	m := csrfInput.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no CSRF field: %s", w.Body.String())
	}
	form := url.Values{"csrf": {m[1]}, "username": {user}, "password": {"password"}}
	r := httptest.NewRequest("POST", "https://auth.example.com/", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	w = httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, okHandler{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == "portcullis_session" {
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Domain != "example.com" {
				t.Errorf("session cookie attributes: %s", c)
			}
			return c.Value
		}
	}
	t.Fatalf("sign-in: %d, no session cookie", w.Code)
	return ""
}

// The session strategy: a live session is the user at one factor; a two_factor rule sends it to
// the second-factor page; the upstream gets the Remote-* headers and not the session cookie; an
// unknown or ended session is absent.
func TestSessionStrategy(t *testing.T) {
	ctx := t.Context()
	app := startPeopleApp(t, t.TempDir())
	sid := signIn(t, app)
	h := newHandler(t, app, GateConfig{})
	cookie := "theme=dark; portcullis_session=" + sid + "; other=1"
	var upstream http.Header
	capture := handlerFunc(func(w http.ResponseWriter, r *http.Request) error { upstream = r.Header.Clone(); return nil })
	r := httptest.NewRequest("GET", "https://secure.example.com/", nil)
	r.TLS = &tls.ConnectionState{}
	r.Header.Set("Cookie", cookie)
	r.Header.Set("Remote-User", "admin")
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	if err := h.ServeHTTP(httptest.NewRecorder(), r, capture); err != nil {
		t.Fatalf("a live session: %v", err)
	}
	if upstream.Get("Remote-User") != "john" || upstream.Get("Remote-Groups") != "dev,admins" || upstream.Get("Remote-Name") != "John Doe" || upstream.Get("Remote-Email") != "john@example.com" {
		t.Errorf("upstream identity headers: %v", upstream)
	}
	if got := upstream.Get("Cookie"); got != "theme=dark; other=1" {
		t.Errorf("upstream Cookie = %q, want the other cookies only", got)
	}

	// whoever the caller is, every copy of the session cookie is removed before the upstream:
	// Basic credentials beside a session, and an anonymous caller on a bypass rule
	bypass := newHandler(t, app, GateConfig{Rules: []accesscontrol.Rule{{Domain: []string{"public.example.com"}, Policy: "bypass"}}})
	for name, c := range map[string]struct {
		h      *Handler
		target string
		header map[string]string
	}{
		"basic beside a session": {h, "https://secure.example.com/", map[string]string{"Cookie": cookie, "Authorization": "Basic am9objpwYXNzd29yZA=="}},
		"bypass, junk first":     {bypass, "https://public.example.com/", map[string]string{"Cookie": "portcullis_session=junk; portcullis_session=" + sid}},
	} {
		r := httptest.NewRequest("GET", c.target, nil)
		r.TLS = &tls.ConnectionState{}
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		upstream = nil
		if err := c.h.ServeHTTP(httptest.NewRecorder(), r, capture); err != nil || upstream == nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(upstream.Get("Cookie"), sid) {
			t.Errorf("%s: the session cookie reached the upstream: %q", name, upstream.Get("Cookie"))
		}
	}

	a := serve(t, h, "GET", "https://admin.example.com/panel", map[string]string{"Cookie": cookie, "Accept": "text/html"})
	if a.status != http.StatusFound || !strings.HasPrefix(a.header.Get("Location"), "https://auth.example.com/2fa?rd=https%3A%2F%2Fadmin.example.com%2Fpanel") {
		t.Errorf("one factor on a two_factor site: %d %s, want 302 to the second-factor page", a.status, a.header.Get("Location"))
	}
	for name, c := range map[string]string{
		"unknown session": "portcullis_session=" + strings.Repeat("A", 43),
		"garbage":         "portcullis_session=%%%",
		"other name":      "PORTCULLIS_SESSION=" + sid,
	} {
		a := serve(t, h, "GET", "https://secure.example.com/", map[string]string{"Cookie": c, "Accept": "text/html"})
		if a.status != http.StatusFound || !strings.HasPrefix(a.header.Get("Location"), "https://auth.example.com/?rd=") {
			t.Errorf("%s: %d %s, want 302 to sign in", name, a.status, a.header.Get("Location"))
		}
	}
	if n, err := app.EndUserSessions(ctx, "john"); err != nil || n != 1 {
		t.Fatalf("EndUserSessions: %d, %v", n, err)
	}
	if a := serve(t, h, "GET", "https://secure.example.com/", map[string]string{"Cookie": cookie, "Accept": "text/html"}); a.status != http.StatusFound {
		t.Errorf("an ended session (it was cached): %d, want 302", a.status)
	}
}

type handlerFunc func(http.ResponseWriter, *http.Request) error

func (f handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// BenchmarkSessionCheck measures the gate for a browser with a live session (cookie, session
// cache, user lookup, rules, headers), beside the same request without the gate.
func BenchmarkSessionCheck(b *testing.B) {
	app := startPeopleApp(b, b.TempDir())
	sid := signIn(b, app)
	h := newHandler(b, app, GateConfig{})
	proto := httptest.NewRequest("GET", "https://secure.example.com/status", nil)
	proto.TLS = &tls.ConnectionState{}
	proto.Header.Set("Cookie", "portcullis_session="+sid)
	proto.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	fresh := func() *http.Request {
		return proto.Clone(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	}
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = okHandler{}.ServeHTTP(w, fresh())
		}
	})
	b.Run("gate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := h.ServeHTTP(w, fresh(), okHandler{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
