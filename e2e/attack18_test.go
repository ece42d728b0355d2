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
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
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
	waitSiteTLS(t, s.hc, secure)
	waitSiteTLS(t, s.hc, admin)
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

	t.Run("revocation by another client, and of a refresh token", func(t *testing.T) {
		s := s.with(t)
		// oidc-rp revokes jwt-monitor's token: a no-op (RFC 7009 §2.1), the token lives on
		status, out := form(t, s.hc, s.issuer+"/api/oidc/revocation", "oidc-rp", "oidc-rp-secret", url.Values{"token": {token}, "token_type_hint": {"access_token"}})
		if status >= 500 {
			t.Errorf("another client's revocation: %d %v", status, out)
		}
		bearerCall(t, s.hc, secure, token, http.StatusOK)
		// a forged token naming the live token's jti, sent by its own client: revokes nothing
		// it does not hold (the endpoint reads the jti without the signature)
		forged := signWith(t, attacker, "ES256", at("main-es256", ""), fresh(func(c map[string]any) { c["jti"] = claims["jti"] }))
		status, out = form(t, s.hc, s.issuer+"/api/oidc/revocation", "jwt-monitor", "jwt-monitor-secret", url.Values{"token": {forged}, "token_type_hint": {"access_token"}})
		if status >= 500 {
			t.Errorf("a forged token at the revocation endpoint: %d %v", status, out)
		}
		if resp := bearerResponse(t, s.hc, secure, token); resp.StatusCode != http.StatusOK {
			t.Errorf("a forged token with the jti of a live token, sent by its client, revoked the live token (%d)", resp.StatusCode)
		}
		// the person's refresh token revoked at the endpoint: the access token of its grant ends too
		john := newVisitor(t, s.portalSite, "")
		_, _, tokens := gatewayCode(t, s, john, "authelia.bearer.authz offline_access")
		at, _ := tokens["access_token"].(string)
		rt, _ := tokens["refresh_token"].(string)
		bearerCall(t, s.hc, secure, at, http.StatusOK)
		if status, out := form(t, s.hc, s.issuer+"/api/oidc/revocation", "jwt-rp", "jwt-rp-secret", url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}); status != http.StatusOK {
			t.Fatalf("revoking the refresh token: %d %v", status, out)
		}
		waitRefused(t, s.hc, secure, "the access token of a revoked refresh token's grant", at)
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

// waitSiteTLS waits (up to 10 s) until the site at target answers a TLS handshake: Caddy issues
// each site's local certificate on its own, and the portal's answering says nothing of the
// others'.
func waitSiteTLS(t *testing.T, hc *http.Client, target string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second * slow)
	for {
		resp, err := hc.Get(target)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", target, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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

// JWT client authentication and signed request objects attacked: one assertion sent 50 times
// at once gives one token; HS256 keyed with a client's public key, a jwk header, a secret beside
// the assertion, absurd claims all get invalid_client; a jwks_uri that redirects is not followed
// and one that never answers does not hold the token endpoint; request objects unsigned, signed
// by another client's key, naming another client or an unregistered redirect URI never reach a
// code; a request_uri off this provider is not fetched.
func TestAttack18ClientAssertionsAndRequestObjects(t *testing.T) {
	esKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubFile := func(k *ecdsa.PrivateKey) (string, []byte) {
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		p := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		f := filepath.Join(t.TempDir(), "pub.pem")
		if err := os.WriteFile(f, p, 0o600); err != nil {
			t.Fatal(err)
		}
		return f, p
	}
	esFile, esPEM := pubFile(esKey)
	otherFile, _ := pubFile(otherKey)
	var fetched sync.Map // path → true, what the jwks server was asked for
	release := make(chan struct{})
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Store(r.URL.Path, true)
		switch r.URL.Path {
		case "/jwks":
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &esKey.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		case "/redirect":
			http.Redirect(w, r, "/jwks", http.StatusFound)
		case "/slow":
			select {
			case <-release:
			case <-time.After(30 * time.Second):
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(jwks.Close)
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for /slow
	key := func(f string) string {
		return fmt.Sprintf("public_key k1 {\n\t\t\t\talgorithm ES256\n\t\t\t\tkey_file %s\n\t\t\t}", f)
	}
	cc := func(id string, lines ...string) string {
		return "\t\tclient " + id + " {\n\t\t\tgrant_types client_credentials\n\t\t\t" + strings.Join(lines, "\n\t\t\t") + "\n\t\t}\n"
	}
	s := startOIDCHTTPSite(t,
		cc("es-cc", "token_endpoint_auth_method private_key_jwt", key(esFile))+
			cc("redir-cc", "token_endpoint_auth_method private_key_jwt", "token_endpoint_auth_signing_alg ES256", "jwks_uri "+jwks.URL+"/redirect")+
			cc("slow-cc", "token_endpoint_auth_method private_key_jwt", "token_endpoint_auth_signing_alg ES256", "jwks_uri "+jwks.URL+"/slow")+
			rpClient("app", "token_endpoint_auth_method private_key_jwt", key(esFile), "request_object_signing_alg ES256")+
			rpClient("app2", "token_endpoint_auth_method private_key_jwt", key(otherFile), "request_object_signing_alg ES256"))
	tokenURL := s.issuer + "/api/oidc/token"
	ccForm := url.Values{"grant_type": {"client_credentials"}}
	var sent []string // every assertion and request object, which the log must not hold

	t.Run("one assertion sent 50 times at once", func(t *testing.T) {
		a := assertion(t, "es-cc", esKey, "ES256", "k1", tokenURL, nil)
		sent = append(sent, a)
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		start := make(chan struct{})
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hc := s.from(fmt.Sprintf("127.0.1.%d", 10+i))
				<-start
				req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(withAssertion(ccForm, a).Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := hc.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if statuses[http.StatusOK] != 1 || statuses[http.StatusUnauthorized] != 49 {
			t.Errorf("50 uses of one assertion at once: %v, want one 200 and 49 401", statuses)
		}
	})

	t.Run("refused assertions", func(t *testing.T) {
		now := time.Now()
		base := func(edit func(map[string]any)) map[string]any {
			c := map[string]any{"iss": "es-cc", "sub": "es-cc", "aud": tokenURL, "jti": randomString(16), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
			if edit != nil {
				edit(c)
			}
			return c
		}
		for i, c := range []struct {
			what string
			form url.Values
			auth string
		}{
			{"HS256 keyed with the client's public key PEM", withAssertion(ccForm, rawJWS(map[string]any{"alg": "HS256", "kid": "k1", "typ": "JWT"}, base(nil), hmacSHA256(esPEM))), ""},
			{"the attacker's key in a jwk header", withAssertion(ccForm, signWith(t, otherKey, "ES256", map[string]any{"jwk": jose.JSONWebKey{Key: &otherKey.PublicKey, Algorithm: "ES256"}}, base(nil))), ""},
			{"kid of nobody, key of nobody", withAssertion(ccForm, signWith(t, otherKey, "ES256", map[string]any{"kid": "../../k1"}, base(nil))), ""},
			{"alg none", withAssertion(ccForm, rawJWS(map[string]any{"alg": "none"}, base(nil), nil)), ""},
			{"exp 1e300", withAssertion(ccForm, signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, base(func(c map[string]any) { c["exp"] = 1e300 }))), ""},
			{"exp a string", withAssertion(ccForm, signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, base(func(c map[string]any) { c["exp"] = "soon" }))), ""},
			{"no exp", withAssertion(ccForm, signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, base(func(c map[string]any) { delete(c, "exp") }))), ""},
			{"aud of another provider that starts with ours", withAssertion(ccForm, signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, base(func(c map[string]any) { c["aud"] = s.issuer + ".evil.test/api/oidc/token" }))), ""},
			{"a jti of 100 kB", withAssertion(ccForm, signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, base(func(c map[string]any) { c["jti"] = strings.Repeat("j", 100<<10) }))), ""},
			{"the client_id of another client beside the assertion", withAssertion(url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}}, assertion(t, "es-cc", esKey, "ES256", "k1", tokenURL, nil)), ""},
			{"a client_secret beside the assertion", withAssertion(url.Values{"grant_type": {"client_credentials"}, "client_secret": {"x"}}, assertion(t, "es-cc", esKey, "ES256", "k1", tokenURL, nil)), ""},
			{"Basic of another client beside the assertion", withAssertion(ccForm, assertion(t, "es-cc", esKey, "ES256", "k1", tokenURL, nil)), "Basic " + base64.StdEncoding.EncodeToString([]byte("app:app-secret"))},
			{"a wrong client_assertion_type", url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}, "client_assertion": {assertion(t, "es-cc", esKey, "ES256", "k1", tokenURL, nil)}}, ""},
			{"an ID token-shaped assertion of app for es-cc", withAssertion(ccForm, assertion(t, "app", esKey, "ES256", "k1", tokenURL, func(c map[string]any) { c["sub"] = "es-cc" })), ""},
		} {
			sent = append(sent, c.form.Get("client_assertion"))
			status, body := postForm(t, s.from(fmt.Sprintf("127.0.2.%d", 10+i)), tokenURL, c.form, c.auth)
			if status != http.StatusUnauthorized && status != http.StatusBadRequest || body["access_token"] != nil {
				t.Errorf("%s: %d %v, want 400 or 401", c.what, status, body)
			}
		}
		// a jwks_uri's redirect is followed (at most 3, each to a URL a jwks_uri may have: https,
		// or http on loopback): noted, not refused; the key set it reaches works
		if status, body := postForm(t, s.from("127.0.2.99"), tokenURL, withAssertion(ccForm, assertion(t, "redir-cc", esKey, "ES256", "k1", tokenURL, nil)), ""); status != http.StatusOK {
			t.Logf("a jwks_uri that redirects: %d %v", status, body)
		}
	})

	t.Run("a jwks_uri that never answers", func(t *testing.T) {
		done := make(chan struct{})
		var slowStatus int
		var slowTook time.Duration
		go func() {
			defer close(done)
			start := time.Now()
			slowStatus, _ = postForm(t, s.from("127.0.3.1"), tokenURL, withAssertion(ccForm, assertion(t, "slow-cc", esKey, "ES256", "k1", tokenURL, nil)), "")
			slowTook = time.Since(start)
		}()
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		if status, body := postForm(t, s.from("127.0.3.2"), tokenURL, withAssertion(ccForm, assertion(t, "es-cc", esKey, "ES256", "k1", tokenURL, nil)), ""); status != http.StatusOK {
			t.Errorf("es-cc while slow-cc's jwks_uri hangs: %d %v", status, body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("es-cc waited %s while slow-cc's jwks_uri hangs", d)
		}
		<-done
		if slowStatus != http.StatusUnauthorized || slowTook > 8*time.Second {
			t.Errorf("slow-cc: %d after %s, want 401 within the fetch timeout", slowStatus, slowTook)
		}
	})

	t.Run("request objects", func(t *testing.T) {
		s := s.with(t)
		john := newVisitor(t, s.portalSite, "")
		john.signIn("", "john", "pw-john")
		authz := s.issuer + "/api/oidc/authorization"
		object := func(key *ecdsa.PrivateKey, client string, edit func(map[string]any)) map[string]any {
			c := map[string]any{"iss": client, "aud": s.issuer, "client_id": client, "response_type": "code", "redirect_uri": redirectURI(client),
				"scope": "openid", "state": "inner-state", "nonce": randomString(8), "exp": time.Now().Add(time.Minute).Unix(),
				"code_challenge": oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()), "code_challenge_method": "S256"}
			if edit != nil {
				edit(c)
			}
			return c
		}
		outer := func(client, request string, more url.Values) string {
			q := url.Values{"client_id": {client}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {redirectURI(client)}, "request": {request}}
			for k, v := range more {
				q[k] = v
			}
			return authz + "?" + q.Encode()
		}
		// the good one goes through, and its own state wins over the outer one
		good := john.authorize(outer("app", signWith(t, esKey, "ES256", map[string]any{"kid": "k1", "typ": "oauth-authz-req+jwt"}, object(esKey, "app", nil)), url.Values{"state": {"outer-state"}}))
		if good.callback().Get("code") == "" {
			t.Fatalf("a good request object: %s", good)
		}
		t.Logf("state in the answer with an outer and an inner state: %q", good.callback().Get("state"))
		var sawRequestURI bool
		for _, c := range []struct{ what, url string }{
			{"alg none", outer("app", rawJWS(map[string]any{"alg": "none"}, object(esKey, "app", nil), nil), nil)},
			{"signed by app2's key", outer("app", signWith(t, otherKey, "ES256", map[string]any{"kid": "k1"}, object(otherKey, "app", nil)), nil)},
			{"app2's own object sent as app", outer("app", signWith(t, otherKey, "ES256", map[string]any{"kid": "k1"}, object(otherKey, "app2", nil)), nil)},
			{"app's object naming client_id app2", outer("app", signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, object(esKey, "app", func(c map[string]any) { c["client_id"] = "app2" })), nil)},
			{"app's object under app2's client_id", outer("app2", signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, object(esKey, "app", nil)), nil)},
			{"tampered (payload swapped)", func() string {
				raw := signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, object(esKey, "app", nil))
				parts := strings.Split(raw, ".")
				p, _ := json.Marshal(object(esKey, "app", func(c map[string]any) { c["scope"] = "openid profile email groups" }))
				return outer("app", parts[0]+"."+base64.RawURLEncoding.EncodeToString(p)+"."+parts[2], nil)
			}()},
			{"HS256 keyed with app's public key", outer("app", rawJWS(map[string]any{"alg": "HS256", "kid": "k1"}, object(esKey, "app", nil), hmacSHA256(esPEM)), nil)},
			{"an unregistered redirect_uri inside", outer("app", signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, object(esKey, "app", func(c map[string]any) { c["redirect_uri"] = "https://evil.example.test/cb" })), nil)},
			{"expired", outer("app", signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, object(esKey, "app", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), nil)},
			{"a request_uri off this provider", authz + "?" + url.Values{"client_id": {"app"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {redirectURI("app")}, "request_uri": {jwks.URL + "/request-object"}}.Encode()},
		} {
			if u, err := url.Parse(c.url); err == nil {
				sent = append(sent, u.Query().Get("request"))
			}
			st := john.authorize(c.url)
			cb := st.callback()
			if cb.Get("code") != "" {
				t.Errorf("%s: a code was given: %s", c.what, st)
			}
			if st.location != "" && !strings.HasPrefix(st.location, redirectURI("app")) && !strings.HasPrefix(st.location, redirectURI("app2")) {
				t.Errorf("%s: sent to %s", c.what, st.location)
			}
			if st.status >= 500 {
				t.Errorf("%s: %s", c.what, st)
			}
		}
		// at PAR: app2, authenticated, pushes objects of app or naming app
		par := s.issuer + "/api/oidc/pushed-authorization-request"
		for _, c := range []struct{ what, object string }{
			{"app's object pushed by app2", signWith(t, esKey, "ES256", map[string]any{"kid": "k1"}, object(esKey, "app", nil))},
			{"app2's object naming client_id app", signWith(t, otherKey, "ES256", map[string]any{"kid": "k1"}, object(otherKey, "app2", func(c map[string]any) { c["client_id"] = "app" }))},
			{"app2's object, alg none", rawJWS(map[string]any{"alg": "none"}, object(otherKey, "app2", nil), nil)},
		} {
			v := url.Values{"client_id": {"app2"}, "request": {c.object}}
			status, body := postForm(t, s.hc, par, withAssertion(v, assertion(t, "app2", otherKey, "ES256", "k1", par, nil)), "")
			if status == http.StatusCreated || status >= 500 {
				t.Errorf("PAR, %s: %d %v", c.what, status, body)
			}
		}
		_, sawRequestURI = fetched.Load("/request-object")
		if sawRequestURI {
			t.Error("the provider fetched a request_uri off itself")
		}
	})
	noSecretsInLog(t, s.s, sent...)
}

