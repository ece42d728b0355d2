package oidcprovider

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// startPeopleApp starts an app with john and a disabled mary in a users file, and an application
// that signs people in with the code flow.
func startPeopleApp(t *testing.T) (*App, *Handler) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "users.yml")
	digest := "$argon2id$v=19$m=65536,t=3,p=4$ZfApOXlumEkguxVuCeSuVA$2uw6ebDvdxh0mR3mKzllnyWrWuGLLrT5pCOdOySbvsI"
	if err := os.WriteFile(file, []byte("users:\n  john:\n    displayname: John Doe\n    password: \""+digest+"\"\n"+
		"  mary:\n    disabled: true\n    password: \""+digest+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &App{Issuer: "https://auth.example.com", Storage: StorageConfig{Dir: filepath.Join(dir, "store")}, UsersFile: file,
		Clients: []ClientConfig{{ID: "app", Secret: "$plaintext$app-secret", RedirectURIs: []string{"https://app.example.com/cb"},
			Scopes: []string{"openid", "profile"}, GrantTypes: []string{"authorization_code"}, AuthorizationPolicy: "one_factor", ConsentMode: "implicit"}}}
	return runApp(t, a)
}

// The operator's invite: the lifespan's bounds (and the test hook that lowers the least), an
// unknown or disabled person refused, a revocation; the link's enrolment session is refused by
// CheckSession (the gate) and by the authorization endpoint, which take a signed-in session.
func TestInviteAndItsSessionAtTheGate(t *testing.T) {
	ctx := t.Context()
	a, h := startPeopleApp(t)
	for _, bad := range []string{"4m", "31d", "soon", "-1h"} {
		if _, err := a.inviteLifespan(bad); !errors.Is(err, errInviteLifespan) {
			t.Errorf("lifespan %q: %v, want refused", bad, err)
		}
	}
	if d, err := a.inviteLifespan(""); err != nil || d != portal.DefaultInviteLifespan {
		t.Errorf("the default lifespan: %v %v", d, err)
	}
	if d, err := a.inviteLifespan("30d"); err != nil || d != 30*24*time.Hour {
		t.Errorf("30d: %v %v", d, err)
	}
	t.Setenv(inviteMinLifespanEnv, "2s")
	if _, err := a.inviteLifespan("3s"); err != nil {
		t.Errorf("3s with the test hook: %v", err)
	}
	if _, err := a.invite(ctx, "nobody", ""); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("an unknown person: %v", err)
	}
	if _, err := a.invite(ctx, "mary", ""); !errors.Is(err, errUserDisabled) {
		t.Errorf("a disabled person: %v", err)
	}
	ans, err := a.invite(ctx, "JOHN", "1h")
	if err != nil || ans.User != "john" || !strings.HasPrefix(ans.Link, "https://auth.example.com/enrol?token=") || time.Until(ans.Expires) > time.Hour {
		t.Fatalf("invite: %+v %v", ans, err)
	}

	// Continue, as a browser does
	link, _ := url.Parse(ans.Link)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, httptest.NewRequest("GET", link.String(), nil), nextNotFound{}); err != nil || w.Code != 200 {
		t.Fatalf("the link's page: %d %v", w.Code, err)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(w.Body.String())
	form := url.Values{"csrf": {m[1]}, "token": {link.Query().Get("token")}}
	r := httptest.NewRequest("POST", "https://auth.example.com/enrol", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	w = httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nextNotFound{}); err != nil || w.Code != http.StatusSeeOther {
		t.Fatalf("Continue: %d %v %s", w.Code, err, w.Body.String())
	}
	var enrolment *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == a.SessionCookieName("secure.example.com") {
			enrolment = c
		}
	}
	if enrolment == nil {
		t.Fatal("no session cookie after Continue")
	}
	header := http.Header{"Cookie": {enrolment.String()}}
	if u, level, err := a.CheckSession(ctx, "secure.example.com", header); !errors.Is(err, ErrNoSession) {
		t.Fatalf("CheckSession of the enrolment session: %v %d %v, want ErrNoSession", u, level, err)
	}
	authz := "https://auth.example.com/api/oidc/authorization?" + url.Values{"client_id": {"app"}, "redirect_uri": {"https://app.example.com/cb"},
		"response_type": {"code"}, "scope": {"openid"}, "state": {"state-1234"}, "nonce": {"nonce-1234"}}.Encode()
	r = httptest.NewRequest("GET", authz, nil)
	r.AddCookie(enrolment)
	w = httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nextNotFound{}); err != nil {
		t.Fatal(err)
	}
	if loc := w.Header().Get("Location"); w.Code/100 != 3 || strings.Contains(loc, "code=") || !strings.HasPrefix(loc, "/?rd=") {
		t.Fatalf("the authorization endpoint with the enrolment session: %d %q, want the sign-in page", w.Code, loc)
	}

	// revocation
	if _, err := a.invite(ctx, "john", ""); err != nil {
		t.Fatal(err)
	}
	if ans, err := a.revokeInvite(ctx, "john"); err != nil || !ans.Revoked {
		t.Fatalf("revoke: %+v %v", ans, err)
	}
	if _, err := a.revokeInvite(ctx, "john"); !errors.Is(err, portal.ErrNoInvite) {
		t.Fatalf("revoke again: %v", err)
	}
}
