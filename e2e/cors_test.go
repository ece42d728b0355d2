package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// corsCall sends a request as a browser page on origin would (Origin set; a preflight when
// method is OPTIONS, asking for POST with an Authorization header) and returns the answer with
// its body read.
func corsCall(t *testing.T, hc *http.Client, method, target, origin string, body url.Values, basic [2]string, bearer string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if method == http.MethodOptions {
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if basic[0] != "" {
		req.SetBasicAuth(basic[0], basic[1])
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// accessControlHeaders lists the Access-Control-* headers of an answer.
func accessControlHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k+": "+h.Get(k))
		}
	}
	return out
}

// CORS against the built binary: with the cors block, a page on an allowed origin gets its
// preflight answered (204, methods, headers, max age) and its token and userinfo answers
// readable (its own origin, never *), a page on an origin of a client's redirect URI too (with
// allowed_origins_from_client_redirect_uris), and a page on any other origin, or on an endpoint
// not listed, gets no CORS header; without the block no origin gets any; discovery and the JWKS
// answer every origin.
func TestCORSWithoutBrowser(t *testing.T) {
	clientsBlock := rpClient("app") +
		"\t\tclient api {\n\t\t\tsecret \"$plaintext$api-secret\"\n\t\t\tgrant_types client_credentials\n\t\t}\n"
	s := startOIDCHTTPSite(t, `
		cors {
			endpoints token userinfo
			endpoints introspection
			allowed_origins https://spa.example.org
			allowed_origins_from_client_redirect_uris
		}
`+clientsBlock)
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	userToken := s.codeFlow(john, "app", nil).accessToken()
	token := s.issuer + "/api/oidc/token"
	userinfo := s.issuer + "/api/oidc/userinfo"
	cc := url.Values{"grant_type": {"client_credentials"}}
	api := [2]string{"api", "api-secret"}

	for _, origin := range []string{"https://spa.example.org", "https://app.example.test"} { // listed; of app's redirect URI
		resp := corsCall(t, s.hc, http.MethodOptions, token, origin, nil, [2]string{}, "")
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin ||
			h.Get("Access-Control-Allow-Methods") != "POST, OPTIONS" || h.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" ||
			h.Get("Access-Control-Max-Age") != "600" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Errorf("preflight from %s: %d %v", origin, resp.StatusCode, h)
		}
		resp = corsCall(t, s.hc, http.MethodPost, token, origin, cc, api, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("token request from %s: %d %v", origin, resp.StatusCode, accessControlHeaders(resp.Header))
		}
		resp = corsCall(t, s.hc, http.MethodGet, userinfo, origin, nil, [2]string{}, userToken)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("userinfo from %s: %d %v", origin, resp.StatusCode, accessControlHeaders(resp.Header))
		}
	}

	for _, c := range []struct {
		name, method, target, origin string
		body                         url.Values
		basic                        [2]string
		bearer                       string
	}{
		{"preflight from another origin", http.MethodOptions, token, "https://evil.example.org", nil, [2]string{}, ""},
		{"token request from another origin", http.MethodPost, token, "https://evil.example.org", cc, api, ""},
		{"userinfo from another origin", http.MethodGet, userinfo, "https://evil.example.org", nil, [2]string{}, userToken},
		{"another port of an allowed host", http.MethodPost, token, "https://spa.example.org:8443", cc, api, ""},
		{"http for an https origin", http.MethodPost, token, "http://spa.example.org", cc, api, ""},
		{"an endpoint not listed", http.MethodOptions, s.issuer + "/api/oidc/revocation", "https://spa.example.org", nil, [2]string{}, ""},
	} {
		resp := corsCall(t, s.hc, c.method, c.target, c.origin, c.body, c.basic, c.bearer)
		if got := accessControlHeaders(resp.Header); len(got) != 0 {
			t.Errorf("%s: %d %v, want no CORS header", c.name, resp.StatusCode, got)
		}
	}

	for _, path := range []string{"/.well-known/openid-configuration", "/jwks.json"} {
		resp := corsCall(t, s.hc, http.MethodGet, s.issuer+path, "https://evil.example.org", nil, [2]string{}, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: %d %v, want a public document for every origin", path, resp.StatusCode, accessControlHeaders(resp.Header))
		}
	}

	t.Run("nothing by default", func(t *testing.T) {
		d := startOIDCHTTPSite(t, clientsBlock)
		for _, c := range []struct{ method, origin string }{
			{http.MethodOptions, "https://app.example.test"}, {http.MethodPost, "https://app.example.test"},
		} {
			resp := corsCall(t, d.hc, c.method, d.issuer+"/api/oidc/token", c.origin, map[string]url.Values{http.MethodPost: cc}[c.method], api, "")
			if got := accessControlHeaders(resp.Header); len(got) != 0 {
				t.Errorf("%s from a redirect URI's origin without a cors block: %d %v", c.method, resp.StatusCode, got)
			}
			if c.method == http.MethodPost && resp.StatusCode != http.StatusOK {
				t.Errorf("the token request itself: %d", resp.StatusCode)
			}
		}
	})
}