// attackDeviceClients are the device clients the device attacks use.
const attackDeviceClients = `
client tv {
	public true
	grant_types urn:ietf:params:oauth:grant-type:device_code refresh_token
	scopes openid profile offline_access
	authorization_policy one_factor
}
client admincli {
	public true
	grant_types urn:ietf:params:oauth:grant-type:device_code
	scopes openid
	authorization_policy two_factor
}
client conf {
	secret "$plaintext$conf-secret"
	grant_types urn:ietf:params:oauth:grant-type:device_code
	scopes openid
	authorization_policy one_factor
}
client gatecli {
	public true
	grant_types urn:ietf:params:oauth:grant-type:device_code
	scopes authelia.bearer.authz
	audience https://secure.example.test:{portal_port}/
	authorization_policy one_factor
	access_token_signed_response_alg RS256
}
client webapp {
	secret "$plaintext$webapp-secret"
	redirect_uris https://app.example.test/cb/webapp
	scopes openid
	authorization_policy one_factor
}
`

// deviceAuthorize asks the device authorization endpoint for codes as client (Basic when secret
// is set) and returns the answer.
func deviceAuthorize(t *testing.T, p *portalSite, client, secret string, v url.Values) (int, map[string]any) {
	t.Helper()
	endpoint := p.url("auth", "/api/oidc/device-authorization")
	if secret != "" {
		return form(t, p.client(), endpoint, client, secret, v)
	}
	v.Set("client_id", client)
	return postForm(t, p.client(), endpoint, v, "")
}

