package federation

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// upstream is an OpenID Connect provider in the test: discovery, JWKS and a token endpoint that
// checks the PKCE verifier of the code it handed out and answers an ID token with the nonce of
// the authorization request. Its fields let a test make the ID token wrong.
type upstream struct {
	t      *testing.T
	srv    *httptest.Server
	key    *rsa.PrivateKey
	mu     sync.Mutex
	codes  map[string]authz // code → the authorization request's challenge and nonce
	claims map[string]any   // extra claims of the next ID token (nil: left out)
	// userinfo is the userinfo endpoint's answer (none: the upstream has no such endpoint)
	userinfo map[string]any
	// overrides of the next ID token
	nonce, issuer, audience string
	signWith                *rsa.PrivateKey
}

type authz struct{ challenge, nonce string }

func newUpstream(t *testing.T) *upstream {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{t: t, key: key, codes: map[string]authz{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": u.srv.URL, "authorization_endpoint": u.srv.URL + "/authorize", "token_endpoint": u.srv.URL + "/token",
			"jwks_uri": u.srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
			"userinfo_endpoint": u.srv.URL + "/userinfo",
		})
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		if u.userinfo == nil || r.Header.Get("Authorization") != "Bearer at" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(u.userinfo)
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &u.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		a, ok := u.codes[r.PostFormValue("code")]
		delete(u.codes, r.PostFormValue("code"))
		u.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != a.challenge {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		if id, secret, _ := r.BasicAuth(); id != "down" || secret != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 60, "id_token": u.idToken(a.nonce)})
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	return u
}

// authorize plays the upstream's authorization endpoint for authURL: it returns the callback
// query (a code for the request's PKCE challenge and nonce, and its state).
func (u *upstream) authorize(authURL string) url.Values {
	u.t.Helper()
	a, err := url.Parse(authURL)
	if err != nil {
		u.t.Fatal(err)
	}
	q := a.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
		u.t.Fatalf("the authorization request lacks PKCE S256, a nonce or a state: %s", authURL)
	}
	code := rand.Text()
	u.mu.Lock()
	u.codes[code] = authz{q.Get("code_challenge"), q.Get("nonce")}
	u.mu.Unlock()
	return url.Values{"code": {code}, "state": {q.Get("state")}}
}

func (u *upstream) idToken(nonce string) string {
	key, iss, aud := u.key, u.srv.URL, "down"
	if u.signWith != nil {
		key = u.signWith
	}
	if u.issuer != "" {
		iss = u.issuer
	}
	if u.audience != "" {
		aud = u.audience
	}
	if u.nonce != "" {
		nonce = u.nonce
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		u.t.Fatal(err)
	}
	claims := map[string]any{"iss": iss, "aud": aud, "sub": "up-123", "nonce": nonce, "exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix(),
		"email": "john@example.test", "email_verified": true, "preferred_username": "johnny", "name": "John Doe"}
	for k, v := range u.claims {
		claims[k] = v
		if v == nil {
			delete(claims, k) // nil leaves the claim out
		}
	}
	raw, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		u.t.Fatal(err)
	}
	return raw
}

