package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// JWT access tokens (RFC 9068) against the built binary: a monitor's client_credentials token
// from golang.org/x/oauth2 verifies against /jwks.json as a resource server would check it (typ
// at+jwt, the claims), passes the gate, and ends at the gate the moment it is revoked at the
// revocation endpoint or by `caddy oidc tokens revoke --client`; a person's gateway token from
// the code flow ends at the gate the moment they sign out at the portal; tokens forged under the
// provider's kid with another key, with alg none, or expired (signed with the provider's own
// key) get 401 invalid_token.
func TestJWTAccessTokensWithoutBrowser(t *testing.T) {
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
		client jwt-monitor {
			secret "$plaintext$jwt-monitor-secret"
			grant_types client_credentials
			scopes authelia.bearer.authz
			audience https://secure.example.test:{portal_port}/
			requested_audience_mode implicit
			access_token_signed_response_alg ES256
		}
`, rs, es)+rpClient("jwt-gw", "scopes authelia.bearer.authz offline_access", "grant_types authorization_code refresh_token",
		"audience https://secure.example.test:{portal_port}/", "require_pushed_authorization_requests", "pkce_challenge_method S256",
		"consent_mode explicit", "access_token_signed_response_key_id main-rs256"))
	secure := s.url("secure", "/")
	set := s.jwks()
	cc := clientcredentials.Config{ClientID: "jwt-monitor", ClientSecret: "jwt-monitor-secret", TokenURL: s.issuer + "/api/oidc/token",
		Scopes: []string{"authelia.bearer.authz"}, AuthStyle: oauth2.AuthStyleInHeader}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.hc)
	mint := func() string {
		t.Helper()
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("client_credentials: %v", err)
		}
		return tok.AccessToken
	}
	refused := func(what, token, desc string) {
		t.Helper()
		resp := bearerResponse(t, s.hc, secure, token)
		if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, desc) {
			t.Errorf("%s: %d %q, want 401 invalid_token %q", what, resp.StatusCode, ch, desc)
		}
	}

	token := mint()
	claims, h, err := verifyJWS(t, set, token)
	if err != nil {
		t.Fatalf("the access token does not verify against /jwks.json: %v", err)
	}
	if h.ExtraHeaders[jose.HeaderType] != "at+jwt" || h.Algorithm != "ES256" || h.KeyID != "main-es256" {
		t.Errorf("header %+v, want typ at+jwt, ES256, main-es256", h)
	}
	if claims["iss"] != s.issuer || claims["sub"] != "jwt-monitor" || claims["client_id"] != "jwt-monitor" ||
		claims["scope"] != "authelia.bearer.authz" || !slices.Equal(asStrings(claims["scp"]), []string{"authelia.bearer.authz"}) ||
		!slices.Equal(asStrings(claims["aud"]), []string{secure}) {
		t.Errorf("claims %v", claims)
	}
	exp, _ := claims["exp"].(float64)
	iat, _ := claims["iat"].(float64)
	if jti, err := uuid.Parse(fmt.Sprint(claims["jti"])); err != nil || jti.Version() != 7 || exp-iat != 3600 || time.Since(time.Unix(int64(iat), 0)) > time.Minute {
		t.Errorf("jti %v, iat %v, exp %v", claims["jti"], iat, exp)
	}
	rec := bearerCall(t, s.hc, secure+"api", token, http.StatusOK)
	if hdr, _ := rec["headers"].(map[string]any); !slices.Equal(asStrings(hdr["Remote-Client-Id"]), []string{"jwt-monitor"}) {
		t.Errorf("upstream headers %v", rec["headers"])
	}
	introspect := func(token string) any {
		t.Helper()
		_, out := form(t, s.hc, s.issuer+"/api/oidc/introspection", "jwt-monitor", "jwt-monitor-secret", url.Values{"token": {token}})
		return out["active"]
	}
	if introspect(token) != true {
		t.Error("introspection: the JWT access token is not active")
	}

	t.Run("revoked at the revocation endpoint", func(t *testing.T) {
		status, out := form(t, s.hc, s.issuer+"/api/oidc/revocation", "jwt-monitor", "jwt-monitor-secret", url.Values{"token": {token}, "token_type_hint": {"access_token"}})
		if status != http.StatusOK {
			t.Fatalf("revocation: %d %v", status, out)
		}
		refused("the revoked token", token, "revoked")
		if introspect(token) != false {
			t.Error("introspection: the revoked token is active")
		}
	})

	t.Run("forged", func(t *testing.T) {
		var c map[string]any
		_ = json.Unmarshal(mustSegment(t, token, 1), &c)
		fresh := func(k string, v any) map[string]any {
			out := map[string]any{}
			for a, b := range c {
				out[a] = b
			}
			out["jti"] = uuid.Must(uuid.NewV7()).String()
			out[k] = v
			return out
		}
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		refused("another key under the provider's kid", signAT(t, other, "main-es256", fresh("iat", c["iat"])), "signature does not verify")
		hb, _ := json.Marshal(map[string]any{"alg": "none", "typ": "at+jwt", "kid": "main-es256"})
		cb, _ := json.Marshal(fresh("iat", c["iat"]))
		refused("alg none", base64.RawURLEncoding.EncodeToString(hb)+"."+base64.RawURLEncoding.EncodeToString(cb)+".", "not signed by a current key")
		refused("expired, signed with the provider's own key", signAT(t, readECKey(t, es), "main-es256", fresh("exp", time.Now().Add(-time.Minute).Unix())), "expired")
		// the provider's own key and claims, but a live jti: accepted (the forgeries above were
		// refused for what they changed, not for their jti)
		bearerCall(t, s.hc, secure, signAT(t, readECKey(t, es), "main-es256", fresh("iat", c["iat"])), http.StatusOK)
	})

	t.Run("caddy oidc tokens revoke", func(t *testing.T) {
		live := mint()
		bearerCall(t, s.hc, secure, live, http.StatusOK)
		out, errOut, code := command(t, "", "tokens", "revoke", "--client", "jwt-monitor", "--address", fmt.Sprintf("localhost:%d", s.admin))
		if code != 0 {
			t.Fatalf("tokens revoke: exit %d %q %s", code, out, errOut)
		}
		refused("a token of the revoked client", live, "revoked")
		time.Sleep(5 * time.Millisecond)
		bearerCall(t, s.hc, secure, mint(), http.StatusOK)
	})

	t.Run("a person's token ends when they sign out", func(t *testing.T) {
		john := newVisitor(t, s.portalSite, "")
		john.signIn("", "john", "pw-john")
		verifier, state := oauth2.GenerateVerifier(), randomString(12)
		status, out := form(t, s.hc, s.issuer+"/api/oidc/pushed-authorization-request", "jwt-gw", "jwt-gw-secret", url.Values{
			"response_type": {"code"}, "client_id": {"jwt-gw"}, "redirect_uri": {redirectURI("jwt-gw")},
			"scope": {"authelia.bearer.authz"}, "audience": {secure}, "state": {state}, "response_mode": {"form_post"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		})
		uri, _ := out["request_uri"].(string)
		if status != http.StatusCreated || uri == "" {
			t.Fatalf("pushed authorization request: %d %v", status, out)
		}
		st := john.authorize(s.issuer + "/api/oidc/authorization?" + url.Values{"client_id": {"jwt-gw"}, "request_uri": {uri}}.Encode())
		if st.consent == nil {
			t.Fatalf("no consent page: %s", st)
		}
		st = john.answerConsent(st, "accept", false)
		status, tokens := s.exchange("jwt-gw", "jwt-gw-secret", st.callback().Get("code"), verifier)
		user, _ := tokens["access_token"].(string)
		if status != http.StatusOK || user == "" {
			t.Fatalf("the code exchange: %d %v", status, tokens)
		}
		claims, h, err := verifyJWS(t, set, user)
		if err != nil || h.KeyID != "main-rs256" || h.Algorithm != "RS256" || claims["sid"] == nil || claims["sub"] == "john" || claims["sub"] == nil {
			t.Fatalf("the person's JWT access token: %v %+v %v", err, h, claims)
		}
		if strings.Contains(string(mustSegment(t, user, 1)), `"john"`) {
			t.Error("the username is readable in the token")
		}
		rec := bearerCall(t, s.hc, secure+"api", user, http.StatusOK)
		if hdr, _ := rec["headers"].(map[string]any); !slices.Equal(asStrings(hdr["Remote-User"]), []string{"john"}) {
			t.Errorf("upstream headers %v", rec["headers"])
		}
		john.signOut()
		refused("the person's token after the sign-out", user, "revoked")
	})
}

// mustSegment decodes segment i of a compact JWS.
func mustSegment(t *testing.T, raw string, i int) []byte {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %.40s", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signAT signs claims as an ES256 JWT access token under kid with key.
func signAT(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// readECKey reads the EC private key writeECKey wrote.
func readECKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM block")
	}
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
