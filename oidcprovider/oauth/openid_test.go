package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite/token/jwt"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
)

func testKeys(t testing.TB, algs ...string) []*keys.Key {
	t.Helper()
	var out []*keys.Key
	for _, alg := range algs {
		_, k, err := keys.Generate(alg, 2048)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// header decodes a compact JWS's header.
func header(t *testing.T, token string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// The signer signs with the key the kid header names, else the first key of the alg header,
// and verifies only its own keys' signatures.
func TestKeySignerPicksTheKeyAndVerifies(t *testing.T) {
	ks := testKeys(t, "RS256", "ES256", "PS256")
	s := &keySigner{keys: ks}
	ctx := context.Background()
	for _, k := range ks {
		for name, hdr := range map[string]map[string]any{"kid": {"kid": k.ID}, "alg": {"alg": k.Algorithm}} {
			tok, _, err := s.Generate(ctx, jwt.MapClaims{"sub": "x"}, &jwt.Headers{Extra: hdr})
			if err != nil {
				t.Fatal(err)
			}
			if h := header(t, tok); h["kid"] != k.ID || h["alg"] != k.Algorithm {
				t.Errorf("by %s %v: header %v, want kid %s alg %s", name, hdr, h, k.ID, k.Algorithm)
			}
			if _, err := s.Decode(ctx, tok); err != nil {
				t.Errorf("own %s token refused: %v", k.Algorithm, err)
			}
		}
	}
	// another signer's token, under our kid: refused
	other := &keySigner{keys: testKeys(t, "RS256")}
	forged, _, err := other.Generate(ctx, jwt.MapClaims{"sub": "x"}, &jwt.Headers{Extra: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(forged, ".")
	hdr, _ := json.Marshal(map[string]any{"alg": "RS256", "kid": ks[0].ID, "typ": "JWT"})
	forged = base64.RawURLEncoding.EncodeToString(hdr) + "." + parts[1] + "." + parts[2]
	if _, err := s.Decode(ctx, forged); err == nil {
		t.Error("a token signed by another key was accepted")
	}
}

// forge builds a JWS with the given header and an HMAC-SHA256 signature keyed with key, or no
// signature for alg none.
func forge(claims map[string]any, alg, kid string, key []byte) string {
	h, _ := json.Marshal(map[string]any{"alg": alg, "kid": kid, "typ": "JWT"})
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	if alg == "none" {
		return in + "."
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestParseLogout(t *testing.T) {
	ks := testKeys(t, "RS256")
	app, err := clients.New(clients.Config{ID: "app", Secret: "$plaintext$s", GrantTypes: []string{"authorization_code"},
		Scopes: []string{"openid"}, RedirectURIs: []string{"https://app.example.com/cb"},
		PostLogoutRedirectURIs: []string{"https://app.example.com/bye"}}, clients.Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := clients.New(clients.Config{ID: "other", Secret: "$plaintext$s", GrantTypes: []string{"authorization_code"},
		Scopes: []string{"openid"}, RedirectURIs: []string{"https://other.example.com/cb"}}, clients.Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	reg := map[string]*clients.Client{"app": app, "other": other}
	p := &Provider{cfg: Config{Issuer: "https://auth.example.com", Clients: func(id string) (*clients.Client, bool) { c, ok := reg[id]; return c, ok }}, signer: &keySigner{keys: ks}}
	ctx := context.Background()
	sign := func(claims jwt.MapClaims) string {
		tok, _, err := p.signer.Generate(ctx, claims, &jwt.Headers{Extra: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	good := sign(jwt.MapClaims{"iss": "https://auth.example.com", "sub": "u-1", "aud": []string{"app"}, "exp": now.Add(time.Hour).Unix()})
	expired := sign(jwt.MapClaims{"iss": "https://auth.example.com", "sub": "u-1", "aud": []string{"app"}, "exp": now.Add(-time.Hour).Unix()})
	otherIss := sign(jwt.MapClaims{"iss": "https://evil.example.com", "sub": "u-1", "aud": []string{"app"}, "exp": now.Add(time.Hour).Unix()})
	typed := func(typ string) string {
		tok, _, err := p.signer.Generate(ctx, jwt.MapClaims{"iss": "https://auth.example.com", "sub": "u-1", "aud": []string{"app"}, "exp": now.Add(time.Hour).Unix()},
			&jwt.Headers{Extra: map[string]any{"typ": typ}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	noSub := sign(jwt.MapClaims{"iss": "https://auth.example.com", "aud": []string{"app"}, "code": "c", "exp": now.Add(time.Hour).Unix()})
	pub, _ := x509.MarshalPKIXPublicKey(ks[0].Signer.Public())
	claims := map[string]any{"iss": "https://auth.example.com", "sub": "u-1", "aud": "app", "exp": now.Add(time.Hour).Unix()}

	ok := func(form url.Values, wantSub, wantRedirect string) {
		t.Helper()
		lr, err := p.ParseLogout(ctx, form)
		if err != nil {
			t.Fatalf("%v: %v", form, err)
		}
		if lr.Subject != wantSub || lr.RedirectURI != wantRedirect {
			t.Errorf("%v: sub %q redirect %q, want %q %q", form, lr.Subject, lr.RedirectURI, wantSub, wantRedirect)
		}
	}
	ok(url.Values{"id_token_hint": {good}, "post_logout_redirect_uri": {"https://app.example.com/bye"}, "state": {"s1"}}, "u-1", "https://app.example.com/bye?state=s1")
	ok(url.Values{"id_token_hint": {expired}}, "u-1", "")
	ok(url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {"https://app.example.com/bye"}}, "", "https://app.example.com/bye")
	ok(url.Values{}, "", "")
	ok(url.Values{"id_token_hint": {typed("JWT")}}, "u-1", "")

	for name, form := range map[string]url.Values{
		"alg none":                {"id_token_hint": {forge(claims, "none", ks[0].ID, nil)}},
		"HS256 with the pub key":  {"id_token_hint": {forge(claims, "HS256", ks[0].ID, pub)}},
		"another issuer":          {"id_token_hint": {otherIss}},
		"garbage":                 {"id_token_hint": {"a.b.c"}},
		"hint for another client": {"id_token_hint": {good}, "client_id": {"other"}},
		"unregistered redirect":   {"id_token_hint": {good}, "post_logout_redirect_uri": {"https://evil.example.com/"}},
		"redirect without client": {"post_logout_redirect_uri": {"https://app.example.com/bye"}},
		"other client's redirect": {"client_id": {"other"}, "post_logout_redirect_uri": {"https://app.example.com/bye"}},
		"unknown client":          {"client_id": {"nobody"}},
		// the provider's other JWTs name themselves and are never ID tokens (RFC 8725 §3.11)
		"an access token":        {"id_token_hint": {typed("at+jwt")}},
		"a signed introspection": {"id_token_hint": {typed("token-introspection+jwt")}},
		"a logout token":         {"id_token_hint": {typed("logout+jwt")}},
		"a JARM answer (no sub)": {"id_token_hint": {noSub}},
	} {
		if _, err := p.ParseLogout(ctx, form); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
