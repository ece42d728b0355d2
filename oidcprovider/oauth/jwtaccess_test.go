package oauth

import (
	"bytes"
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
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// countingKV is a store that counts the reads made through it, so a test can tell that the gate
// did not read the store.
type countingKV struct {
	store.KV
	reads atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key []byte) ([]byte, error) {
	c.reads.Add(1)
	return c.KV.Get(ctx, key)
}

func (c *countingKV) Keys(ctx context.Context, prefix []byte) ([][]byte, error) {
	c.reads.Add(1)
	return c.KV.Keys(ctx, prefix)
}

// jwtProvider is a Provider on a real Badger store (through a countingKV) with the JWT access
// token clients "jmon" (client_credentials, ES256), "jrs" (client_credentials, RS256) and "japp"
// (the code flow with refresh tokens, RS256), the opaque "monitor", and the cut-offs and
// revocations the app gives it.
type jwtProvider struct {
	*flowProvider
	kv          *countingKV
	keys        []*keys.Key
	revocations *Revocations
	cutoffs     *ClientCutoffs
}

func newJWTProvider(t testing.TB, dir string) *jwtProvider {
	t.Helper()
	bk, err := store.Open(dir, store.Options{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bk.Destruct() })
	return newJWTProviderOn(t, bk, testKeys(t, "RS256", "ES256"))
}

func newJWTProviderOn(t testing.TB, kv store.KV, signing []*keys.Key) *jwtProvider {
	t.Helper()
	ckv := &countingKV{KV: kv}
	reg := map[string]*clients.Client{}
	settings := clients.ProviderSettings{}
	for _, k := range signing {
		settings.SigningKeys = append(settings.SigningKeys, clients.SigningKey{ID: k.ID, Algorithm: k.Algorithm})
	}
	for _, cfg := range []clients.Config{
		{ID: "monitor", Secret: "$plaintext$monitor-secret", GrantTypes: []string{clients.GrantClientCredentials},
			Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://status.example.com/"}},
		{ID: "jmon", Secret: "$plaintext$jmon-secret", GrantTypes: []string{clients.GrantClientCredentials},
			Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://status.example.com/"}, AccessTokenSignedResponseAlg: "ES256"},
		{ID: "jrs", Secret: "$plaintext$jrs-secret", GrantTypes: []string{clients.GrantClientCredentials},
			Scopes: []string{clients.ScopeBearerAuthz}, Audience: []string{"https://status.example.com/"}, AccessTokenSignedResponseAlg: "RS256"},
		{ID: "japp", Secret: "$plaintext$japp-secret", GrantTypes: []string{"authorization_code", "refresh_token"},
			Scopes: []string{"openid", "offline_access", "profile"}, RedirectURIs: []string{testRedirect}, AccessTokenSignedResponseAlg: "RS256"},
	} {
		c, err := clients.NewFor(cfg, clients.Lifespans{}, settings)
		if err != nil {
			t.Fatal(err)
		}
		reg[cfg.ID] = c
	}
	ctx := context.Background()
	cutoffs, err := LoadClientCutoffs(ctx, ckv)
	if err != nil {
		t.Fatal(err)
	}
	revocations, err := LoadRevocations(ctx, ckv)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(id string) (*clients.Client, bool) { c, ok := reg[id]; return c, ok }
	people := &testPeople{disabled: map[string]bool{}}
	p := New(Config{
		Issuer:     "https://auth.example.com",
		Lifespans:  clients.Lifespans{AccessToken: time.Hour, RefreshToken: time.Hour, AuthorizeCode: time.Minute, IDToken: time.Hour},
		HMACSecret: bytes.Repeat([]byte("k"), 32),
		KV:         ckv,
		Clients:    lookup,
		Authenticator: &clients.Authenticator{Lookup: lookup, Secrets: digest.NewCache(100, time.Hour),
			Limits: clients.NewLimits(), Logger: zap.NewNop()},
		ClientIP:    func(*http.Request) string { return "127.0.0.1" },
		Keys:        signing,
		Tokens:      NewTokenCache(100),
		People:      people,
		Cutoffs:     cutoffs,
		Revocations: revocations,
	})
	return &jwtProvider{flowProvider: &flowProvider{t: t, p: p, people: people, kv: ckv}, kv: ckv, keys: signing, revocations: revocations, cutoffs: cutoffs}
}

// mintCC has client obtain a gateway token for the status page.
func (f *jwtProvider) mintCC(client string) string {
	f.t.Helper()
	status, out := f.token(client, url.Values{"grant_type": {"client_credentials"}, "scope": {clients.ScopeBearerAuthz}, "audience": {"https://status.example.com/"}})
	tok, _ := out["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		f.t.Fatalf("%s: token request: %d %v", client, status, out)
	}
	return tok
}

// gate is CheckBearer at the status page, and the reads of the store it made.
func (f *jwtProvider) gate(token string) (*BearerIdentity, int64, error) {
	before := f.kv.reads.Load()
	id, err := f.p.CheckBearer(context.Background(), token, statusPage)
	return id, f.kv.reads.Load() - before, err
}

// refused reports whether err is the gate's refusal of a token of ours, with want in its
// description.
func gateRefused(err error, want string) bool {
	var inv *InvalidTokenError
	return errors.As(err, &inv) && strings.Contains(inv.Description, want)
}

// jwks is the provider's key set as a relying party reads it.
func (f *jwtProvider) jwks() jose.JSONWebKeySet { return keys.JWKS(f.keys) }

// A client_credentials JWT access token is an RFC 9068 token a resource server verifies with the
// JWKS alone (typ at+jwt, the claims of the RFC and DESIGN §4.6); the gate accepts it without a
// single read of the store, also on a provider that has never seen it (a fresh config on the
// same store, so no verified-signature cache); an opaque client's tokens stay opaque.
func TestJWTAccessTokenClaimsAndGateWithoutStoreRead(t *testing.T) {
	dir := t.TempDir()
	f := newJWTProvider(t, dir)
	for _, client := range []string{"jmon", "jrs"} {
		tok := f.mintCC(client)
		if strings.HasPrefix(tok, TokenPrefix) {
			t.Fatalf("%s: an opaque token: %.20s", client, tok)
		}
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		h := jws.Signatures[0].Protected
		if h.ExtraHeaders["typ"] != "at+jwt" || h.KeyID == "" {
			t.Errorf("%s: header %+v", client, h)
		}
		set := f.jwks()
		k := set.Key(h.KeyID)
		if len(k) != 1 || k[0].Algorithm != h.Algorithm {
			t.Fatalf("%s: kid %s is not in the JWKS with alg %s", client, h.KeyID, h.Algorithm)
		}
		payload, err := jws.Verify(k[0].Key)
		if err != nil {
			t.Fatalf("%s: does not verify against the JWKS: %v", client, err)
		}
		var c map[string]any
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatal(err)
		}
		if c["iss"] != "https://auth.example.com" || c["sub"] != client || c["client_id"] != client ||
			c["scope"] != clients.ScopeBearerAuthz || !slices.Equal(asStringList(c["scp"]), []string{clients.ScopeBearerAuthz}) ||
			!slices.Equal(asStringList(c["aud"]), []string{"https://status.example.com/"}) {
			t.Errorf("%s: claims %v", client, c)
		}
		exp, _ := c["exp"].(float64)
		iat, _ := c["iat"].(float64)
		if d := time.Unix(int64(exp), 0).Sub(time.Unix(int64(iat), 0)); d != time.Hour {
			t.Errorf("%s: exp - iat = %s", client, d)
		}
		jti, err := uuid.Parse(c["jti"].(string))
		if err != nil || jti.Version() != 7 || time.Since(jtiTime(jti)) > time.Minute {
			t.Errorf("%s: jti %v (%v)", client, c["jti"], err)
		}
		for _, absent := range []string{userClaim, "sid", "auth_time"} {
			if _, ok := c[absent]; ok {
				t.Errorf("%s: a client's own token carries %s", client, absent)
			}
		}
		id, reads, err := f.gate(tok)
		if err != nil || reads != 0 || id.SubjectID != "oauth2:client:"+client || !id.ClientCredentials || id.ScopeString != clients.ScopeBearerAuthz {
			t.Fatalf("%s: gate: %+v, %d store reads, %v", client, id, reads, err)
		}
		if _, reads, err = f.gate(tok); err != nil || reads != 0 {
			t.Fatalf("%s: gate, second time: %d store reads, %v", client, reads, err)
		}
		// a provider of a new config on the same store verifies it afresh, still without a read
		again := newJWTProviderOn(t, f.kv.KV, f.keys)
		if _, reads, err := again.gate(tok); err != nil || reads != 0 {
			t.Fatalf("%s: gate of a fresh provider: %d store reads, %v", client, reads, err)
		}
	}
	if tok := f.mintCC("monitor"); !strings.HasPrefix(tok, TokenPrefix+kindAccess+"_") {
		t.Errorf("the opaque client got %.20s", tok)
	}
}

func asStringList(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		out = append(out, v)
	case []any:
		for _, s := range v {
			str, _ := s.(string)
			out = append(out, str)
		}
	}
	return out
}

// forge signs claims with key under header fields h (alg from the key), as an attacker would.
func forgeAT(t *testing.T, key any, alg jose.SignatureAlgorithm, h map[string]any, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	for k, v := range h {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := josejwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsigned is a JWT with alg none.
func unsigned(h, claims map[string]any) string {
	hb, _ := json.Marshal(h)
	cb, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb) + "."
}

// The gate tells a JWT that is not ours (another issuer's, or not a JWT) from one that claims to
// be ours: the first passes as a foreign Bearer value, the second is refused as invalid_token —
// signed by another key under our kid, alg none, an unknown kid, the wrong typ (an ID token),
// a payload changed after signing, an expired token, an HMAC-secret change for a user token.
func TestJWTAccessTokenForgeriesAtTheGate(t *testing.T) {
	f := newJWTProvider(t, t.TempDir())
	good := f.mintCC("jmon")
	parts := strings.Split(good, ".")
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(raw, &claims)
	var hdr map[string]any
	raw, _ = base64.RawURLEncoding.DecodeString(parts[0])
	_ = json.Unmarshal(raw, &hdr)
	kid, _ := hdr["kid"].(string)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for a, b := range claims {
			c[a] = b
		}
		c[k] = v
		return c
	}
	fresh := func() map[string]any {
		jti, _ := newJTI(time.Now())
		return with("jti", jti.String())
	}
	b, _ := json.Marshal(with("client_id", "monitor"))
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	cases := []struct {
		name, token, want string
	}{
		{"another key under our kid", forgeAT(t, other, jose.ES256, map[string]any{"kid": kid}, fresh()), "signature does not verify"},
		{"an unknown kid", forgeAT(t, other, jose.ES256, map[string]any{"kid": "gone-es256"}, fresh()), "not signed by a current key"},
		{"alg none", unsigned(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}, fresh()), "not signed by a current key"},
		{"the wrong typ", forgeAT(t, other, jose.ES256, map[string]any{"kid": kid, "typ": "JWT"}, fresh()), "not an access token"},
		{"a payload changed after signing", tampered, "signature does not verify"},
		{"expired", forgeWithProviderKey(t, f, kid, with("exp", time.Now().Add(-time.Minute).Unix())), "expired"},
	}
	for _, tc := range cases {
		_, reads, err := f.gate(tc.token)
		if !gateRefused(err, tc.want) || reads != 0 {
			t.Errorf("%s: %v (%d store reads), want invalid_token %q", tc.name, err, reads, tc.want)
		}
	}
	foreign := []struct{ name, token string }{
		{"another issuer's JWT", forgeAT(t, other, jose.ES256, map[string]any{"kid": kid}, with("iss", "https://login.example.net"))},
		{"another issuer's unsigned JWT", unsigned(map[string]any{"alg": "none"}, with("iss", "https://login.example.net"))},
		{"three dotted words", "abc.def.ghi"},
		{"an API key", "sk-live-0123456789"},
	}
	for _, tc := range foreign {
		if _, _, err := f.gate(tc.token); !errors.Is(err, ErrNotOurToken) {
			t.Errorf("%s: %v, want ErrNotOurToken", tc.name, err)
		}
	}
	if _, _, err := f.gate(good); err != nil {
		t.Fatalf("the good token after the forgeries: %v", err)
	}
}

