package oauth

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// testDevicePages records the device page the flow asked for.
type testDevicePages struct {
	mu   sync.Mutex
	last *DevicePage
}

func (p *testDevicePages) RenderDevice(w http.ResponseWriter, _ *http.Request, d *DevicePage) {
	p.mu.Lock()
	c := *d
	p.last = &c
	p.mu.Unlock()
	w.WriteHeader(d.Status)
	_, _ = w.Write([]byte("device page: " + d.State))
}

func (p *testDevicePages) page() *DevicePage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// deviceBrowser is the device page on a real Provider and Badger store, with the test portal;
// requests come from the address in their X-Forwarded-For header ("10.0.0.1" without one).
type deviceBrowser struct {
	*flowProvider
	flow   *Flow
	portal *testPortal
	pages  *testDevicePages
}

// newDeviceBrowser registers "tv" (a public device client, two_factor) and "cli" (one_factor),
// and "closed", which a policy denies everyone.
func newDeviceBrowser(t *testing.T) *deviceBrowser {
	t.Helper()
	kv, err := store.Open(t.TempDir(), store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	reg := map[string]*clients.Client{}
	for _, cfg := range append(deviceClients(), clients.Config{ID: "closed", Public: true, GrantTypes: []string{clients.GrantDeviceCode}, Scopes: []string{"openid"}}) {
		switch cfg.ID {
		case "cli":
			cfg.AuthorizationPolicy = clients.PolicyOneFactor
		case "closed":
			cfg.AuthorizationPolicy = "nobody"
		}
		c, err := clients.NewFor(cfg, clients.Lifespans{}, clients.ProviderSettings{AuthorizationPolicies: []string{"nobody"}})
		if err != nil {
			t.Fatal(err)
		}
		reg[cfg.ID] = c
	}
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
		ClientIP: func(r *http.Request) string {
			if a := r.Header.Get("X-Forwarded-For"); a != "" {
				return a
			}
			return "10.0.0.1"
		},
		Keys:   testKeys(t, "RS256"),
		Tokens: NewTokenCache(100),
		People: people,
	})
	portal := &testPortal{}
	pages := &testDevicePages{}
	policy := func(_ *http.Request, c *clients.Client, _ *SignIn) accesscontrol.Policy {
		switch c.AuthorizationPolicy() {
		case clients.PolicyOneFactor:
			return accesscontrol.OneFactor
		case clients.PolicyTwoFactor:
			return accesscontrol.TwoFactor
		}
		return accesscontrol.Deny
	}
	flow := NewFlow(p, FlowConfig{Portal: portal, Subjects: testSubjects{}, Consents: &testConsents{kept: map[string]time.Time{}}, Policy: policy, Device: pages})
	return &deviceBrowser{flowProvider: &flowProvider{t: t, p: p, people: people, kv: kv}, flow: flow, portal: portal, pages: pages}
}

// get opens the device page at rel (a path and query at the issuer).
func (b *deviceBrowser) get(rel string) *httptest.ResponseRecorder {
	b.t.Helper()
	w := httptest.NewRecorder()
	b.flow.ServeDevice(w, httptest.NewRequest(http.MethodGet, strings.TrimPrefix(rel, testIssuer), nil))
	return w
}

