package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// Signed answers against the built binary, checked as a relying party or resource server
// written against the RFCs would, with go-jose v4 and the provider's published /jwks.json:
// signed introspection (RFC 9701) and JWT Secured Authorization Responses (JARM).

// jwks fetches the provider's published key set.
func (s *oidcSite) jwks() jose.JSONWebKeySet {
	s.t.Helper()
	resp, err := s.hc.Get(s.issuer + "/jwks.json")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		s.t.Fatalf("/jwks.json: %v %v", err, set)
	}
	return set
}

// verifyJWS checks raw's signature with the key of set its kid names and returns the claims and
// the JWS header.
func verifyJWS(t *testing.T, set jose.JSONWebKeySet, raw string) (map[string]any, jose.Header, error) {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.PS256})
	if err != nil {
		return nil, jose.Header{}, fmt.Errorf("not a JWS: %w", err)
	}
	h := tok.Headers[0]
	found := set.Key(h.KeyID)
	if len(found) != 1 {
		return nil, h, fmt.Errorf("kid %q is not in the key set", h.KeyID)
	}
	var claims map[string]any
	if err := tok.Claims(found[0].Public().Key, &claims); err != nil {
		return nil, h, fmt.Errorf("signature: %w", err)
	}
	return claims, h, nil
}

// foreignKeySet is a key set of one fresh key of alg (ES256 or RSA) under the kid given: another party's key that
// claims the provider's key id.
func foreignKeySet(t *testing.T, kid, alg string) jose.JSONWebKeySet {
	t.Helper()
	var pub any
	if alg == "ES256" {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = k.Public()
	} else {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub = k.Public()
	}
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}}}
}