// typeUserCode types code on the /device page as the visitor and returns where it went.
func typeUserCode(t *testing.T, v *visitor, code string) (*http.Response, string) {
	t.Helper()
	resp, page := v.do(http.MethodGet, v.p.url("auth", "/device"), nil)
	f := hiddenFields(page)
	if resp.StatusCode != http.StatusOK || f.Get("csrf") == "" {
		t.Fatalf("the device page: %d %.300s", resp.StatusCode, page)
	}
	f.Set("user_code", code)
	return v.do(http.MethodPost, v.p.url("auth", "/device"), f)
}

// The device grant attacked: user codes typed with look-alike letters, forms without their
// CSRF token, another browser answering a typed code, a one-factor sign-in for a two-factor
// client, another client's device code, junk device codes, twenty redemptions at once of one
// approval, and an approval whose session signed out before the device collected it.
func TestAttack18DeviceGrant(t *testing.T) {
	p := startPortalSiteWith(t, attackDeviceClients)
	hc := p.client()
	waitSiteTLS(t, hc, p.url("secure", "/"))
	grant := "urn:ietf:params:oauth:grant-type:device_code"
	newCodes := func(client, secret, scope string) (string, string) {
		t.Helper()
		status, out := deviceAuthorize(t, p, client, secret, url.Values{"scope": {scope}})
		dc, _ := out["device_code"].(string)
		uc, _ := out["user_code"].(string)
		if status != http.StatusOK || dc == "" || uc == "" {
			t.Fatalf("device authorization for %s: %d %v", client, status, out)
		}
		return dc, uc
	}
	// approve types uc as v (signed in already) and allows the device
	approve := func(v *visitor, uc string) {
		t.Helper()
		resp, page := typeUserCode(t, v, uc)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("typing %q: %d %.300s", uc, resp.StatusCode, page)
		}
		resp, page = v.do(http.MethodGet, resp.Header.Get("Location"), nil)
		f := hiddenFields(page)
		if resp.StatusCode != http.StatusOK || f.Get("flow") == "" {
			t.Fatalf("the consent page: %d %.300s", resp.StatusCode, page)
		}
		f.Set("action", "approve")
		if resp, page = v.do(http.MethodPost, v.p.url("auth", "/device"), f); resp.StatusCode != http.StatusOK || !strings.Contains(page, "can now use your account") {
			t.Fatalf("allowing: %d %.300s", resp.StatusCode, page)
		}
	}
	var secrets []string

	t.Run("the device authorization endpoint", func(t *testing.T) {
		for _, c := range []struct {
			what, client, secret string
			v                    url.Values
			want                 string
		}{
			{"a client without the grant", "webapp", "webapp-secret", url.Values{"scope": {"openid"}}, "unauthorized_client"},
			{"a scope the client may not have", "tv", "", url.Values{"scope": {"openid groups"}}, "invalid_scope"},
			{"a confidential client without its secret", "conf", "", url.Values{"scope": {"openid"}}, "invalid_client"},
			{"a confidential client with a wrong secret", "conf", "nope", url.Values{"scope": {"openid"}}, "invalid_client"},
			{"an unknown client", "ghost", "", url.Values{"scope": {"openid"}}, "invalid_client"},
			{"a repeated scope", "tv", "", url.Values{"scope": {"openid", "profile"}}, "invalid_request"},
		} {
			status, out := deviceAuthorize(t, p, c.client, c.secret, c.v)
			if out["error"] != c.want || out["device_code"] != nil || status >= 500 {
				t.Errorf("%s: %d %v, want %s", c.what, status, out, c.want)
			}
		}
	})

	t.Run("the device page", func(t *testing.T) {
		mallory := newVisitor(t, p, "203.0.113.9")
		// look-alikes: not a code at all, so 400 and nothing counted
		for _, typed := range []string{"ВСDF-GHJK", "ＡＢＣＤ-ＥＦＧＨ", "ABCD-EFG\u200bH", strings.Repeat("A", 5000)} {
			if resp, _ := typeUserCode(t, mallory, typed); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("typing %q: %d, want 400", typed, resp.StatusCode)
			}
		}
		// a form without its CSRF token
		resp, _ := mallory.do(http.MethodPost, p.url("auth", "/device"), url.Values{"action": {"code"}, "user_code": {"ABCD-EFGH"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("the code form without its CSRF token: %d, want 403", resp.StatusCode)
		}
		// john types a real code, lower case, without the dash; mallory (another browser) cannot
		// answer john's typed code with its flow id
		dc, uc := newCodes("tv", "", "openid")
		secrets = append(secrets, dc, uc)
		john := newVisitor(t, p, "")
		john.signIn("", "john", "pw-john")
		resp, page := typeUserCode(t, john, strings.ToLower(strings.ReplaceAll(uc, "-", "")))
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("typing the code in lower case: %d %.300s", resp.StatusCode, page)
		}
		flowURL := resp.Header.Get("Location")
		_, page = john.do(http.MethodGet, flowURL, nil)
		f := hiddenFields(page)
		mallory.signIn("", "john", "pw-john") // even signed in as john, in another browser
		_, mpage := mallory.do(http.MethodGet, p.url("auth", "/device"), nil)
		mf := hiddenFields(mpage)
		mf.Set("flow", f.Get("flow"))
		mf.Set("action", "approve")
		if resp, page := mallory.do(http.MethodPost, p.url("auth", "/device"), mf); strings.Contains(page, "can now use your account") {
			t.Errorf("another browser allowed john's typed code: %d", resp.StatusCode)
		}
		// john's own answer without the CSRF token
		nf := url.Values{"flow": {f.Get("flow")}, "action": {"approve"}}
		if resp, _ := john.do(http.MethodPost, p.url("auth", "/device"), nf); resp.StatusCode != http.StatusForbidden {
			t.Errorf("the consent form without its CSRF token: %d, want 403", resp.StatusCode)
		}
		if status, e := pollDevice(t, hc, p, "tv", dc); status != http.StatusBadRequest || e != "authorization_pending" && e != "slow_down" {
			t.Errorf("the device after the refused answers: %d %s, want authorization_pending", status, e)
		}
	})

	t.Run("approving without a sign-in", func(t *testing.T) {
		dc, uc := newCodes("tv", "", "openid")
		secrets = append(secrets, dc, uc)
		anon := newVisitor(t, p, "203.0.113.20")
		resp, page := typeUserCode(t, anon, uc)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("typing the code without a sign-in: %d %.200s", resp.StatusCode, page)
		}
		flowURL := resp.Header.Get("Location")
		resp, _ = anon.do(http.MethodGet, flowURL, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "rd=") {
			t.Errorf("the typed code without a sign-in: %d %q, want the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
		}
		u, _ := url.Parse(flowURL)
		_, page = anon.do(http.MethodGet, p.url("auth", "/device"), nil)
		f := hiddenFields(page)
		f.Set("flow", u.Query().Get("flow"))
		f.Set("action", "approve")
		resp, page = anon.do(http.MethodPost, p.url("auth", "/device"), f)
		if strings.Contains(page, "can now use your account") || resp.StatusCode == http.StatusOK {
			t.Errorf("approving without a sign-in: %d %.200s", resp.StatusCode, pageError.FindString(page))
		}
		if status, e := pollDevice(t, hc, p, "tv", dc); status == http.StatusOK {
			t.Errorf("the device got tokens approved by nobody: %s", e)
		}
		// the page cannot be framed (a clickjacked Allow)
		resp, _ = anon.do(http.MethodGet, p.url("auth", "/device?user_code="+url.QueryEscape(uc)), nil)
		if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("the device page may be framed: X-Frame-Options %q, CSP %q", resp.Header.Get("X-Frame-Options"), resp.Header.Get("Content-Security-Policy"))
		}
	})

	t.Run("a one-factor sign-in for a two-factor client", func(t *testing.T) {
		dc, uc := newCodes("admincli", "", "openid")
		secrets = append(secrets, dc, uc)
		john := newVisitor(t, p, "")
		john.signIn("", "john", "pw-john")
		resp, _ := typeUserCode(t, john, uc)
		resp, page := john.do(http.MethodGet, resp.Header.Get("Location"), nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "/2fa") {
			t.Errorf("a one-factor session at a two-factor client's consent: %d %q %.200s", resp.StatusCode, resp.Header.Get("Location"), page)
		}
		if status, e := pollDevice(t, hc, p, "admincli", dc); status == http.StatusOK {
			t.Errorf("the two-factor client got tokens: %s", e)
		}
	})

	t.Run("redemptions", func(t *testing.T) {
		dc, uc := newCodes("tv", "", "openid offline_access")
		secrets = append(secrets, dc, uc)
		john := newVisitor(t, p, "")
		john.signIn("", "john", "pw-john")
		approve(john, uc)
		// another client, authenticated, with tv's device code
		if status, out := form(t, hc, p.url("auth", "/api/oidc/token"), "conf", "conf-secret", url.Values{"grant_type": {grant}, "device_code": {dc}}); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("conf redeeming tv's device code: %d %v, want 400 invalid_grant", status, out)
		}
		for _, junk := range []string{"portcullis_dc_x", "portcullis_dc_" + strings.Repeat("a", 100<<10) + ".b", "portcullis_at_x.y", dc + "x", strings.Replace(dc, "portcullis_dc_", "portcullis_rt_", 1)} {
			if status, e := pollDevice(t, hc, p, "tv", junk); status != http.StatusBadRequest || e != "invalid_grant" && e != "invalid_request" {
				t.Errorf("a junk device code (%.30s…): %d %s, want 400 invalid_grant", junk, status, e)
			}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]int{}
		var tokens []string
		start := make(chan struct{})
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				status, out := postForm(t, p.client(), p.url("auth", "/api/oidc/token"), url.Values{"grant_type": {grant}, "device_code": {dc}, "client_id": {"tv"}}, "")
				mu.Lock()
				defer mu.Unlock()
				got[fmt.Sprint(status, out["error"])]++
				if at, _ := out["access_token"].(string); at != "" {
					tokens = append(tokens, at)
				}
				if rt, _ := out["refresh_token"].(string); rt != "" {
					tokens = append(tokens, rt)
				}
			}()
		}
		close(start)
		wg.Wait()
		if got["200 <nil>"] != 1 {
			t.Errorf("20 redemptions at once of one approval: %v, want exactly one 200", got)
		}
		secrets = append(secrets, tokens...)
	})

	t.Run("signed out before the device collected", func(t *testing.T) {
		dc, uc := newCodes("gatecli", "", "authelia.bearer.authz")
		secrets = append(secrets, dc, uc)
		john := newVisitor(t, p, "")
		john.signIn("", "john", "pw-john")
		approve(john, uc)
		john.signOut()
		if status, out := postForm(t, hc, p.url("auth", "/api/oidc/token"), url.Values{"grant_type": {grant}, "device_code": {dc}, "client_id": {"gatecli"}}, ""); status == http.StatusOK {
			secrets = append(secrets, fmt.Sprint(out["access_token"]))
			t.Errorf("the device collected tokens after the approving session signed out: %v", out)
			refusedAtGate(t, hc, p.url("secure", "/"), "the device's JWT token after sign-out", fmt.Sprint(out["access_token"]))
		}
	})
	noSecretsInLog(t, p.s, secrets...)
}

