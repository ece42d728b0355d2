package caddyauth

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// startGateApp starts an app with people and a client: john (dev, admins) and jane (dev), both
// with the password "password", and the client uptime-kuma-monitor. secure.example.com admits
// dev and the client at one factor and bypasses /public; admin.example.com asks two factors of
// admins and the client; closed.example.com is denied to everyone.
func startGateApp(t testing.TB, dir string) *oidcprovider.App {
	t.Helper()
	users := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(users, []byte("users:\n"+
		"  john:\n    displayname: John Doe\n    email: john@example.com\n    groups: [dev, admins]\n    password: \""+johnDigest+"\"\n"+
		"  jane:\n    displayname: Jane Doe\n    groups: [dev]\n    password: \""+johnDigest+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	client := kumaClient()
	client.Audience = []string{"https://secure.example.com/", "https://admin.example.com/"}
	kuma := "oauth2:client:" + client.ID
	a := &oidcprovider.App{
		Issuer: "https://auth.example.com", Storage: oidcprovider.StorageConfig{Dir: filepath.Join(dir, "store")}, UsersFile: users,
		Session: &oidcprovider.SessionConfig{CookieDomain: "example.com"},
		Clients: []oidcprovider.ClientConfig{client},
		AccessControl: &accesscontrol.Config{DefaultPolicy: "deny", Rules: []accesscontrol.Rule{
			{Domain: []string{"secure.example.com"}, Resources: []string{"^/public"}, Policy: "bypass"},
			{Domain: []string{"secure.example.com"}, Subject: [][]string{{"group:dev"}, {kuma}}, Policy: "one_factor"},
			{Domain: []string{"admin.example.com"}, Subject: [][]string{{"group:admins"}, {kuma}}, Policy: "two_factor"},
			{Domain: []string{"closed.example.com"}, Policy: "deny"},
		}},
	}
	return running(t, a)
}

// gateRequest is a request as Caddy hands it to a handler, over TLS, with a replacer.
func gateRequest(target string, headers map[string]string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	r.TLS = &tls.ConnectionState{}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
}

// Several cookies of the session cookie's name (a sibling site under the cookie domain can set
// its own, with a longer path so browsers send it first): one that speaks for no one never
// shadows a live one, whatever the order or the Cookie line; the live sessions of two different
// people in one request, or more than four cookies of the name, are refused with 400 rather than
// one of them picked.
func TestSeveralSessionCookies(t *testing.T) {
	ctx := t.Context()
	app := startGateApp(t, t.TempDir())
	john, john2, jane := signInAs(t, app, "john"), signInAs(t, app, "john"), signInAs(t, app, "jane")
	h := newHandler(t, app, GateConfig{})
	const name = "portcullis_session="
	ended := signInAs(t, app, "jane")
	for _, c := range []struct {
		cookies []string // one Cookie line each
		status  int
		user    string
	}{
		{[]string{name + "garbage; " + name + john}, 200, "john"},
		{[]string{name + john + "; " + name + "garbage"}, 200, "john"},
		{[]string{name + "; " + name + strings.Repeat("A", 43) + "; theme=dark; " + name + john}, 200, "john"},
		{[]string{name + "garbage", "a=1; " + name + john}, 200, "john"},
		{[]string{name + `"` + john + `"`}, 200, "john"},
		{[]string{name + john + "; " + name + john}, 200, "john"},
		{[]string{name + john + "; " + name + john2}, 200, "john"}, // two sessions of one person
		{[]string{name + "x; " + name + "y; " + name + "z; " + name + john}, 200, "john"},
		{[]string{name + jane + "; " + name + john}, 400, ""},
		{[]string{name + john, name + jane}, 400, ""},
		{[]string{name + "w; " + name + "x; " + name + "y; " + name + "z; " + name + john}, 400, ""},
		{[]string{name + "garbage; " + name + strings.Repeat("A", 43)}, 401, ""},
	} {
		r := gateRequest("https://secure.example.com/", nil)
		r.Header["Cookie"] = c.cookies
		up := &upstream{}
		status := 200
		if err := h.ServeHTTP(httptest.NewRecorder(), r, up); err != nil {
			status = statusOf(err)
		}
		if status != c.status || (c.user != "" && up.headers.Get("Remote-User") != c.user) {
			t.Errorf("%q: %d, Remote-User %q; want %d, %q", c.cookies, status, up.headers.Get("Remote-User"), c.status, c.user)
		}
		if up.called && strings.Contains(up.headers.Get("Cookie"), name) {
			t.Errorf("%q: a session cookie reached the upstream: %q", c.cookies, up.headers.Get("Cookie"))
		}
	}
	// an ended session is one that speaks for no one
	if _, err := app.EndUserSessions(ctx, "jane"); err != nil {
		t.Fatal(err)
	}
	r := gateRequest("https://secure.example.com/", map[string]string{"Cookie": name + ended + "; " + name + john})
	up := &upstream{}
	if err := h.ServeHTTP(httptest.NewRecorder(), r, up); err != nil || up.headers.Get("Remote-User") != "john" {
		t.Errorf("an ended session before a live one: %v, %v", err, up.headers)
	}
}

// The oidc_auth handler and the provider for Caddy's stock authentication handler answer from
// one path: for every kind of caller they admit the same requests and set the same challenge
// and Location headers (the stock handler then answers 401 whatever the status oidc_auth would
// give). A wrong Basic password gets a Basic challenge, a Proxy-Authorization failure gets
// Proxy-Authenticate, and a bypass rule admits everyone.
func TestBothEntryPointsAnswerAlike(t *testing.T) {
	app := startGateApp(t, t.TempDir())
	kuma := mint(t, app, "uptime-kuma-monitor", "insecure_secret", nil)
	john := "portcullis_session=" + signInAs(t, app, "john")
	jane := "portcullis_session=" + signInAs(t, app, "jane")
	h := newHandler(t, app, GateConfig{})
	p := &Provider{gate: h.gate}
	const wrongBasic = "Basic am9objp3cm9uZw==" // john:wrong
	for _, c := range []struct {
		name, target string
		headers      map[string]string
		status       int
		challenge    string // header: want substring
		location     string // prefix
	}{
		{"bearer", "https://secure.example.com/", map[string]string{"Authorization": "Bearer " + kuma}, 200, "", ""},
		{"bearer, invalid", "https://secure.example.com/", map[string]string{"Authorization": "Bearer portcullis_at_AAAA.BBBB"}, 401, `WWW-Authenticate: Bearer realm="Portcullis", error="invalid_token"`, ""},
		{"bearer, not ours", "https://secure.example.com/", map[string]string{"Authorization": "Bearer upstream-token"}, 401, `WWW-Authenticate: Bearer realm="Portcullis", error="invalid_token"`, ""},
		{"bearer, two_factor rule", "https://admin.example.com/", map[string]string{"Authorization": "Bearer " + kuma}, 403, `WWW-Authenticate: Bearer realm="Portcullis", error="insufficient_scope"`, ""},
		{"basic", "https://secure.example.com/", map[string]string{"Authorization": "Basic am9objpwYXNzd29yZA=="}, 200, "", ""},
		{"basic, wrong password", "https://secure.example.com/", map[string]string{"Authorization": wrongBasic}, 401, `WWW-Authenticate: Basic realm="Portcullis"`, ""},
		{"proxy bearer", "https://secure.example.com/", map[string]string{"Proxy-Authorization": "Bearer " + kuma}, 200, "", ""},
		{"proxy bearer, invalid", "https://secure.example.com/", map[string]string{"Proxy-Authorization": "Bearer portcullis_at_AAAA.BBBB"}, 407, `Proxy-Authenticate: Bearer realm="Portcullis", error="invalid_token"`, ""},
		{"proxy basic, wrong password", "https://secure.example.com/", map[string]string{"Proxy-Authorization": wrongBasic}, 407, `Proxy-Authenticate: Basic realm="Portcullis"`, ""},
		{"session", "https://secure.example.com/", map[string]string{"Cookie": john}, 200, "", ""},
		{"session, one factor on two_factor", "https://admin.example.com/", map[string]string{"Cookie": john}, 401, `WWW-Authenticate: Bearer realm="Portcullis"`, "https://auth.example.com/2fa?rd="},
		{"session, not in the group", "https://admin.example.com/", map[string]string{"Cookie": jane}, 403, "", ""},
		{"anonymous", "https://secure.example.com/", nil, 401, `WWW-Authenticate: Bearer realm="Portcullis"`, "https://auth.example.com/?rd="},
		{"anonymous, deny rule", "https://closed.example.com/", nil, 403, "", ""},
		{"anonymous, bypass", "https://secure.example.com/public/x", nil, 200, "", ""},
		{"wrong password, bypass", "https://secure.example.com/public/x", map[string]string{"Authorization": wrongBasic}, 200, "", ""},
	} {
		// oidc_auth
		r := gateRequest(c.target, c.headers)
		w := httptest.NewRecorder()
		up := &upstream{}
		status := 200
		if err := h.ServeHTTP(w, r, up); err != nil {
			status = statusOf(err)
		}
		if status != c.status || up.called != (c.status == 200) {
			t.Errorf("%s: oidc_auth answered %d (upstream called: %v), want %d", c.name, status, up.called, c.status)
		}
		// the stock handler's provider
		pr := gateRequest(c.target, c.headers)
		pw := httptest.NewRecorder()
		_, ok, err := p.Authenticate(pw, pr)
		if err != nil {
			t.Errorf("%s: provider: %v", c.name, err)
		}
		if ok != (c.status == 200) {
			t.Errorf("%s: provider admitted: %v, want %v", c.name, ok, c.status == 200)
		}
		for who, hdr := range map[string]http.Header{"oidc_auth": w.Header(), "provider": pw.Header()} {
			for _, k := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
				v := hdr.Get(k)
				want := ""
				if name, val, _ := strings.Cut(c.challenge, ": "); name == k {
					want = val
				}
				if (want == "") != (v == "") || !strings.HasPrefix(v, want) {
					t.Errorf("%s: %s's %s = %q, want %q…", c.name, who, k, v, want)
				}
			}
			if loc := hdr.Get("Location"); (c.location == "") != (loc == "") || !strings.HasPrefix(loc, c.location) {
				t.Errorf("%s: %s's Location = %q, want %q…", c.name, who, loc, c.location)
			}
		}
	}
	// a browser is sent to the portal by oidc_auth; the provider cannot redirect, so its 401
	// carries the same Location with a challenge
	browser := map[string]string{"Accept": "text/html"}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, gateRequest("https://secure.example.com/", browser), &upstream{}); err != nil || w.Code != http.StatusFound {
		t.Errorf("browser: oidc_auth answered %d, %v; want 302", w.Code, err)
	}
	pw := httptest.NewRecorder()
	if _, ok, _ := p.Authenticate(pw, gateRequest("https://secure.example.com/", browser)); ok || pw.Header().Get("Location") != w.Header().Get("Location") || pw.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("browser: the provider's headers %v, want oidc_auth's Location %q and a challenge", pw.Header(), w.Header().Get("Location"))
	}
}

