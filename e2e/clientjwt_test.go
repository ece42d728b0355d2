package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// jwtClientKeys are the private keys of the test's clients, as the applications hold them.
type jwtClientKeys struct {
	es    *ecdsa.PrivateKey // es-cc and app: public_key from a file, ES256
	rs    *rsa.PrivateKey   // rs-cc: at a jwks_uri the test serves, RS256
	other *ecdsa.PrivateKey // nobody's
}

// hsSecret is hs-cc's client_secret_jwt secret (HS256 needs at least 32 bytes).
const hsSecret = "hs-cc-secret-0123456789abcdef0123456789"

// assertion signs a client assertion (RFC 7523 §3) for client with key and alg, as a client
// library does: iss and sub the client id, aud, a fresh jti, iat now, exp in a minute; edit
// changes the claims.
func assertion(t *testing.T, client string, key any, alg, kid, aud string, edit func(map[string]any)) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{"iss": client, "sub": client, "aud": aud, "jti": randomString(16), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	if edit != nil {
		edit(claims)
	}
	return signJWT(t, key, alg, kid, claims)
}

func signJWT(t *testing.T, key any, alg, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsignedJWT is an alg none JWT of claims.
func unsignedJWT(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// withAssertion is a form with a client assertion.
func withAssertion(v url.Values, a string) url.Values {
	out := url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	for k, vals := range v {
		out[k] = vals
	}
	return out
}

// startClientJWTSite starts a portal site with JWT-authenticated clients: es-cc (private_key_jwt,
// ES256 key file), rs-cc (private_key_jwt, RS256 at a jwks_uri served by the test), hs-cc
// (client_secret_jwt HS256), down-cc and huge-cc (jwks_uri down, or answering 10 MB), and app
// (a code-flow client with private_key_jwt and request objects signed ES256).
func startClientJWTSite(t *testing.T) (*oidcSite, jwtClientKeys) {
	t.Helper()
	var k jwtClientKeys
	k.es, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k.rs, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.other, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalPKIXPublicKey(&k.es.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "es.pub.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/jwks":
			w.Header().Set("Content-Type", "application/jwk-set+json")
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.rs.PublicKey, KeyID: "rs1", Algorithm: "RS256", Use: "sig"}}})
		case "/huge":
			chunk := []byte(strings.Repeat(" ", 64<<10))
			_, _ = w.Write([]byte(`{"keys":[`))
			for range 160 { // 10 MB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			_, _ = w.Write([]byte(`]}`))
		}
	}))
	t.Cleanup(jwks.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + ln.Addr().String() + "/jwks"
	ln.Close() // nothing listens there

	esKey := fmt.Sprintf("public_key k1 {\n\t\t\t\talgorithm ES256\n\t\t\t\tkey_file %s\n\t\t\t}", keyFile)
	cc := func(id string, lines ...string) string {
		return "\t\tclient " + id + " {\n\t\t\tgrant_types client_credentials\n\t\t\t" + strings.Join(lines, "\n\t\t\t") + "\n\t\t}\n"
	}
	s := startOIDCHTTPSite(t,
		cc("es-cc", "token_endpoint_auth_method private_key_jwt", esKey)+
			cc("rs-cc", "token_endpoint_auth_method private_key_jwt", "token_endpoint_auth_signing_alg RS256", "jwks_uri "+jwks.URL+"/jwks")+
			cc("hs-cc", "token_endpoint_auth_method client_secret_jwt", `secret "$plaintext$`+hsSecret+`"`)+
			cc("down-cc", "token_endpoint_auth_method private_key_jwt", "token_endpoint_auth_signing_alg RS256", "jwks_uri "+downURL)+
			cc("huge-cc", "token_endpoint_auth_method private_key_jwt", "token_endpoint_auth_signing_alg RS256", "jwks_uri "+jwks.URL+"/huge")+
			rpClient("app", "token_endpoint_auth_method private_key_jwt", esKey, "request_object_signing_alg ES256",
				"redirect_uris "+redirectURI("app")+" "+redirectURI("app")+"/other")+
			rpClient("basic-app"))
	return s, k
}

