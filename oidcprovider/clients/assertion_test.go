package clients

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

const testIssuer = "https://auth.example.com"

// jwtFixture registers "signer" (private_key_jwt ES256, inline key k1), "hmac"
// (client_secret_jwt HS256) and "remote" (private_key_jwt ES256 at a jwks_uri the test serves),
// with a real Badger store recording jti.
type jwtFixture struct {
	t      *testing.T
	auth   *Authenticator
	now    time.Time
	remote *ecdsa.PrivateKey
	hits   atomic.Int32
	serve  atomic.Value // func(w http.ResponseWriter)
}

const hmacSecret = "0123456789abcdef0123456789abcdef-hmac"

func newJWTFixture(t *testing.T) *jwtFixture {
	t.Helper()
	f := &jwtFixture{t: t, now: time.Now()}
	f.remote, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.serve.Store(func(w http.ResponseWriter) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.remote.PublicKey, KeyID: "r1", Algorithm: "ES256", Use: "sig"}}})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		f.hits.Add(1)
		f.serve.Load().(func(http.ResponseWriter))(w)
	}))
	t.Cleanup(srv.Close)
	kv, err := store.Open(t.TempDir(), store.Options{}.WithDefaults(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	registry := map[string]*Client{}
	for _, cfg := range []Config{
		{ID: "signer", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodPrivateKeyJWT, JWKS: []ClientKey{{KeyID: "k1", Key: pubPEM(t, &testP256.PublicKey)}}},
		{ID: "hmac", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodClientSecretJWT, Secret: "$plaintext$" + hmacSecret},
		{ID: "remote", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodPrivateKeyJWT, TokenEndpointAuthSigningAlg: "ES256", JWKSURI: srv.URL + "/jwks"},
		{ID: "basic", GrantTypes: []string{GrantClientCredentials}, Secret: "$plaintext$good"},
	} {
		c, err := New(cfg, Lifespans{})
		if err != nil {
			t.Fatal(err)
		}
		if c.jwt.remote != nil {
			c.jwt.remote.now = func() time.Time { return f.now }
		}
		registry[c.ID()] = c
	}
	f.auth = &Authenticator{
		Lookup:    func(id string) (*Client, bool) { c, ok := registry[id]; return c, ok },
		Secrets:   digest.NewCache(64, time.Hour),
		Limits:    NewLimits(),
		Audiences: []string{testIssuer, testIssuer + "/api/oidc/token"},
		Replay:    kv,
		Now:       func() time.Time { return f.now },
	}
	return f
}

// sign makes an assertion for sub with key and alg, the claims adjusted by edit.
func (f *jwtFixture) sign(key any, alg, kid string, claims map[string]any) string {
	f.t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

func (f *jwtFixture) claims(sub string) map[string]any {
	return map[string]any{"iss": sub, "sub": sub, "aud": testIssuer + "/api/oidc/token", "jti": rand.Text(), "iat": f.now.Unix(), "exp": f.now.Add(time.Minute).Unix()}
}

func (f *jwtFixture) try(assertion string, extra url.Values) error {
	f.t.Helper()
	form := url.Values{"client_assertion_type": {ClientAssertionType}, "client_assertion": {assertion}}
	for k, v := range extra {
		form[k] = v
	}
	r := httptest.NewRequest("POST", testIssuer+"/api/oidc/token", nil)
	_, err := f.auth.Authenticate(context.Background(), r, form, "192.0.2."+rand.Text()[:2])
	return err
}

func isInvalidClient(err error) bool {
	var rfc *fosite.RFC6749Error
	return errors.As(err, &rfc) && rfc.ErrorField == "invalid_client"
}

// A good assertion of each method passes once; each broken rule gets invalid_client.
func TestAssertions(t *testing.T) {
	f := newJWTFixture(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := f.sign(testP256, "ES256", "k1", f.claims("signer"))
	if err := f.try(good, nil); err != nil {
		t.Fatalf("a good private_key_jwt assertion: %v", err)
	}
	if err := f.try(good, nil); !isInvalidClient(err) {
		t.Fatalf("a replayed assertion: %v", err)
	}
	if err := f.try(f.sign([]byte(hmacSecret), "HS256", "", f.claims("hmac")), nil); err != nil {
		t.Fatalf("a good client_secret_jwt assertion: %v", err)
	}
	issuerAud := f.claims("signer")
	issuerAud["aud"] = []string{"https://elsewhere.example.com", testIssuer}
	if err := f.try(f.sign(testP256, "ES256", "", issuerAud), url.Values{"client_id": {"signer"}}); err != nil {
		t.Fatalf("aud naming the issuer among others, no kid, client_id sent: %v", err)
	}
	mod := func(sub string, edit func(map[string]any)) map[string]any { c := f.claims(sub); edit(c); return c }
	for name, tc := range map[string]struct {
		assertion string
		extra     url.Values
	}{
		"wrong aud":          {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { c["aud"] = "https://other.example.com/token" })), nil},
		"no aud":             {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { delete(c, "aud") })), nil},
		"expired":            {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { c["exp"] = f.now.Add(-2 * time.Minute).Unix() })), nil},
		"no exp":             {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { delete(c, "exp") })), nil},
		"exp too far":        {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { c["exp"] = f.now.Add(3 * time.Hour).Unix() })), nil},
		"iat in the future":  {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { c["iat"] = f.now.Add(10 * time.Minute).Unix() })), nil},
		"nbf in the future":  {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { c["nbf"] = f.now.Add(10 * time.Minute).Unix() })), nil},
		"no jti":             {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { delete(c, "jti") })), nil},
		"iss not sub":        {f.sign(testP256, "ES256", "k1", mod("signer", func(c map[string]any) { c["iss"] = "hmac" })), nil},
		"another's key":      {f.sign(other, "ES256", "k1", f.claims("signer")), nil},
		"unknown kid":        {f.sign(testP256, "ES256", "k9", f.claims("signer")), nil},
		"alg not registered": {f.sign(testP384, "ES384", "", f.claims("signer")), nil},
		"HS256 by signer":    {f.sign([]byte(hmacSecret), "HS256", "", f.claims("signer")), nil},
		"ES256 by hmac":      {f.sign(testP256, "ES256", "k1", f.claims("hmac")), nil},
		"wrong hmac secret":  {f.sign([]byte(strings.Repeat("x", 40)), "HS256", "", f.claims("hmac")), nil},
		"client_id differs":  {f.sign(testP256, "ES256", "k1", f.claims("signer")), url.Values{"client_id": {"hmac"}}},
		"unknown client":     {f.sign(testP256, "ES256", "k1", f.claims("nobody")), nil},
		"basic client":       {f.sign(testP256, "ES256", "k1", f.claims("basic")), nil},
		"wrong type":         {f.sign(testP256, "ES256", "k1", f.claims("signer")), url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}}},
		"alg none":           {unsigned(f.claims("signer")), nil},
		"garbage":            {"not.a.jwt", nil},
	} {
		if err := f.try(tc.assertion, tc.extra); !isInvalidClient(err) {
			t.Errorf("%s: got %v, want invalid_client", name, err)
		}
	}
}

