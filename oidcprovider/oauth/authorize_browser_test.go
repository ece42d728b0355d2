package oauth

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// testPortal is the portal as the flows see it: one browser, whose sign-in the test sets, and
// pages that record what they were asked to show.
type testPortal struct {
	mu       sync.Mutex
	signIn   *SignIn
	consent  *ConsentPage
	signOut  *SignOutPage
	errTitle string
	ended    int
}

const (
	testIssuer  = "https://auth.example.com"
	testCSRF    = "csrf-of-browser-1"
	testBinding = "browser-1"
	testBye     = "http://127.0.0.1:4000/bye"
)

func (p *testPortal) signInAs(username string, authTime time.Time, twoFactor bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signIn = &SignIn{Username: username, Groups: []string{"staff"}, AuthTime: authTime, TwoFactor: twoFactor, AMR: []string{"pwd"}, Ref: "ref-" + username}
}

func (p *testPortal) Current(*http.Request) *SignIn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signIn == nil {
		return nil
	}
	s := *p.signIn
	return &s
}

func (p *testPortal) SignInURL(rd string, force bool) string {
	u := "/signin?rd=" + url.QueryEscape(rd)
	if force {
		u += "&prompt=login"
	}
	return u
}

func (p *testPortal) SecondFactorURL(rd string) string { return "/2fa?rd=" + url.QueryEscape(rd) }
func (p *testPortal) SignedOutURL() string             { return "/signed-out" }

func (p *testPortal) BrowserBinding(http.ResponseWriter, *http.Request) string { return testBinding }

func (p *testPortal) CheckCSRF(r *http.Request) bool { return r.PostFormValue("csrf") == testCSRF }

func (p *testPortal) RenderConsent(w http.ResponseWriter, _ *http.Request, c *ConsentPage) {
	p.mu.Lock()
	p.consent = c
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("consent page"))
}

func (p *testPortal) RenderSignOut(w http.ResponseWriter, _ *http.Request, s *SignOutPage) {
	p.mu.Lock()
	p.signOut = s
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("sign-out page"))
}

func (p *testPortal) RenderError(w http.ResponseWriter, _ *http.Request, status int, title, _ string) {
	p.mu.Lock()
	p.errTitle = title
	p.mu.Unlock()
	w.WriteHeader(status)
	_, _ = w.Write([]byte("error page: " + title))
}

func (p *testPortal) EndSession(http.ResponseWriter, *http.Request) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signIn = nil
	p.ended++
	return nil
}

// testSubjects gives every user one sub per sector.
type testSubjects struct{}

func (testSubjects) Subject(_ context.Context, username, sector string) (string, error) {
	return "sub-" + username + "@" + sector, nil
}

// testConsents keeps remembered consents in a map.
type testConsents struct {
	mu   sync.Mutex
	kept map[string]time.Time // user, client, scopes, audience → expiry
}

func consentKey(username, clientID string, scopes, audience []string) string {
	s, a := slices.Clone(scopes), slices.Clone(audience)
	slices.Sort(s)
	slices.Sort(a)
	return username + "|" + clientID + "|" + strings.Join(s, " ") + "|" + strings.Join(a, " ")
}

func (c *testConsents) Find(_ context.Context, username, clientID string, scopes, audience []string, now time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.kept[consentKey(username, clientID, scopes, audience)]
	return ok && now.Before(exp), nil
}

func (c *testConsents) Remember(_ context.Context, username, clientID string, scopes, audience []string, lifetime time.Duration, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kept[consentKey(username, clientID, scopes, audience)] = now.Add(lifetime)
	return nil
}

func (c *testConsents) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.kept)
}

// browserFlow is a Flow on a real Provider and Badger store, with the test portal.
type browserFlow struct {
	*flowProvider
	flow     *Flow
	portal   *testPortal
	consents *testConsents
}