func openKV(t *testing.T) store.KV {
	kv, err := store.Open(t.TempDir(), store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	return kv
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newProvider(t *testing.T, u *upstream, kv store.KV, more func(*Config)) *Provider {
	cfg := Config{Name: "up", Type: TypeOIDC, Issuer: u.srv.URL, ClientID: "down", ClientSecret: "s3cret"}
	if more != nil {
		more(&cfg)
	}
	p, err := New(cfg, "https://auth.example.test/federation/up/callback", kv, testKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A whole flow: PKCE S256, state and nonce sent; the callback of this browser, once, gives the
// identity; the same callback again (a replay), another browser's callback and a tampered
// state are refused.
func TestFlow(t *testing.T) {
	ctx := context.Background()
	u := newUpstream(t)
	p := newProvider(t, u, openKV(t), nil)
	authURL, binding, err := p.Begin(ctx, Pending{RD: "https://secure.example.test/", Intent: IntentSignIn})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(authURL, u.srv.URL+"/authorize?") || !strings.Contains(authURL, "redirect_uri="+url.QueryEscape(p.RedirectURL())) {
		t.Fatalf("authorization URL %s", authURL)
	}
	cb := u.authorize(authURL)

	// another browser (no or another binding) is refused, and spends the flow
	if _, _, err := p.Finish(ctx, cb, "someone-else"); !errors.Is(err, ErrState) {
		t.Fatalf("callback in another browser: %v, want ErrState", err)
	}
	if _, _, err := p.Finish(ctx, cb, binding); !errors.Is(err, ErrState) {
		t.Fatalf("callback after another browser's try: %v, want ErrState", err)
	}

	authURL, binding, err = p.Begin(ctx, Pending{RD: "https://secure.example.test/", Intent: IntentSignIn})
	if err != nil {
		t.Fatal(err)
	}
	cb = u.authorize(authURL)
	tampered := url.Values{"code": cb["code"], "state": {cb.Get("state") + "x"}}
	if _, _, err := p.Finish(ctx, tampered, binding); !errors.Is(err, ErrState) {
		t.Fatalf("tampered state: %v, want ErrState", err)
	}
	id, pend, err := p.Finish(ctx, cb, binding)
	if err != nil {
		t.Fatal(err)
	}
	if pend.RD != "https://secure.example.test/" || pend.Intent != IntentSignIn {
		t.Fatalf("pending %+v", pend)
	}
	want := Identity{Provider: "up", Subject: "up-123", Username: "johnny", Email: "john@example.test", EmailVerified: true, Name: "John Doe"}
	if *id != want {
		t.Fatalf("identity %+v, want %+v", *id, want)
	}
	if _, _, err := p.Finish(ctx, cb, binding); !errors.Is(err, ErrState) {
		t.Fatalf("replayed callback: %v, want ErrState", err)
	}
}

// An ID token that does not belong to the flow is refused: another flow's nonce, another
// issuer, another audience, another key's signature. An upstream error is ErrDenied.
func TestIDTokenChecks(t *testing.T) {
	ctx := context.Background()
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name string
		set  func(*upstream)
	}{
		{"another flow's nonce", func(u *upstream) { u.nonce = "the-nonce-of-another-flow" }},
		{"another issuer", func(u *upstream) { u.issuer = "https://evil.example" }},
		{"another audience", func(u *upstream) { u.audience = "someone-else" }},
		{"another key", func(u *upstream) { u.signWith = other }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t)
			p := newProvider(t, u, openKV(t), nil)
			tc.set(u)
			authURL, binding, err := p.Begin(ctx, Pending{Intent: IntentSignIn})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := p.Finish(ctx, u.authorize(authURL), binding); !errors.Is(err, ErrToken) {
				t.Fatalf("%v, want ErrToken", err)
			}
		})
	}
	t.Run("upstream error", func(t *testing.T) {
		u := newUpstream(t)
		p := newProvider(t, u, openKV(t), nil)
		authURL, binding, err := p.Begin(ctx, Pending{Intent: IntentSignIn})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := url.Parse(authURL)
		if _, _, err := p.Finish(ctx, url.Values{"state": {a.Query().Get("state")}, "error": {"access_denied"}}, binding); !errors.Is(err, ErrDenied) {
			t.Fatalf("%v, want ErrDenied", err)
		}
	})
	t.Run("a code for another verifier", func(t *testing.T) {
		u := newUpstream(t)
		p := newProvider(t, u, openKV(t), nil)
		a1, b1, _ := p.Begin(ctx, Pending{Intent: IntentSignIn})
		a2, _, _ := p.Begin(ctx, Pending{Intent: IntentSignIn})
		cb1, cb2 := u.authorize(a1), u.authorize(a2)
		// flow 1's state with flow 2's code: the PKCE verifier does not fit
		if _, _, err := p.Finish(ctx, url.Values{"state": cb1["state"], "code": cb2["code"]}, b1); !errors.Is(err, ErrToken) {
			t.Fatalf("%v, want ErrToken", err)
		}
	})
}

// mfa in amr (or a multi-factor acr) is reported; nothing else is.
func TestMFA(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		claims map[string]any
		want   bool
	}{
		{map[string]any{"amr": []string{"pwd", "otp", "mfa"}}, true},
		{map[string]any{"amr": []string{"pwd"}}, false},
		{map[string]any{"acr": "http://schemas.openid.net/pape/policies/2007/06/multi-factor"}, true},
		{map[string]any{"acr": "0"}, false},
	} {
		u := newUpstream(t)
		u.claims = tc.claims
		p := newProvider(t, u, openKV(t), nil)
		authURL, binding, _ := p.Begin(ctx, Pending{Intent: IntentSignIn})
		id, _, err := p.Finish(ctx, u.authorize(authURL), binding)
		if err != nil {
			t.Fatal(err)
		}
		if id.MFA != tc.want {
			t.Errorf("claims %v: MFA %v, want %v", tc.claims, id.MFA, tc.want)
		}
	}
}