// CORS with origin tricks: a suffix, a prefix, null, a trailing slash, userinfo, another
// scheme or port of an allowed origin get no CORS header; credentials are never allowed; an
// endpoint not listed answers no preflight.
func TestAttack18CORSOrigins(t *testing.T) {
	s := startOIDCHTTPSite(t, `
		cors {
			endpoints token userinfo
			allowed_origins https://spa.example.org
		}
		client api {
			secret "$plaintext$api-secret"
			grant_types client_credentials
		}
`)
	token := s.issuer + "/api/oidc/token"
	cc := url.Values{"grant_type": {"client_credentials"}}
	api := [2]string{"api", "api-secret"}
	for _, origin := range []string{
		"https://spa.example.org.evil.test", "https://evil-spa.example.org", "https://evilspa.example.org", "https://x.spa.example.org",
		"null", "https://spa.example.org/", "https://user@spa.example.org", "https://spa.example.org:443x", "https://spa.example.org%00.evil.test",
		"https://spa.example.org https://evil.test", "*",
	} {
		for _, method := range []string{http.MethodOptions, http.MethodPost} {
			resp := corsCall(t, s.hc, method, token, origin, map[string]url.Values{http.MethodPost: cc}[method], api, "")
			if got := accessControlHeaders(resp.Header); len(got) != 0 {
				t.Errorf("%s from %q: %d %v, want no CORS header", method, origin, resp.StatusCode, got)
			}
			if resp.StatusCode >= 500 {
				t.Errorf("%s from %q: %d", method, origin, resp.StatusCode)
			}
		}
	}
	resp := corsCall(t, s.hc, http.MethodPost, token, "https://spa.example.org", cc, api, "")
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://spa.example.org" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("the allowed origin: %v", accessControlHeaders(resp.Header))
	}
	for _, path := range []string{"/api/oidc/authorization", "/api/oidc/revocation", "/api/oidc/device-authorization", "/api/oidc/pushed-authorization-request", "/api/oidc/consent", "/"} {
		resp := corsCall(t, s.hc, http.MethodOptions, s.issuer+path, "https://spa.example.org", nil, [2]string{}, "")
		if got := accessControlHeaders(resp.Header); len(got) != 0 || resp.StatusCode >= 500 {
			t.Errorf("a preflight at %s, not listed: %d %v", path, resp.StatusCode, got)
		}
	}
	noSecretsInLog(t, s.s)
}

