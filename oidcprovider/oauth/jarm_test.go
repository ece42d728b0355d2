package oauth

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
)

// jarmClient registers the JARM modes (and the plain ones) for the code and hybrid types.
var jarmClient = clients.Config{ID: "jarm", Secret: "$plaintext$jarm-secret", GrantTypes: []string{"authorization_code", "implicit"},
	ResponseTypes: []string{"code", "code id_token"}, Scopes: []string{"openid", "profile"}, RedirectURIs: []string{testRedirect},
	ResponseModes: []string{"query", "fragment", "form_post", "jwt", "query.jwt", "fragment.jwt", "form_post.jwt"}}

var formPostResponse = regexp.MustCompile(`<input type="hidden" name="response" value="([^"]+)">`)

// jarmAnswer runs an authorization request of client with q through to its answer (granted,
// or refused with deny) and returns the answer and the JARM "response" it carries, from the
// query, the fragment or the posted form.
func (f *flowProvider) jarmAnswer(client string, q url.Values, deny bool) (*httptest.ResponseRecorder, string, string) {
	f.t.Helper()
	v := url.Values{"client_id": {client}, "response_type": {"code"}, "scope": {"openid"},
		"redirect_uri": {testRedirect}, "state": {"state-0123456789"}, "nonce": {"nonce-0123456789"}}
	for k, vals := range q {
		v[k] = vals
	}
	r := httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+v.Encode(), nil)
	w := httptest.NewRecorder()
	a, err := f.p.NewAuthorizeRequest(r.Context(), r, "browser-1")
	switch {
	case err != nil && !a.RedirectValid():
		f.t.Fatalf("authorization request: %v", err)
	case err != nil:
		f.p.WriteAuthorizeError(r.Context(), w, a, err)
	case deny:
		f.p.WriteAuthorizeError(r.Context(), w, a, fosite.ErrAccessDenied.WithHint("The user denied the request."))
	default:
		f.p.Authorize(r.Context(), w, a, Grant{Username: "john", Subject: "sub-john", AuthTime: time.Now(), AMR: []string{"pwd"},
			Scopes: a.Scopes(), Claims: map[string]any{"preferred_username": "john"}})
	}
	if m := formPostResponse.FindStringSubmatch(w.Body.String()); m != nil {
		return w, "form_post", html.UnescapeString(m[1])
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || w.Code != http.StatusSeeOther {
		f.t.Fatalf("no redirect: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if loc.Fragment != "" {
		frag, _ := url.ParseQuery(loc.Fragment)
		if len(frag) != 1 {
			f.t.Errorf("the fragment has more than the response: %v", frag)
		}
		return w, "fragment", frag.Get("response")
	}
	if len(loc.Query()) != 1 {
		f.t.Errorf("the query has more than the response: %v", loc.Query())
	}
	return w, "query", loc.Query().Get("response")
}

// verifyJARM checks a JARM response as a client does, with go-jose against the key set ks, and
// returns its claims.
func verifyJARM(t *testing.T, ks []*keys.Key, raw string) (map[string]any, error) {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return nil, err
	}
	set := keys.JWKS(ks)
	found := set.Key(tok.Headers[0].KeyID)
	if len(found) != 1 {
		return nil, jose.ErrCryptoFailure
	}
	var claims jwt.Claims
	var all map[string]any
	if err := tok.Claims(found[0].Public().Key, &claims, &all); err != nil {
		return nil, err
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: "https://auth.example.com", AnyAudience: jwt.Audience{"jarm"}, Time: time.Now()}, 0); err != nil {
		return nil, err
	}
	return all, nil
}

