package oidcprovider

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
)

// corsApp provisions the cors block c over clients with the given redirect URIs.
func corsApp(t *testing.T, c *CORSConfig, redirectURIs ...string) *App {
	t.Helper()
	a := &App{CORS: c, logger: zap.NewNop(), clients: map[string]*clients.Client{}}
	if len(redirectURIs) > 0 {
		cl, err := clients.New(clients.Config{ID: "spa", Public: true, RedirectURIs: redirectURIs}, clients.Lifespans{})
		if err != nil {
			t.Fatal(err)
		}
		a.clients["spa"] = cl
	}
	if err := a.provisionCORS(); err != nil {
		t.Fatal(err)
	}
	return a
}

// corsRequest runs a request with Origin origin (none when "") through the policy; a preflight
// when method is OPTIONS. It returns the answer and whether the policy answered it.
func corsRequest(p *corsPolicy, method, path, origin string) (*httptest.ResponseRecorder, bool) {
	r := httptest.NewRequest(method, path, nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if method == http.MethodOptions {
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("Access-Control-Request-Headers", "authorization")
	}
	w := httptest.NewRecorder()
	return w, p.serve(w, r, path)
}

func corsHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

// An allowed origin gets its own origin back (never *), Vary: Origin, and a preflight answered
// 204 with methods, headers and a max age; any other origin, an endpoint not listed, and a
// provider without the block get no CORS header; origins of redirect URIs count with the option.
func TestCORSPolicy(t *testing.T) {
	a := corsApp(t, &CORSConfig{Endpoints: []string{"token", "userinfo"}, AllowedOrigins: []string{"https://App.Example.com:443", "http://localhost:3000"}})

	w, answered := corsRequest(a.cors, http.MethodOptions, oauth.PathToken, "https://app.example.com")
	h := w.Header()
	if !answered || w.Code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		h.Get("Access-Control-Allow-Methods") != "POST, OPTIONS" || h.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" ||
		h.Get("Access-Control-Max-Age") != "600" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
		t.Errorf("preflight from an allowed origin: %v %d %v", answered, w.Code, h)
	}
	if h.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials are never allowed")
	}
	w, answered = corsRequest(a.cors, http.MethodGet, oauth.PathUserinfo, "http://localhost:3000")
	if answered || w.Header().Get("Access-Control-Allow-Origin") != "http://localhost:3000" || w.Header().Get("Vary") != "Origin" {
		t.Errorf("request from an allowed origin: %v %v", answered, w.Header())
	}

	for _, c := range []struct{ name, method, path, origin string }{
		{"preflight from another origin", http.MethodOptions, oauth.PathToken, "https://evil.example.com"},
		{"request from another origin", http.MethodPost, oauth.PathToken, "https://evil.example.com"},
		{"another port", http.MethodPost, oauth.PathToken, "http://localhost:3001"},
		{"another scheme", http.MethodPost, oauth.PathToken, "http://app.example.com"},
		{"the null origin", http.MethodPost, oauth.PathToken, "null"},
		{"an endpoint not listed", http.MethodOptions, oauth.PathRevocation, "https://app.example.com"},
		{"no origin", http.MethodPost, oauth.PathToken, ""},
	} {
		w, _ := corsRequest(a.cors, c.method, c.path, c.origin)
		if got := corsHeaders(w.Header()); len(got) != 0 {
			t.Errorf("%s: CORS headers %v", c.name, got)
		}
	}
	if _, answered := corsRequest(a.cors, http.MethodOptions, oauth.PathRevocation, "https://app.example.com"); answered {
		t.Error("a preflight to an endpoint not listed is the endpoint's own business")
	}

	none := corsApp(t, nil)
	if w, answered := corsRequest(none.cors, http.MethodOptions, oauth.PathToken, "https://app.example.com"); answered || len(corsHeaders(w.Header())) != 0 {
		t.Errorf("without a cors block: %v %v", answered, w.Header())
	}

	fromClients := corsApp(t, &CORSConfig{Endpoints: []string{"token"}, AllowedOriginsFromClientRedirectURIs: true},
		"https://spa.example.com:8443/cb", "com.example.app:/cb")
	if w, _ := corsRequest(fromClients.cors, http.MethodPost, oauth.PathToken, "https://spa.example.com:8443"); w.Header().Get("Access-Control-Allow-Origin") != "https://spa.example.com:8443" {
		t.Errorf("a redirect URI's origin: %v", w.Header())
	}
	if w, _ := corsRequest(fromClients.cors, http.MethodPost, oauth.PathToken, "https://spa.example.com"); len(corsHeaders(w.Header())) != 0 {
		t.Errorf("the redirect URI's host on another port: %v", w.Header())
	}
	withoutOption := corsApp(t, &CORSConfig{Endpoints: []string{"token"}}, "https://spa.example.com:8443/cb")
	if w, _ := corsRequest(withoutOption.cors, http.MethodPost, oauth.PathToken, "https://spa.example.com:8443"); len(corsHeaders(w.Header())) != 0 {
		t.Errorf("redirect URI origins without the option: %v", w.Header())
	}
}