// newBrowserFlow registers one client per behaviour under test: "app" (consent every time, one
// factor), "implicit" (consent_mode implicit), "remembered" (consent_mode pre-configured for a
// week), "strong" (two_factor) and "closed" (a named policy that denies everyone).
func newBrowserFlow(t *testing.T) *browserFlow {
	t.Helper()
	kv, err := store.Open(t.TempDir(), store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	reg := map[string]*clients.Client{}
	add := func(cfg clients.Config) {
		cfg.Secret = "$plaintext$" + cfg.ID + "-secret"
		cfg.GrantTypes = []string{"authorization_code", "refresh_token"}
		cfg.Scopes = []string{"openid", "profile", "offline_access"}
		cfg.RedirectURIs = []string{testRedirect}
		cfg.PostLogoutRedirectURIs = []string{testBye}
		c, err := clients.NewFor(cfg, clients.Lifespans{}, clients.ProviderSettings{AuthorizationPolicies: []string{"nobody"}})
		if err != nil {
			t.Fatal(err)
		}
		reg[cfg.ID] = c
	}
	add(clients.Config{ID: "app", AuthorizationPolicy: clients.PolicyOneFactor})
	add(clients.Config{ID: "implicit", AuthorizationPolicy: clients.PolicyOneFactor, ConsentMode: clients.ConsentImplicit})
	add(clients.Config{ID: "remembered", AuthorizationPolicy: clients.PolicyOneFactor, ConsentMode: clients.ConsentPreConfigured,
		PreConfiguredConsentDuration: duration.Duration(7 * 24 * time.Hour)})
	add(clients.Config{ID: "strong", AuthorizationPolicy: clients.PolicyTwoFactor, ConsentMode: clients.ConsentImplicit})
	add(clients.Config{ID: "closed", AuthorizationPolicy: "nobody", ConsentMode: clients.ConsentImplicit})
	lookup := func(id string) (*clients.Client, bool) { c, ok := reg[id]; return c, ok }
	people := &testPeople{disabled: map[string]bool{}}
	p := New(Config{
		Issuer:     testIssuer,
		Lifespans:  clients.Lifespans{AccessToken: time.Hour, RefreshToken: time.Hour, AuthorizeCode: time.Minute, IDToken: time.Hour},
		HMACSecret: bytes.Repeat([]byte("k"), 32),
		KV:         kv,
		Clients:    lookup,
		Authenticator: &clients.Authenticator{Lookup: lookup, Secrets: digest.NewCache(100, time.Hour),
			Limits: clients.NewLimits(), Logger: zap.NewNop()},
		ClientIP: func(*http.Request) string { return "127.0.0.1" },
		Keys:     testKeys(t, "RS256"),
		Tokens:   NewTokenCache(100),
		People:   people,
	})
	portal := &testPortal{}
	consents := &testConsents{kept: map[string]time.Time{}}
	policy := func(_ *http.Request, c *clients.Client, _ *SignIn) accesscontrol.Policy {
		switch c.AuthorizationPolicy() {
		case clients.PolicyOneFactor:
			return accesscontrol.OneFactor
		case clients.PolicyTwoFactor:
			return accesscontrol.TwoFactor
		}
		return accesscontrol.Deny
	}
	flow := NewFlow(p, FlowConfig{Portal: portal, Subjects: testSubjects{}, Consents: consents, Policy: policy})
	return &browserFlow{flowProvider: &flowProvider{t: t, p: p, people: people, kv: kv}, flow: flow, portal: portal, consents: consents}
}

// request is an authorization request of client with extra parameters.
func request(client string, extra url.Values) url.Values {
	q := url.Values{"client_id": {client}, "response_type": {"code"}, "scope": {"openid profile"},
		"redirect_uri": {testRedirect}, "state": {"state-0123456789"}, "nonce": {"nonce-0123456789"}}
	for k, v := range extra {
		q[k] = v
	}
	return q
}

// authorize sends the browser to the authorization endpoint with q.
func (b *browserFlow) authorize(q url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	w := httptest.NewRecorder()
	b.flow.ServeAuthorize(w, httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+q.Encode(), nil))
	return w
}