// JARM: each mode carries the answer's parameters in one signed "response" (iss, aud, exp
// about ten minutes ahead, code, state), whose code redeems; "jwt" is query.jwt for "code" and
// fragment.jwt for a hybrid type; query.jwt is refused for a hybrid type; an error is wrapped
// too; the response does not verify against another key; a client that did not register JARM
// cannot ask for it.
func TestJARM(t *testing.T) {
	f := newFlowProvider(t, jarmClient, clients.Config{ID: "plain", Secret: "$plaintext$plain-secret", RedirectURIs: []string{testRedirect}})
	ks := f.p.cfg.Keys

	for _, c := range []struct{ mode, types, via string }{
		{"query.jwt", "code", "query"},
		{"fragment.jwt", "code", "fragment"},
		{"form_post.jwt", "code", "form_post"},
		{"jwt", "code", "query"},
		{"jwt", "code id_token", "fragment"},
	} {
		w, via, raw := f.jarmAnswer("jarm", url.Values{"response_mode": {c.mode}, "response_type": {c.types}}, false)
		if via != c.via {
			t.Errorf("%s %s: answered by %s, want %s", c.mode, c.types, via, c.via)
		}
		claims, err := verifyJARM(t, ks, raw)
		if err != nil {
			t.Fatalf("%s %s: the response does not verify: %v", c.mode, c.types, err)
		}
		exp, _ := claims["exp"].(float64)
		if d := time.Until(time.Unix(int64(exp), 0)); d < 9*time.Minute || d > 10*time.Minute+time.Second {
			t.Errorf("%s: exp in %s, want about 10 minutes", c.mode, d)
		}
		if claims["state"] != "state-0123456789" || claims["iss"] != "https://auth.example.com" || claims["aud"] != "jarm" {
			t.Errorf("%s: claims %v", c.mode, claims)
		}
		if c.via == "form_post" && !strings.Contains(w.Header().Get("Content-Security-Policy"), "script-src 'sha256-") {
			t.Errorf("form_post.jwt without its CSP: %v", w.Header())
		}
		if c.types == "code id_token" && claims["id_token"] == nil {
			t.Errorf("hybrid: no id_token in %v", claims)
		}
		code, _ := claims["code"].(string)
		if status, out := f.exchange("jarm", code, ""); status != http.StatusOK || out["access_token"] == nil {
			t.Errorf("%s: the code of the response does not redeem: %d %v", c.mode, status, out)
		}
	}

	// an error, after the client and redirect URI are known: wrapped too
	_, via, raw := f.jarmAnswer("jarm", url.Values{"response_mode": {"query.jwt"}}, true)
	claims, err := verifyJARM(t, ks, raw)
	if err != nil || via != "query" || claims["error"] != "access_denied" || claims["state"] != "state-0123456789" || claims["error_description"] == nil || claims["code"] != nil {
		t.Errorf("denied: %s %v %v", via, err, claims)
	}
	// query.jwt cannot carry a hybrid answer's tokens: refused before anyone signs in
	_, via, raw = f.jarmAnswer("jarm", url.Values{"response_mode": {"query.jwt"}, "response_type": {"code id_token"}}, false)
	if claims, err := verifyJARM(t, ks, raw); err != nil || claims["error"] != "unsupported_response_mode" || claims["id_token"] != nil {
		t.Errorf("query.jwt with code id_token: %s %v %v", via, err, claims)
	}
	// a client that registered no JARM mode is refused (unsupported_response_mode), in the mode it asked for
	_, _, raw = f.jarmAnswer("plain", url.Values{"response_mode": {"query.jwt"}}, false)
	if tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256}); err != nil {
		t.Errorf("plain client asking for query.jwt: %v", err)
	} else {
		var c map[string]any
		_ = tok.UnsafeClaimsWithoutVerification(&c)
		if c["error"] != "unsupported_response_mode" || c["code"] != nil {
			t.Errorf("plain client asking for query.jwt: %v", c)
		}
	}

	// checked against another key: refused
	_, _, raw = f.jarmAnswer("jarm", url.Values{"response_mode": {"query.jwt"}}, false)
	other := testKeys(t, "RS256")
	other[0].ID = ks[0].ID
	if _, err := verifyJARM(t, other, raw); err == nil {
		t.Error("a JARM response verified against a key that did not sign it")
	}
}