// An upstream that is down at first: Begin says ErrUnreachable (nothing was called before);
// once it is up, and the back-off has passed, discovery is tried again and works.
func TestUpstreamDownThenUp(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p, err := New(Config{Name: "up", Type: TypeOIDC, Issuer: "http://" + addr, ClientID: "down", ClientSecret: "s3cret"}, "https://auth.example.test/cb", openKV(t), testKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p.now = func() time.Time { return now }
	if _, _, err := p.Begin(ctx, Pending{Intent: IntentSignIn}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("upstream down: %v, want ErrUnreachable", err)
	}
	if err := p.Discover(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("upstream down, a page's discovery: %v, want ErrUnreachable", err)
	}
	u := newUpstream(t)
	u.srv.Close()
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	u.srv = httptest.NewUnstartedServer(u.srv.Config.Handler)
	u.srv.Listener = l
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	if err := p.Discover(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("a page's discovery within the back-off: %v, want the remembered ErrUnreachable", err)
	}
	now = now.Add(discoveryBackoff + time.Second)
	if err := p.Discover(ctx); err != nil {
		t.Fatalf("a page's discovery after the back-off: %v", err)
	}
	if o := p.Origins(); len(o) != 1 || o[0] != "http://"+addr {
		t.Fatalf("origins %v", o)
	}
	authURL, binding, err := p.Begin(ctx, Pending{Intent: IntentSignIn})
	if err != nil {
		t.Fatalf("upstream up: %v", err)
	}
	if _, _, err := p.Finish(ctx, u.authorize(authURL), binding); err != nil {
		t.Fatal(err)
	}
	// down again: a discovery is known, but a new flow asks again and is told
	u.srv.Close()
	if _, _, err := p.Begin(ctx, Pending{Intent: IntentSignIn}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("upstream down again: %v, want ErrUnreachable", err)
	}
}

// GitHub: the login and the verified primary address from its user API.
func TestGitHub(t *testing.T) {
	ctx := context.Background()
	var challenge string
	mux := http.NewServeMux()
	mux.HandleFunc("/login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if r.PostFormValue("code") != "gh-code" || base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"bad_verification_code"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"gho_x","token_type":"bearer","scope":"read:user,user:email"}`))
	})
	mux.HandleFunc("/api/user", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer gho_x" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"id":4242,"login":"octo","name":"Octo Cat","email":null}`))
	})
	mux.HandleFunc("/api/user/emails", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[{"email":"old@example.test","primary":false,"verified":true},{"email":"octo@example.test","primary":true,"verified":true}]`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cfg := Config{Name: "github", Type: TypeGitHub, ClientID: "down", ClientSecret: "s3cret",
		AuthURL: srv.URL + "/login/oauth/authorize", TokenURL: srv.URL + "/login/oauth/access_token", APIURL: srv.URL + "/api"}
	p, err := New(cfg, "https://auth.example.test/federation/github/callback", openKV(t), testKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	authURL, binding, err := p.Begin(ctx, Pending{Intent: IntentSignIn})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := url.Parse(authURL)
	challenge = a.Query().Get("code_challenge")
	if a.Query().Get("scope") != "read:user user:email" || a.Query().Get("nonce") != "" {
		t.Fatalf("authorization URL %s", authURL)
	}
	id, _, err := p.Finish(ctx, url.Values{"state": {a.Query().Get("state")}, "code": {"gh-code"}}, binding)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Provider: "github", Subject: "4242", Username: "octo", Email: "octo@example.test", EmailVerified: true, Name: "Octo Cat"}
	if *id != want {
		t.Fatalf("identity %+v, want %+v", *id, want)
	}
	if got := p.Origins(); len(got) != 1 || got[0] != srv.URL {
		t.Fatalf("origins %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Name: "Google", Type: "oidc"}, "the name must be"},
		{Config{Name: "g", Type: "saml"}, `type "saml": use oidc or github`},
		{Config{Name: "g"}, "type is required"},
		{Config{Name: "g", Type: "oidc", ClientID: "a", ClientSecret: "b"}, "issuer is required for type oidc"},
		{Config{Name: "g", Type: "oidc", Issuer: "http://idp.example.com", ClientID: "a", ClientSecret: "b"}, "must use https"},
		{Config{Name: "g", Type: "oidc", Issuer: "https://idp.example.com", ClientSecret: "b"}, "client_id is required"},
		{Config{Name: "g", Type: "oidc", Issuer: "https://idp.example.com", ClientID: "a"}, "client_secret is required"},
		{Config{Name: "g", Type: "oidc", Issuer: "https://idp.example.com", ClientID: "a", ClientSecret: "b", Scopes: []string{"email"}}, "scopes must include openid"},
		{Config{Name: "g", Type: "oidc", Issuer: "https://idp.example.com", ClientID: "a", ClientSecret: "b", Link: "auto"}, `link "auto": use by_email_verified`},
		{Config{Name: "g", Type: "oidc", Issuer: "https://idp.example.com", ClientID: "a", ClientSecret: "b", AllowedDomains: []string{"*.example.com"}}, "not a domain"},
		{Config{Name: "gh", Type: "github", Issuer: "https://github.com", ClientID: "a", ClientSecret: "b"}, "issuer is for type oidc"},
		{Config{Name: "gh", Type: "github", ClientID: "a", ClientSecret: "b", TwoFactorSatisfied: true}, "two_factor_satisfied: GitHub"},
		{Config{Name: "gh", Type: "github", ClientID: "a", ClientSecret: "b", ClaimUsername: "sub"}, "GitHub names people by login or email"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	c := Config{Name: "g", Type: "oidc", Issuer: "http://127.0.0.1:9", ClientID: "a", ClientSecret: "b", AllowedDomains: []string{"@Example.COM"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Link != LinkByEmailVerified || c.ClaimUsername != "preferred_username" || c.DisplayName != "g" || strings.Join(c.Scopes, " ") != "openid email profile" || c.AllowedDomains[0] != "example.com" {
		t.Fatalf("defaults: %+v", c)
	}
}

func usersDir(t *testing.T) users.Directory {
	p := filepath.Join(t.TempDir(), "users.yml")
	digest, err := users.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	data := "users:\n  john:\n    password: \"" + digest + "\"\n    email: john@example.test\n" +
		"  johnny:\n    password: \"" + digest + "\"\n    email: other@example.test\n" +
		"  off:\n    password: \"" + digest + "\"\n    email: off@example.test\n    disabled: true\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := users.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The mapping rules: a link wins; by_email_verified needs a verified address that is a user's;
// by_username a user's name; manual a link; allowed_domains, and a disabled user.
func TestResolve(t *testing.T) {
	ctx := context.Background()
	dir := usersDir(t)
	links := NewLinks(openKV(t))
	base := Config{Name: "up", Type: TypeOIDC, Issuer: "https://idp.example.test", ClientID: "a", ClientSecret: "b"}
	cfg := func(link string, domains ...string) Config {
		c := base
		c.Link, c.AllowedDomains = link, domains
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	id := func(sub, email string, verified bool, username string) *Identity {
		return &Identity{Provider: "up", Subject: sub, Email: email, EmailVerified: verified, Username: username}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		id   *Identity
		user string
		err  error
	}{
		{"verified mail", cfg(LinkByEmailVerified), id("s1", "JOHN@example.test", true, "x"), "john", nil},
		{"unverified mail", cfg(LinkByEmailVerified), id("s1", "john@example.test", false, "x"), "", ErrUnverified},
		{"unknown mail", cfg(LinkByEmailVerified), id("s1", "nobody@example.test", true, "x"), "", ErrUnknown},
		{"a username is no mail", cfg(LinkByEmailVerified), id("s1", "johnny", true, "x"), "", ErrUnknown},
		{"by username", cfg(LinkByUsername), id("s1", "", false, "johnny"), "johnny", nil},
		{"by username, a mail is no name", cfg(LinkByUsername), id("s1", "", false, "other@example.test"), "", ErrUnknown},
		{"manual, not linked", cfg(LinkManual), id("s1", "john@example.test", true, "john"), "", ErrUnknown},
		{"domain allowed", cfg(LinkByEmailVerified, "example.test"), id("s1", "john@example.test", true, ""), "john", nil},
		{"domain refused", cfg(LinkByEmailVerified, "example.com"), id("s1", "john@example.test", true, ""), "", ErrDomain},
		{"domain of an unverified mail", cfg(LinkByUsername, "example.test"), id("s1", "john@example.test", false, "johnny"), "", ErrUnverified},
		{"disabled", cfg(LinkByEmailVerified), id("s1", "off@example.test", true, ""), "", ErrDisabled},
	} {
		u, _, err := Resolve(ctx, tc.cfg, links, dir, tc.id)
		if !errors.Is(err, tc.err) || (err == nil && u.Name != tc.user) {
			t.Errorf("%s: %v %v, want %q %v", tc.name, u, err, tc.user, tc.err)
		}
	}
	// a link wins over every rule
	linked := id("s9", "john@example.test", true, "john")
	if err := links.Add(ctx, linked, "johnny", time.Now()); err != nil {
		t.Fatal(err)
	}
	u, viaLink, err := Resolve(ctx, cfg(LinkManual), links, dir, linked)
	if err != nil || u.Name != "johnny" || !viaLink {
		t.Fatalf("linked: %v %v %v", u, viaLink, err)
	}
	u, _, err = Resolve(ctx, cfg(LinkByEmailVerified), links, dir, linked)
	if err != nil || u.Name != "johnny" {
		t.Fatalf("linked, by mail: %v %v", u, err)
	}
}

func TestLinks(t *testing.T) {
	ctx := context.Background()
	links := NewLinks(openKV(t))
	a := &Identity{Provider: "up", Subject: "sub/with/slashes", Username: "jd", Email: "j@example.test"}
	b := &Identity{Provider: "gh", Subject: "42", Username: "octo"}
	now := time.Now()
	if err := links.Add(ctx, a, "john", now); err != nil {
		t.Fatal(err)
	}
	if err := links.Add(ctx, a, "john", now); err != nil {
		t.Fatalf("linking again to the same user: %v", err)
	}
	if err := links.Add(ctx, a, "mallory", now); !errors.Is(err, ErrLinkedElsewhere) {
		t.Fatalf("linking to another user: %v, want ErrLinkedElsewhere", err)
	}
	if err := links.Add(ctx, b, "john", now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	list, err := links.List(ctx, "john")
	if err != nil || len(list) != 2 || list[0].Provider != "up" || list[1].Subject != "42" || list[0].Username != "jd" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if l, _ := links.List(ctx, "mallory"); len(l) != 0 {
		t.Fatalf("mallory's links: %+v", l)
	}
	if ok, err := links.Remove(ctx, "mallory", "up", a.Subject); ok || err != nil {
		t.Fatalf("someone else unlinking: %v %v", ok, err)
	}
	if ok, err := links.Remove(ctx, "john", "up", a.Subject); !ok || err != nil {
		t.Fatalf("unlinking: %v %v", ok, err)
	}
	if _, err := links.Find(ctx, "up", a.Subject); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after unlinking: %v", err)
	}
	if list, _ := links.List(ctx, "john"); len(list) != 1 {
		t.Fatalf("after unlinking: %+v", list)
	}
	// once unlinked, another user may link it
	if err := links.Add(ctx, a, "mallory", now); err != nil {
		t.Fatal(err)
	}
}

// claim_username email names no one with an address the upstream has not verified (as for
// GitHub): by_username or create_users would otherwise take the name from anyone's say-so.
func TestUnverifiedEmailNamesNoOne(t *testing.T) {
	ctx := context.Background()
	for _, verified := range []any{false, "false", nil} {
		u := newUpstream(t)
		u.claims = map[string]any{"email": "john@example.test", "email_verified": verified}
		p := newProvider(t, u, openKV(t), func(c *Config) { c.ClaimUsername, c.Link = "email", LinkByUsername })
		authURL, binding, _ := p.Begin(ctx, Pending{Intent: IntentSignIn})
		id, _, err := p.Finish(ctx, u.authorize(authURL), binding)
		if err != nil {
			t.Fatal(err)
		}
		if id.Username != "" {
			t.Errorf("email_verified %v: username %q from an unverified address, want none", verified, id.Username)
		}
	}
}

// Names and addresses match when they differ in ASCII case alone: a Unicode fold (the Kelvin
// sign K, the long s ſ) is another upstream identity, not the local user's.
func TestResolveNoUnicodeFolding(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "users.yml")
	digest, _ := users.HashPassword("pw")
	if err := os.WriteFile(p, []byte("users:\n  kate:\n    password: \""+digest+"\"\n    email: sue@example.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := users.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	links := NewLinks(openKV(t))
	for _, tc := range []struct {
		link, username, email, want string
	}{
		{LinkByUsername, "KATE", "", "kate"},
		{LinkByUsername, "\u212aate", "", ""},
		{LinkByEmailVerified, "", "SUE@example.test", "kate"},
		{LinkByEmailVerified, "", "\u017fue@example.test", ""},
	} {
		c := Config{Name: "up", Type: TypeOIDC, Issuer: "https://idp.example.test", ClientID: "a", ClientSecret: "b", Link: tc.link}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		id := &Identity{Provider: "up", Subject: "s-" + tc.username + tc.email, Username: tc.username, Email: tc.email, EmailVerified: true}
		u, _, err := Resolve(ctx, c, links, dir, id)
		got := ""
		if u != nil {
			got = u.Name
		}
		if tc.want == "" && !errors.Is(err, ErrUnknown) || tc.want != "" && (err != nil || got != tc.want) {
			t.Errorf("%s %q %q: user %q, %v; want %q", tc.link, tc.username, tc.email, got, err, tc.want)
		}
	}
}

// An unlinked identity signs its user in no more, whatever the rule: by_email_verified would
// otherwise link it again at its next sign-in. Linking it on the account page again lifts that.
func TestUnlinkedStaysUnlinked(t *testing.T) {
	ctx := context.Background()
	dir := usersDir(t)
	links := NewLinks(openKV(t))
	c := Config{Name: "up", Type: TypeOIDC, Issuer: "https://idp.example.test", ClientID: "a", ClientSecret: "b"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	id := &Identity{Provider: "up", Subject: "s1", Email: "john@example.test", EmailVerified: true}
	u, _, err := Resolve(ctx, c, links, dir, id)
	if err != nil || u.Name != "john" {
		t.Fatalf("before: %v %v", u, err)
	}
	if err := links.Add(ctx, id, "john", time.Now()); err != nil {
		t.Fatal(err)
	}
	if ok, err := links.Remove(ctx, "john", "up", "s1"); !ok || err != nil {
		t.Fatalf("unlinking: %v %v", ok, err)
	}
	if u, _, err := Resolve(ctx, c, links, dir, id); !errors.Is(err, ErrUnlinked) {
		t.Fatalf("after unlinking: %v %v, want ErrUnlinked", u, err)
	}
	// another identity with the same address is not concerned
	other := &Identity{Provider: "up", Subject: "s2", Email: "john@example.test", EmailVerified: true}
	if u, _, err := Resolve(ctx, c, links, dir, other); err != nil || u.Name != "john" {
		t.Fatalf("another identity: %v %v", u, err)
	}
	// linked again by the person, on the account page
	if err := links.Add(ctx, id, "john", time.Now()); err != nil {
		t.Fatal(err)
	}
	if u, viaLink, err := Resolve(ctx, c, links, dir, id); err != nil || u.Name != "john" || !viaLink {
		t.Fatalf("linked again: %v %v %v", u, viaLink, err)
	}
}

// Userinfo fills in only what the ID token lacks, for the same subject: another subject's
// answer adds nothing, and its email_verified vouches for its own address alone, never for
// the ID token's. An ID token without a subject is refused.
func TestUserinfo(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		claims   map[string]any // of the ID token
		userinfo map[string]any
		want     Identity
		err      error
	}{
		{"fills in", map[string]any{"email": nil, "email_verified": nil, "preferred_username": nil},
			map[string]any{"sub": "up-123", "email": "j@example.test", "email_verified": true, "preferred_username": "jj"},
			Identity{Subject: "up-123", Email: "j@example.test", EmailVerified: true, Username: "jj", Name: "John Doe"}, nil},
		{"another subject", map[string]any{"email": nil, "email_verified": nil, "preferred_username": nil},
			map[string]any{"sub": "someone-else", "email": "j@example.test", "email_verified": true, "preferred_username": "jj"},
			Identity{Subject: "up-123", Name: "John Doe"}, nil},
		{"verified, another address", map[string]any{"email": "new@example.test", "email_verified": nil, "preferred_username": nil},
			map[string]any{"sub": "up-123", "email": "old@example.test", "email_verified": true, "preferred_username": "jj"},
			Identity{Subject: "up-123", Email: "new@example.test", Username: "jj", Name: "John Doe"}, nil},
		{"no subject", map[string]any{"sub": ""}, nil, Identity{}, ErrToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t)
			u.claims, u.userinfo = tc.claims, tc.userinfo
			p := newProvider(t, u, openKV(t), nil)
			authURL, binding, _ := p.Begin(ctx, Pending{Intent: IntentSignIn})
			id, _, err := p.Finish(ctx, u.authorize(authURL), binding)
			if tc.err != nil || err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("%v, want %v", err, tc.err)
				}
				return
			}
			tc.want.Provider = "up"
			if *id != tc.want {
				t.Fatalf("identity %+v, want %+v", *id, tc.want)
			}
		})
	}
}