// resume follows a portal page's return URL rd back to the authorization endpoint, as the
// portal does once the person has signed in.
func (b *browserFlow) resume(rd string) *httptest.ResponseRecorder {
	b.t.Helper()
	rel, ok := strings.CutPrefix(rd, testIssuer)
	if !ok {
		b.t.Fatalf("the return URL %q is not at the issuer", rd)
	}
	w := httptest.NewRecorder()
	b.flow.ServeAuthorize(w, httptest.NewRequest(http.MethodGet, rel, nil))
	return w
}

// answerConsent posts the consent form for the flow the consent page showed.
func (b *browserFlow) answerConsent(decision, csrf string, remember bool) *httptest.ResponseRecorder {
	b.t.Helper()
	if b.portal.consent == nil {
		b.t.Fatal("no consent page was shown")
	}
	form := url.Values{"flow": {b.portal.consent.Flow}, "decision": {decision}, "csrf": {csrf}}
	if remember {
		form.Set("remember", "1")
	}
	r := httptest.NewRequest(http.MethodPost, PathConsent, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	b.flow.ServeConsent(w, r)
	return w
}

// portalPage is where w sent the browser at the portal (path "/signin" or "/2fa") and the
// return URL it carries; it fails the test on any other answer.
func portalPage(t *testing.T, w *httptest.ResponseRecorder) (page string, q url.Values) {
	t.Helper()
	if w.Code != http.StatusSeeOther {
		t.Fatalf("want a redirect to the portal, got %d %q", w.Code, w.Body.String())
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || (loc.Path != "/signin" && loc.Path != "/2fa") {
		t.Fatalf("want a redirect to the portal, got Location %q", w.Header().Get("Location"))
	}
	return loc.Path, loc.Query()
}

// atClient is the answer w sent to the client's redirect URI (code or error, state, iss); it
// fails the test on any other answer.
func atClient(t *testing.T, w *httptest.ResponseRecorder) url.Values {
	t.Helper()
	loc := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(loc, testRedirect+"?") {
		t.Fatalf("want an answer at the client's redirect URI, got %d Location %q body %q", w.Code, loc, w.Body.String())
	}
	u, _ := url.Parse(loc)
	q := u.Query()
	if q.Get("state") != "state-0123456789" || q.Get("iss") != testIssuer {
		t.Fatalf("the answer lacks state or iss: %v", q)
	}
	return q
}

// granted checks that w gave the client a code.
func granted(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	q := atClient(t, w)
	if q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("want a code, got %v", q)
	}
	return q.Get("code")
}

// refused checks that w sent the client the error code want.
func refused(t *testing.T, w *httptest.ResponseRecorder, want string) {
	t.Helper()
	q := atClient(t, w)
	if q.Get("error") != want || q.Get("code") != "" {
		t.Fatalf("want error %q at the client, got %v", want, q)
	}
}

// A browser without a session goes to the sign-in page with a return URL at the issuer that
// names only the saved request (none of the client's parameters), and comes back to consent and
// a code once signed in.
func TestAuthorizeWithoutSessionSignsIn(t *testing.T) {
	b := newBrowserFlow(t)
	w := b.authorize(request("app", nil))
	page, q := portalPage(t, w)
	if page != "/signin" || q.Get("prompt") != "" {
		t.Fatalf("want the sign-in page without prompt=login, got %s %v", page, q)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("the redirect may be cached: %q", w.Header().Get("Cache-Control"))
	}
	rd := q.Get("rd")
	rest, ok := strings.CutPrefix(rd, testIssuer+PathAuthorization+"?")
	if !ok {
		t.Fatalf("the return URL %q is not the issuer's authorization endpoint", rd)
	}
	if back, _ := url.ParseQuery(rest); len(back) != 1 || back.Get("flow") == "" {
		t.Fatalf("the return URL carries more than the saved request: %q", rd)
	}

	b.portal.signInAs("john", time.Now(), false)
	if w := b.resume(rd); w.Code != http.StatusOK || b.portal.consent == nil {
		t.Fatalf("signed in: want the consent page, got %d %q", w.Code, w.Body.String())
	}
	if c := b.portal.consent; c.Username != "john" || c.ClientID != "app" || !slices.Equal(c.Scopes, []string{"openid", "profile"}) ||
		c.Remember != 0 || !slices.Equal(c.FormAction, []string{"http://127.0.0.1:4000"}) {
		t.Fatalf("consent page: %+v", c)
	}
	code := granted(t, b.answerConsent("accept", testCSRF, false))
	if status, out := b.exchange("app", code, ""); status != http.StatusOK || out["id_token"] == nil {
		t.Fatalf("the code was not exchanged: %d %v", status, out)
	}
	// the saved request is spent
	if w := b.resume(rd); w.Code != http.StatusBadRequest {
		t.Fatalf("a spent flow resumed: %d %q", w.Code, w.Body.String())
	}
}

// prompt=login and max_age send a browser whose sign-in is older than the request (or than
// max_age) back to the password; a sign-in made for the request itself is fresh.
func TestPromptLoginAndMaxAge(t *testing.T) {
	b := newBrowserFlow(t)
	b.portal.signInAs("john", time.Now().Add(-time.Hour), false)

	granted(t, b.authorize(request("implicit", nil)))
	granted(t, b.authorize(request("implicit", url.Values{"max_age": {"7200"}})))

	for _, extra := range []url.Values{{"prompt": {"login"}}, {"max_age": {"600"}}, {"max_age": {"0"}}} {
		b.portal.signInAs("john", time.Now().Add(-time.Hour), false)
		page, q := portalPage(t, b.authorize(request("implicit", extra)))
		if page != "/signin" || q.Get("prompt") != "login" {
			t.Fatalf("%v with a sign-in an hour old: want the password again, got %s %v", extra, page, q)
		}
		// the person signs in again: now the sign-in is as fresh as the request
		b.portal.signInAs("john", time.Now(), false)
		granted(t, b.resume(q.Get("rd")))
	}
}

// prompt=none never shows a page: each missing step is an error at the client's redirect URI.
func TestPromptNoneAnswersAtTheClient(t *testing.T) {
	b := newBrowserFlow(t)
	none := url.Values{"prompt": {"none"}}
	refused(t, b.authorize(request("implicit", none)), "login_required")

	b.portal.signInAs("john", time.Now().Add(-time.Hour), false)
	granted(t, b.authorize(request("implicit", none)))
	refused(t, b.authorize(request("implicit", url.Values{"prompt": {"none"}, "max_age": {"60"}})), "login_required")
	refused(t, b.authorize(request("app", none)), "consent_required")
	refused(t, b.authorize(request("strong", none)), "interaction_required")
	if b.portal.consent != nil {
		t.Fatal("prompt=none showed the consent page")
	}
}

// consent_mode decides when the person is asked: explicit every time, implicit never (except
// for offline access), pre-configured once per remembered consent (and again on
// prompt=consent); a deny goes back to the client, a form without its CSRF token is refused.
func TestConsentDecision(t *testing.T) {
	b := newBrowserFlow(t)
	b.portal.signInAs("john", time.Now(), false)
	asked := func(client string, extra url.Values) bool {
		t.Helper()
		b.portal.consent = nil
		w := b.authorize(request(client, extra))
		if b.portal.consent == nil {
			granted(t, w)
			return false
		}
		if w.Code != http.StatusOK || b.portal.consent.ClientID != client {
			t.Fatalf("consent page for %s: %d %+v", client, w.Code, b.portal.consent)
		}
		return true
	}

	t.Run("explicit", func(t *testing.T) {
		for range 2 {
			if !asked("app", nil) {
				t.Fatal("an explicit client did not ask")
			}
			granted(t, b.answerConsent("accept", testCSRF, true))
		}
		if b.consents.count() != 0 {
			t.Fatal("an explicit client's consent was remembered")
		}
		asked("app", nil)
		refused(t, b.answerConsent("deny", testCSRF, false), "access_denied")
		asked("app", nil)
		if w := b.answerConsent("accept", "wrong", false); w.Code != http.StatusForbidden || b.portal.errTitle != "This form has expired" {
			t.Fatalf("consent without the CSRF token: %d %q", w.Code, w.Body.String())
		}
	})
	t.Run("implicit", func(t *testing.T) {
		if asked("implicit", nil) {
			t.Fatal("an implicit client asked")
		}
		if !asked("implicit", url.Values{"scope": {"openid offline_access"}}) {
			t.Fatal("an implicit client got offline access without asking")
		}
		granted(t, b.answerConsent("accept", testCSRF, false))
	})
	t.Run("pre-configured", func(t *testing.T) {
		if !asked("remembered", nil) || b.portal.consent.Remember != 7*24*time.Hour {
			t.Fatalf("first request: want the page offering a week, got %+v", b.portal.consent)
		}
		granted(t, b.answerConsent("accept", testCSRF, false)) // not ticked: not remembered
		if !asked("remembered", nil) {
			t.Fatal("a consent given without remember was remembered")
		}
		granted(t, b.answerConsent("accept", testCSRF, true))
		if asked("remembered", nil) {
			t.Fatal("a remembered consent asked again")
		}
		if !asked("remembered", url.Values{"scope": {"openid"}}) {
			t.Fatal("a consent to other scopes was taken as remembered")
		}
		if !asked("remembered", url.Values{"prompt": {"consent"}}) || b.portal.consent.Remember != 0 {
			t.Fatalf("prompt=consent: want the page without remembering, got %+v", b.portal.consent)
		}
	})
}

// The client's authorization policy: one factor is enough for one_factor, two_factor sends a
// one-factor sign-in to the second-factor page (and takes a two-factor one), a policy that
// denies answers access_denied.
func TestClientAuthorizationPolicy(t *testing.T) {
	b := newBrowserFlow(t)
	b.portal.signInAs("john", time.Now(), false)
	granted(t, b.authorize(request("implicit", nil)))

	page, q := portalPage(t, b.authorize(request("strong", nil)))
	if page != "/2fa" || !strings.HasPrefix(q.Get("rd"), testIssuer+PathAuthorization+"?flow=") {
		t.Fatalf("two_factor with one factor: want the second-factor page, got %s %v", page, q)
	}
	b.portal.signInAs("john", time.Now(), true)
	granted(t, b.resume(q.Get("rd")))

	refused(t, b.authorize(request("closed", nil)), "access_denied")
}

// A response type the client did not register is refused at its redirect URI before anyone
// signs in; a redirect URI it did not register is never followed.
func TestRefusedRequests(t *testing.T) {
	b := newBrowserFlow(t)
	refused(t, b.authorize(request("app", url.Values{"response_type": {"token"}})), "unsupported_response_type")

	w := b.authorize(request("app", url.Values{"redirect_uri": {"https://evil.example.com/cb"}}))
	if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || b.portal.errTitle == "" {
		t.Fatalf("an unregistered redirect URI: %d Location %q", w.Code, w.Header().Get("Location"))
	}
	w = b.authorize(request("nobody", nil))
	if w.Code != http.StatusUnauthorized || w.Header().Get("Location") != "" {
		t.Fatalf("an unknown client: %d Location %q", w.Code, w.Header().Get("Location"))
	}
	w = httptest.NewRecorder()
	b.flow.ServeAuthorize(w, httptest.NewRequest(http.MethodPut, PathAuthorization, nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, POST" {
		t.Fatalf("PUT: %d Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

// logout sends an end_session request.
func (b *browserFlow) logout(method string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	var r *http.Request
	if method == http.MethodPost {
		r = httptest.NewRequest(method, PathLogout, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, PathLogout+"?"+form.Encode(), nil)
	}
	w := httptest.NewRecorder()
	b.flow.ServeLogout(w, r)
	return w
}

// idToken signs user in to the implicit client and returns their ID token.
func (b *browserFlow) idToken(user string) string {
	b.t.Helper()
	b.portal.signInAs(user, time.Now(), false)
	code := granted(b.t.(*testing.T), b.authorize(request("implicit", nil)))
	status, out := b.exchange("implicit", code, "")
	tok, _ := out["id_token"].(string)
	if status != http.StatusOK || tok == "" {
		b.t.Fatalf("no ID token: %d %v", status, out)
	}
	return tok
}

// RP-initiated logout: without an id_token_hint (or with another user's) the person confirms
// first, with the form's CSRF token; with the signed-in user's id_token_hint it signs out at
// once; then the browser goes to the registered post_logout_redirect_uri with state.
func TestLogout(t *testing.T) {
	b := newBrowserFlow(t)
	bye := testBye + "?state=bye-state"
	afterLogout := func(w *httptest.ResponseRecorder, want string) {
		t.Helper()
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != want {
			t.Fatalf("want a redirect to %s, got %d Location %q body %q", want, w.Code, w.Header().Get("Location"), w.Body.String())
		}
	}
	req := url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {testBye}, "state": {"bye-state"}}

	t.Run("confirmed", func(t *testing.T) {
		b.portal.signInAs("john", time.Now(), false)
		w := b.logout(http.MethodGet, req)
		s := b.portal.signOut
		if w.Code != http.StatusOK || s == nil || b.portal.ended != 0 {
			t.Fatalf("without a hint: want the confirmation, got %d (ended %d)", w.Code, b.portal.ended)
		}
		if s.Username != "john" || s.Action != testIssuer+PathLogout || s.Params.Get("state") != "bye-state" ||
			s.Params.Get("post_logout_redirect_uri") != testBye || !slices.Equal(s.FormAction, []string{"http://127.0.0.1:4000"}) {
			t.Fatalf("confirmation page: %+v", s)
		}
		wrong := url.Values{"csrf": {"wrong"}}
		for k, v := range req {
			wrong[k] = v
		}
		if w := b.logout(http.MethodPost, wrong); w.Code != http.StatusOK || b.portal.ended != 0 {
			t.Fatalf("a confirmation without the CSRF token signed out: %d", w.Code)
		}
		s.Params.Set("csrf", testCSRF)
		afterLogout(b.logout(http.MethodPost, s.Params), bye)
		if b.portal.ended != 1 {
			t.Fatalf("the confirmed sign-out ended %d sessions", b.portal.ended)
		}
	})
	t.Run("hint", func(t *testing.T) {
		hint := b.idToken("john")
		b.portal.signOut = nil
		afterLogout(b.logout(http.MethodGet, url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {testBye}, "state": {"bye-state"}}), bye)
		if b.portal.ended != 2 || b.portal.signOut != nil {
			t.Fatalf("the signed-in user's id_token_hint: ended %d, confirmation %v", b.portal.ended, b.portal.signOut)
		}
		// another user's hint does not sign this browser out
		hint = b.idToken("jane")
		b.portal.signInAs("john", time.Now(), false)
		if w := b.logout(http.MethodGet, url.Values{"id_token_hint": {hint}}); w.Code != http.StatusOK || b.portal.signOut == nil || b.portal.ended != 2 {
			t.Fatalf("another user's id_token_hint: %d, ended %d", w.Code, b.portal.ended)
		}
	})
	t.Run("signed out", func(t *testing.T) {
		b.portal.signIn = nil
		afterLogout(b.logout(http.MethodGet, url.Values{}), "/signed-out")
		afterLogout(b.logout(http.MethodGet, req), bye)
	})
	t.Run("refused", func(t *testing.T) {
		b.portal.signInAs("john", time.Now(), false)
		for _, form := range []url.Values{
			{"client_id": {"app"}, "post_logout_redirect_uri": {"https://evil.example.com/"}},
			{"post_logout_redirect_uri": {testBye}},
			{"id_token_hint": {"not.a.token"}},
		} {
			if w := b.logout(http.MethodGet, form); w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
				t.Fatalf("%v: %d Location %q", form, w.Code, w.Header().Get("Location"))
			}
		}
		if b.portal.ended != 2 {
			t.Fatal("a refused sign-out request ended the session")
		}
	})
}
