package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// These tests replay, with the real binary, what an outsider tried against issue 18's features
// (JWT access tokens at the gate, JWT client authentication, request objects, the device grant,
// CORS, signing keys), so what held keeps holding.

// readRSAKey reads the RSA private key writeRSAKey wrote.
func readRSAKey(t *testing.T, path string) *rsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM block")
	}
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawJWS is a compact JWS of header and claims with the signature sig (raw bytes).
func rawJWS(header, claims map[string]any, sign func(input []byte) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// signWith signs claims with key under alg with the extra header fields (kid, typ, jwk …).
func signWith(t *testing.T, key any, alg string, header map[string]any, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	for k, v := range header {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// hmacSHA256 is HS256 over input with key, for alg-confusion forgeries.
func hmacSHA256(key []byte) func([]byte) []byte {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(input)
		return m.Sum(nil)
	}
}

// refusedAtGate checks that the gate refuses token with 401 (431 for a header too large; never
// 200, never a 5xx).
func refusedAtGate(t *testing.T, hc *http.Client, target, what, token string) {
	t.Helper()
	resp := bearerResponse(t, hc, target, token)
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("%s: the gate answered %d (WWW-Authenticate %q), want 401", what, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// noSecretsInLog fails when the server's log holds any of the values.
func noSecretsInLog(t *testing.T, s *server, values ...string) {
	t.Helper()
	log := s.log.String()
	for _, v := range values {
		if v != "" && strings.Contains(log, v) {
			t.Errorf("the server's log holds a token or secret (%.24s…)", v)
		}
	}
	for _, bad := range []string{"panic", "goroutine ", `"status":500`} {
		if strings.Contains(log, bad) {
			i := strings.Index(log, bad)
			t.Errorf("the server's log has %q: %s", bad, log[max(0, i-300):min(len(log), i+300)])
		}
	}
}

// JWT access tokens forged or misused at the gate: alg confusion (HS256 keyed with the public
// key), a kid naming another of our keys, kid path tricks, jwk/jku headers, a token signed with
// our key but of another type (an ID token) or another issuer, a token of another audience, a
// huge token; then the lives of real tokens: refresh rotation, a replayed code, tokens revoke
// --user, and the server's log holds none of them.
func TestAttack18JWTAccessTokensAtTheGate(t *testing.T) {
	rs, es, old := writeRSAKey(t), writeECKey(t), writeECKey(t)
	s := startOIDCHTTPSite(t, fmt.Sprintf(`
		signing_key main-rs256 {
			algorithm RS256
			key_file %s
		}
		signing_key main-es256 {
			algorithm ES256
			key_file %s
		}
		signing_key old-es256 {
			algorithm ES256
			key_file %s
			retired
		}
		client jwt-monitor {
			secret "$plaintext$jwt-monitor-secret"
			grant_types client_credentials
			scopes authelia.bearer.authz
			audience https://secure.example.test:{portal_port}/
			requested_audience_mode implicit
			access_token_signed_response_alg ES256
		}
`, rs, es, old)+rpClient("jwt-rp", "scopes authelia.bearer.authz offline_access", "grant_types authorization_code refresh_token",
		"audience https://secure.example.test:{portal_port}/", "require_pushed_authorization_requests", "pkce_challenge_method S256",
		"consent_mode explicit", "access_token_signed_response_alg RS256")+rpClient("oidc-rp", "access_token_signed_response_alg RS256"))
	secure, admin := s.url("secure", "/"), s.url("admin", "/")
	set := s.jwks()
	status, body := form(t, s.hc, s.issuer+"/api/oidc/token", "jwt-monitor", "jwt-monitor-secret", url.Values{"grant_type": {"client_credentials"}, "scope": {"authelia.bearer.authz"}})
	token, _ := body["access_token"].(string)
	if status != http.StatusOK || token == "" {
		t.Fatalf("client_credentials: %d %v", status, body)
	}
	bearerCall(t, s.hc, secure, token, http.StatusOK)
	claims, h, err := verifyJWS(t, set, token)
	if err != nil || h.KeyID != "main-es256" {
		t.Fatalf("the token: %v %+v", err, h)
	}
	fresh := func(edit func(map[string]any)) map[string]any {
		out := map[string]any{}
		for k, v := range claims {
			out[k] = v
		}
		out["jti"] = uuid.Must(uuid.NewV7()).String()
		if edit != nil {
			edit(out)
		}
		return out
	}
	rsKey, esKey, oldKey := readRSAKey(t, rs), readECKey(t, es), readECKey(t, old)
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsKey.PublicKey)})
	var rsJWK []byte
	for _, k := range set.Keys {
		if k.KeyID == "main-rs256" {
			rsJWK, _ = k.MarshalJSON()
		}
	}
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	at := func(kid, alg string) map[string]any {
		h := map[string]any{"typ": "at+jwt", "kid": kid}
		if alg != "" {
			h["alg"] = alg
		}
		return h
	}

	t.Run("forged", func(t *testing.T) {
		for _, c := range []struct{ what, token string }{
			{"HS256 keyed with the RS256 public key (PEM)", rawJWS(at("main-rs256", "HS256"), fresh(nil), hmacSHA256(pubPEM))},
			{"HS256 keyed with the RS256 public key (PKCS#1 PEM)", rawJWS(at("main-rs256", "HS256"), fresh(nil), hmacSHA256(pkcs1PEM))},
			{"HS256 keyed with the RS256 public key (DER)", rawJWS(at("main-rs256", "HS256"), fresh(nil), hmacSHA256(pubDER))},
			{"HS256 keyed with the RS256 public key (JWK)", rawJWS(at("main-rs256", "HS256"), fresh(nil), hmacSHA256(rsJWK))},
			{"HS256 keyed with an empty key", rawJWS(at("main-rs256", "HS256"), fresh(nil), hmacSHA256([]byte{}))},
			{"alg none, no kid", rawJWS(map[string]any{"alg": "none", "typ": "at+jwt"}, fresh(nil), nil)},
			{"alg NONE under our kid", rawJWS(at("main-es256", "NONE"), fresh(nil), nil)},
			{"our RS256 key's signature under the ES256 kid", signWith(t, rsKey, "RS256", at("main-es256", ""), fresh(nil))},
			{"the attacker's key in a jwk header", signWith(t, attacker, "ES256", map[string]any{"typ": "at+jwt", "jwk": jose.JSONWebKey{Key: &attacker.PublicKey, Algorithm: "ES256"}}, fresh(nil))},
			{"the attacker's key at a jku", signWith(t, attacker, "ES256", map[string]any{"typ": "at+jwt", "kid": "main-es256", "jku": "https://evil.example.test/jwks"}, fresh(nil))},
			{"kid path trick", signWith(t, attacker, "ES256", at("../../../../dev/null", ""), fresh(nil))},
			{"kid with a NUL", signWith(t, attacker, "ES256", at("main-es256\x00", ""), fresh(nil))},
			{"kid empty", signWith(t, attacker, "ES256", at("", ""), fresh(nil))},
			{"our ES256 key, typ JWT", signWith(t, esKey, "ES256", map[string]any{"typ": "JWT", "kid": "main-es256"}, fresh(nil))},
			{"our ES256 key, no typ", signWith(t, esKey, "ES256", map[string]any{"kid": "main-es256"}, fresh(nil))},
			{"our ES256 key, another issuer", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["iss"] = "https://evil.example.test" }))},
			{"our ES256 key, iss with a trailing slash", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["iss"] = s.issuer + "/" }))},
			{"our ES256 key, iss an array", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["iss"] = []string{s.issuer} }))},
			{"our ES256 key, exp a string", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["exp"] = "9999999999" }))},
			{"our ES256 key, exp far beyond 2^40", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["exp"] = 1e300 }))},
			{"our ES256 key, no client_id", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { delete(c, "client_id") }))},
			{"our ES256 key, a client that is not registered", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["client_id"] = "ghost" }))},
			{"our ES256 key, a jti that is not a UUIDv7", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["jti"] = "x" }))},
			{"our ES256 key, a user claim sealed by nobody", signWith(t, esKey, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["portcullis_user"] = base64.RawURLEncoding.EncodeToString(make([]byte, 64)) }))},
			{"the attacker's key, typ at+jwt, kid of the retired key", signWith(t, attacker, "ES256", at("old-es256", ""), fresh(nil))},
			{"a huge token (60 KB)", signWith(t, attacker, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["pad"] = strings.Repeat("A", 60<<10) }))},
			{"four segments", token + ".x"},
			{"a signature of another token", token[:strings.LastIndexByte(token, '.')] + token[strings.LastIndexByte(token, '.'):len(token)-2] + "AA"},
		} {
			refusedAtGate(t, s.hc, secure, c.what, c.token)
		}
		// a token of the retired key (signed before it retired) still verifies until it expires,
		// as the rotation says: the key stays listed
		bearerCall(t, s.hc, secure, signWith(t, oldKey, "ES256", at("old-es256", ""), fresh(nil)), http.StatusOK)
		// the client's token is for secure, not admin
		refusedAtGate(t, s.hc, admin, "a token for secure at admin", token)
	})

	t.Run("an ID token is not an access token", func(t *testing.T) {
		s := s.with(t)
		john := newVisitor(t, s.portalSite, "")
		got := s.codeFlow(john, "oidc-rp", nil)
		refusedAtGate(t, s.hc, secure, "the ID token as a bearer token", got.raw)
		refusedAtGate(t, s.hc, secure, "a JWT access token without the gateway scope", got.accessToken())
		code, verifier, tokens := gatewayCode(t, s, john, "")
		user, _ := tokens["access_token"].(string)
		bearerCall(t, s.hc, secure, user, http.StatusOK)
		// a replayed code revokes what it gave (RFC 6749 §4.1.2): the JWT access token too
		status, out := s.exchange("jwt-rp", "jwt-rp-secret", code, verifier)
		if status == http.StatusOK {
			t.Fatalf("a replayed code was exchanged: %v", out)
		}
		waitRefused(t, s.hc, secure, "the access token of a replayed code", user)
	})

	t.Run("refresh", func(t *testing.T) {
		s := s.with(t)
		john := newVisitor(t, s.portalSite, "")
		_, _, tokens := gatewayCode(t, s, john, "authelia.bearer.authz offline_access")
		first, _ := tokens["access_token"].(string)
		bearerCall(t, s.hc, secure, first, http.StatusOK)
		refresh, _ := tokens["refresh_token"].(string)
		status, out := form(t, s.hc, s.issuer+"/api/oidc/token", "jwt-rp", "jwt-rp-secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
		second, _ := out["access_token"].(string)
		if status != http.StatusOK || second == "" {
			t.Fatalf("refresh: %d %v", status, out)
		}
		bearerCall(t, s.hc, secure, second, http.StatusOK)
		// the spent refresh token again: a replay revokes the family
		if status, out := form(t, s.hc, s.issuer+"/api/oidc/token", "jwt-rp", "jwt-rp-secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); status == http.StatusOK {
			t.Fatalf("a spent refresh token worked again: %v", out)
		}
		waitRefused(t, s.hc, secure, "the access token of a replayed refresh token's family", second)
		noSecretsInLog(t, s.s, first, second, refresh)
	})

	noSecretsInLog(t, s.s, token)
}

