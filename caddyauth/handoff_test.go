package caddyauth

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// startDomainsApp starts an app whose portal is on example.com, with further cookie domains
// example.org (its own cookie name) and example.net (SameSite=Strict).
func startDomainsApp(t testing.TB, dir string) *oidcprovider.App {
	t.Helper()
	users := johnFile(t, dir)
	a := &oidcprovider.App{
		Issuer: "https://auth.example.com", Storage: oidcprovider.StorageConfig{Dir: filepath.Join(dir, "store")}, UsersFile: users,
		Session: &oidcprovider.SessionConfig{CookieDomain: "example.com", Cookies: []oidcprovider.CookieConfig{{Domain: "example.org", Name: "org_session"}, {Domain: "example.net", SameSite: "strict"}}},
		AccessControl: &accesscontrol.Config{DefaultPolicy: "deny", Rules: []accesscontrol.Rule{
			{Domain: []string{"secure.example.com", "app.example.org", "app.example.net"}, Subject: [][]string{{"group:dev"}}, Policy: "one_factor"},
			{Domain: []string{"admin.example.org"}, Subject: [][]string{{"group:admins"}}, Policy: "two_factor"},
		}},
	}
	return running(t, a)
}

// portalGet sends a GET to the portal with cookies.
func portalGet(t *testing.T, app *oidcprovider.App, target, cookies string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", target, nil)
	if cookies != "" {
		r.Header.Set("Cookie", cookies)
	}
	w := httptest.NewRecorder()
	if err := oidcprovider.NewHandler(app).ServeHTTP(w, r, okHandler{}); err != nil {
		t.Fatal(err)
	}
	return w
}

// handoff runs a hand-off for a browser at target (under a further domain) holding the portal's
// session sid: it returns the gate's start (its nonce cookie), and the redemption URL.
func beginHandoff(t *testing.T, h *Handler, app *oidcprovider.App, target, sid string) (nonce *http.Cookie, redeem string) {
	t.Helper()
	a := serve(t, h, "GET", target, map[string]string{"Accept": "text/html"})
	loc := a.header.Get("Location")
	if a.status != http.StatusFound || !strings.HasPrefix(loc, "https://auth.example.com/handoff?") {
		t.Fatalf("no session at %s: %d %s, want 302 to the portal's hand-off", target, a.status, loc)
	}
	cs := (&http.Response{Header: a.header}).Cookies()
	if len(cs) != 1 || !strings.HasPrefix(cs[0].Name, "__Host-") || !cs[0].HttpOnly || !cs[0].Secure || cs[0].SameSite != http.SameSiteLaxMode || cs[0].Domain != "" || cs[0].Path != "/" {
		t.Fatalf("the nonce cookie: %v", a.header["Set-Cookie"])
	}
	w := portalGet(t, app, loc, "portcullis_session="+sid)
	redeem = w.Header().Get("Location")
	u, _ := url.Parse(target)
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(redeem, "https://"+u.Host+oidcprovider.HandoffPath+"?code=") {
		t.Fatalf("portal's hand-off: %d %s", w.Code, redeem)
	}
	return cs[0], redeem
}