// postForm posts a device page form from addr ("" for the default address).
func (b *deviceBrowser) postForm(form url.Values, addr string) *httptest.ResponseRecorder {
	b.t.Helper()
	if form.Get("csrf") == "" {
		form.Set("csrf", testCSRF)
	}
	r := httptest.NewRequest(http.MethodPost, PathDevice, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if addr != "" {
		r.Header.Set("X-Forwarded-For", addr)
	}
	w := httptest.NewRecorder()
	b.flow.ServeDevice(w, r)
	return w
}

func (b *deviceBrowser) typeCode(code, addr string) *httptest.ResponseRecorder {
	return b.postForm(url.Values{"action": {"code"}, "user_code": {code}}, addr)
}

// The page's way through: the link's code is shown for checking (never approved by itself);
// the typed code leads to the sign-in and back, to the second factor the client asks for and
// back, to the consent page; Allow binds the device code to the person's sign-in and session,
// and the device collects the tokens.
func TestDevicePageApproves(t *testing.T) {
	b := newDeviceBrowser(t)
	out := b.deviceAuth("tv", "openid offline_access")
	uc, dc := out["user_code"].(string), out["device_code"].(string)

	lower := strings.ToLower(strings.ReplaceAll(uc, "-", ""))
	if w := b.get(PathDevice + "?user_code=" + lower); w.Code != http.StatusOK {
		t.Fatalf("the link: %d", w.Code)
	}
	if pg := b.pages.page(); pg.State != DeviceEnter || !pg.Prefilled || pg.UserCode != uc {
		t.Errorf("the link's page: %+v, want the code %s filled in for checking", pg, uc)
	}
	if _, out := b.poll("tv", dc); errorOf(out) != "authorization_pending" {
		t.Errorf("opening the link approved something: %v", out)
	}

	// a form without the CSRF token is refused
	if w := b.postForm(url.Values{"action": {"code"}, "user_code": {uc}, "csrf": {"forged"}}, ""); w.Code != http.StatusForbidden {
		t.Errorf("code without CSRF: %d", w.Code)
	}
	w := b.typeCode(lower, "")
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), testIssuer+PathDevice+"?flow=") {
		t.Fatalf("a right code: %d %v", w.Code, w.Header())
	}
	flowURL := w.Header().Get("Location")
	w = b.get(flowURL)
	if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || loc != "/signin?rd="+url.QueryEscape(flowURL) {
		t.Fatalf("not signed in: %d %q, want the sign-in that returns to %s", w.Code, loc, flowURL)
	}
	b.portal.signInAs("john", time.Now(), false)
	w = b.get(flowURL)
	if loc := w.Header().Get("Location"); loc != "/2fa?rd="+url.QueryEscape(flowURL) {
		t.Fatalf("one factor for a two_factor client: %d %q, want the second factor", w.Code, loc)
	}
	b.portal.signInAs("john", time.Now(), true)
	b.get(flowURL)
	pg := b.pages.page()
	if pg.State != DeviceConsent || pg.ClientID != "tv" || pg.UserCode != uc || strings.Join(pg.Scopes, " ") != "openid offline_access" || pg.Flow == "" {
		t.Fatalf("consent page: %+v", pg)
	}
	if w := b.postForm(url.Values{"action": {"approve"}, "flow": {pg.Flow}, "csrf": {"forged"}}, ""); w.Code != http.StatusForbidden {
		t.Errorf("approval without CSRF: %d", w.Code)
	}
	if w := b.postForm(url.Values{"action": {"approve"}, "flow": {pg.Flow}}, ""); w.Code != http.StatusOK || b.pages.page().State != DeviceApproved {
		t.Fatalf("approve: %d %+v", w.Code, b.pages.page())
	}
	status, tok := b.poll("tv", dc)
	if status != http.StatusOK || tok["refresh_token"] == nil {
		t.Fatalf("collecting: %d %v", status, tok)
	}
	claims := jwtClaims(t, tok["id_token"].(string))
	if claims["sub"] != "sub-john@" || claims["amr"] == nil || claims["auth_time"] == nil {
		t.Errorf("ID token %v", claims)
	}
	// the same form again: the first answer stands
	if w := b.postForm(url.Values{"action": {"deny"}, "flow": {pg.Flow}}, ""); w.Code == http.StatusOK && b.pages.page().State == DeviceDenied {
		t.Error("a second answer was taken")
	}
	// the session's sign-out ends the device's access token
	if n, err := b.p.EndBrowserSession(t.Context(), "ref-john"); err != nil || n < 2 {
		t.Errorf("EndBrowserSession: %d %v", n, err)
	}
	if b.userinfo(tok["access_token"].(string)) != http.StatusUnauthorized {
		t.Error("the device's access token outlived the sign-out")
	}
}

// Refuse answers the device access_denied; a person the client's policy denies refuses it too.
func TestDevicePageRefuses(t *testing.T) {
	b := newDeviceBrowser(t)
	b.portal.signInAs("john", time.Now(), true)
	for _, c := range []struct{ client, action string }{{"cli", "deny"}, {"closed", ""}} {
		out := b.deviceAuth(c.client, "openid")
		w := b.typeCode(out["user_code"].(string), "")
		b.get(w.Header().Get("Location"))
		if c.action != "" {
			b.postForm(url.Values{"action": {c.action}, "flow": {b.pages.page().Flow}}, "")
		}
		if pg := b.pages.page(); pg.State != DeviceDenied {
			t.Errorf("%s: page %+v, want denied", c.client, pg)
		}
		if _, tok := b.poll(c.client, out["device_code"].(string)); errorOf(tok) != "access_denied" {
			t.Errorf("%s: poll %v, want access_denied", c.client, tok)
		}
	}
}

// Wrong user codes are counted per address before they are looked up: the sixth code from an
// address within 15 minutes is refused unread, right or wrong, while another address goes on;
// a right code and a malformed one do not count.
func TestDevicePageLocksOutGuessers(t *testing.T) {
	b := newDeviceBrowser(t)
	out := b.deviceAuth("cli", "openid")
	right := out["user_code"].(string)
	wrong := func(i int) string { // a well-formed code that is not the right one
		c := []byte(strings.ReplaceAll(right, "-", ""))
		c[i%8] = userCodeAlphabet[(strings.IndexByte(userCodeAlphabet, c[i%8])+1+i/8)%len(userCodeAlphabet)]
		return string(c)
	}
	if w := b.typeCode("0OIL-1234", "10.0.0.7"); w.Code != http.StatusBadRequest || b.pages.page().Error == "" {
		t.Errorf("a malformed code: %d %+v", w.Code, b.pages.page())
	}
	for i := range deviceGuessSlots - 1 {
		if w := b.typeCode(wrong(i), "10.0.0.7"); w.Code != http.StatusBadRequest || b.pages.page().State != DeviceEnter {
			t.Fatalf("wrong code %d: %d %+v", i, w.Code, b.pages.page())
		}
	}
	if w := b.typeCode(right, "10.0.0.7"); w.Code != http.StatusSeeOther {
		t.Fatalf("the right code after 4 wrong ones: %d %+v", w.Code, b.pages.page())
	}
	if w := b.typeCode(wrong(10), "10.0.0.7"); w.Code != http.StatusBadRequest {
		t.Fatalf("the fifth wrong code: %d", w.Code)
	}
	for _, code := range []string{wrong(11), right} {
		if w := b.typeCode(code, "10.0.0.7"); w.Code != http.StatusTooManyRequests || b.pages.page().State != DeviceLocked || w.Header().Get("Retry-After") == "" {
			t.Errorf("a code after five wrong ones: %d %+v", w.Code, b.pages.page())
		}
	}
	if w := b.typeCode(right, "10.0.0.8"); w.Code != http.StatusSeeOther {
		t.Errorf("another address: %d %+v", w.Code, b.pages.page())
	}
}
