package portal

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func testPortal(t testing.TB, issuer, cookieDomain string) *Portal {
	t.Helper()
	u, err := url.Parse(issuer)
	if err != nil {
		t.Fatal(err)
	}
	return &Portal{cfg: Config{Issuer: u, CookieDomain: cookieDomain, CookieName: "portcullis_session", Secure: u.Scheme == "https", Key: []byte(strings.Repeat("k", 32))},
		origin: u.Scheme + "://" + u.Host}
}

func TestSafeRedirect(t *testing.T) {
	p := testPortal(t, "https://auth.example.com", "example.com")
	for rd, ok := range map[string]bool{
		"https://secure.example.com/x?y=1":       true,
		"https://example.com/":                   true,
		"https://a.b.example.com:8443/":          true,
		"https://auth.example.com/settings":      true,
		"https://SECURE.Example.COM/":            true,
		"http://secure.example.com/":             false, // not the issuer's scheme
		"https://evil.com/":                      false,
		"https://example.com.evil.com/":          false,
		"https://evilexample.com/":               false,
		"https://user:pw@secure.example.com/":    false,
		"https://evil.com\\@secure.example.com/": false,
		"//evil.com/":                            false,
		"/relative":                              false,
		"javascript:alert(1)":                    false,
		"https:evil.com":                         false,
		"https://secure.example.com\r\nX: y":     false,
		"":                                       false,
		"https://secure.example.com/%0d%0a":      true, // escaped: harmless in a Location
	} {
		if got := p.safeRedirect(rd); (got != "") != ok {
			t.Errorf("safeRedirect(%q) = %q, want allowed=%v", rd, got, ok)
		}
	}
	// without a cookie domain only the issuer's host (any port) is allowed
	p = testPortal(t, "http://localhost:9091", "")
	if p.safeRedirect("http://localhost:8080/app") == "" || p.safeRedirect("http://127.0.0.1:8080/") != "" || p.safeRedirect("http://other.localhost:9091/") != "" {
		t.Error("host-only cookie: the issuer's host on any port, and nothing else")
	}
}

// FuzzSafeRedirect: whatever rd is, an accepted one parses to an https URL under the cookie
// domain or the issuer host, with no user info.
func FuzzSafeRedirect(f *testing.F) {
	for _, s := range []string{"https://secure.example.com/x", "https://evil.com/", "//x", "https://a@b.example.com", "https://example.com:99/\\x"} {
		f.Add(s)
	}
	p := testPortal(f, "https://auth.example.com", "example.com")
	f.Fuzz(func(t *testing.T, rd string) {
		got := p.safeRedirect(rd)
		if got == "" {
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "https" || u.User != nil {
			t.Fatalf("accepted %q as %q", rd, got)
		}
		h := strings.ToLower(u.Hostname())
		if h != "example.com" && !strings.HasSuffix(h, ".example.com") {
			t.Fatalf("accepted %q for host %q", rd, h)
		}
	})
}

func TestCSRF(t *testing.T) {
	p := testPortal(t, "https://auth.example.com", "example.com")
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://auth.example.com/", nil)
	token := p.csrfToken(w, r)
	cookie := w.Result().Cookies()[0]
	if !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteLaxMode {
		t.Errorf("CSRF cookie attributes: %+v", cookie)
	}
	post := func(origin, field string, withCookie bool) bool {
		r := httptest.NewRequest("POST", "https://auth.example.com/", strings.NewReader(url.Values{"csrf": {field}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if withCookie {
			r.AddCookie(cookie)
		}
		return p.checkCSRF(r)
	}
	if !post("https://auth.example.com", token, true) || !post("", token, true) {
		t.Error("the right token was refused")
	}
	for name, ok := range map[string]bool{
		"no cookie":       post("", token, false),
		"wrong token":     post("", wrongLast(token), true),
		"empty token":     post("", "", true),
		"cookie as token": post("", cookie.Value, true),
		"other origin":    post("https://secure.example.com", token, true),
		"null origin":     post("null", token, true),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

// wrongLast changes a token's last character (to another one: a fixed replacement would leave
// one token in sixteen unchanged, as the last base64 digit of 32 bytes takes sixteen values).
func wrongLast(token string) string {
	last := token[len(token)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'E'
	}
	return token[:len(token)-1] + string(repl)
}