// On a bypass rule nothing is checked, but a Portcullis user's Basic credentials (any password,
// in Authorization or Proxy-Authorization) never reach the upstream, which may be anyone's; the
// Basic credentials of the upstream's own users and other schemes pass as sent.
func TestBypassRemovesOurUsersBasicCredentials(t *testing.T) {
	app := startGateApp(t, t.TempDir())
	h := newHandler(t, app, GateConfig{})
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, c := range []struct {
		header, value string
		kept          bool
	}{
		{"Authorization", basic("john", "password"), false},
		{"Authorization", basic("jane", "wrong"), false},
		{"Proxy-Authorization", basic("john", "password"), false},
		{"Authorization", basic("bob", "bobpw"), true},
		{"Proxy-Authorization", basic("bob", "bobpw"), true},
		{"Authorization", "Bearer upstream-token", true},
		{"Authorization", "Basic !!!", true},
	} {
		r := gateRequest("https://secure.example.com/public/x", map[string]string{c.header: c.value})
		up := &upstream{}
		if err := h.ServeHTTP(httptest.NewRecorder(), r, up); err != nil || !up.called {
			t.Fatalf("%s %q on a bypass path: %v", c.header, c.value, err)
		}
		if got := up.headers.Get(c.header); (got == c.value) != c.kept || (!c.kept && got != "") {
			t.Errorf("%s %q on a bypass path: the upstream got %q, want kept=%v", c.header, c.value, got, c.kept)
		}
		if up.headers.Get("Remote-User") != "" {
			t.Errorf("%s %q on a bypass path set Remote-User", c.header, c.value)
		}
	}
}