// forgeWithProviderKey signs claims with the provider's own key kid (what a token of ours with
// other claims looks like).
func forgeWithProviderKey(t *testing.T, f *jwtProvider, kid string, claims map[string]any) string {
	t.Helper()
	for _, k := range f.keys {
		if k.ID == kid {
			return forgeAT(t, k.Signer, jose.SignatureAlgorithm(k.Algorithm), map[string]any{"kid": kid}, claims)
		}
	}
	t.Fatalf("no key %s", kid)
	return ""
}

// The revocation endpoint ends a JWT access token at the gate at once, without a store read at
// the gate; introspection reads it as active, then inactive; a restart (the revocations loaded
// from the store) still refuses it; `tokens revoke` (the client's cut-off) ends the other.
func TestJWTAccessTokenRevocation(t *testing.T) {
	dir := t.TempDir()
	f := newJWTProvider(t, dir)
	tok, keep := f.mintCC("jmon"), f.mintCC("jmon")
	introspect := func(token string) bool {
		_, out := f.post(f.p.ServeIntrospection, PathIntrospection, "jmon", url.Values{"token": {token}})
		return out["active"] == true
	}
	if !introspect(tok) {
		t.Fatal("introspection: the fresh JWT access token is inactive")
	}
	if status, _ := f.post(f.p.ServeRevocation, PathRevocation, "jmon", url.Values{"token": {tok}}); status != http.StatusOK {
		t.Fatalf("revocation: %d", status)
	}
	if _, reads, err := f.gate(tok); !gateRefused(err, "revoked") || reads != 0 {
		t.Fatalf("gate after the revocation: %v (%d store reads)", err, reads)
	}
	if introspect(tok) {
		t.Error("introspection: the revoked token is active")
	}
	if _, _, err := f.gate(keep); err != nil {
		t.Fatalf("the client's other token after one was revoked: %v", err)
	}
	// another client cannot revoke it (RFC 7009 §2.1): it stays usable
	if status, _ := f.post(f.p.ServeRevocation, PathRevocation, "jrs", url.Values{"token": {keep}}); status != http.StatusOK && status != http.StatusBadRequest {
		t.Fatalf("revocation by another client: %d", status)
	}
	if _, _, err := f.gate(keep); err != nil {
		t.Fatalf("another client's revocation ended the token: %v", err)
	}
	// a restart: the revocation is read back from the store
	again := newJWTProviderOn(t, f.kv.KV, f.keys)
	if again.revocations.Len() == 0 {
		t.Fatal("no revocation loaded from the store")
	}
	if _, _, err := again.gate(tok); !gateRefused(err, "revoked") {
		t.Fatalf("the revoked token after a restart: %v", err)
	}
	if _, _, err := again.gate(keep); err != nil {
		t.Fatalf("the other token after a restart: %v", err)
	}
	// the operator's revocation of every token of the client
	if _, err := f.p.RevokeClientTokens(context.Background(), "jmon"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.gate(keep); !gateRefused(err, "revoked") {
		t.Fatalf("after tokens revoke: %v", err)
	}
	if _, _, err := f.gate(f.mintCC("jmon")); err != nil {
		t.Fatalf("a token minted after tokens revoke: %v", err)
	}
}

// A user's JWT access token from the code flow carries the user's subject, the sign-in's
// auth_time and amr, the portal session's sid and the sealed username (never in the clear); it
// works at userinfo and introspection; refreshing revokes the old one (the grant's rotation);
// a sign-out of its portal session, and the user's cut-off (a password change), end it in the
// gate's memory at once.
func TestJWTAccessTokenOfAUser(t *testing.T) {
	f := newJWTProvider(t, t.TempDir())
	flow := func() map[string]any {
		q := url.Values{"client_id": {"japp"}, "response_type": {"code"}, "scope": {"openid offline_access"},
			"redirect_uri": {testRedirect}, "state": {"state-0123456789"}, "nonce": {"nonce-0123456789"}}
		r := httptest.NewRequest(http.MethodGet, PathAuthorization+"?"+q.Encode(), nil)
		a, err := f.p.NewAuthorizeRequest(r.Context(), r, "browser-1")
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		f.p.Authorize(r.Context(), w, a, Grant{Username: "john", Subject: "sub-john", AuthTime: time.Now(), AMR: []string{"pwd", "otp", "mfa"},
			TwoFactor: true, Scopes: a.Scopes(), BrowserSession: "ref-1"})
		loc, _ := url.Parse(w.Header().Get("Location"))
		status, out := f.exchange("japp", loc.Query().Get("code"), "")
		if status != http.StatusOK {
			t.Fatalf("exchange: %d %v", status, out)
		}
		return out
	}
	out := flow()
	at, _ := out["access_token"].(string)
	rt, _ := out["refresh_token"].(string)
	if !strings.HasPrefix(rt, TokenPrefix+kindRefresh+"_") {
		t.Errorf("the refresh token is not opaque: %.20s", rt)
	}
	var c map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(at, ".")[1])
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("not a JWT: %.30s", at)
	}
	if c["sub"] != "sub-john" || c["sid"] != f.p.sidOf("ref-1") || c["auth_time"] == nil || !slices.Equal(asStringList(c["amr"]), []string{"pwd", "otp", "mfa"}) ||
		!slices.Equal(asStringList(c["aud"]), []string{"https://auth.example.com/api/oidc/userinfo"}) || c[userClaim] == nil || strings.Contains(string(raw), "\"john\"") {
		t.Errorf("claims %s", raw)
	}
	e, err := f.p.verifyAccessJWT(at)
	if err != nil || e.identity.Username != "john" || !e.identity.TwoFactor || e.identity.SubjectID != "john" || e.identity.ClientCredentials {
		t.Fatalf("the gate's reading: %+v %v", e, err)
	}
	if status := f.userinfo(at); status != http.StatusOK {
		t.Errorf("userinfo: %d", status)
	}
	// refresh: the old access token ends (the grant's rotation revokes it by jti)
	status, out2 := f.refresh("japp", rt)
	at2, _ := out2["access_token"].(string)
	if status != http.StatusOK || at2 == "" {
		t.Fatalf("refresh: %d %v", status, out2)
	}
	if _, _, err := f.gate(at); !gateRefused(err, "revoked") {
		t.Errorf("the access token replaced by a refresh: %v", err)
	}
	if f.userinfo(at) != http.StatusUnauthorized {
		t.Error("userinfo with the replaced access token")
	}
	if _, _, err := f.gate(at2); !gateRefused(err, "scope") { // alive, but not a gateway token
		t.Fatalf("the refreshed token: %v", err)
	}
	// a sign-out of the portal session ends it, without a store read at the gate
	if _, err := f.p.EndBrowserSession(context.Background(), "ref-1"); err != nil {
		t.Fatal(err)
	}
	if _, reads, err := f.gate(at2); !gateRefused(err, "revoked") || reads != 0 {
		t.Errorf("after the sign-out: %v (%d reads)", err, reads)
	}
	// the session's end alone (a token the sign-out's listing missed) refuses it too
	e2, _ := f.p.verifyAccessJWT(at2)
	if !f.revocations.Revoked(uuid.New(), e2.sid, e2.issuedAt) {
		t.Error("the ended session does not refuse a token issued in it")
	}
	if f.revocations.Revoked(uuid.New(), e2.sid, time.Now().Add(time.Second)) {
		t.Error("the ended session refuses a token issued after its end")
	}
	// a password change: the user's cut-off ends every earlier token
	out = flow()
	at3, _ := out["access_token"].(string)
	if _, _, err := f.gate(at3); !gateRefused(err, "scope") {
		t.Fatalf("a fresh user token: %v", err)
	}
	if err := f.p.RevokeUserTokens(context.Background(), "john"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.gate(at3); !gateRefused(err, "password changed") {
		t.Errorf("after the user's cut-off: %v", err)
	}
}