// unsigned is an alg "none" JWT of claims.
func unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	enc := func(b []byte) string { return strings.TrimRight(base64URL(b), "=") }
	return enc(h) + "." + enc(p) + "."
}

func base64URL(b []byte) string {
	return strings.NewReplacer("+", "-", "/", "_").Replace(stdBase64(b))
}

// A private_key_jwt client that sends its secret, or an assertion beside Basic credentials, is
// refused.
func TestAssertionMethodMismatch(t *testing.T) {
	f := newJWTFixture(t)
	r := httptest.NewRequest("POST", testIssuer+"/api/oidc/token", nil)
	r.SetBasicAuth("signer", "whatever")
	if _, err := f.auth.Authenticate(context.Background(), r, url.Values{}, "192.0.2.9"); !isInvalidClient(err) {
		t.Fatalf("a secret from a private_key_jwt client: %v", err)
	}
	r = httptest.NewRequest("POST", testIssuer+"/api/oidc/token", nil)
	r.SetBasicAuth("signer", "whatever")
	form := url.Values{"client_assertion_type": {ClientAssertionType}, "client_assertion": {f.sign(testP256, "ES256", "k1", f.claims("signer"))}}
	if _, err := f.auth.Authenticate(context.Background(), r, form, "192.0.2.9"); err == nil {
		t.Fatal("an assertion beside Basic credentials was accepted")
	}
}