// JARM attacked: before the client is known (an unknown client, an unregistered redirect URI)
// nothing goes to the redirect URI asked for, whatever the response mode; a mode the client did
// not register is refused; query.jwt never carries a token-bearing answer.
func TestAttack18JARM(t *testing.T) {
	s := startOIDCHTTPSite(t, rpClient("jarm", "response_modes query.jwt")+rpClient("plain")+
		rpClient("hyb", "response_modes query fragment query.jwt fragment.jwt", "grant_types authorization_code implicit", `response_types code "code id_token" "id_token token"`))
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	evil := "https://evil.example.test/cb"
	for _, c := range []struct {
		what   string
		client string
		q      url.Values
	}{
		{"an unknown client", "ghost", url.Values{"response_mode": {"jwt"}, "redirect_uri": {evil}}},
		{"an unregistered redirect URI, query.jwt", "jarm", url.Values{"response_mode": {"query.jwt"}, "redirect_uri": {evil}}},
		{"an unregistered redirect URI, form_post.jwt", "jarm", url.Values{"response_mode": {"form_post.jwt"}, "redirect_uri": {evil}}},
		{"an unregistered redirect URI, fragment.jwt", "plain", url.Values{"response_mode": {"fragment.jwt"}, "redirect_uri": {evil}}},
		{"a redirect URI with a path added", "jarm", url.Values{"response_mode": {"jwt"}, "redirect_uri": {redirectURI("jarm") + "/../../evil"}}},
		{"a bad response_type and an unregistered redirect URI", "jarm", url.Values{"response_mode": {"jwt"}, "response_type": {"bogus"}, "redirect_uri": {evil}}},
	} {
		st := john.authorize(s.authURL(c.client, c.q).url)
		if strings.HasPrefix(st.location, "https://evil.example.test") || strings.HasPrefix(st.formPostTo, "https://evil.example.test") || st.status >= 500 {
			t.Errorf("%s: %s", c.what, st)
		}
	}
	// a mode jarm did not register: refused, and no code reaches the redirect URI in it
	for _, mode := range []string{"query", "form_post", "fragment", "jwt", "fragment.jwt", "form_post.jwt", "query.JWT", "jwt.query"} {
		st := john.authorize(s.authURL("jarm", url.Values{"response_mode": {mode}}).url)
		if st.callback().Get("code") != "" || st.status >= 500 {
			t.Errorf("jarm with response_mode %s (it registered query.jwt only): %s", mode, st)
		}
	}
	// query.jwt with a token-bearing response type: no token in the query, wrapped or not
	for _, rt := range []string{"code id_token", "id_token token"} {
		st := john.authorize(s.authURL("hyb", url.Values{"response_mode": {"query.jwt"}, "response_type": {rt}}).url)
		u, _ := url.Parse(st.location)
		var q url.Values
		if u != nil {
			q = u.Query()
		}
		if q.Get("access_token") != "" || q.Get("id_token") != "" || q.Get("code") != "" {
			t.Errorf("%s with query.jwt: %s", rt, st)
		}
		if raw := q.Get("response"); raw != "" {
			if p := mustSegment(t, raw, 1); strings.Contains(string(p), `"access_token":`) || strings.Contains(string(p), `"id_token":`) || strings.Contains(string(p), `"code":`) {
				t.Errorf("%s with query.jwt carries a token in the query: %s", rt, p)
			}
		}
	}
	noSecretsInLog(t, s.s)
}