// gatewayCode runs jwt-rp's code flow (PAR, PKCE, explicit consent) for the visitor, signed in
// as john, and exchanges the code; it returns the code, its verifier and the tokens.
func gatewayCode(t *testing.T, s *oidcSite, john *visitor, scope string) (string, string, map[string]any) {
	t.Helper()
	if scope == "" {
		scope = "authelia.bearer.authz"
	}
	if john.cookie("portcullis_session") == "" {
		john.signIn("", "john", "pw-john")
	}
	verifier := oauth2.GenerateVerifier()
	status, out := form(t, s.hc, s.issuer+"/api/oidc/pushed-authorization-request", "jwt-rp", "jwt-rp-secret", url.Values{
		"response_type": {"code"}, "client_id": {"jwt-rp"}, "redirect_uri": {redirectURI("jwt-rp")},
		"scope": {scope}, "audience": {s.url("secure", "/")}, "state": {randomString(12)},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
	})
	uri, _ := out["request_uri"].(string)
	if status != http.StatusCreated || uri == "" {
		t.Fatalf("pushed authorization request: %d %v", status, out)
	}
	st := john.authorize(s.issuer + "/api/oidc/authorization?" + url.Values{"client_id": {"jwt-rp"}, "request_uri": {uri}}.Encode())
	if st.consent != nil {
		st = john.answerConsent(st, "accept", false)
	}
	code := st.callback().Get("code")
	status, tokens := s.exchange("jwt-rp", "jwt-rp-secret", code, verifier)
	if status != http.StatusOK {
		t.Fatalf("the code exchange: %d %v", status, tokens)
	}
	return code, verifier, tokens
}

// waitRefused checks that the gate refuses token (at once: no store read may lag, but the
// answer comes within a second on a loaded machine).
func waitRefused(t *testing.T, hc *http.Client, target, what, token string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		resp := bearerResponse(t, hc, target, token)
		if resp.StatusCode == http.StatusUnauthorized {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: the gate answered %d, want 401", what, resp.StatusCode)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ = sync.Mutex{}
var _ = oauth2.GenerateVerifier