// introspect posts an introspection request as client (Basic credentials "<id>-secret") with
// the Accept header accept (none when "") and returns the answer's status, content type and
// body.
func (s *oidcSite) introspect(client, token, accept string) (int, string, string) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.issuer+"/api/oidc/introspection", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.SetBasicAuth(client, client+"-secret")
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// Signed introspection: a resource server that registered introspection_signed_response_alg
// ES256 gets a JWT (typ token-introspection+jwt) that verifies against /jwks.json with iss, aud
// (its own id) and the answer in token_introspection; the same JWT does not verify against
// another key; a client without the option gets JSON, and a JWT (RS256) when it asks with
// Accept; discovery lists the algorithms.
func TestSignedIntrospectionWithoutBrowser(t *testing.T) {
	rs, es := writeRSAKey(t), writeECKey(t)
	s := startOIDCHTTPSite(t, fmt.Sprintf(`
		signing_key main-rs256 {
			algorithm RS256
			key_file %s
		}
		signing_key main-es256 {
			algorithm ES256
			key_file %s
		}
`, rs, es)+
		rpClient("app")+
		"\t\tclient api {\n\t\t\tsecret \"$plaintext$api-secret\"\n\t\t\tgrant_types client_credentials\n\t\t\tresource_server_for app\n"+
		"\t\t\tintrospection_signed_response_alg ES256\n\t\t}\n")
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	token := s.codeFlow(john, "app", nil).accessToken()
	set := s.jwks()

	status, ct, body := s.introspect("api", token, "")
	if status != http.StatusOK || ct != "application/token-introspection+jwt" {
		t.Fatalf("api's introspection: %d %q %.300s", status, ct, body)
	}
	claims, h, err := verifyJWS(t, set, body)
	if err != nil {
		t.Fatalf("the signed introspection does not verify against /jwks.json: %v", err)
	}
	ti, _ := claims["token_introspection"].(map[string]any)
	if h.Algorithm != "ES256" || h.KeyID != "main-es256" || h.ExtraHeaders[jose.HeaderType] != "token-introspection+jwt" {
		t.Errorf("header %+v, want ES256, main-es256, typ token-introspection+jwt", h)
	}
	if claims["iss"] != s.issuer || claims["aud"] != "api" || claims["iat"] == nil ||
		ti["active"] != true || ti["client_id"] != "app" || ti["username"] != "john" {
		t.Errorf("claims %v", claims)
	}
	if _, _, err := verifyJWS(t, foreignKeySet(t, "main-es256", "ES256"), body); err == nil {
		t.Error("the signed introspection verified against a key the provider does not have")
	}

	// app registered nothing: JSON, or a JWT when it asks for one
	status, ct, body = s.introspect("app", token, "")
	var plain map[string]any
	if status != http.StatusOK || !strings.HasPrefix(ct, "application/json") || json.Unmarshal([]byte(body), &plain) != nil || plain["active"] != true {
		t.Fatalf("app's introspection: %d %q %.300s", status, ct, body)
	}
	status, ct, body = s.introspect("app", token, "application/token-introspection+jwt")
	if status != http.StatusOK || ct != "application/token-introspection+jwt" {
		t.Fatalf("app's introspection with Accept: %d %q %.300s", status, ct, body)
	}
	if claims, h, err = verifyJWS(t, set, body); err != nil || h.Algorithm != "RS256" || claims["aud"] != "app" {
		t.Errorf("app's signed introspection: %v %+v %v", err, h, claims)
	}

	var doc map[string]any
	resp, err := s.hc.Get(s.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if got := fmt.Sprint(doc["introspection_signing_alg_values_supported"]); got != "[RS256 ES256]" {
		t.Errorf("introspection_signing_alg_values_supported %s", got)
	}
}

// jarmResponse verifies a JARM "response" against the key set as a client does (signature,
// iss, aud = client, exp in the future and at most ten minutes ahead) and returns its claims.
func (s *oidcSite) jarmResponse(set jose.JSONWebKeySet, client, raw string) (map[string]any, jose.Header, error) {
	s.t.Helper()
	claims, h, err := verifyJWS(s.t, set, raw)
	if err != nil {
		return nil, h, err
	}
	exp, _ := claims["exp"].(float64)
	if d := time.Until(time.Unix(int64(exp), 0)); d <= 0 || d > 10*time.Minute+5*time.Second {
		return claims, h, fmt.Errorf("exp %v is %s away", claims["exp"], d)
	}
	if claims["iss"] != s.issuer || claims["aud"] != client {
		return claims, h, fmt.Errorf("iss %v aud %v", claims["iss"], claims["aud"])
	}
	return claims, h, nil
}

// JARM against the built binary: code flows with response_mode query.jwt and form_post.jwt
// whose "response" verifies against /jwks.json with go-jose (iss, aud, exp, code, state) and
// carries nothing else beside it, the code then redeemed with golang.org/x/oauth2; a client
// with authorization_signed_response_alg ES256 gets ES256; the response checked against another
// key fails; an error (prompt=none without a session) comes JARM-wrapped; discovery lists the
// modes and algorithms.
func TestJARMWithoutBrowser(t *testing.T) {
	rs, es := writeRSAKey(t), writeECKey(t)
	modes := "response_modes query form_post query.jwt form_post.jwt fragment.jwt jwt"
	s := startOIDCHTTPSite(t, fmt.Sprintf(`
		signing_key main-rs256 {
			algorithm RS256
			key_file %s
		}
		signing_key main-es256 {
			algorithm ES256
			key_file %s
		}
`, rs, es)+
		rpClient("jarm", modes, "grant_types authorization_code implicit", `response_types code "code id_token"`)+
		rpClient("jarm-es", modes, "authorization_signed_response_alg ES256"))
	set := s.jwks()
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")

	for _, c := range []struct{ client, mode, alg string }{
		{"jarm", "query.jwt", "RS256"},
		{"jarm", "form_post.jwt", "RS256"},
		{"jarm", "jwt", "RS256"},
		{"jarm-es", "query.jwt", "ES256"},
	} {
		a := s.authURL(c.client, url.Values{"response_mode": {c.mode}})
		st := john.authorize(a.url)
		params := st.callback()
		if c.mode == "form_post.jwt" {
			if st.formPost == nil || st.formPostTo != redirectURI(c.client) {
				t.Fatalf("%s %s: not a form post to the callback: %s", c.client, c.mode, st)
			}
		} else if !strings.HasPrefix(st.location, redirectURI(c.client)+"?response=") {
			t.Fatalf("%s %s: not a query answer: %s", c.client, c.mode, st)
		}
		if len(params) != 1 || params.Get("response") == "" {
			t.Fatalf("%s %s: the callback got %v, want only response", c.client, c.mode, params)
		}
		raw := params.Get("response")
		claims, h, err := s.jarmResponse(set, c.client, raw)
		if err != nil {
			t.Fatalf("%s %s: the response does not verify: %v", c.client, c.mode, err)
		}
		if h.Algorithm != c.alg || claims["state"] != a.state || claims["code"] == nil {
			t.Errorf("%s %s: %s, claims %v", c.client, c.mode, h.Algorithm, claims)
		}
		if _, _, err := verifyJWS(t, foreignKeySet(t, h.KeyID, c.alg), raw); err == nil {
			t.Errorf("%s %s: the response verified against a key the provider does not have", c.client, c.mode)
		}
		// the code redeems, with an x/oauth2 client
		conf := &oauth2.Config{ClientID: c.client, ClientSecret: c.client + "-secret", RedirectURL: redirectURI(c.client),
			Endpoint: oauth2.Endpoint{TokenURL: s.issuer + "/api/oidc/token", AuthStyle: oauth2.AuthStyleInHeader}}
		tok, err := conf.Exchange(s.ctx, claims["code"].(string), oauth2.VerifierOption(a.verifier))
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("%s %s: exchanging the response's code: %v", c.client, c.mode, err)
		}
		if raw, _ := tok.Extra("id_token").(string); raw != "" {
			s.verifyIDToken(c.client, raw, a.nonce)
		} else {
			t.Errorf("%s %s: no ID token", c.client, c.mode)
		}
	}

	// an error once the client and the redirect URI are known: JARM-wrapped
	stranger := newVisitor(t, s.portalSite, "")
	a := s.authURL("jarm", url.Values{"response_mode": {"query.jwt"}, "prompt": {"none"}})
	params := stranger.authorize(a.url).callback()
	claims, _, err := s.jarmResponse(set, "jarm", params.Get("response"))
	if err != nil || len(params) != 1 || claims["error"] != "login_required" || claims["state"] != a.state || claims["code"] != nil {
		t.Errorf("prompt=none without a session: %v %v %v", params, err, claims)
	}
	// query.jwt cannot carry a hybrid answer's tokens (the client may use both)
	a = s.authURL("jarm", url.Values{"response_mode": {"query.jwt"}, "response_type": {"code id_token"}})
	params = john.authorize(a.url).callback()
	if claims, _, err := s.jarmResponse(set, "jarm", params.Get("response")); err != nil || claims["error"] != "unsupported_response_mode" || claims["id_token"] != nil {
		t.Errorf("query.jwt with code id_token: %v %v %v", params, err, claims)
	}

	var doc map[string]any
	resp, err := s.hc.Get(s.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if got := fmt.Sprint(doc["response_modes_supported"]); got != "[query fragment form_post jwt query.jwt fragment.jwt form_post.jwt]" {
		t.Errorf("response_modes_supported %s", got)
	}
	if got := fmt.Sprint(doc["authorization_signing_alg_values_supported"]); got != "[RS256 ES256]" {
		t.Errorf("authorization_signing_alg_values_supported %s", got)
	}
}
