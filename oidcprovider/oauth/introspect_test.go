package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ory/fosite"
	"golang.org/x/oauth2"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// introspectionProvider is the flow provider with a public client "spa" and a confidential
// client "api" that is a resource server for "app".
func introspectionProvider(t *testing.T) *flowProvider {
	t.Helper()
	return newFlowProvider(t,
		clients.Config{ID: "spa", Public: true, Scopes: []string{"openid", "profile"}, RedirectURIs: []string{testRedirect}},
		clients.Config{ID: "api", Secret: "$plaintext$api-secret", GrantTypes: []string{clients.GrantClientCredentials}, ResourceServerFor: []string{"app"}},
	)
}

// postPublic posts form to one of the provider's endpoints with no Basic credentials, as
// `curl -d client_id=…` does, and returns the answer.
func postPublic(serve http.HandlerFunc, path string, form url.Values) (*httptest.ResponseRecorder, map[string]any) {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	serve(w, r)
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return w, body
}

// A public client proves nothing by its id: introspection refuses it as it refuses a caller
// without credentials, 401 invalid_client with a Basic challenge, and says nothing of the token,
// the public client's own token included.
func TestIntrospectionRefusesPublicClients(t *testing.T) {
	f := introspectionProvider(t)
	_, out := f.exchange("app", f.authorize("app", nil), "")
	appToken := out["access_token"].(string)

	verifier := oauth2.GenerateVerifier()
	code := f.authorize("spa", url.Values{"scope": {"openid"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}})
	w, out := postPublic(f.p.ServeToken, PathToken, url.Values{"grant_type": {"authorization_code"}, "client_id": {"spa"},
		"code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {verifier}})
	spaToken, _ := out["access_token"].(string)
	if w.Code != http.StatusOK || spaToken == "" {
		t.Fatalf("the public client's code exchange: %d %s", w.Code, w.Body)
	}

	for name, form := range map[string]url.Values{
		"public client, another's token": {"client_id": {"spa"}, "token": {appToken}},
		"public client, its own token":   {"client_id": {"spa"}, "token": {spaToken}},
		"no credentials":                 {"token": {appToken}},
		"unknown client":                 {"client_id": {"ghost"}, "token": {appToken}},
	} {
		w, body := postPublic(f.p.ServeIntrospection, PathIntrospection, form)
		if w.Code != http.StatusUnauthorized || body["error"] != "invalid_client" || body["active"] != nil || body["username"] != nil {
			t.Errorf("%s: %d %s, want 401 invalid_client", name, w.Code, w.Body)
		}
		if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic realm=") {
			t.Errorf("%s: WWW-Authenticate %q, want a Basic challenge", name, got)
		}
	}
}

// Whose a token is (username, sub) is told only to the token's own client and to a client
// configured as a resource server for it; any other confidential client learns only whether
// the token is active and what it grants.
func TestIntrospectionTellsWhoseTokenOnlyToItsClients(t *testing.T) {
	f := introspectionProvider(t)
	_, out := f.exchange("app", f.authorize("app", nil), "")
	appToken := out["access_token"].(string)
	_, out = f.exchange("other", f.authorize("other", nil), "")
	otherToken := out["access_token"].(string)

	full := []string{"active", "client_id", "scope", "aud", "exp", "iat", "iss", "token_type", "sub", "username"}
	limited := full[:8]
	for _, c := range []struct {
		caller, token, owner string
		want                 []string
	}{
		{"app", appToken, "app", full},        // its own token
		{"api", appToken, "app", full},        // resource_server_for app
		{"other", appToken, "app", limited},   // another client
		{"monitor", appToken, "app", limited}, // a client_credentials client
		{"api", otherToken, "other", limited}, // not listed by api
		{"other", otherToken, "other", full},
	} {
		status, body := f.post(f.p.ServeIntrospection, PathIntrospection, c.caller, url.Values{"token": {c.token}})
		if status != http.StatusOK || body["active"] != true || body["client_id"] != c.owner {
			t.Errorf("%s introspects %s's token: %d %v", c.caller, c.owner, status, body)
			continue
		}
		for _, k := range c.want {
			if _, ok := body[k]; !ok {
				t.Errorf("%s introspects %s's token: no %q in %v", c.caller, c.owner, k, body)
			}
		}
		if len(body) != len(c.want) {
			t.Errorf("%s introspects %s's token: %v, want exactly %v", c.caller, c.owner, body, c.want)
		}
		if slices.Contains(c.want, "username") && (body["username"] != "john" || body["sub"] != "sub-john") {
			t.Errorf("%s introspects %s's token: username %v sub %v", c.caller, c.owner, body["username"], body["sub"])
		}
	}
}

// Refusals answered at once share fosite's error values; writing the answer must not write
// into them (under -race, concurrent wrong credentials were a data race on fosite.ErrInvalidClient).
func TestConcurrentRefusalsShareNoState(t *testing.T) {
	f := introspectionProvider(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, body := postPublic(f.p.ServeIntrospection, PathIntrospection, url.Values{"client_id": {"spa"}, "token": {"x"}})
			if w.Code != http.StatusUnauthorized || body["error"] != "invalid_client" {
				t.Errorf("public client: %d %v", w.Code, body)
			}
			w2 := httptest.NewRecorder()
			f.p.writeError(w2, httptest.NewRequest(http.MethodPost, PathIntrospection, nil), fosite.ErrInvalidClient)
			if w2.Code != http.StatusUnauthorized {
				t.Errorf("fosite.ErrInvalidClient: %d", w2.Code)
			}
		}()
	}
	// a shared error value (as the client throttle's) answered by some requests while fosite's
	// tracing reads it in others: the answer's description must be computed on a copy
	shared := fosite.ErrInvalidClient.WithHint("Too many failed client authentications.")
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			w := httptest.NewRecorder()
			f.p.writeError(w, httptest.NewRequest(http.MethodPost, PathToken, nil), shared)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("shared error: %d", w.Code)
			}
		}()
		go func() {
			defer wg.Done()
			if shared.Error() == "" {
				t.Error("the shared error lost its text")
			}
		}()
	}
	wg.Wait()
}