// The jwks_uri is fetched when first needed, cached, fetched again for an unknown kid at most
// once a minute, and every fetch failure (down, too big, not a key set) is invalid_client.
func TestJWKSURI(t *testing.T) {
	f := newJWTFixture(t)
	if f.hits.Load() != 0 {
		t.Fatal("the jwks_uri was fetched before it was needed")
	}
	if err := f.try(f.sign(f.remote, "ES256", "r1", f.claims("remote")), nil); err != nil {
		t.Fatalf("an assertion verified with the jwks_uri's key: %v", err)
	}
	if err := f.try(f.sign(f.remote, "ES256", "", f.claims("remote")), nil); err != nil || f.hits.Load() != 1 {
		t.Fatalf("a second assertion: %v, %d fetches, want 1 (cached)", err, f.hits.Load())
	}
	// the client rotates its key: the first unknown kid fetches again, the next ones within a
	// minute do not
	rotated, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.now = f.now.Add(2 * time.Minute)
	f.serve.Store(func(w http.ResponseWriter) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rotated.PublicKey, KeyID: "r2", Algorithm: "ES256", Use: "sig"}}})
	})
	if err := f.try(f.sign(rotated, "ES256", "r2", f.claims("remote")), nil); err != nil || f.hits.Load() != 2 {
		t.Fatalf("after rotation: %v, %d fetches, want 2", err, f.hits.Load())
	}
	for i := 0; i < 5; i++ {
		_ = f.try(f.sign(rotated, "ES256", "r-unknown", f.claims("remote")), nil)
	}
	if n := f.hits.Load(); n != 2 {
		t.Fatalf("%d fetches after 5 unknown kids within a minute of the last, want 2 (no refetch)", n)
	}
	f.now = f.now.Add(61 * time.Second)
	_ = f.try(f.sign(rotated, "ES256", "r-unknown", f.claims("remote")), nil)
	if n := f.hits.Load(); n != 3 {
		t.Fatalf("%d fetches after an unknown kid a minute later, want 3", n)
	}
	// cache expiry, then failures: the cached set is kept when the URI fails
	f.serve.Store(func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
	f.now = f.now.Add(11 * time.Minute)
	if err := f.try(f.sign(rotated, "ES256", "r2", f.claims("remote")), nil); err != nil {
		t.Fatalf("the cached set after a failed refetch: %v", err)
	}

	for name, serve := range map[string]func(http.ResponseWriter){
		"down":      func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) },
		"10 MB":     func(w http.ResponseWriter) { _, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 10<<20) + `]}`)) },
		"not a set": func(w http.ResponseWriter) { _, _ = w.Write([]byte(`<html>`)) },
	} {
		g := newJWTFixture(t)
		g.serve.Store(serve)
		start := time.Now()
		if err := g.try(g.sign(g.remote, "ES256", "r1", g.claims("remote")), nil); !isInvalidClient(err) {
			t.Errorf("jwks_uri %s: got %v, want invalid_client", name, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("jwks_uri %s: the answer took %s", name, d)
		}
	}
}

func stdBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Good assertions from one address pass however many run at once (nothing is taken from the
// limits before a signature check); failed ones are counted, and once the (client, address)
// limit is spent a good assertion from there is refused too, while another address still passes.
func TestAssertionLimits(t *testing.T) {
	f := newJWTFixture(t)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 40 {
		a := f.sign(testP256, "ES256", "k1", f.claims("signer"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := httptest.NewRequest("POST", testIssuer+"/api/oidc/token", nil)
			form := url.Values{"client_assertion_type": {ClientAssertionType}, "client_assertion": {a}}
			if _, err := f.auth.Authenticate(context.Background(), r, form, "192.0.2.1"); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of 40 concurrent good assertions from one address were refused", n)
	}
	at := func(ip string, a string) error {
		r := httptest.NewRequest("POST", testIssuer+"/api/oidc/token", nil)
		_, err := f.auth.Authenticate(context.Background(), r, url.Values{"client_assertion_type": {ClientAssertionType}, "client_assertion": {a}}, ip)
		return err
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for range pairBurst {
		if err := at("192.0.2.2", f.sign(other, "ES256", "k1", f.claims("signer"))); !isInvalidClient(err) {
			t.Fatalf("a forged assertion: %v", err)
		}
	}
	if err := at("192.0.2.2", f.sign(testP256, "ES256", "k1", f.claims("signer"))); err == nil {
		t.Fatal("a good assertion passed from an address whose failures spent the limit")
	}
	if err := at("192.0.2.3", f.sign(testP256, "ES256", "k1", f.claims("signer"))); err != nil {
		t.Fatalf("a good assertion from another address: %v", err)
	}
}

// A key set's fetch follows a redirect only to a URL a jwks_uri may have: never from https to
// http, never from a public host to a loopback one (the provider's own admin API), at most 3.
func TestJWKSRedirects(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		from, to string
		ok       bool
	}{
		{"https://keys.example.com/jwks", "https://cdn.example.net/jwks", true},
		{"http://127.0.0.1:9000/jwks", "http://127.0.0.1:9001/jwks", true},
		{"https://keys.example.com/jwks", "http://127.0.0.1:2019/config/", false},
		{"https://keys.example.com/jwks", "https://127.0.0.1:2019/config/", false},
		{"https://keys.example.com/jwks", "https://localhost/jwks", false},
		{"https://keys.example.com/jwks", "http://keys.example.com/jwks", false},
		{"https://keys.example.com/jwks", "ftp://keys.example.com/jwks", false},
	}
	for _, c := range cases {
		if err := followJWKSRedirect(req(c.to), []*http.Request{req(c.from)}); (err == nil) != c.ok {
			t.Errorf("%s → %s: %v, want allowed %v", c.from, c.to, err, c.ok)
		}
	}
	via := []*http.Request{req("https://a.example.com/"), req("https://b.example.com/"), req("https://c.example.com/")}
	if followJWKSRedirect(req("https://d.example.com/"), via) == nil {
		t.Error("a fourth redirect was followed")
	}
}