// A retired key can be named by no client, for any signed answer: caddy validate refuses it.
func TestAttack18RetiredKeySignsNothing(t *testing.T) {
	rs, old := writeRSAKey(t), writeECKey(t)
	for _, opt := range []string{"access_token_signed_response_key_id", "id_token_signed_response_key_id", "userinfo_signed_response_key_id",
		"introspection_signed_response_key_id", "authorization_signed_response_key_id"} {
		for _, alg := range []bool{false, true} {
			line := opt + " old-es256"
			if alg {
				line = strings.Replace(opt, "_key_id", "_alg", 1) + " ES256"
			}
			dir := t.TempDir()
			cf := filepath.Join(dir, "Caddyfile")
			body := fmt.Sprintf(`{
	admin off
	oidc {
		issuer https://auth.example.test
		storage %s
		users_file %s
		signing_key main-rs256 {
			algorithm RS256
			key_file %s
		}
		signing_key old-es256 {
			algorithm ES256
			key_file %s
			retired
		}
%s	}
}
auth.example.test {
	oidc_provider
}
`, filepath.Join(dir, "store"), filepath.Join(dir, "users.yml"), rs, old, rpClient("app", line))
			usersFile(t, filepath.Join(dir, "users.yml"), map[string]string{"john": "    displayname: John\n"})
			if err := os.WriteFile(cf, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(caddyBin, "validate", "--config", cf, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Errorf("%s: caddy validate accepted a client whose answers only the retired key could sign", line)
			} else if !strings.Contains(string(out), "old-es256") && !strings.Contains(string(out), "ES256") {
				t.Logf("%s: %s", line, lastLine(string(out)))
			}
		}
	}
}

// lastLine is the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// Back-channel logout attacked: a receiver that hangs, one that redirects, and a quick one are
// told of one sign-out: the sign-out is not held, the quick one hears within a second or two
// (the hanging one does not hold the worker), the redirect is not followed; the logout token
// is refused as an id_token_hint and as a bearer token at the gate.
func TestAttack18BackchannelReceivers(t *testing.T) {
	t.Setenv("PORTCULLIS_TEST_BACKCHANNEL_RETRIES", "1s,1s")
	release := make(chan struct{})
	var mu sync.Mutex
	hits := map[string]int{}
	var fastAt time.Time
	var logoutToken string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		hits[r.URL.Path]++
		if r.URL.Path == "/fast" && logoutToken == "" {
			logoutToken, fastAt = r.PostForm.Get("logout_token"), time.Now()
		}
		mu.Unlock()
		switch r.URL.Path {
		case "/slow":
			select {
			case <-release:
			case <-time.After(60 * time.Second):
			}
		case "/redir":
			http.Redirect(w, r, "/sink", http.StatusTemporaryRedirect)
		}
	}))
	t.Cleanup(recv.Close)
	t.Cleanup(func() { close(release) })
	var clients string
	for _, c := range []string{"slow1", "slow2", "slow3", "redir", "fast"} {
		path := "/" + strings.TrimRight(c, "123")
		clients += rpClient("bc-"+c, "backchannel_logout_uri "+recv.URL+path, "post_logout_redirect_uris https://app.example.test/bye")
	}
	s := startOIDCHTTPSite(t, clients)
	waitSiteTLS(t, s.hc, s.url("secure", "/"))
	john := newVisitor(t, s.portalSite, "")
	var idts []string
	for _, c := range []string{"slow1", "slow2", "slow3", "redir", "fast"} {
		idts = append(idts, s.codeFlow(john, "bc-"+c, nil).raw)
	}
	start := time.Now()
	john.signOut()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the sign-out took %s with receivers that hang", d)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := logoutToken
		mu.Unlock()
		if got != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	took, token := fastAt.Sub(start), logoutToken
	mu.Unlock()
	if token == "" {
		t.Fatal("the quick receiver never heard of the sign-out")
	}
	if took > 3*time.Second {
		t.Errorf("the quick receiver heard %s after the sign-out: the hanging receivers held the worker", took.Round(100*time.Millisecond))
	}
	time.Sleep(3 * time.Second) // the redirecting receiver's retries (1 s, 1 s)
	mu.Lock()
	sink, redir := hits["/sink"], hits["/redir"]
	mu.Unlock()
	if sink != 0 {
		t.Errorf("the redirect of a back-channel receiver was followed %d times", sink)
	}
	t.Logf("the redirecting receiver was called %d times", redir)

	// the logout token is neither an id_token_hint nor an access token
	resp, page := newVisitor(t, s.portalSite, "").do(http.MethodGet, s.issuer+"/api/oidc/logout?"+url.Values{"id_token_hint": {token},
		"post_logout_redirect_uri": {"https://app.example.test/bye"}, "client_id": {"bc-fast"}}.Encode(), nil)
	if strings.HasPrefix(resp.Header.Get("Location"), "https://app.example.test/bye") || resp.StatusCode >= 500 {
		t.Errorf("the logout token as id_token_hint: %d %q %.200s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	refusedAtGate(t, s.hc, s.url("secure", "/"), "the logout token as a bearer token", token)
	noSecretsInLog(t, s.s, append(idts, token)...)
}

// A thief who signed in with john's password holds a JWT access token for the gate (and a
// refresh token, and stays signed in). john changes his password: the thief's access token ends
// at the gate at once, without a store read, and the refresh token gives nothing.
func TestAttack18JWTAccessTokenAfterPasswordChange(t *testing.T) {
	notes := filepath.Join(t.TempDir(), "notification.txt")
	s := startOIDCHTTPSite(t, rpClient("jwt-rp", "scopes authelia.bearer.authz offline_access", "grant_types authorization_code refresh_token",
		"audience https://secure.example.test:{portal_port}/", "require_pushed_authorization_requests", "pkce_challenge_method S256",
		"consent_mode explicit", "access_token_signed_response_alg RS256")+
		"\t\tnotifier {\n\t\t\tfilesystem "+notes+"\n\t\t}\n")
	secure := s.url("secure", "/")
	waitSiteTLS(t, s.hc, secure)
	thief := newVisitor(t, s.portalSite, "198.51.100.7")
	_, _, tokens := gatewayCode(t, s, thief, "authelia.bearer.authz offline_access")
	at, _ := tokens["access_token"].(string)
	rt, _ := tokens["refresh_token"].(string)
	bearerCall(t, s.hc, secure, at, http.StatusOK)

	john := newVisitor(t, s.portalSite, "203.0.113.5")
	john.signIn("", "john", "pw-john")
	resp, page := john.do(http.MethodGet, s.url("auth", "/settings/elevate?next=/settings/password"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("elevation page: %d: %.300s", resp.StatusCode, page)
	}
	f := hiddenFields(page)
	if resp, page = john.do(http.MethodPost, s.url("auth", "/settings/elevate/send"), f); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sending a code: %d: %.300s", resp.StatusCode, page)
	}
	f.Set("code", waitCode(t, notes, 0))
	if resp, page = john.do(http.MethodPost, s.url("auth", "/settings/elevate"), f); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the code: %d: %.300s", resp.StatusCode, page)
	}
	_, page = john.do(http.MethodGet, s.url("auth", "/settings/password"), nil)
	f = hiddenFields(page)
	f.Set("current", "pw-john")
	f.Set("new", "john-changed-it")
	f.Set("again", "john-changed-it")
	if resp, page = john.do(http.MethodPost, s.url("auth", "/settings/password"), f); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("changing the password: %d: %.300s", resp.StatusCode, page)
	}
	refusedAtGate(t, s.hc, secure, "the thief's JWT access token after john's password change", at)
	if status, body := form(t, s.hc, s.issuer+"/api/oidc/token", "jwt-rp", "jwt-rp-secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); status == http.StatusOK {
		t.Errorf("the thief's refresh token after the change: %v", body)
		if fresh, _ := body["access_token"].(string); fresh != "" {
			refusedAtGate(t, s.hc, secure, "a JWT access token refreshed after the change", fresh)
		}
	}
	noSecretsInLog(t, s.s, at, rt)
}

