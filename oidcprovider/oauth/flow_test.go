package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// testPeople is the users the flow tests know: each user is active until disabled.
type testPeople struct {
	mu       sync.Mutex
	disabled map[string]bool
}

func (t *testPeople) Active(_ context.Context, name string) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.disabled[name], nil
}

func (t *testPeople) Claims(ctx context.Context, name string, _ []string) (map[string]any, bool, error) {
	if active, _ := t.Active(ctx, name); !active {
		return nil, false, nil
	}
	return map[string]any{"preferred_username": name}, true, nil
}

func (t *testPeople) disable(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.disabled[name] = true
}

const testRedirect = "http://127.0.0.1:4000/cb"

type flowProvider struct {
	t      testing.TB
	p      *Provider
	people *testPeople
	kv     store.KV
}

// newFlowProvider is a Provider on a real Badger store with a confidential client "app" (the
// code flow, refresh tokens), a second one, "other", a client_credentials client "monitor", and
// the extra clients.
func newFlowProvider(t testing.TB, extra ...clients.Config) *flowProvider {
	t.Helper()
	kv, err := store.Open(t.TempDir(), store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	return newFlowProviderOn(t, kv, extra...)
}

// newFlowProviderOn is newFlowProvider on kv (a node of a shared store, say).
func newFlowProviderOn(t testing.TB, kv store.KV, extra ...clients.Config) *flowProvider {
	t.Helper()
	reg := map[string]*clients.Client{}
	for _, id := range []string{"app", "other"} {
		c, err := clients.New(clients.Config{ID: id, Secret: "$plaintext$" + id + "-secret", GrantTypes: []string{"authorization_code", "refresh_token"},
			Scopes: []string{"openid", "offline_access", "profile"}, RedirectURIs: []string{testRedirect}}, clients.Lifespans{})
		if err != nil {
			t.Fatal(err)
		}
		reg[id] = c
	}
	monitor, err := clients.New(clients.Config{ID: "monitor", Secret: "$plaintext$monitor-secret", GrantTypes: []string{clients.GrantClientCredentials},
		Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://status.example.com/"}}, clients.Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	reg["monitor"] = monitor
	for _, cfg := range extra {
		c, err := clients.New(cfg, clients.Lifespans{})
		if err != nil {
			t.Fatal(err)
		}
		reg[cfg.ID] = c
	}
	lookup := func(id string) (*clients.Client, bool) { c, ok := reg[id]; return c, ok }
	people := &testPeople{disabled: map[string]bool{}}
	p := New(Config{
		Issuer:     "https://auth.example.com",
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
	return &flowProvider{t: t, p: p, people: people, kv: kv}
}

// authorize runs an authorization request for user through to its code.
func (f *flowProvider) authorize(client string, extra url.Values) (code string) {
	f.t.Helper()
	q := url.Values{"client_id": {client}, "response_type": {"code"}, "scope": {"openid offline_access"},
		"redirect_uri": {testRedirect}, "state": {"state-0123456789"}, "nonce": {"nonce-0123456789"}}
	for k, v := range extra {
		q[k] = v
	}
	r := httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+q.Encode(), nil)
	a, err := f.p.NewAuthorizeRequest(r.Context(), r, "browser-1")
	if err != nil {
		f.t.Fatalf("authorization request: %v", err)
	}
	w := httptest.NewRecorder()
	f.p.Authorize(r.Context(), w, a, Grant{Username: "john", Subject: "sub-john", AuthTime: time.Now(), AMR: []string{"pwd"},
		Scopes: a.Scopes(), Claims: map[string]any{"preferred_username": "john"}})
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		f.t.Fatalf("no code: %d %v", w.Code, w.Header())
	}
	return loc.Query().Get("code")
}

// post sends form to one of the provider's endpoints (serve, at path) as client, with its
// secret in Basic credentials, and returns the status and the JSON answer.
func (f *flowProvider) post(serve http.HandlerFunc, path, client string, form url.Values) (int, map[string]any) {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(client, client+"-secret")
	w := httptest.NewRecorder()
	serve(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// token posts to the token endpoint as client and returns the status and the JSON answer.
func (f *flowProvider) token(client string, form url.Values) (int, map[string]any) {
	return f.post(f.p.ServeToken, PathToken, client, form)
}

func (f *flowProvider) exchange(client, code, verifier string) (int, map[string]any) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	return f.token(client, form)
}

func (f *flowProvider) refresh(client, rt string) (int, map[string]any) {
	return f.token(client, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

func (f *flowProvider) userinfo(token string) int {
	r := httptest.NewRequest(http.MethodGet, PathUserinfo, nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	f.p.ServeUserinfo(w, r)
	return w.Code
}

// A code bound to a PKCE challenge is never exchanged without its verifier, even after a first
// attempt with a wrong one (fosite v0.47 deletes the challenge before it checks it).
func TestPKCECannotBeStripped(t *testing.T) {
	f := newFlowProvider(t)
	verifier := oauth2.GenerateVerifier()
	code := f.authorize("app", url.Values{"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}})
	if status, _ := f.exchange("app", code, strings.Repeat("A", 43)); status != http.StatusBadRequest {
		t.Fatalf("wrong verifier: %d", status)
	}
	if status, out := f.exchange("app", code, ""); status == http.StatusOK {
		t.Fatalf("no verifier after a wrong one: tokens issued %v", out)
	}
	if status, out := f.exchange("app", code, verifier); status != http.StatusOK {
		t.Fatalf("right verifier after failed attempts: %d %v", status, out)
	}
}

// A multipart authorization request is refused (it would be read past the exact redirect_uri
// check), and a loopback redirect URI on another port is refused as any other.
func TestAuthorizationRedirectIsExact(t *testing.T) {
	f := newFlowProvider(t)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range map[string]string{"client_id": "app", "response_type": "code", "scope": "openid",
		"redirect_uri": "http://127.0.0.1:4444/cb", "state": "state-0123456789"} {
		_ = mw.WriteField(k, v)
	}
	_ = mw.Close()
	r := httptest.NewRequest(http.MethodPost, PathAuthorization, &body)
	r.Header.Set("Content-Type", mw.FormDataContentType())
	if a, err := f.p.NewAuthorizeRequest(r.Context(), r, "b"); err == nil || a.RedirectValid() {
		t.Fatalf("multipart authorization request accepted (redirect valid %v)", a.RedirectValid())
	}
	q := url.Values{"client_id": {"app"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {"http://127.0.0.1:4444/cb"}, "state": {"state-0123456789"}}
	r = httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+q.Encode(), nil)
	if a, err := f.p.NewAuthorizeRequest(r.Context(), r, "b"); err == nil || a.RedirectValid() {
		t.Fatal("a loopback redirect URI on another port was accepted")
	}
}

// A saved authorization request resumes only in the browser that began it.
func TestFlowIsBoundToItsBrowser(t *testing.T) {
	ctx := t.Context()
	f := newFlowProvider(t)
	q := url.Values{"client_id": {"app"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {testRedirect}, "state": {"state-0123456789"}}
	r := httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+q.Encode(), nil)
	a, err := f.p.NewAuthorizeRequest(r.Context(), r, "victim-browser")
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.p.SaveFlow(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	resume := httptest.NewRequest(http.MethodGet, PathAuthorization+"?flow="+id, nil)
	if _, err := f.p.NewAuthorizeRequest(resume.Context(), resume, "attacker-browser"); err == nil {
		t.Fatal("another browser resumed the flow")
	}
	resume = httptest.NewRequest(http.MethodGet, PathAuthorization+"?flow="+id, nil)
	if _, err := f.p.NewAuthorizeRequest(resume.Context(), resume, "victim-browser"); err != nil {
		t.Fatalf("the browser that began the flow could not resume it: %v", err)
	}
}

// Another client cannot spend a pushed request's request_uri.
func TestPushedRequestOfAnotherClient(t *testing.T) {
	f := newFlowProvider(t)
	form := url.Values{"response_type": {"code"}, "client_id": {"other"}, "redirect_uri": {testRedirect}, "scope": {"openid"}, "state": {"state-0123456789"}}
	status, out := f.post(f.p.ServePAR, PathPAR, "other", form)
	uri, _ := out["request_uri"].(string)
	if status != http.StatusCreated || uri == "" {
		t.Fatalf("push: %d %v", status, out)
	}
	try := func(client string) error {
		q := url.Values{"client_id": {client}, "request_uri": {uri}}
		r := httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+q.Encode(), nil)
		_, err := f.p.NewAuthorizeRequest(r.Context(), r, "b")
		return err
	}
	if err := try("app"); err == nil {
		t.Fatal("another client used the pushed request")
	}
	if err := try("other"); err != nil {
		t.Fatalf("the pushing client, after another tried its request_uri: %v", err)
	}
}

// A refresh token is not an access token at userinfo.
func TestUserinfoRefusesRefreshTokens(t *testing.T) {
	f := newFlowProvider(t)
	status, out := f.exchange("app", f.authorize("app", nil), "")
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, out)
	}
	if got := f.userinfo(out["access_token"].(string)); got != http.StatusOK {
		t.Fatalf("access token at userinfo: %d", got)
	}
	if got := f.userinfo(out["refresh_token"].(string)); got != http.StatusUnauthorized {
		t.Fatalf("refresh token at userinfo: %d, want 401", got)
	}
}

// Concurrent refreshes with one refresh token rotate it once; the others are replays, which
// revoke the grant, the winner's new tokens included.
func TestConcurrentRefreshRotatesOnce(t *testing.T) {
	f := newFlowProvider(t)
	_, out := f.exchange("app", f.authorize("app", nil), "")
	rt := out["refresh_token"].(string)
	var wins atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, out := f.refresh("app", rt); status == http.StatusOK {
				wins.Add(1)
				winner.Store(out)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent refreshes succeeded, want 1", wins.Load())
	}
	w := winner.Load().(map[string]any)
	if status, _ := f.refresh("app", w["refresh_token"].(string)); status == http.StatusOK {
		t.Error("the replays did not revoke the winner's refresh token")
	}
	if got := f.userinfo(w["access_token"].(string)); got == http.StatusOK {
		t.Error("the replays did not revoke the winner's access token")
	}
}

// A user disabled between the code and its exchange gets no tokens; introspection says their
// tokens are inactive.
func TestDisabledUserAtExchangeAndIntrospection(t *testing.T) {
	f := newFlowProvider(t)
	_, out := f.exchange("app", f.authorize("app", nil), "")
	at := out["access_token"].(string)
	code := f.authorize("app", nil)
	f.people.disable("john")
	if status, out := f.exchange("app", code, ""); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("exchange for a disabled user: %d %v", status, out)
	}
	if _, res := f.post(f.p.ServeIntrospection, PathIntrospection, "app", url.Values{"token": {at}}); res["active"] != false {
		t.Fatalf("introspection of a disabled user's token: %v", res)
	}
}

// The plain PKCE method (not enabled) and unknown methods are refused when the request arrives,
// before anyone is asked to sign in, and the error goes back to the client.
func TestPKCEMethodCheckedUpFront(t *testing.T) {
	f := newFlowProvider(t)
	for _, method := range []string{"plain", "", "S512"} {
		q := url.Values{"client_id": {"app"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {testRedirect},
			"state": {"state-0123456789"}, "code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {method}}
		r := httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+q.Encode(), nil)
		a, err := f.p.NewAuthorizeRequest(r.Context(), r, "b")
		if err == nil || !a.RedirectValid() {
			t.Errorf("method %q: err %v, redirect valid %v", method, err, a.RedirectValid())
		}
	}
}

// Whatever an authorization request holds, the provider does not panic, and it never agrees to
// send an answer anywhere but a redirect URI the client registered, string for string.
func FuzzAuthorizeRequest(f *testing.F) {
	for _, seed := range []string{
		"client_id=app&response_type=code&scope=openid&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcb&state=state-0123456789",
		"client_id=app&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A4001%2Fcb&state=s",
		"client_id=app&response_type=id_token&response_mode=fragment&state=0123456789&nonce=x",
		"client_id=app&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Ax",
		"flow=abc", "client_id=app&redirect_uri=HTTP://127.0.0.1:4000/cb", "client_id=nobody",
	} {
		f.Add(seed)
	}
	fp := newFlowProvider(f)
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, PathAuthorization, nil)
		r.URL.RawQuery = query
		a, _ := fp.p.NewAuthorizeRequest(r.Context(), r, "b")
		if a.RedirectValid() {
			ru := a.ar.GetRedirectURI().String()
			raw := a.ar.GetRequestForm().Get("redirect_uri")
			if raw != "" && raw != testRedirect || raw == "" && ru != testRedirect {
				t.Fatalf("%q: would answer at %q", query, ru)
			}
		}
	})
}