// The hand-off end to end at the gate: a browser signed in at the portal gets a session on a
// further domain under that domain's cookie, once; a replayed code, a code on another domain or
// without the browser's nonce are refused; one domain's session is worth nothing on another; a
// start no gate signed is refused; signing out at the portal ends the other domain's session.
func TestHandoffAtTheGate(t *testing.T) {
	app := startDomainsApp(t, t.TempDir())
	h := newHandler(t, app, GateConfig{})
	sid := signIn(t, app)

	nonce, redeem := beginHandoff(t, h, app, "https://app.example.org/x?y=1", sid)
	a := serve(t, h, "GET", redeem, map[string]string{"Cookie": nonce.Name + "=" + nonce.Value})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "https://app.example.org/x?y=1" || a.up.called {
		t.Fatalf("redeeming: %d %s (upstream called: %v)", a.status, a.header.Get("Location"), a.up.called)
	}
	var orgSID string
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		switch c.Name {
		case "org_session":
			if c.Domain != "example.org" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
				t.Errorf("the domain's session cookie: %s", c)
			}
			orgSID = c.Value
		case nonce.Name:
			if c.MaxAge >= 0 {
				t.Errorf("the nonce cookie is not removed: %s", c)
			}
		default:
			t.Errorf("an unexpected cookie: %s", c)
		}
	}
	for _, v := range a.header["Set-Cookie"] {
		if strings.Contains(strings.ToLower(v), "example.com") || strings.Contains(v, "example.net") {
			t.Errorf("a cookie of example.org names another domain: %s", v)
		}
	}
	if orgSID == "" || orgSID == sid {
		t.Fatalf("no session of its own for example.org: %q", orgSID)
	}
	a = serve(t, h, "GET", "https://app.example.org/x", map[string]string{"Cookie": "org_session=" + orgSID + "; " + nonce.Name + "=" + nonce.Value + "; theme=dark", "Accept": "text/html"})
	if a.status != http.StatusOK || a.up.headers.Get("Remote-User") != "john" || a.up.headers.Get("Cookie") != "theme=dark" {
		t.Fatalf("with the domain's session: %d, Remote-User %q, upstream Cookie %q", a.status, a.up.headers.Get("Remote-User"), a.up.headers.Get("Cookie"))
	}

	// a SameSite=Strict domain: a page of the site moves on (a redirect that ends a navigation
	// begun on the portal's site would not carry the cookie)
	netNonce, netRedeem := beginHandoff(t, h, app, "https://app.example.net/n?a=<b>", sid)
	r := httptest.NewRequest("GET", netRedeem, nil)
	r.TLS = &tls.ConnectionState{}
	r.Header.Set("Cookie", netNonce.Name+"="+netNonce.Value)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())), okHandler{}); err != nil {
		t.Fatal(err)
	}
	if cs := w.Result().Cookies(); len(cs) == 0 || cs[0].Name != "portcullis_session" || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Domain != "example.net" {
		t.Errorf("example.net's cookie: %v", w.Header()["Set-Cookie"])
	}
	if body := w.Body.String(); w.Code != http.StatusOK || w.Header().Get("Location") != "" ||
		!strings.Contains(body, `<meta http-equiv="refresh" content="0;url=https://app.example.net/n?a=&lt;b&gt;">`) || strings.Contains(body, "<b>") {
		t.Errorf("a strict domain's redemption: %d %s %q, want a page that moves on", w.Code, w.Header().Get("Location"), body)
	}

	// a replayed code
	if a := serve(t, h, "GET", redeem, map[string]string{"Cookie": nonce.Name + "=" + nonce.Value}); a.status != http.StatusSeeOther ||
		!strings.HasPrefix(a.header.Get("Location"), "https://auth.example.com/handoff/failed?rd=") || len(a.header["Set-Cookie"]) != 0 {
		t.Errorf("a replayed code: %d %s %v", a.status, a.header.Get("Location"), a.header["Set-Cookie"])
	}
	// a code for example.org on example.net, and without the browser's nonce: refused, and spent
	for name, try := range map[string]func(redeem string, nonce *http.Cookie) answer{
		"another domain": func(redeem string, nonce *http.Cookie) answer {
			return serve(t, h, "GET", strings.Replace(redeem, "app.example.org", "app.example.net", 1), map[string]string{"Cookie": nonce.Name + "=" + nonce.Value})
		},
		"another browser": func(redeem string, _ *http.Cookie) answer { return serve(t, h, "GET", redeem, nil) },
		"another browser's nonce": func(redeem string, nonce *http.Cookie) answer {
			other, _ := beginHandoff(t, h, app, "https://app.example.org/", sid)
			return serve(t, h, "GET", redeem, map[string]string{"Cookie": other.Name + "=" + other.Value})
		},
		"a nonce under another name": func(redeem string, nonce *http.Cookie) answer {
			return serve(t, h, "GET", redeem, map[string]string{"Cookie": "__Host-org_session_handoff_AAAAAAAAAA=" + nonce.Value})
		},
	} {
		nonce, redeem := beginHandoff(t, h, app, "https://app.example.org/", sid)
		a := try(redeem, nonce)
		if a.status != http.StatusSeeOther || !strings.Contains(a.header.Get("Location"), "/handoff/failed") || a.up.called || len(a.header["Set-Cookie"]) != 0 {
			t.Errorf("%s: %d %s %v", name, a.status, a.header.Get("Location"), a.header["Set-Cookie"])
		}
		if a := serve(t, h, "GET", redeem, map[string]string{"Cookie": nonce.Name + "=" + nonce.Value}); !strings.Contains(a.header.Get("Location"), "/handoff/failed") {
			t.Errorf("%s: the code still worked afterwards: %d %s", name, a.status, a.header.Get("Location"))
		}
	}
	// the reserved path answers GET only, and is the upstream's on the issuer's domain
	if a := serve(t, h, "POST", redeem, nil); a.status != http.StatusMethodNotAllowed || a.up.called {
		t.Errorf("POST to the hand-off path: %d", a.status)
	}
	if a := serve(t, h, "GET", "https://secure.example.com"+oidcprovider.HandoffPath+"?code=x", map[string]string{"Cookie": "portcullis_session=" + sid}); a.status != http.StatusOK || !a.up.called {
		t.Errorf("the path on the issuer's domain: %d", a.status)
	}
	// one domain's session is nobody on another
	if a := serve(t, h, "GET", "https://secure.example.com/", map[string]string{"Cookie": "portcullis_session=" + orgSID, "Accept": "text/html"}); a.status != http.StatusFound {
		t.Errorf("example.org's session on example.com: %d", a.status)
	}
	if a := serve(t, h, "GET", "https://app.example.net/", map[string]string{"Cookie": "portcullis_session=" + orgSID + "; org_session=" + orgSID, "Accept": "text/html"}); a.status != http.StatusFound {
		t.Errorf("example.org's session on example.net: %d", a.status)
	}
	if a := serve(t, h, "GET", "https://app.example.org/", map[string]string{"Cookie": "org_session=" + sid, "Accept": "text/html"}); a.status != http.StatusFound {
		t.Errorf("the portal's session on example.org: %d", a.status)
	}
	if w := portalGet(t, app, "https://auth.example.com/settings", "portcullis_session="+orgSID); w.Code != http.StatusSeeOther && w.Code != http.StatusFound {
		t.Errorf("example.org's session at the portal: %d", w.Code)
	}

	// starts no gate signed, or changed on the way
	loc := serve(t, h, "GET", "https://app.example.org/", map[string]string{"Accept": "text/html"}).header.Get("Location")
	for name, target := range map[string]string{
		"another host":  strings.Replace(loc, "app.example.org", "evil.example.org", 1),
		"another level": strings.Replace(loc, "l=1", "l=2", 1),
		"no signature":  loc[:strings.Index(loc, "&sig=")],
	} {
		w := portalGet(t, app, target, "portcullis_session="+sid)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "expired or was already used") {
			t.Errorf("%s: %d %s", name, w.Code, w.Header().Get("Location"))
		}
	}

	// a two_factor site asks the portal for two factors: a one-factor session goes to the second
	// factor's page first, and comes back to the hand-off
	a = serve(t, h, "GET", "https://admin.example.org/", map[string]string{"Cookie": "org_session=" + orgSID, "Accept": "text/html"})
	if a.status != http.StatusFound || !strings.Contains(a.header.Get("Location"), "/handoff?") || !strings.Contains(a.header.Get("Location"), "l=2") {
		t.Fatalf("one factor on a two_factor site: %d %s", a.status, a.header.Get("Location"))
	}
	if w := portalGet(t, app, a.header.Get("Location"), "portcullis_session="+sid); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/2fa?rd=https%3A%2F%2Fauth.example.com%2Fhandoff%3F") {
		t.Errorf("the portal's hand-off for two factors with one: %d %s", w.Code, w.Header().Get("Location"))
	}
	// without a session the portal asks for a sign-in, then comes back
	if w := portalGet(t, app, loc, ""); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/?rd=https%3A%2F%2Fauth.example.com%2Fhandoff%3F") {
		t.Errorf("the portal's hand-off without a session: %d %s", w.Code, w.Header().Get("Location"))
	}

	// signing out at the portal ends example.org's session at once, and a code minted before
	// it is refused after it
	pendingNonce, pendingRedeem := beginHandoff(t, h, app, "https://app.example.org/", sid)
	w = portalGet(t, app, "https://auth.example.com/logout", "portcullis_session="+sid)
	m := csrfInput.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no sign-out form: %d", w.Code)
	}
	r = httptest.NewRequest("POST", "https://auth.example.com/logout", strings.NewReader(url.Values{"csrf": {m[1]}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Cookie", "portcullis_session="+sid)
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	w = httptest.NewRecorder()
	if err := oidcprovider.NewHandler(app).ServeHTTP(w, r, okHandler{}); err != nil || w.Code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d %v", w.Code, err)
	}
	if a := serve(t, h, "GET", "https://app.example.org/x", map[string]string{"Cookie": "org_session=" + orgSID, "Accept": "text/html"}); a.status != http.StatusFound || a.up.called {
		t.Errorf("example.org's session after sign-out at the portal: %d", a.status)
	}
	if a := serve(t, h, "GET", pendingRedeem, map[string]string{"Cookie": pendingNonce.Name + "=" + pendingNonce.Value}); !strings.Contains(a.header.Get("Location"), "/handoff/failed") {
		t.Errorf("a code minted before the sign-out, redeemed after it: %d %s %v", a.status, a.header.Get("Location"), a.header["Set-Cookie"])
	}
}

// A browser holds a nonce cookie for every hand-off begun and not finished (a restored window of
// tabs at a further domain, each sent to the sign-in page), and sends them oldest first: the
// hand-off finished in the last tab still finds its own, however many came before it (a browser
// keeps at most 180 of a domain).
func TestHandoffAfterManyUnfinished(t *testing.T) {
	app := startDomainsApp(t, t.TempDir())
	h := newHandler(t, app, GateConfig{})
	sid := signIn(t, app)
	var cookies []string
	for range 60 {
		a := serve(t, h, "GET", "https://app.example.org/tab", map[string]string{"Accept": "text/html"})
		cs := (&http.Response{Header: a.header}).Cookies()
		if a.status != http.StatusFound || len(cs) != 1 {
			t.Fatalf("an unfinished hand-off: %d %v", a.status, a.header["Set-Cookie"])
		}
		cookies = append(cookies, cs[0].Name+"="+cs[0].Value)
	}
	nonce, redeem := beginHandoff(t, h, app, "https://app.example.org/last", sid)
	cookies = append(cookies, nonce.Name+"="+nonce.Value)
	a := serve(t, h, "GET", redeem, map[string]string{"Cookie": strings.Join(cookies, "; ")})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "https://app.example.org/last" {
		t.Fatalf("the last tab's hand-off behind %d unfinished ones: %d %s", len(cookies)-1, a.status, a.header.Get("Location"))
	}
}