// JWT access tokens on two nodes of one PostgreSQL database: a token minted on A passes B's
// gate; its revocation at A's endpoint, tokens revoke --client at A, and john's sign-out at A
// end it at B's gate within a second (B reads no store for it: the revocations follow the
// change feed); one client assertion sent to both at once gives one token.
func TestAttack18JWTAccessTokensAcrossNodes(t *testing.T) {
	c := &cluster{t: t, pg: pgtest.Start(t), public: freePort(t), up: newRecorder(t), users: filepath.Join(t.TempDir(), "users.yml")}
	users := "users:\n  john:\n    password: " + fmt.Sprintf("%q", cheapDigest(t, "pw-john")) + "\n    displayname: John Doe\n    email: john@example.test\n    groups: [dev]\n"
	if err := os.WriteFile(c.users, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn, err := url.Parse(c.pg.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	c.database = strings.TrimPrefix(dsn.Path, "/")
	c.a, c.b = c.node("A", c.database), c.node("B", c.database)
	esKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&esKey.PublicKey)
	keyFile := filepath.Join(t.TempDir(), "es.pub.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	esClient := "\t\tclient es-cc {\n\t\t\tgrant_types client_credentials\n\t\t\ttoken_endpoint_auth_method private_key_jwt\n" +
		"\t\t\tpublic_key k1 {\n\t\t\t\talgorithm ES256\n\t\t\t\tkey_file " + keyFile + "\n\t\t\t}\n\t\t}\n"
	for _, n := range []*clusterNode{c.a, c.b} {
		cf, err := os.ReadFile(n.srv.config)
		if err != nil {
			t.Fatal(err)
		}
		out := strings.Replace(string(cf), "\t\t\tgrant_types client_credentials\n", "\t\t\tgrant_types client_credentials\n\t\t\taccess_token_signed_response_alg RS256\n", 1)
		out = strings.Replace(out, "\t\tclient gw {\n", esClient+"\t\tclient gw {\n\t\t\taccess_token_signed_response_alg RS256\n", 1)
		if out == string(cf) || strings.Count(out, "access_token_signed_response_alg") != 2 {
			t.Fatal("the cluster's Caddyfile changed: cannot make kuma's and gw's access tokens JWTs")
		}
		if err := os.WriteFile(n.srv.config, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.a.launch()
	c.b.launch()
	c.a.waitReady(t)
	c.b.waitReady(t)
	a, b := c.a, c.b
	endsAtB := func(what, tok string) {
		t.Helper()
		if d, ok := until(3*time.Second, func() bool { return b.gateStatus(tok) == http.StatusUnauthorized }); !ok {
			t.Errorf("%s: B's gate still lets it through after 3 s", what)
		} else if d > time.Second {
			t.Errorf("%s: B's gate let it through for %s", what, d)
		} else {
			t.Logf("%s: ended at B's gate after %s", what, d)
		}
	}

	tok := a.token(t)
	if strings.Count(tok, ".") != 2 || strings.HasPrefix(tok, "portcullis_") {
		t.Fatalf("kuma's token is not a JWT: %.30s", tok)
	}
	if st := b.gateStatus(tok); st != http.StatusOK {
		t.Fatalf("A's JWT at B's gate: %d", st)
	}
	a.revoke(t, tok)
	endsAtB("a JWT revoked at A", tok)

	tok = a.token(t)
	if st := b.gateStatus(tok); st != http.StatusOK {
		t.Fatalf("A's second JWT at B's gate: %d", st)
	}
	if out, errOut, code := command(t, "", "tokens", "revoke", "--client", "kuma", "--address", fmt.Sprintf("localhost:%d", a.srv.adminPort)); code != 0 {
		t.Fatalf("tokens revoke at A: exit %d %q %s", code, out, errOut)
	}
	endsAtB("a JWT of a client revoked at A", tok)

	john := a.browser(t, newJar(t))
	code, ar := gwCode(t, john, a)
	status, out, err := a.exchangeCode(a.hc, code, ar.verifier)
	user, _ := out["access_token"].(string)
	if err != nil || status != http.StatusOK || strings.Count(user, ".") != 2 {
		t.Fatalf("gw's code exchange at A: %d %v %v", status, out, err)
	}
	if st := b.gateStatus(user); st != http.StatusOK {
		t.Fatalf("john's JWT at B's gate: %d", st)
	}
	john.signOut()
	endsAtB("john's JWT after he signed out at A", user)

	// one client assertion sent 20 times at once, half to A, half to B: one token
	tokenURL := a.url("auth", "/api/oidc/token")
	as := assertion(t, "es-cc", esKey, "ES256", "k1", tokenURL, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	startAll := make(chan struct{})
	for i := range 20 {
		n := []*clusterNode{a, b}[i%2]
		hc := n.client(fmt.Sprintf("127.0.4.%d", 10+i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startAll
			req, _ := http.NewRequest(http.MethodPost, n.url("auth", "/api/oidc/token"), strings.NewReader(withAssertion(url.Values{"grant_type": {"client_credentials"}}, as).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := hc.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	close(startAll)
	wg.Wait()
	if statuses[http.StatusOK] != 1 {
		t.Errorf("one assertion sent 20 times at once to two nodes: %v, want one 200", statuses)
	}
}