// A device client with access_token_signed_response_alg gets a JWT access token from the device
// grant too (the grant's handler uses the same access-token strategy), with the sid of the
// portal session that approved it; the session's sign-out ends it at the gate.
func TestJWTAccessTokenOfTheDeviceGrant(t *testing.T) {
	f := newFlowProvider(t, clients.Config{ID: "jtv", Public: true, GrantTypes: []string{clients.GrantDeviceCode},
		Scopes: []string{"openid", "profile"}, AccessTokenSignedResponseAlg: "RS256"})
	rv, err := LoadRevocations(context.Background(), f.kv)
	if err != nil {
		t.Fatal(err)
	}
	f.p.cfg.Revocations, f.p.storage.revocations = rv, rv
	status, out := postPublicAs(f, f.p.ServeDeviceAuthorization, PathDeviceAuthorization, "jtv", url.Values{"scope": {"openid profile"}})
	if status != http.StatusOK {
		t.Fatalf("device authorization: %d %v", status, out)
	}
	if err := f.answer(out["user_code"].(string), true, "ref-tv"); err != nil {
		t.Fatal(err)
	}
	status, tok := postPublicAs(f, f.p.ServeToken, PathToken, "jtv", url.Values{"grant_type": {clients.GrantDeviceCode}, "device_code": {out["device_code"].(string)}})
	at, _ := tok["access_token"].(string)
	if status != http.StatusOK || !jwtShaped(at) {
		t.Fatalf("device token: %d %v", status, tok)
	}
	e, err := f.p.verifyAccessJWT(at)
	if err != nil || e.sid != f.p.sidOf("ref-tv") || e.identity.Username != "john" {
		t.Fatalf("the device's JWT access token: %+v %v", e, err)
	}
	if f.userinfo(at) != http.StatusOK {
		t.Error("userinfo with the device's JWT access token")
	}
	if _, err := f.p.EndBrowserSession(context.Background(), "ref-tv"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.CheckBearer(context.Background(), at, statusPage); !gateRefused(err, "revoked") {
		t.Errorf("after the approving session's sign-out: %v", err)
	}
}

// postPublicAs sends form to serve as the public client id.
func postPublicAs(f *flowProvider, serve http.HandlerFunc, path, id string, form url.Values) (int, map[string]any) {
	f.t.Helper()
	form.Set("client_id", id)
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	serve(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}
