package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// fedUpstream is a second Portcullis, the same binary with its own Caddyfile, storage, users
// file and ports, playing the upstream identity provider at http://localhost:<port> (our own
// rule allows an http issuer on a loopback host), with the downstream portal registered as a
// client whose redirect URIs are the downstream's callbacks.
type fedUpstream struct {
	s    *server
	port int
}

func (u *fedUpstream) issuer() string { return fmt.Sprintf("http://localhost:%d", u.port) }

// fedProviders are the downstream's identity providers, all on the one upstream: idp maps by
// verified e-mail address, corp allows only example.com addresses, manual maps only linked
// identities, auto creates the users it does not know.
var fedProviders = []string{"idp", "corp", "manual", "auto"}

func fedDownstreamConfig(upPort int) string {
	var b strings.Builder
	for _, name := range fedProviders {
		more := map[string]string{
			"idp":    `display_name "Upstream IdP"`,
			"corp":   "display_name Corp\n\t\t\tallowed_domains example.com",
			"manual": "display_name Manual\n\t\t\tlink manual",
			"auto":   "display_name Auto\n\t\t\tcreate_users",
		}[name]
		fmt.Fprintf(&b, `
		identity_provider %s {
			type oidc
			issuer http://localhost:%d
			client_id downstream
			client_secret down-secret
			%s
		}`, name, upPort, more)
	}
	return b.String()
}

// startFedUpstream starts the upstream on port, its client's redirect URIs at the downstream
// portal's port.
func startFedUpstream(t *testing.T, port, downPort int) *fedUpstream {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yml")
	usersFile(t, users, map[string]string{
		"jdoe":     "    displayname: John Upstream\n    email: john@example.test\n",
		"stranger": "    displayname: Stranger Danger\n    email: stranger@example.test\n",
	})
	var redirects []string
	for _, name := range fedProviders {
		redirects = append(redirects, fmt.Sprintf("https://auth.example.test:%d/federation/%s/callback", downPort, name))
	}
	adminPort := freePort(t)
	cf := fmt.Sprintf(`{
	admin localhost:%[1]d
	http_port %[2]d
	https_port %[3]d
	auto_https off
	oidc {
		issuer http://localhost:%[2]d
		storage %[4]s
		users_file %[5]s
		client downstream {
			name "Downstream Portal"
			secret "$plaintext$down-secret"
			scopes openid profile email
			redirect_uris %[6]s
			authorization_policy one_factor
			consent_mode implicit
		}
	}
}
http://localhost:%[2]d {
	oidc_provider
}
`, adminPort, port, freePort(t), filepath.Join(dir, "store"), users, strings.Join(redirects, " "))
	u := &fedUpstream{s: newServer(t, cf, adminPort, port), port: port}
	u.s.readyURL = u.issuer() + "/.well-known/openid-configuration"
	u.s.start()
	return u
}

// upstreamSignIn signs in at the upstream's sign-in page the browser is on.
func upstreamSignIn(b *browser, u *fedUpstream, user string) {
	b.t.Helper()
	if loc := b.location(); !strings.HasPrefix(loc, u.issuer()+"/?") {
		b.t.Fatalf("at %s, want the upstream's sign-in page", loc)
	}
	b.do(chromedp.SendKeys(chromedp.ID("username"), user), chromedp.SendKeys(chromedp.ID("password"), "pw-"+user))
	b.submit("button[type=submit]")
}

