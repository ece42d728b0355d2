package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp"
	otptotp "github.com/pquerna/otp/totp"
)

// chromiumPath finds Debian's chromium (or another Chrome). Without one the browser tests skip,
// unless PORTCULLIS_REQUIRE_BROWSER is set (CI sets it), where they fail.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PORTCULLIS_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium found, and PORTCULLIS_REQUIRE_BROWSER is set: install Debian's chromium package")
	}
	t.Skip("no chromium found: install Debian's chromium package to run the browser tests")
	return ""
}

// artifactsDir is where screenshots go: $PORTCULLIS_ARTIFACTS, or a folder in the temp dir.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("PORTCULLIS_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "portcullis-artifacts")
	}
	dir = filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless chromium with its own profile (its own cookies), whose requests all
// carry X-Forwarded-For: addr, so Caddy (trusting the loopback proxy) sees it at addr.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newBrowser(t *testing.T, exe, addr string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.IgnoreCertErrors,
		chromedp.Flag("host-resolver-rules", "MAP *.example.test 127.0.0.1, MAP *.example.net 127.0.0.1"),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// a bound on the whole browser session, so a hang fails the test; generous, because a loaded
	// two-core machine makes the long portal walk-through take minutes
	ctx, cancelTimeout := context.WithTimeout(ctx, 6*time.Minute)
	t.Cleanup(cancelTimeout)
	b := &browser{t: t, ctx: ctx, shots: artifactsDir(t)}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"X-Forwarded-For": addr}}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.location())
	}
}

// submit clicks a form's button and waits for the page that follows.
func (b *browser) submit(sel string) {
	b.t.Helper()
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("submitting %s: %v (at %s)", sel, err, b.location())
	}
}

func (b *browser) location() string {
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	return loc
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("reading %s: %v (at %s)", sel, err, b.location())
	}
	return s
}

// upstream reads the recorder's JSON answer shown in the browser.
func (b *browser) upstream() map[string]any {
	b.t.Helper()
	body, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		b.t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		b.t.Fatalf("at %s the page is not the upstream's answer: %.300s", b.location(), body)
	}
	return rec
}