// JWT client authentication (RFC 7523) against the built binary: private_key_jwt with an ES256
// key from a file and with an RS256 key at a jwks_uri, and client_secret_jwt HS256, at the
// token endpoint (through golang.org/x/oauth2's client credentials), introspection, revocation
// and pushed authorization requests; then every broken assertion gets 401 invalid_client.
func TestClientJWTAuthentication(t *testing.T) {
	s, k := startClientJWTSite(t)
	tokenURL := s.issuer + "/api/oidc/token"
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.hc)

	// discovery tells a client library what it may use
	var meta map[string]any
	if err := s.provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
		if got := fmt.Sprint(meta[key]); !strings.Contains(got, "private_key_jwt") || !strings.Contains(got, "client_secret_jwt") {
			t.Errorf("discovery %s = %s, want the JWT methods", key, got)
		}
	}
	if got := fmt.Sprint(meta["token_endpoint_auth_signing_alg_values_supported"]); !strings.Contains(got, "ES256") || !strings.Contains(got, "HS256") || strings.Contains(got, "none") {
		t.Errorf("discovery token_endpoint_auth_signing_alg_values_supported = %s", got)
	}
	if meta["request_parameter_supported"] != true || meta["request_uri_parameter_supported"] != false || !strings.Contains(fmt.Sprint(meta["request_object_signing_alg_values_supported"]), "ES256") {
		t.Errorf("discovery of request objects: %v %v %v", meta["request_parameter_supported"], meta["request_uri_parameter_supported"], meta["request_object_signing_alg_values_supported"])
	}

	// a token for each client, from x/oauth2 with the assertion as the endpoint parameters
	tokens := map[string]string{}
	for _, c := range []struct {
		id, alg, kid string
		key          any
	}{{"es-cc", "ES256", "k1", k.es}, {"rs-cc", "RS256", "rs1", k.rs}, {"hs-cc", "HS256", "", []byte(hsSecret)}} {
		conf := clientcredentials.Config{ClientID: c.id, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams,
			EndpointParams: withAssertion(nil, assertion(t, c.id, c.key, c.alg, c.kid, tokenURL, nil))}
		tok, err := conf.Token(ctx)
		if err != nil {
			t.Fatalf("%s: client_credentials with a %s assertion: %v", c.id, c.alg, err)
		}
		tokens[c.id] = tok.AccessToken
	}

	t.Run("introspection, revocation and PAR", func(t *testing.T) {
		introspection, revocation := s.issuer+"/api/oidc/introspection", s.issuer+"/api/oidc/revocation"
		// aud the issuer here, the endpoint there: both name this provider
		status, body := postForm(t, s.hc, introspection, withAssertion(url.Values{"token": {tokens["es-cc"]}}, assertion(t, "es-cc", k.es, "ES256", "k1", s.issuer, nil)), "")
		if status != http.StatusOK || body["active"] != true || body["client_id"] != "es-cc" {
			t.Fatalf("es-cc introspects its token: %d %v", status, body)
		}
		status, body = postForm(t, s.hc, introspection, withAssertion(url.Values{"token": {tokens["hs-cc"]}}, assertion(t, "rs-cc", k.rs, "RS256", "rs1", introspection, nil)), "")
		if status != http.StatusOK || body["active"] != true {
			t.Fatalf("rs-cc introspects hs-cc's token: %d %v", status, body)
		}
		status, body = postForm(t, s.hc, revocation, withAssertion(url.Values{"token": {tokens["hs-cc"]}}, assertion(t, "hs-cc", []byte(hsSecret), "HS256", "", revocation, nil)), "")
		if status != http.StatusOK {
			t.Fatalf("hs-cc revokes its token: %d %v", status, body)
		}
		if _, body = postForm(t, s.hc, introspection, withAssertion(url.Values{"token": {tokens["hs-cc"]}}, assertion(t, "es-cc", k.es, "ES256", "k1", s.issuer, nil)), ""); body["active"] != false {
			t.Fatalf("hs-cc's token after its revocation: %v", body)
		}
		status, body = postForm(t, s.hc, s.issuer+"/api/oidc/pushed-authorization-request", withAssertion(url.Values{
			"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {redirectURI("app")}, "scope": {"openid"},
			"state": {randomString(12)}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
		}, assertion(t, "app", k.es, "ES256", "k1", s.issuer+"/api/oidc/pushed-authorization-request", nil)), "")
		if uri, _ := body["request_uri"].(string); status != http.StatusCreated || !strings.HasPrefix(uri, "urn:ietf:params:oauth:request_uri:") {
			t.Fatalf("app pushes a request with an assertion: %d %v", status, body)
		}
	})

	t.Run("refused assertions", func(t *testing.T) {
		cc := url.Values{"grant_type": {"client_credentials"}}
		replayed := assertion(t, "es-cc", k.es, "ES256", "k1", tokenURL, nil)
		if status, body := postForm(t, s.hc, tokenURL, withAssertion(cc, replayed), ""); status != http.StatusOK {
			t.Fatalf("the first use of an assertion: %d %v", status, body)
		}
		var sent []string
		for i, c := range []struct {
			name      string
			assertion string
			basic     [2]string
			quick     bool
			why       string // what the provider's log line says
		}{
			{name: "replayed (the same jti)", assertion: replayed, why: "replayed"},
			{name: "a fixed jti with a wrong aud", assertion: assertion(t, "es-cc", k.es, "ES256", "k1", tokenURL, func(c map[string]any) { c["jti"], c["aud"] = "fixed-jti-1", "https://other.example.test/" }), why: "names neither the issuer"},
			{name: "wrong aud", assertion: assertion(t, "es-cc", k.es, "ES256", "k1", "https://other.example.test/api/oidc/token", nil), why: "names neither the issuer"},
			{name: "an alg the client did not register (HS256 with its id)", assertion: assertion(t, "es-cc", []byte(hsSecret), "HS256", "", tokenURL, nil), why: "wrong authentication method client_secret_jwt"},
			{name: "an alg the client did not register (RS256)", assertion: assertion(t, "es-cc", k.rs, "RS256", "k1", tokenURL, nil), why: "alg is not ES256"},
			{name: "alg none", assertion: unsignedJWT(map[string]any{"iss": "es-cc", "sub": "es-cc", "aud": tokenURL, "jti": randomString(16), "exp": time.Now().Add(time.Minute).Unix()}), why: "unreadable"},
			{name: "a key of another client", assertion: assertion(t, "es-cc", k.other, "ES256", "k1", tokenURL, nil), why: "signature"},
			{name: "rs-cc's key for es-cc", assertion: assertion(t, "es-cc", k.rs, "RS256", "rs1", tokenURL, nil), why: "alg is not ES256"},
			{name: "expired", assertion: assertion(t, "es-cc", k.es, "ES256", "k1", tokenURL, func(c map[string]any) {
				c["iat"], c["exp"] = time.Now().Add(-10*time.Minute).Unix(), time.Now().Add(-5*time.Minute).Unix()
			}), why: "expired"},
			{name: "iat far in the future", assertion: assertion(t, "es-cc", k.es, "ES256", "k1", tokenURL, func(c map[string]any) {
				c["iat"], c["exp"] = time.Now().Add(30*time.Minute).Unix(), time.Now().Add(31*time.Minute).Unix()
			}), why: "iat is in the future"},
			{name: "exp a day ahead", assertion: assertion(t, "es-cc", k.es, "ES256", "k1", tokenURL, func(c map[string]any) { c["exp"] = time.Now().Add(24 * time.Hour).Unix() }), why: "exp is more than 1h0m0s ahead"},
			{name: "no jti", assertion: assertion(t, "es-cc", k.es, "ES256", "k1", tokenURL, func(c map[string]any) { delete(c, "jti") }), why: "no jti"},
			{name: "sub another client", assertion: assertion(t, "es-cc", k.es, "ES256", "k1", tokenURL, func(c map[string]any) { c["sub"] = "hs-cc" }), why: "wrong authentication method private_key_jwt"},
			{name: "a secret from a private_key_jwt client", basic: [2]string{"app", "app-secret"}, why: "wrong authentication method client_secret_basic"},
			{name: "an assertion from a client_secret_basic client", assertion: assertion(t, "basic-app", []byte("basic-app-secret-0123456789abcdefghij"), "HS256", "", tokenURL, nil), why: "wrong authentication method client_secret_jwt"},
			{name: "jwks_uri down", assertion: assertion(t, "down-cc", k.rs, "RS256", "rs1", tokenURL, nil), quick: true, why: "jwks_uri could not be fetched"},
			{name: "jwks_uri answering 10 MB", assertion: assertion(t, "huge-cc", k.rs, "RS256", "rs1", tokenURL, nil), quick: true, why: "larger than 256 KiB"},
		} {
			sent = append(sent, c.assertion)
			// each case from its own address: the failure limits (10 per address) would
			// otherwise answer the later cases whatever their assertion
			ip := fmt.Sprintf("127.0.0.%d", 20+i)
			hc := s.from(ip)
			before := len(s.s.log.String())
			form := cc
			auth := ""
			if c.assertion != "" {
				form = withAssertion(cc, c.assertion)
			} else {
				auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.basic[0]+":"+c.basic[1]))
			}
			start := time.Now()
			status, body := postForm(t, hc, tokenURL, form, auth)
			if status != http.StatusUnauthorized || body["error"] != "invalid_client" || body["access_token"] != nil {
				t.Errorf("%s: %d %v, want 401 invalid_client", c.name, status, body)
			}
			if d := time.Since(start); c.quick && d > 3*time.Second {
				t.Errorf("%s: the answer took %s", c.name, d)
			}
			if added, ok := logGains(s.s, before, c.why, `"remote_ip":"`+ip+`"`); !ok {
				t.Errorf("%s: the log line should say %q; it got: %.600s", c.name, c.why, added)
			}
		}
		// a refused assertion does not spend its jti
		fixed := assertion(t, "es-cc", k.es, "ES256", "k1", tokenURL, func(c map[string]any) { c["jti"] = "fixed-jti-1" })
		if status, body := postForm(t, s.from("127.0.0.60"), tokenURL, withAssertion(cc, fixed), ""); status != http.StatusOK {
			t.Errorf("a good assertion with the jti of a refused one: %d %v", status, body)
		}
		// the metrics count them by reason: 13 bad assertions, 4 wrong methods
		got := scrape(t, &http.Client{Timeout: 10 * time.Second}, s.admin)
		for reason, n := range map[string]float64{"bad_assertion": 13, "wrong_method": 4} {
			if v := got[`portcullis_client_auth_failures_total{reason="`+reason+`"}`]; v != n {
				t.Errorf("portcullis_client_auth_failures_total{reason=%q} = %v, want %v", reason, v, n)
			}
		}
		// the refusals were logged without the assertions
		log := s.s.log.String()
		for _, a := range sent {
			if a != "" && strings.Contains(log, a) {
				t.Errorf("the log holds an assertion")
			}
		}
	})
}

