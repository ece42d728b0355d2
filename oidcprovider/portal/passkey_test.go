package portal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
)

// withPasskeys gives the world's portal WebAuthn, with passkey sign-in on or off.
func (w *portalWorld) withPasskeys(on bool) {
	w.t.Helper()
	devices, err := webauthn.New(webauthn.Config{RPID: "example.com", RPOrigins: []string{"https://auth.example.com"}}, w.kv, []byte(strings.Repeat("h", 32)))
	if err != nil {
		w.t.Fatal(err)
	}
	cfg := w.p.cfg
	cfg.WebAuthn, cfg.PasskeyLogin = devices, on
	if w.p, err = New(cfg); err != nil {
		w.t.Fatal(err)
	}
}

// script posts body as the portal's script does (JSON, the CSRF token in a header).
func (w *portalWorld) script(path, body string) *httptest.ResponseRecorder {
	w.t.Helper()
	if w.cookies[w.p.csrfCookie()] == nil {
		w.do("GET", "/", nil)
	}
	r := httptest.NewRequest("POST", "https://auth.example.com"+path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Origin", "https://auth.example.com")
	r.Header.Set("X-CSRF-Token", w.p.csrfMAC(w.cookies[w.p.csrfCookie()].Value))
	return w.send(r, path)
}

// TestSignInPageOffersPasskeys checks the sign-in page's passkey button and the username
// field's autofill hint (conditional UI), and that enable_passkey_login false removes both and
// closes the endpoints.
func TestSignInPageOffersPasskeys(t *testing.T) {
	w := newPortalWorld(t)
	w.withPasskeys(true)
	page := w.do("GET", "/?rd=https%3A%2F%2Fapp.example.com%2F", nil).Body.String()
	for _, want := range []string{
		`autocomplete="username webauthn"`,
		`id="passkey-login"`,
		`data-options="/passkey/options"`,
		`data-verify="/passkey/verify"`,
		`data-rd="https://app.example.com/"`,
		`src="/assets/portal.js"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the sign-in page lacks %s", want)
		}
	}
	rec := w.script("/passkey/options", "{}")
	var opts struct {
		Challenge        string `json:"challenge"`
		RPID             string `json:"rpId"`
		UserVerification string `json:"userVerification"`
		AllowCredentials []any  `json:"allowCredentials"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &opts) != nil ||
		opts.Challenge == "" || opts.RPID != "example.com" || opts.UserVerification != "required" || len(opts.AllowCredentials) != 0 {
		t.Fatalf("passkey options: %d %s", rec.Code, rec.Body)
	}
	// an answer that is no credential: refused, no session
	rec = w.script("/passkey/verify", `{"credential":{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{}}}`)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "not accepted") {
		t.Fatalf("a bad answer: %d %s", rec.Code, rec.Body)
	}
	if c := w.cookies["portcullis_session"]; c != nil && c.Value != "" {
		t.Fatal("a refused passkey sign-in set a session cookie")
	}
	// without the CSRF token: the form answer, never a ceremony
	r := httptest.NewRequest("POST", "https://auth.example.com/passkey/options", strings.NewReader("{}"))
	for _, c := range w.cookies {
		r.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	w.p.ServeHTTP(rec, r, "/passkey/options")
	if rec.Code != http.StatusForbidden {
		t.Fatalf("options without a CSRF token: %d", rec.Code)
	}

	off := newPortalWorld(t)
	off.withPasskeys(false)
	page = off.do("GET", "/", nil).Body.String()
	if strings.Contains(page, "webauthn") || strings.Contains(page, "passkey") {
		t.Errorf("enable_passkey_login false still offers passkeys:\n%s", page)
	}
	for _, path := range []string{"/passkey/options", "/passkey/verify"} {
		if rec := off.script(path, "{}"); rec.Code != http.StatusNotFound {
			t.Errorf("%s with passkey sign-in off: %d", path, rec.Code)
		}
	}
}

// TestSettingsOffersPasskeys checks the account page's "Add a passkey" beside "Add a security
// key", and that the passkey page is behind the same elevation as the security key's.
func TestSettingsOffersPasskeys(t *testing.T) {
	w := newPortalWorld(t)
	w.withPasskeys(true)
	w.signIn()
	page := w.do("GET", "/settings", nil).Body.String()
	if !strings.Contains(page, `href="/settings/passkey"`) || !strings.Contains(page, `href="/settings/webauthn"`) {
		t.Fatalf("the settings page lacks the add buttons:\n%s", page)
	}
	// a session with the password only, no notifier: the page asks to confirm it is you first
	rec := w.do("GET", "/settings/passkey", nil)
	if rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), `id="webauthn-register"`) {
		t.Fatal("add a passkey without elevation")
	}
	if rec := w.script("/settings/passkey/options", "{}"); rec.Code != http.StatusForbidden {
		t.Fatalf("passkey registration options without elevation: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do("POST", "/settings/webauthn/rename", map[string][]string{"id": {"x"}, "name": {"y"}}); rec.Code == http.StatusSeeOther && strings.Contains(rec.Header().Get("Location"), "key-renamed") {
		t.Fatal("renamed without elevation")
	}
}