// shoot saves the page at phone and desktop widths.
func (b *browser) shoot(name string) {
	b.t.Helper()
	for _, v := range []struct {
		suffix string
		w, h   int64
		mobile bool
	}{{"phone", 390, 844, true}, {"desktop", 1280, 860, false}} {
		var opts []chromedp.EmulateViewportOption
		if v.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		b.do(chromedp.EmulateViewport(v.w, v.h, opts...), chromedp.Sleep(150*time.Millisecond))
		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(b.shots, name+"-"+v.suffix+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

func (b *browser) cookie(name string) string {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.location()}})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// portalSite is a running Caddy with the portal at https://auth.example.test:<port> and two
// protected sites, secure (one_factor) and admin (two_factor), behind one session cookie domain.
type portalSite struct {
	t     *testing.T
	s     *server
	port  int
	admin int
	up    *recorder
	users string
}

func (p *portalSite) url(host, path string) string {
	return fmt.Sprintf("https://%s.example.test:%d%s", host, p.port, path)
}

func startPortalSite(t *testing.T) *portalSite { return startPortalSiteWith(t, "") }

// startPortalSiteWith is startPortalSite with more options (clients, say) in the oidc block;
// "{portal_port}" in more stands for the sites' https port (an audience URL needs it).
func startPortalSiteWith(t *testing.T, more string) *portalSite {
	dir := t.TempDir()
	p := &portalSite{t: t, port: freePort(t), up: newRecorder(t), users: filepath.Join(dir, "users.yml")}
	more = strings.ReplaceAll(more, "{portal_port}", fmt.Sprint(p.port))
	if !strings.Contains(more, "identity_validation") {
		// these sites have no notifier: the rule from before elevated sessions (a fresh
		// password) lets the tests here enrol a device; elevation_test.go mails the code
		more = "identity_validation {\n elevated_session {\n require_notifier false\n }\n}\n" + more
	}
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
		regulation {
			max_retries 3
			find_time 2m
			ban_time 5m
		}
		session {
			cookie_domain example.test
			expiration 1h
			inactivity 5m
			remember_me 30d
		}
		access_control {
			default_policy deny
			rule {
				domain secure.example.test
				policy one_factor
			}
			rule {
				domain admin.example.test
				subject group:admins
				policy two_factor
			}
		}
%[7]s
	}
}
auth.example.test:%[3]d {
	oidc_provider
}
secure.example.test:%[3]d {
	oidc_auth
	reverse_proxy %[6]s
}
admin.example.test:%[3]d {
	oidc_auth
	reverse_proxy %[6]s
}
`, adminPort, httpPort, p.port, filepath.Join(dir, "store"), p.users, strings.TrimPrefix(p.up.srv.URL, "http://"), more)
	p.admin = adminPort
	p.s = newServer(t, cf, adminPort, p.port)
	p.start()
	return p
}

// start runs the server and waits until the portal answers over TLS.
func (p *portalSite) start() {
	p.s.start()
	hc := p.client()
	deadline := time.Now().Add(20 * time.Second * slow)
	for time.Now().Before(deadline) {
		if resp, err := hc.Get(p.url("auth", "/")); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("the portal did not answer:\n%s", p.s.log.String())
}

// client is an HTTP client for the sites (Caddy's internal CA is not trusted here).
func (p *portalSite) client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 20 * time.Second * slow,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// A person signs in at the portal and reaches the protected sites: one factor for secure, and
// a second (TOTP, then a security key) for admin; sign-out ends access everywhere; a guesser
// is banned at their address only; an off-domain return URL is refused; a form without its CSRF
// token is refused; the session survives a restart. Every page is photographed.
func TestPortalInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	p := startPortalSite(t)
	hc := p.client()
	a := newBrowser(t, exe, "10.0.0.1")

	// an anonymous browser is sent to the sign-in page
	a.do(chromedp.Navigate(p.url("secure", "/hello?x=1")))
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
		t.Fatalf("anonymous browser at %s, want the sign-in page", loc)
	}
	a.shoot("signin")
	if _, err := chromedp.Call(a.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	a.shoot("signin-dark")
	if _, err := chromedp.Call(a.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}}); err != nil {
		t.Fatal(err)
	}
	a.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "wrong"))
	a.submit("button[type=submit]")
	if msg := a.text(".error"); !strings.Contains(msg, "Incorrect username or password") {
		t.Errorf("wrong password: %q", msg)
	}
	a.shoot("signin-error")
	a.do(chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	a.submit("button[type=submit]")
	if loc := a.location(); loc != p.url("secure", "/hello?x=1") {
		t.Fatalf("after sign-in at %s, want the page asked for", loc)
	}
	rec := a.upstream()
	hdr := rec["headers"].(map[string]any)
	for k, want := range map[string]string{"Remote-User": "john", "Remote-Groups": "dev,admins", "Remote-Email": "john@example.test", "Remote-Name": "John Doe"} {
		if got, _ := hdr[k].([]any); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %v, want %q", k, hdr[k], want)
		}
	}
	if c, _ := hdr["Cookie"].([]any); len(c) > 0 && strings.Contains(fmt.Sprint(c), "portcullis_session=") {
		t.Errorf("the session cookie reached the upstream: %v", c)
	}
	sessionA := a.cookie("portcullis_session")
	if sessionA == "" {
		t.Fatal("no session cookie after sign-in")
	}

	// the two_factor site sends the one-factor session to the second-factor page; with no device
	// yet, the person adds an authenticator app, then uses it
	a.do(chromedp.Navigate(p.url("admin", "/panel")))
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/2fa?rd=")) {
		t.Fatalf("one-factor session on a two_factor site at %s, want the second-factor page", loc)
	}
	a.shoot("secondfactor-first")
	a.submit("a.button.primary")
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/settings/totp")) {
		t.Fatalf("at %s, want the TOTP enrolment", loc)
	}
	a.shoot("totp-enrol")
	// the key sits in a closed "Cannot scan it?" box, as a person who cannot scan would open it
	secret, err := chromedp.Run(a.ctx, chromedp.Evaluate[string](`document.getElementById("totp-secret").textContent.trim()`))
	if err != nil || secret == "" {
		t.Fatalf("no TOTP key on the enrolment page: %v", err)
	}
	if uri, _ := chromedp.Run(a.ctx, chromedp.Evaluate[string](`document.getElementById("totp-uri").href`)); !strings.HasPrefix(uri, "otpauth://totp/") || !strings.Contains(uri, "secret="+secret) {
		t.Errorf("the enrolment link is %q, want the otpauth:// URI", uri)
	}
	a.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now())))
	a.submit("button[type=submit]")
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/2fa?rd=")) {
		t.Fatalf("after enrolment at %s, want the second-factor page; secret %q, page %q", loc, secret, a.text("main"))
	}
	a.shoot("secondfactor-totp")
	// the enrolment's code was spent; the next step's code (within the skew) lets the user in
	a.do(chromedp.SendKeys(chromedp.ID("code"), totpCode(t, secret, time.Now().Add(30*time.Second))))
	a.submit("button[type=submit]")
	if loc := a.location(); loc != p.url("admin", "/panel") {
		t.Fatalf("after the TOTP code at %s, want the admin site", loc)
	}
	if rec := a.upstream(); rec["path"] != "/panel" {
		t.Errorf("admin upstream saw %v", rec["path"])
	}
	if a.cookie("portcullis_session") == sessionA {
		t.Error("the session id did not change at the second factor")
	}
	// the old (pre-step-up) session id is worth nothing now
	if resp := getWithCookie(t, hc, p.url("secure", "/"), sessionA); resp.StatusCode != http.StatusFound {
		t.Errorf("the session id from before the step-up: %d, want 302", resp.StatusCode)
	}

	// a security key, registered with Chrome's virtual authenticator
	if _, err := chromedp.Call(a.ctx, cdpwebauthn.Enable, cdpwebauthn.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(a.ctx, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{Options: &cdpwebauthn.VirtualAuthenticatorOptions{
		Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Transport: cdpwebauthn.AuthenticatorTransportUsb,
		HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
	}}); err != nil {
		t.Fatal(err)
	}
	a.do(chromedp.Navigate(p.url("auth", "/settings/webauthn")))
	a.shoot("webauthn-register")
	a.do(chromedp.SetValue(chromedp.ID("key-name"), "YubiKey 5"), chromedp.Click(chromedp.ID("webauthn-register")))
	waitLocation(t, a, p.url("auth", "/settings?notice=key-added"))
	if body := a.text("main"); !strings.Contains(body, "YubiKey 5") || !strings.Contains(body, "Authenticator app") {
		t.Errorf("the signed-in page does not list both devices: %q", body)
	}
	a.shoot("settings")

	// sign-out ends the session on the server: the cookie copied before is refused everywhere
	beforeSignOut := a.cookie("portcullis_session")
	a.do(chromedp.Navigate(p.url("auth", "/logout")))
	a.shoot("signout")
	a.submit("button[type=submit]")
	a.shoot("signed-out")
	for _, site := range []string{"secure", "admin"} {
		a.do(chromedp.Navigate(p.url(site, "/")))
		if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/?rd=")) {
			t.Errorf("%s after sign-out at %s, want the sign-in page", site, loc)
		}
		if resp := getWithCookie(t, hc, p.url(site, "/"), beforeSignOut); resp.StatusCode != http.StatusFound {
			t.Errorf("%s with the signed-out cookie: %d, want 302", site, resp.StatusCode)
		}
	}

	// a guesser at another address is banned after three failures, even with the right password
	g := newBrowser(t, exe, "10.0.0.2")
	g.do(chromedp.Navigate(p.url("auth", "/")))
	for i := 0; i < 3; i++ {
		g.do(chromedp.SetValue(chromedp.ID("username"), "john"), chromedp.SetValue(chromedp.ID("password"), fmt.Sprintf("guess-%d", i)))
		g.submit("button[type=submit]")
	}
	g.do(chromedp.SetValue(chromedp.ID("username"), "john"), chromedp.SetValue(chromedp.ID("password"), "pw-john"))
	g.submit("button[type=submit]")
	if msg := g.text(".error"); !strings.Contains(msg, "Incorrect username or password") {
		t.Errorf("banned address with the right password: %q at %s", msg, g.location())
	}

	// john at his own address still signs in; the second factor is now the security key
	a.do(chromedp.Navigate(p.url("admin", "/panel")))
	a.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "pw-john"))
	a.submit("button[type=submit]")
	if loc := a.location(); !strings.HasPrefix(loc, p.url("auth", "/2fa?rd=")) {
		t.Fatalf("john while a guesser is banned: at %s, want the second-factor page", loc)
	}
	a.shoot("secondfactor-both")
	a.do(chromedp.Click(chromedp.ID("webauthn-login")))
	waitLocation(t, a, p.url("admin", "/panel"))

	// an off-domain return URL is not followed
	a.do(chromedp.Navigate(p.url("auth", "/?rd=https%3A%2F%2Fevil.test%2Fsteal")))
	if loc := a.location(); strings.Contains(loc, "evil.test") || !strings.HasPrefix(loc, p.url("auth", "/settings")) {
		t.Errorf("signed in with an off-domain rd: at %s, want the signed-in page", loc)
	}

	// a form posted without its CSRF token is refused, from a script and from the page
	resp, err := hc.PostForm(p.url("auth", "/"), map[string][]string{"username": {"john"}, "password": {"pw-john"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) > 1 {
		t.Errorf("sign-in without a CSRF token: %d, cookies %v; want 403 and no session", resp.StatusCode, resp.Cookies())
	}
	g.do(chromedp.Navigate(p.url("auth", "/")), chromedp.SetValue(chromedp.CSS("input[name=csrf]"), "forged"),
		chromedp.SetValue(chromedp.ID("username"), "john"), chromedp.SetValue(chromedp.ID("password"), "pw-john"))
	g.submit("button[type=submit]")
	if title := g.text("h1"); !strings.Contains(title, "expired") {
		t.Errorf("a forged CSRF token: page %q, want the refusal", title)
	}
	g.shoot("error-csrf")

	// the session survives a restart of the server
	p.s.stop()
	p.start()
	a.do(chromedp.Navigate(p.url("admin", "/after-restart")))
	if loc := a.location(); loc != p.url("admin", "/after-restart") {
		t.Errorf("after a restart at %s, want the admin site without signing in again", loc)
	}

	// more session cookies of our name than the portal reads (a sibling site under the cookie
	// domain can set them): the portal tells the person to clear the site's cookies
	secure := true
	for _, path := range []string{"/", "/settings", "/settings/totp", "/settings/totp/remove"} {
		for _, domain := range []string{"auth.example.test", ".example.test"} {
			if _, err := chromedp.Call(a.ctx, network.SetCookie, network.SetCookieParams{Name: "portcullis_session",
				Value: "planted", Domain: domain, Path: path, Secure: &secure}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.do(chromedp.Navigate(p.url("auth", "/settings/totp/remove")))
	if title := a.text("h1"); !strings.Contains(title, "two sessions") {
		t.Errorf("eight session cookies: page %q, want the page asking to clear the cookies", title)
	}
	a.shoot("error-session-cookies")
	t.Logf("screenshots in %s", a.shots)
}

func getWithCookie(t *testing.T, hc *http.Client, target, session string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	req.Header.Set("Accept", "text/html")
	req.AddCookie(&http.Cookie{Name: "portcullis_session", Value: session})
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// waitLocation waits for a script-driven navigation.
func waitLocation(t *testing.T, b *browser, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b.location() == want {
			// and for the page to be there
			_, _ = chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.readyState`))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	status, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(document.getElementById("webauthn-status")||{}).textContent||""`))
	t.Fatalf("at %s (status %q), want %s", b.location(), status, want)
}

// totpCode is the code an authenticator app would show at t for a SHA1, 6-digit, 30s secret.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := otptotp.GenerateCodeCustom(secret, at, otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// startQuickStart runs Caddyfile.example as the README says, with its ports ("9091" the portal,
// "8080" the site, "9092" the example application) moved to the given ones, the users file found
// from the test's directory and an admin endpoint of its own. It returns the running server.
func startQuickStart(t *testing.T, ports map[string]int) *server {
	t.Helper()
	data, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cf := string(data)
	for from, to := range ports {
		cf = strings.ReplaceAll(cf, from, fmt.Sprint(to))
	}
	abs, err := filepath.Abs("../users.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	cf = strings.Replace(cf, "users_file users.example.yml", "users_file "+abs, 1)
	cf = strings.Replace(cf, "filesystem notification.txt", "filesystem "+filepath.Join(t.TempDir(), "notification.txt"), 1)
	admin := freePort(t)
	cf = strings.Replace(cf, "{\n", fmt.Sprintf("{\n\tadmin localhost:%d\n", admin), 1)
	s := newServer(t, cf, admin, ports["8080"])
	s.readyURL = fmt.Sprintf("http://localhost:%d/.well-known/openid-configuration", ports["9091"])
	s.start()
	return s
}

// A newcomer runs Caddyfile.example as the README says, opens the protected site in a browser
// and signs in as john with the password "password" (ports moved so the test runs anywhere).
func TestQuickStartSignIn(t *testing.T) {
	exe := chromiumPath(t)
	portal, site := freePort(t), freePort(t)
	startQuickStart(t, map[string]int{"9091": portal, "8080": site})

	b := newBrowser(t, exe, "127.0.0.1")
	b.do(chromedp.Navigate(fmt.Sprintf("http://localhost:%d/", site)))
	if loc := b.location(); !strings.HasPrefix(loc, fmt.Sprintf("http://localhost:%d/?rd=", portal)) {
		t.Fatalf("the site sent the browser to %s, want the sign-in page", loc)
	}
	b.do(chromedp.SendKeys(chromedp.ID("username"), "john"), chromedp.SendKeys(chromedp.ID("password"), "password"))
	b.submit("button[type=submit]")
	if body := b.text("body"); !strings.Contains(body, "Hello, john!") {
		t.Fatalf("after signing in at %s: %q", b.location(), body)
	}
	b.do(chromedp.Navigate(fmt.Sprintf("http://localhost:%d/admin", site)))
	if loc := b.location(); !strings.HasPrefix(loc, fmt.Sprintf("http://localhost:%d/2fa?rd=", portal)) {
		t.Errorf("/admin sent john to %s, want the second-factor page", loc)
	}
}
