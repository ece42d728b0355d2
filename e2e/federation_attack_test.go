package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// fedAgent is a browser without a browser for the attack probes: a cookie jar, redirects seen
// one at a time.
type fedAgent struct {
	t *testing.T
	c *http.Client
}

func newFedAgent(t *testing.T, p *portalSite) *fedAgent {
	jar, _ := cookiejar.New(nil)
	c := p.client()
	c.Jar = jar
	return &fedAgent{t: t, c: c}
}

func (a *fedAgent) do(req *http.Request) (*http.Response, string) {
	a.t.Helper()
	req.Header.Set("Accept", "text/html")
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
		a.t.Errorf("%s %s: %d", req.Method, req.URL, resp.StatusCode)
	}
	return resp, string(body)
}

func (a *fedAgent) get(u string) (*http.Response, string) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.do(req)
}

func (a *fedAgent) post(u, origin string, form url.Values) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	return a.do(req)
}

// csrf reads a page's CSRF token.
func (a *fedAgent) csrf(u string) string {
	a.t.Helper()
	_, body := a.get(u)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		a.t.Fatalf("no CSRF token at %s", u)
	}
	return m[1]
}

// begin presses provider's button on the sign-in page (with rd) and returns the upstream URL.
func (a *fedAgent) begin(p *portalSite, provider, rd string) string {
	a.t.Helper()
	origin := p.url("auth", "")
	resp, _ := a.post(p.url("auth", "/federation/"+provider), origin, url.Values{"csrf": {a.csrf(p.url("auth", "/"))}, "rd": {rd}})
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		a.t.Fatalf("the %s button: %d", provider, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// callback follows authURL at the upstream, signing in there as user when asked, and returns
// the downstream callback URL the upstream sends the browser to (not opened).
func (a *fedAgent) callback(up *fedUpstream, authURL, user string) string {
	a.t.Helper()
	next := authURL
	for range 10 {
		if strings.Contains(next, "/federation/") && strings.Contains(next, "/callback") {
			return next
		}
		resp, body := a.get(next)
		switch {
		case resp.StatusCode/100 == 3:
			loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
			next = loc.String()
		case resp.StatusCode == http.StatusOK && strings.Contains(body, `id="password"`):
			m := csrfField.FindStringSubmatch(body)
			rd := resp.Request.URL.Query().Get("rd")
			r, _ := a.post(up.issuer()+"/", up.issuer(), url.Values{"csrf": {m[1]}, "rd": {rd}, "username": {user}, "password": {"pw-" + user}})
			loc, _ := r.Request.URL.Parse(r.Header.Get("Location"))
			next = loc.String()
		default:
			a.t.Fatalf("at the upstream %s: %d", next, resp.StatusCode)
		}
	}
	a.t.Fatalf("the upstream never sent the browser to the callback (last %s)", next)
	return ""
}

func (a *fedAgent) signedIn(p *portalSite) bool {
	u, _ := url.Parse(p.url("auth", "/"))
	for _, c := range a.c.Jar.Cookies(u) {
		if c.Name == "portcullis_session" && c.Value != "" {
			return true
		}
	}
	return false
}

// Attacks on upstream sign-in against the built binary, without a browser: login CSRF (an
// attacker's callback opened by a victim), a code of another flow, the upstream's error
// parameters reflected, huge and malformed callback parameters, provider-name path tricks, a
// button without its CSRF token, an off-site or javascript: return URL, and the flows' secrets
// in the logs. None answers a 500, signs anyone in, or echoes markup.
func TestFederationAttackProbes(t *testing.T) {
	upPort := freePort(t)
	p := startPortalSiteWith(t, fedDownstreamConfig(upPort))
	up := startFedUpstream(t, upPort, p.port)

	// login CSRF: the attacker's own callback, opened by the victim's browser, is refused
	attacker, victim := newFedAgent(t, p), newFedAgent(t, p)
	cb := attacker.callback(up, attacker.begin(p, "idp", ""), "jdoe")
	if resp, body := victim.get(cb); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not for a sign-in this browser started") || victim.signedIn(p) {
		t.Fatalf("the attacker's callback in the victim's browser: %d, signed in %v", resp.StatusCode, victim.signedIn(p))
	}
	// … and spent: the attacker cannot use it either
	if resp, _ := attacker.get(cb); resp.StatusCode != http.StatusBadRequest || attacker.signedIn(p) {
		t.Fatalf("the attacker's callback after the victim's try: %d", resp.StatusCode)
	}

	// a code of another flow of the same browser: the PKCE verifier does not fit
	a := newFedAgent(t, p)
	cb1 := a.callback(up, a.begin(p, "idp", ""), "jdoe")
	cb2 := a.callback(up, a.begin(p, "idp", ""), "jdoe")
	u1, _ := url.Parse(cb1)
	u2, _ := url.Parse(cb2)
	mixed := withState(t, cb2, u1.Query().Get("state"))
	if resp, _ := a.get(mixed); resp.StatusCode == http.StatusOK || resp.StatusCode/100 == 3 || a.signedIn(p) {
		t.Fatalf("a code of another flow: %d, signed in %v", resp.StatusCode, a.signedIn(p))
	}

	// the upstream's error parameters are not reflected
	b := newFedAgent(t, p)
	state := func(authURL string) string { u, _ := url.Parse(authURL); return u.Query().Get("state") }
	s := state(b.begin(p, "idp", ""))
	q := url.Values{"state": {s}, "error": {`<script>alert(1)</script>`}, "error_description": {`<img src=x onerror=alert(2)>`}, "error_uri": {"javascript:alert(3)"}}
	resp, body := b.get(p.url("auth", "/federation/idp/callback?"+q.Encode()))
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "alert(") || strings.Contains(body, "<script>alert") {
		t.Fatalf("an upstream error: %d\n%s", resp.StatusCode, body)
	}

	// huge and malformed parameters: refused, never a 500
	s = state(b.begin(p, "idp", ""))
	for _, raw := range []string{
		"state=" + url.QueryEscape(s) + "&code=" + strings.Repeat("c", 64<<10),
		"state=" + strings.Repeat("s", 4096) + "&code=x",
		"state=&code=",
		"state=%ff%fe&code=%00",
		"state=a&state=b&code=x",
		"code=x",
		"",
	} {
		if resp, _ := b.get(p.url("auth", "/federation/idp/callback?"+raw)); resp.StatusCode/100 != 4 || b.signedIn(p) {
			t.Errorf("callback ?%.60s: %d", raw, resp.StatusCode)
		}
	}

	// provider names in paths: exact names only
	for _, path := range []string{"/federation/IDP/callback", "/federation/idp/callback/callback", "/federation//callback",
		"/federation/idp%2fcallback", "/federation/nope/callback", "/federation/idp/../idp/callback?state=x"} {
		resp, _ := b.get(p.url("auth", path))
		if resp.StatusCode == http.StatusOK || resp.StatusCode/100 == 3 && strings.HasPrefix(resp.Header.Get("Location"), up.issuer()) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp, _ := b.get(p.url("auth", "/federation/idp")); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on the button's path: %d", resp.StatusCode)
	}
	// the button without its CSRF token, or from another origin
	if resp, _ := b.post(p.url("auth", "/federation/idp"), p.url("auth", ""), url.Values{"rd": {""}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the button without its CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := b.post(p.url("auth", "/federation/idp"), "https://evil.example", url.Values{"csrf": {b.csrf(p.url("auth", "/"))}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the button from another origin: %d", resp.StatusCode)
	}

	// an off-site or javascript: rd goes nowhere but the portal; the secrets stay out of the logs
	var secrets []string
	for _, rd := range []string{"javascript:alert(1)", "https://evil.example/", "//evil.example/", "https://secure.example.test.evil.example/"} {
		c := newFedAgent(t, p)
		cb := c.callback(up, c.begin(p, "idp", rd), "jdoe")
		cu, _ := url.Parse(cb)
		secrets = append(secrets, cu.Query().Get("code"), cu.Query().Get("state"))
		resp, body := c.get(cb)
		to := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || !strings.HasPrefix(to, "/") && !strings.HasPrefix(to, p.url("auth", "/")) || strings.Contains(body, "evil") || strings.Contains(body, "javascript") || !c.signedIn(p) {
			t.Errorf("rd %s: %d to %q\n%s", rd, resp.StatusCode, to, body)
		}
	}
	for _, v := range append(secrets, u1.Query().Get("code"), u2.Query().Get("code")) {
		if v != "" && (strings.Contains(p.s.log.String(), v) || strings.Contains(up.s.log.String(), v)) {
			t.Errorf("a code or state is in a log: %.12s…", v)
		}
	}
	if t.Failed() {
		t.Logf("DEBUG downstream log:\n%s", p.s.log.String())
	}
}