// TestFailedPasskeysAreRegulated checks that refused passkey answers count: an unknown
// credential names no user, so it counts against the address (as the pair of no user and the
// address, and the address itself): after max_retries, more are refused without a check.
func TestFailedPasskeysAreRegulated(t *testing.T) {
	w := newPortalWorld(t)
	w.withPasskeys(true)
	reg, err := regulation.New(t.Context(), regulation.Config{MaxRetries: 3, FindTime: 10 * time.Minute, BanTime: 10 * time.Minute}, w.kv)
	if err != nil {
		t.Fatal(err)
	}
	var results []string
	w.p.cfg.Regulator = reg
	w.p.cfg.OnSecondFactor = func(factor, result string, banBegan bool) {
		if factor != "passkey" {
			t.Errorf("factor %q", factor)
		}
		results = append(results, fmt.Sprintf("%s/%v", result, banBegan))
	}
	unknown := `{"credential":{"id":"dW5rbm93bg","rawId":"dW5rbm93bg","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA","userHandle":"AAAA"}}}`
	for range 5 {
		w.script("/passkey/options", "{}")
		if rec := w.script("/passkey/verify", unknown); rec.Code != http.StatusUnauthorized {
			t.Fatalf("an unknown credential: %d %s", rec.Code, rec.Body)
		}
	}
	want := []string{"failure/false", "failure/false", "failure/true", "banned/false", "banned/false"}
	if !slices.Equal(results, want) {
		t.Fatalf("regulation saw %q, want %q", results, want)
	}
}

// TestPasskeyOptionsAreLimitedPerAddress checks that /passkey/options, which anyone may call
// and which leaves a ceremony in the store for the WebAuthn timeout, is limited per client
// address: one address minting fresh CSRF cookies cannot fill the store with ceremonies, and
// another address is not held back by it (attack run finding).
func TestPasskeyOptionsAreLimitedPerAddress(t *testing.T) {
	w := newPortalWorld(t)
	w.withPasskeys(true)
	ip := "203.0.113.7"
	w.p.cfg.ClientIP = func(*http.Request) string { return ip }
	ceremonies := func() int {
		keys, err := w.kv.Keys(t.Context(), []byte("mfa/webauthn/ceremony/passkey/"))
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	refused := 0
	for range passkeyOptionsLimit + 20 {
		w.cookies = map[string]*http.Cookie{} // a new browser: a new CSRF cookie, a new ceremony key
		rec := w.script("/passkey/options", "{}")
		switch rec.Code {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			refused++
			if rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "Too many") {
				t.Fatalf("refused options: %v %s", rec.Header(), rec.Body)
			}
		default:
			t.Fatalf("options: %d %s", rec.Code, rec.Body)
		}
	}
	if refused != 20 || ceremonies() != passkeyOptionsLimit {
		t.Fatalf("one address got %d ceremonies stored and %d refusals, want %d and 20", ceremonies(), refused, passkeyOptionsLimit)
	}
	ip = "203.0.113.8"
	w.cookies = map[string]*http.Cookie{}
	if rec := w.script("/passkey/options", "{}"); rec.Code != http.StatusOK {
		t.Fatalf("another address: %d %s", rec.Code, rec.Body)
	}
}