// callbacks records the downstream callback URLs the browser requests.
func callbacks(b *browser) func() []string {
	var mu sync.Mutex
	var seen []string
	if err := chromedp.Listen(b.ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && strings.Contains(e.Request.URL, "/federation/") && strings.Contains(e.Request.URL, "/callback") {
			mu.Lock()
			seen = append(seen, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		b.t.Fatal(err)
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// interceptCallback runs start (steps that end in the upstream sending the browser to the
// downstream's callback) and stops that request before it leaves the browser, returning its URL:
// the callback of a live flow, for a test to tamper with or open elsewhere.
func interceptCallback(b *browser, start func()) string {
	b.t.Helper()
	paused := make(chan *fetch.EventRequestPaused, 4)
	if err := chromedp.Listen(b.ctx, func(ev any) {
		if e, ok := ev.(*fetch.EventRequestPaused); ok {
			select {
			case paused <- e:
			default:
			}
		}
	}); err != nil {
		b.t.Fatal(err)
	}
	if _, err := chromedp.Call(b.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/federation/*/callback*"}}}); err != nil {
		b.t.Fatal(err)
	}
	defer func() { _, _ = chromedp.Call(b.ctx, fetch.Disable, cdp.Empty{}) }()
	start()
	select {
	case e := <-paused:
		if _, err := chromedp.Call(b.ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: e.RequestID, ErrorReason: network.ErrorReasonAborted}); err != nil {
			b.t.Fatal(err)
		}
		return e.Request.URL
	case <-time.After(30 * time.Second * slow):
		b.t.Fatalf("the browser never went to the callback (at %s)", b.location())
	}
	return ""
}

// withState is the callback URL cb with another state.
func withState(t *testing.T, cb, state string) string {
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("state", state)
	u.RawQuery = q.Encode()
	return u.String()
}

// Sign-in through an upstream identity provider, for real: a second Portcullis is the upstream
// OpenID Connect provider. The downstream starts while the upstream is down; a person signs in
// with the upstream button and is mapped by verified e-mail address to the local user; a
// replayed callback, a tampered state and a callback opened in another browser are refused;
// the account page lists the link, unlinks it behind elevation (the unlinked identity then signs
// no one in until it is linked again) and links another provider manually; an unknown identity and a disallowed domain are refused with a clear page;
// create_users adds the person to the users file; with the upstream stopped the button's page
// says so and the password still works.
func TestFederationInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	upPort := freePort(t)
	p := startPortalSiteWith(t, fedDownstreamConfig(upPort)) // the upstream is not running yet
	if !strings.Contains(p.s.log.String(), "register this redirect URI") || !strings.Contains(p.s.log.String(), p.url("auth", "/federation/idp/callback")) {
		t.Errorf("the log at start does not name the redirect URI to register:\n%s", p.s.log.String())
	}
	up := startFedUpstream(t, upPort, p.port)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("DEBUG upstream log:\n%s\nDEBUG downstream log:\n%s", up.s.log.String(), p.s.log.String())
		}
	})

	// mapping by verified e-mail: jdoe upstream is john here
	a := newBrowser(t, exe, "10.0.0.1")
	seen := callbacks(a)
	a.do(chromedp.Navigate(p.url("secure", "/hello")))
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
		t.Fatalf("anonymous browser at %s, want the sign-in page", loc)
	}
	if got := a.text("#federation-idp"); got != "Sign in with Upstream IdP" {
		t.Errorf("the button says %q", got)
	}
	a.shoot("federation-signin")
	a.submit("#federation-idp")
	upstreamSignIn(a, up, "jdoe")
	// the callback's page moves on to the protected site by itself
	waitLocation(t, a, p.url("secure", "/hello"))
	if got := a.upstream()["headers"].(map[string]any)["Remote-User"]; fmt.Sprint(got) != "[john]" {
		t.Fatalf("Remote-User %v, want john", got)
	}
	if !strings.Contains(p.s.log.String(), `"factor":"upstream"`) {
		t.Errorf("the sign-in is not logged as an upstream one")
	}

	// the callback again: refused, and the session stays
	cbs := seen()
	if len(cbs) != 1 {
		t.Fatalf("callbacks seen: %v", cbs)
	}
	a.do(chromedp.Navigate(cbs[0]))
	if msg := a.text(".error"); !strings.Contains(msg, "not for a sign-in this browser started") {
		t.Errorf("a replayed callback: %q", msg)
	}

	// the account page lists the link; unlinking asks for elevation (the password here)
	a.do(chromedp.Navigate(p.url("auth", "/settings")))
	if got := a.text("#links-title + ul"); !strings.Contains(got, "Upstream IdP") || !strings.Contains(got, "jdoe") {
		t.Fatalf("linked accounts: %q", got)
	}
	if got := a.text(".who"); !strings.Contains(got, "Signed in with Upstream IdP") {
		t.Errorf("session line: %q", got)
	}
	a.shoot("federation-settings")
	a.submit(`form[action$="/settings/federation/unlink"] button`)
	if loc := a.location(); !strings.Contains(loc, "/settings/federation/unlink") || a.text("h1") != "Confirm it is you" {
		t.Fatalf("unlinking without elevation: at %s (%s)", loc, a.text("h1"))
	}
	a.do(chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	a.submit("button[type=submit]")
	a.submit(`form[action$="/settings/federation/unlink"] button`)
	if loc := a.location(); !strings.HasSuffix(loc, "/settings?notice=identity-unlinked") {
		t.Fatalf("after unlinking at %s", loc)
	}
	if got := a.text("#links-title + ul"); !strings.Contains(got, "No account of another service is linked") {
		t.Fatalf("linked accounts after unlinking: %q", got)
	}

	// manual linking while signed in: the upstream session signs the flow in at once
	a.submit("#link-manual")
	if loc := a.location(); !strings.HasSuffix(loc, "/settings?notice=identity-linked") {
		t.Fatalf("after linking at %s", loc)
	}
	if got := a.text("#links-title + ul"); !strings.Contains(got, "Manual") || !strings.Contains(got, "john@example.test") {
		t.Fatalf("linked accounts after linking: %q", got)
	}
	a.shoot("federation-linked")

	// the unlinked identity signs no one in by its address (it was not linked again at its
	// next sign-in) until the person links it again on the account page
	g := newBrowser(t, exe, "10.0.0.6")
	g.do(chromedp.Navigate(p.url("auth", "/")))
	g.submit("#federation-idp")
	upstreamSignIn(g, up, "jdoe")
	if msg := g.text(".error"); !strings.Contains(msg, "was unlinked from its account") {
		t.Fatalf("an unlinked identity: %q at %s", msg, g.location())
	}
	if c := g.cookie("portcullis_session"); c != "" {
		t.Fatal("an unlinked identity got a session cookie")
	}
	g.shoot("federation-unlinked")
	a.submit("#link-idp")
	if loc := a.location(); !strings.HasSuffix(loc, "/settings?notice=identity-linked") {
		t.Fatalf("after linking again at %s", loc)
	}

	// an identity no local user has: refused with a clear page, and no session
	b := newBrowser(t, exe, "10.0.0.2")
	b.do(chromedp.Navigate(p.url("auth", "/")))
	b.submit("#federation-idp")
	upstreamSignIn(b, up, "stranger")
	if h := b.text("h1"); h != "You cannot sign in with Upstream IdP" {
		t.Fatalf("unknown identity: page %q at %s", h, b.location())
	}
	if msg := b.text(".error"); !strings.Contains(msg, "no account here") {
		t.Errorf("unknown identity: %q", msg)
	}
	b.shoot("federation-refused")
	if c := b.cookie("portcullis_session"); c != "" {
		t.Fatal("a refused identity got a session cookie")
	}
	// a domain outside allowed_domains: refused (the upstream session answers at once)
	b.do(chromedp.Navigate(p.url("auth", "/")))
	b.submit("#federation-corp")
	if msg := b.text(".error"); !strings.Contains(msg, "domain may not sign in here") {
		t.Errorf("disallowed domain: %q at %s", msg, b.location())
	}
	// create_users: the person is added to the users file and signed in
	b.do(chromedp.Navigate(p.url("auth", "/")))
	b.submit("#federation-auto")
	if loc := b.location(); loc != p.url("auth", "/settings") {
		t.Fatalf("create_users: at %s (%s)", loc, b.text("h1"))
	}
	if got := b.text(".who"); !strings.Contains(got, "Stranger Danger") || !strings.Contains(got, "(stranger)") {
		t.Errorf("create_users: signed in as %q", got)
	}
	data, err := os.ReadFile(p.users)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "  stranger:\n") || !strings.Contains(string(data), "email: stranger@example.test") {
		t.Fatalf("the users file after create_users:\n%s", data)
	}

	// a live flow's callback with another state is refused; its own is accepted once
	c := newBrowser(t, exe, "10.0.0.3")
	cb := interceptCallback(c, func() {
		c.do(chromedp.Navigate(p.url("auth", "/?rd="+url.QueryEscape(p.url("secure", "/x")))))
		c.submit("#federation-idp")
		c.do(chromedp.SendKeys(chromedp.ID("username"), "jdoe"), chromedp.SendKeys(chromedp.ID("password"), "pw-jdoe"), chromedp.Click(chromedp.CSS("button[type=submit]")))
	})
	c.do(chromedp.Navigate(withState(t, cb, "tampered-"+strings.Repeat("x", 40))))
	if msg := c.text(".error"); !strings.Contains(msg, "not for a sign-in this browser started") {
		t.Errorf("tampered state: %q", msg)
	}
	c.do(chromedp.Navigate(cb))
	waitLocation(t, c, p.url("secure", "/x"))
	// a live flow's callback opened in another browser is refused, and spent
	cb = interceptCallback(c, func() {
		c.do(chromedp.Navigate(p.url("auth", "/?prompt=login")))
		c.do(chromedp.Click(chromedp.CSS("#federation-idp")))
	})
	d := newBrowser(t, exe, "10.0.0.4")
	d.do(chromedp.Navigate(cb))
	if msg := d.text(".error"); !strings.Contains(msg, "not for a sign-in this browser started") {
		t.Errorf("a callback in another browser: %q", msg)
	}
	if c := d.cookie("portcullis_session"); c != "" {
		t.Fatal("another browser got a session from someone's callback")
	}
	c.do(chromedp.Navigate(cb))
	if msg := c.text(".error"); !strings.Contains(msg, "not for a sign-in this browser started") {
		t.Errorf("a callback spent by another browser: %q", msg)
	}

	// the upstream down: a clear page, and the password still works
	up.s.stop()
	e := newBrowser(t, exe, "10.0.0.5")
	e.do(chromedp.Navigate(p.url("secure", "/after")))
	e.submit("#federation-idp")
	if h := e.text("h1"); h != "Could not reach Upstream IdP" {
		t.Fatalf("upstream down: page %q at %s", h, e.location())
	}
	e.shoot("federation-down")
	e.submit("a.button")
	e.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	e.submit("button[type=submit]")
	if loc := e.location(); loc != p.url("secure", "/after") {
		t.Fatalf("password sign-in with the upstream down: at %s", loc)
	}
}
