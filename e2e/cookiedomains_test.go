package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// cookieDomainsTTL is the hand-off codes' life in these tests (through the suite's hook), short
// enough to wait out.
const cookieDomainsTTL = 5 * time.Second

// startCookieDomains runs a portal at auth.example.test with three cookie domains: example.test
// (the issuer's; secure.example.test needs one factor), example.net (app.example.net, one
// factor, and admin.example.net, two, under its own cookie name) and example.org
// (app.example.org, one factor).
func startCookieDomains(t *testing.T) *portalSite { return startCookieDomainsWith(t, "") }

// startCookieDomainsWith is startCookieDomains with more options (same_site strict, say) in
// example.net's cookie block.
func startCookieDomainsWith(t *testing.T, net string) *portalSite {
	dir := t.TempDir()
	p := &portalSite{t: t, port: freePort(t), up: newRecorder(t), users: filepath.Join(dir, "users.yml")}
	usersFile(t, p.users, map[string]string{
		"john": "    displayname: John Doe\n    email: john@example.test\n    groups: [dev, admins]\n",
	})
	adminPort, httpPort := freePort(t), freePort(t)
	cf := fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	https_port %[3]d
	local_certs
	skip_install_trust
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	oidc {
		issuer https://auth.example.test:%[3]d
		storage %[4]s
		users_file %[5]s
		session {
			cookie_domain example.test example.org
			cookie example.net {
				name net_session
				expiration 2h
				%[7]s
			}
		}
		identity_validation {
			elevated_session {
				require_notifier false
			}
		}
		access_control {
			default_policy deny
			rule {
				domain secure.example.test app.example.net app.example.org
				policy one_factor
			}
			rule {
				domain admin.example.net
				policy two_factor
			}
		}
	}
}
auth.example.test:%[3]d {
	oidc_provider
}
secure.example.test:%[3]d, app.example.net:%[3]d, admin.example.net:%[3]d, app.example.org:%[3]d {
	oidc_auth
	reverse_proxy %[6]s
}
`, adminPort, httpPort, p.port, filepath.Join(dir, "store"), p.users, strings.TrimPrefix(p.up.srv.URL, "http://"), net)
	p.admin = adminPort
	p.s = newServer(t, cf, adminPort, p.port, "PORTCULLIS_TEST_HANDOFF_TTL="+cookieDomainsTTL.String())
	p.start()
	return p
}

// at is an https URL of host (a full name) on the site's port.
func (p *portalSite) at(host, path string) string {
	return fmt.Sprintf("https://%s:%d%s", host, p.port, path)
}

// send sends a GET for target with the Cookie header cookies, as a browser would (Accept
// text/html), and checks every cookie it sets: a Domain only of the answering host's own cookie
// domain, never another configured domain's name.
func (p *portalSite) send(target, cookies string) *http.Response {
	p.t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	req.Header.Set("Accept", "text/html")
	if cookies != "" {
		req.Header.Set("Cookie", cookies)
	}
	resp, err := p.client().Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	host := req.URL.Hostname()
	own := host[strings.Index(host, ".")+1:]
	for _, v := range resp.Header["Set-Cookie"] {
		for _, d := range []string{"example.test", "example.net", "example.org"} {
			if d != own && strings.Contains(v, d) {
				p.t.Errorf("%s set a cookie that names %s: %s", host, d, v)
			}
		}
	}
	for _, c := range resp.Cookies() {
		if c.Domain != "" && c.Domain != own {
			p.t.Errorf("%s set a cookie for the domain %s: %s", host, c.Domain, c)
		}
	}
	return resp
}

// handoffCode begins a hand-off at target (a site under a further domain) as a browser without
// its session, with the portal's session cookie portal, and returns the gate's nonce cookie
// ("name=value") and the URL that redeems the code.
func (p *portalSite) handoffCode(target, portal string) (nonce, redeem string) {
	p.t.Helper()
	resp := p.send(target, "")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, p.at("auth.example.test", "/handoff?")) || len(resp.Cookies()) != 1 {
		p.t.Fatalf("%s without a session: %d %s %v", target, resp.StatusCode, loc, resp.Header["Set-Cookie"])
	}
	c := resp.Cookies()[0]
	if !strings.HasPrefix(c.Name, "__Host-") || !c.HttpOnly || !c.Secure || c.Domain != "" {
		p.t.Errorf("the nonce cookie: %s", c)
	}
	resp = p.send(loc, "portcullis_session="+portal)
	redeem = resp.Header.Get("Location")
	u, _ := url.Parse(target)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(redeem, "https://"+u.Host+"/.portcullis/handoff?code=") {
		p.t.Fatalf("the portal's hand-off: %d %s", resp.StatusCode, redeem)
	}
	return c.Name + "=" + c.Value, redeem
}

// refused checks a redemption the gate refuses: to the portal's page that says so, no cookie set.
func (p *portalSite) refused(what string, resp *http.Response) {
	p.t.Helper()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), p.at("auth.example.test", "/handoff/failed?rd=")) || len(resp.Cookies()) != 0 {
		p.t.Errorf("%s: %d %s %v, want the refusal", what, resp.StatusCode, resp.Header.Get("Location"), resp.Header["Set-Cookie"])
	}
}

// Two registrable domains on one sign-in: a person signs in once and reaches example.test's
// and example.net's sites (the second through the hand-off, without a second password), with
// Remote-User upstream on both; a code replayed, used on another domain, in another browser, or
// after its lifetime is refused; one sign-out at the portal ends the sessions on both domains.
func TestCookieDomainsInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	p := startCookieDomains(t)
	a := newBrowser(t, exe, "10.0.0.31")

	// the further domain first: the gate begins a hand-off, the portal asks for the password
	a.do(chromedp.Navigate(p.at("app.example.net", "/hello?x=1")))
	if loc := a.location(); !strings.HasPrefix(loc, p.at("auth.example.test", "/?rd=")) {
		t.Fatalf("anonymous at example.net, at %s: want the sign-in page", loc)
	}
	a.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	a.submit("button[type=submit]")
	if loc := a.location(); loc != p.at("app.example.net", "/hello?x=1") {
		t.Fatalf("after sign-in at %s, want the example.net page asked for", loc)
	}
	checkUpstream := func(site string) {
		t.Helper()
		rec := a.upstream()
		hdr := rec["headers"].(map[string]any)
		if got, _ := hdr["Remote-User"].([]any); len(got) != 1 || got[0] != "john" {
			t.Errorf("%s: upstream Remote-User = %v", site, hdr["Remote-User"])
		}
		if c := fmt.Sprint(hdr["Cookie"]); strings.Contains(c, "_session") || strings.Contains(c, "handoff") {
			t.Errorf("%s: a session or nonce cookie reached the upstream: %s", site, c)
		}
	}
	checkUpstream("example.net")
	// the issuer's domain, with no second password
	a.do(chromedp.Navigate(p.at("secure.example.test", "/")))
	if loc := a.location(); loc != p.at("secure.example.test", "/") {
		t.Fatalf("example.test at %s", loc)
	}
	checkUpstream("example.test")
	// example.net again: its own session now, no hand-off
	a.do(chromedp.Navigate(p.at("app.example.net", "/again")))
	if loc := a.location(); loc != p.at("app.example.net", "/again") {
		t.Fatalf("example.net again at %s", loc)
	}
	checkUpstream("example.net again")

	// no cookie crossed domains: each session cookie is its domain's, the nonce is gone
	jar, err := chromedp.Call(a.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.at("auth.example.test", "/"), p.at("secure.example.test", "/"), p.at("app.example.net", "/"), p.at("app.example.org", "/")}})
	if err != nil {
		t.Fatal(err)
	}
	var portalSession, netSession string
	for _, c := range jar.Cookies {
		switch {
		case c.Name == "portcullis_session" && c.Domain == ".example.test" && c.HTTPOnly && c.Secure:
			portalSession = c.Value
		case c.Name == "net_session" && c.Domain == ".example.net" && c.HTTPOnly && c.Secure && c.SameSite == network.CookieSameSiteLax:
			netSession = c.Value
		case strings.HasSuffix(c.Domain, "example.test") && strings.HasPrefix(c.Name, "__Host-portcullis_session_csrf"):
		default:
			t.Errorf("an unexpected cookie in the browser: %s on %s", c.Name, c.Domain)
		}
	}
	if portalSession == "" || netSession == "" || portalSession == netSession {
		t.Fatalf("the browser's sessions: portal %q, example.net %q", portalSession, netSession)
	}

	// refusals, with a client that keeps its cookies by hand (the portal's session copied in)
	nonce, redeem := p.handoffCode(p.at("app.example.org", "/"), portalSession)
	resp := p.send(redeem, nonce)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != p.at("app.example.org", "/") {
		t.Fatalf("redeeming at example.org: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	p.refused("a replayed code", p.send(redeem, nonce))

	nonce, redeem = p.handoffCode(p.at("app.example.org", "/"), portalSession)
	p.refused("an example.org code at example.net", p.send(strings.Replace(redeem, "app.example.org", "app.example.net", 1), nonce))
	p.refused("the same code at example.org afterwards", p.send(redeem, nonce))
	// at a host of the issuer's domain the path is not the gate's: the code is never taken there
	if resp := p.send(strings.Replace(redeem, "app.example.org", "secure.example.test", 1), nonce); resp.StatusCode != http.StatusFound ||
		!strings.HasPrefix(resp.Header.Get("Location"), p.at("auth.example.test", "/?rd=")) {
		t.Errorf("an example.org code at example.test: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// another browser: a second Chromium opens a code minted for this client's nonce
	_, redeem = p.handoffCode(p.at("app.example.net", "/stolen"), portalSession)
	b := newBrowser(t, exe, "10.0.0.32")
	b.do(chromedp.Navigate(redeem))
	if loc := b.location(); !strings.HasPrefix(loc, p.at("auth.example.test", "/handoff/failed?rd=")) ||
		!strings.Contains(b.text("main"), "This sign-in link has expired or was already used — go back and try again") {
		t.Errorf("another browser's code: at %s: %q", loc, b.text("main"))
	}
	b.shoot("handoff-refused")
	if c := b.cookie("net_session"); c != "" {
		t.Error("the other browser got a session")
	}
	// the plain client without the nonce cookie
	_, redeem = p.handoffCode(p.at("app.example.net", "/"), portalSession)
	p.refused("a code without the nonce", p.send(redeem, ""))

	// expired
	nonce, redeem = p.handoffCode(p.at("app.example.net", "/"), portalSession)
	time.Sleep(cookieDomainsTTL + time.Second)
	p.refused("an expired code", p.send(redeem, nonce))

	// a two_factor site of example.net: the one-factor session there goes back through the
	// portal, which asks for the second factor (here a first authenticator app), then hands a
	// two-factor session off
	a.do(chromedp.Navigate(p.at("admin.example.net", "/panel")))
	if loc := a.location(); !strings.HasPrefix(loc, p.at("auth.example.test", "/2fa?rd=")) {
		t.Fatalf("one factor on example.net's two_factor site at %s, want the second-factor page", loc)
	}
	a.submit("a.button.primary")
	secret, err := chromedp.Run(a.ctx, chromedp.Evaluate[string](`document.getElementById("totp-secret").textContent.trim()`))
	if err != nil || secret == "" {
		t.Fatalf("no TOTP key on the enrolment page at %s: %v", a.location(), err)
	}
	a.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now())))
	a.submit("button[type=submit]")
	a.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now().Add(30*time.Second))))
	a.submit("button[type=submit]")
	if loc := a.location(); loc != p.at("admin.example.net", "/panel") {
		t.Fatalf("after the second factor at %s, want example.net's two_factor site", loc)
	}
	checkUpstream("example.net, two factors")
	if c := a.cookie("net_session"); c == "" || c == netSession {
		t.Errorf("example.net's session after the step-up: %q (before: %q)", c, netSession)
	} else {
		// the one-factor session it replaced in the browser ended with the hand-off
		if resp := p.send(p.at("app.example.net", "/"), "net_session="+netSession); resp.StatusCode != http.StatusFound {
			t.Errorf("example.net's one-factor session after the step-up: %d, want it ended", resp.StatusCode)
		}
		netSession = c
	}

	// one sign-out at the portal: both domains refuse at once
	a.do(chromedp.Navigate(p.at("auth.example.test", "/logout")))
	a.submit("button[type=submit]")
	a.do(chromedp.Navigate(p.at("app.example.net", "/after")))
	if loc := a.location(); !strings.HasPrefix(loc, p.at("auth.example.test", "/?rd=")) {
		t.Errorf("example.net after sign-out at %s, want the sign-in page", loc)
	}
	a.do(chromedp.Navigate(p.at("secure.example.test", "/after")))
	if loc := a.location(); !strings.HasPrefix(loc, p.at("auth.example.test", "/?rd=")) {
		t.Errorf("example.test after sign-out at %s, want the sign-in page", loc)
	}
	if resp := p.send(p.at("app.example.net", "/"), "net_session="+netSession); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), p.at("auth.example.test", "/handoff?")) {
		t.Errorf("example.net's session copied before the sign-out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := p.send(p.at("secure.example.test", "/"), "portcullis_session="+portalSession); resp.StatusCode != http.StatusFound {
		t.Errorf("the portal's session copied before the sign-out: %d", resp.StatusCode)
	}
}
