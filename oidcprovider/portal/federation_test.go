package portal

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis-auth/portcullis/oidcprovider/federation"
)

// newFederationWorld is the portal world with one identity provider whose upstream is down (a
// loopback port nobody listens on): what the portal does before a flow reaches an upstream.
func newFederationWorld(t *testing.T) *portalWorld {
	w := newPortalWorld(t)
	fp, err := federation.New(federation.Config{Name: "idp", Type: federation.TypeOIDC, DisplayName: "Upstream", Issuer: "http://127.0.0.1:9",
		ClientID: "down", ClientSecret: "s3cret"}, "https://auth.example.com/federation/idp/callback", w.kv, []byte(strings.Repeat("f", 32)), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.p.cfg
	cfg.IdentityProviders, cfg.Links = []*federation.Provider{fp}, federation.NewLinks(w.kv)
	if w.p, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return w
}

// The routes: the button's POST needs the CSRF token; unknown providers are 404; the callback
// is GET only; a callback of no flow is refused with a page, and the upstream down is a clear
// 503 page while the password still signs in.
func TestFederationRoutes(t *testing.T) {
	w := newFederationWorld(t)
	page := w.do("GET", "/?rd="+url.QueryEscape("https://secure.example.com/"), nil)
	body := page.Body.String()
	if !strings.Contains(body, `action="/federation/idp"`) || !strings.Contains(body, "Sign in with Upstream") {
		t.Fatalf("the sign-in page has no button:\n%s", body)
	}
	if csp := page.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "http://127.0.0.1:9") {
		t.Errorf("the sign-in page's form-action does not name the upstream: %s", csp)
	}
	for _, tc := range []struct {
		method, path string
		form         url.Values
		status       int
		text         string
	}{
		{"POST", "/federation/nope", url.Values{}, http.StatusNotFound, ""},
		{"GET", "/federation/idp", nil, http.StatusMethodNotAllowed, ""},
		{"POST", "/federation/idp/callback", url.Values{}, http.StatusMethodNotAllowed, ""},
		{"POST", "/federation/idp", url.Values{"csrf": {"forged"}}, http.StatusForbidden, "This form has expired"},
		{"GET", "/federation/idp/callback?state=made-up&code=x", nil, http.StatusBadRequest, "not for a sign-in this browser started"},
		{"POST", "/federation/idp", url.Values{"rd": {"https://secure.example.com/"}}, http.StatusServiceUnavailable, "We could not reach Upstream just now"},
	} {
		rec := w.do(tc.method, tc.path, tc.form)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.text) {
			t.Errorf("%s %s: %d, want %d with %q:\n%.400s", tc.method, tc.path, rec.Code, tc.status, tc.text, rec.Body.String())
		}
		if tc.status == http.StatusServiceUnavailable && !strings.Contains(rec.Body.String(), `href="/?rd=https%3A%2F%2Fsecure.example.com%2F"`) {
			t.Errorf("the upstream-down page does not lead to the password form with rd:\n%s", rec.Body.String())
		}
	}
	if w.cookies[w.p.bindingCookie("idp")] != nil {
		t.Error("a flow that never began left a binding cookie")
	}
	w.signIn() // the password works all along
	// unlinking needs a session and elevation: without a session, the sign-in page
	w2 := newFederationWorld(t)
	if rec := w2.do("POST", "/settings/federation/unlink", url.Values{"provider": {"idp"}, "subject": {"x"}}); rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/?rd=") {
		t.Errorf("unlink without a session: %d %s", rec.Code, rec.Header().Get("Location"))
	}
}

// A callback's sign-in goes on by a redirect within the portal's origin, and by a page that
// moves on by itself to another origin (the upstream's form-action covers our callback alone).
func TestContinueTo(t *testing.T) {
	w := newFederationWorld(t)
	r := httptest.NewRequest("GET", "https://auth.example.com/federation/idp/callback", nil)
	rec := httptest.NewRecorder()
	w.p.continueTo(rec, r, "/settings")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/settings" {
		t.Errorf("within the portal: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	rec = httptest.NewRecorder()
	w.p.continueTo(rec, r, "https://secure.example.com/a?b=1&c=2")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<meta http-equiv="refresh" content="0;url=https://secure.example.com/a?b=1&amp;c=2">`) {
		t.Errorf("to another origin: %d\n%s", rec.Code, rec.Body.String())
	}
}