// logGains waits (up to 5 s: the server's output reaches the buffer through a pipe) for the
// server's log after offset before to hold a "client authentication failed" line saying each of
// what.
func logGains(s *server, before int, what ...string) (string, bool) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		added := s.log.String()[before:]
		for _, line := range strings.Split(added, "\n") {
			if strings.Contains(line, "client authentication failed") && !slices.ContainsFunc(what, func(w string) bool { return !strings.Contains(line, w) }) {
				return added, true
			}
		}
		if time.Now().After(deadline) {
			return added, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Signed request objects (RFC 9101) against the built binary: a request object signed with
// app's ES256 key drives the code flow, and its parameters win over the query's (the callback
// goes to its redirect_uri with its state, its nonce is in the ID token, its max_age number is
// read); the code is exchanged with a private_key_jwt assertion. The same through a pushed
// request. An unsigned (none) object, a tampered one, one signed by another key and a
// request_uri by reference are refused.
func TestClientJWTRequestObjects(t *testing.T) {
	s, k := startClientJWTSite(t)
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	tokenURL := s.issuer + "/api/oidc/token"
	authz := s.issuer + "/api/oidc/authorization"

	object := func(state, nonce, verifier string) map[string]any {
		return map[string]any{
			"iss": "app", "aud": s.issuer, "client_id": "app", "exp": time.Now().Add(5 * time.Minute).Unix(),
			"response_type": "code", "scope": "openid profile", "redirect_uri": redirectURI("app"),
			"state": state, "nonce": nonce, "max_age": 3600,
			"code_challenge": oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method": "S256",
		}
	}
	// the query says otherwise: another registered redirect URI, another state, no nonce
	query := func(request string) url.Values {
		return url.Values{"client_id": {"app"}, "response_type": {"code"}, "scope": {"openid"},
			"redirect_uri": {redirectURI("app") + "/other"}, "state": {"query-state-123"}, "request": {request}}
	}
	exchange := func(t *testing.T, code, verifier string) map[string]any {
		t.Helper()
		status, tokens := postForm(t, s.hc, tokenURL, withAssertion(url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI("app")}, "code_verifier": {verifier},
		}, assertion(t, "app", k.es, "ES256", "k1", tokenURL, nil)), "")
		if status != http.StatusOK {
			t.Fatalf("code exchange with a private_key_jwt assertion: %d %v", status, tokens)
		}
		return tokens
	}

	t.Run("signed request object", func(t *testing.T) {
		state, nonce, verifier := randomString(12), randomString(12), oauth2.GenerateVerifier()
		st := john.with(t).authorize(authz + "?" + query(signJWT(t, k.es, "ES256", "k1", object(state, nonce, verifier))).Encode())
		if !strings.HasPrefix(st.location, redirectURI("app")+"?") {
			t.Fatalf("the answer should go to the request object's redirect_uri: %s", st)
		}
		cb := st.callback()
		if cb.Get("state") != state || cb.Get("code") == "" {
			t.Fatalf("the callback should carry the request object's state: %v", cb)
		}
		tokens := exchange(t, cb.Get("code"), verifier)
		raw, _ := tokens["id_token"].(string)
		s.with(t).verifyIDToken("app", raw, nonce, "RS256") // the request object's nonce
	})

	t.Run("pushed with a request object", func(t *testing.T) {
		state, verifier := randomString(12), oauth2.GenerateVerifier()
		par := s.issuer + "/api/oidc/pushed-authorization-request"
		status, body := postForm(t, s.hc, par, withAssertion(url.Values{
			"client_id": {"app"}, "state": {"pushed-query-state"},
			"request": {signJWT(t, k.es, "ES256", "k1", object(state, randomString(12), verifier))},
		}, assertion(t, "app", k.es, "ES256", "k1", par, nil)), "")
		uri, _ := body["request_uri"].(string)
		if status != http.StatusCreated || uri == "" {
			t.Fatalf("pushing a request object: %d %v", status, body)
		}
		st := john.with(t).authorize(authz + "?" + url.Values{"client_id": {"app"}, "request_uri": {uri}}.Encode())
		if cb := st.callback(); cb.Get("state") != state || cb.Get("code") == "" || !strings.HasPrefix(st.location, redirectURI("app")+"?") {
			t.Fatalf("the pushed request object's answer: %s", st)
		}
		exchange(t, st.callback().Get("code"), verifier)
	})

	t.Run("refused", func(t *testing.T) {
		good := signJWT(t, k.es, "ES256", "k1", object(randomString(12), randomString(12), oauth2.GenerateVerifier()))
		parts := strings.Split(good, ".")
		tampered := object(randomString(12), randomString(12), oauth2.GenerateVerifier())
		tampered["redirect_uri"] = redirectURI("app") + "/other"
		payload, _ := json.Marshal(tampered)
		for _, c := range []struct{ name, request, want string }{
			{"unsigned (alg none)", unsignedJWT(object(randomString(12), randomString(12), oauth2.GenerateVerifier())), "invalid_request_object"},
			{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2], "invalid_request_object"},
			{"signed by another key", signJWT(t, k.other, "ES256", "k1", object(randomString(12), randomString(12), oauth2.GenerateVerifier())), "invalid_request_object"},
			{"signed with an alg other than request_object_signing_alg", signJWT(t, k.rs, "RS256", "", object(randomString(12), randomString(12), oauth2.GenerateVerifier())), "invalid_request_object"},
		} {
			st := john.with(t).authorize(authz + "?" + query(c.request).Encode())
			if st.status != http.StatusBadRequest || st.location != "" || !strings.Contains(st.page, c.want) {
				t.Errorf("%s: %s, want a 400 page saying %s", c.name, st, c.want)
			}
		}
		q := query("")
		q.Del("request")
		q.Set("request_uri", "https://app.example.test/request.jwt")
		if st := john.with(t).authorize(authz + "?" + q.Encode()); st.status != http.StatusBadRequest || !strings.Contains(st.page, "request_uri_not_supported") {
			t.Errorf("request_uri by reference: %s, want a 400 page saying request_uri_not_supported", st)
		}
	})
}
