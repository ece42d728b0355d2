package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// Second attack pass on issue 18, against the built binary: what held.

// followAll opens target as v and follows redirects inside the provider; it returns the last
// answer (a page of the provider, or the redirect that leaves it) and its body.
func followAll(t *testing.T, v *visitor, target string) (*http.Response, string) {
	t.Helper()
	resp, page := v.do(http.MethodGet, target, nil)
	issuer, _ := url.Parse(v.p.url("auth", "/"))
	for range 10 {
		if resp.StatusCode < 300 || resp.StatusCode > 399 {
			return resp, page
		}
		u, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil || u.Host != issuer.Host {
			return resp, page
		}
		resp, page = v.do(http.MethodGet, u.String(), nil)
	}
	t.Fatal("more than ten redirects inside the provider")
	return nil, ""
}

// form_post and form_post.jwt attacked: markup in state (reflected on success and on an error)
// and in a scope name (reflected by the error description) is escaped in the auto-submitting
// form, which always carries the strict CSP (no script but the submit, no framing, no base);
// a redirect URI that differs from the registered one only by case, a trailing slash, an
// explicit port or a path case gets no form and no redirect.
func TestAttack18bFormPostInjection(t *testing.T) {
	s := startOIDCHTTPSite(t, rpClient("fp", "response_modes query form_post form_post.jwt"))
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	stranger := newVisitor(t, s.portalSite, "")
	evil := `"><script>alert(1)</script><img src=x onerror=alert(2)><form action="https://evil.example.test/">'`
	checkPage := func(what string, resp *http.Response, page string) {
		t.Helper()
		if resp.StatusCode >= 500 {
			t.Errorf("%s: %d", what, resp.StatusCode)
		}
		if strings.Contains(page, "<script>alert") || strings.Contains(page, "<img") || strings.Contains(page, "evil.example.test/\"") && strings.Contains(page, `<form action="https://evil`) {
			t.Errorf("%s: markup reflected unescaped: %.600s", what, page)
		}
		if strings.Count(page, "<form") > 1 || strings.Count(page, "<script") > 1 {
			t.Errorf("%s: more than one form or script: %.600s", what, page)
		}
		if strings.Contains(page, "Signing you in") {
			csp := resp.Header.Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "script-src 'sha256-"} {
				if !strings.Contains(csp, d) {
					t.Errorf("%s: CSP %q lacks %s", what, csp, d)
				}
			}
			if strings.Contains(csp, "unsafe-inline'; form") && strings.Contains(csp, "script-src 'unsafe-inline") {
				t.Errorf("%s: CSP allows inline scripts: %q", what, csp)
			}
		}
	}
	for _, mode := range []string{"form_post", "form_post.jwt"} {
		// success, state reflected
		a := s.authURL("fp", url.Values{"response_mode": {mode}, "state": {evil}})
		resp, page := followAll(t, john, a.url)
		checkPage(mode+" success", resp, page)
		st := john.follow(resp, page)
		if st.formPostTo != redirectURI("fp") {
			t.Errorf("%s success: %s", mode, st)
		} else if mode == "form_post" && st.formPost.Get("state") != evil {
			t.Errorf("%s: state came back as %q", mode, st.formPost.Get("state"))
		}
		// errors: prompt=none without a session; an unknown scope named in the description
		for _, q := range []url.Values{
			{"response_mode": {mode}, "state": {evil}, "prompt": {"none"}},
			{"response_mode": {mode}, "state": {evil}, "scope": {"openid " + strings.ReplaceAll(evil, " ", "")}},
		} {
			who := stranger
			if q.Get("prompt") == "" {
				who = john
			}
			resp, page := followAll(t, who, s.authURL("fp", q).url)
			checkPage(mode+" error "+q.Get("prompt"), resp, page)
		}
		// redirect URIs that differ a little from the registered one
		for _, ru := range []string{"HTTPS://APP.EXAMPLE.TEST/cb/fp", "https://app.example.test/cb/fp/", "https://app.example.test:443/cb/fp",
			"https://app.example.test/cb/FP", "https://app.example.test/cb/fp?x=1", "https://app.example.test/cb/fp#x", "https://app.example.test/cb/fp%2F", "https://app.example.test:8443/cb/fp"} {
			resp, page := followAll(t, john, s.authURL("fp", url.Values{"response_mode": {mode}, "redirect_uri": {ru}}).url)
			st := john.follow(resp, page)
			if st.formPostTo != "" || st.location != "" || resp.StatusCode >= 500 {
				t.Errorf("%s to %s: %s", mode, ru, st)
			}
		}
	}
	noSecretsInLog(t, s.s)
}

// CORS on error answers: a token request with a wrong secret (401), a bad grant (400), and
// userinfo without or with a bad token (401) carry the CORS headers for an allowed origin (the
// page may read the error) and none for another; a preflight or a request with an Origin at
// the gate's protected site or at the portal gets no CORS header.
func TestAttack18bCORSOnErrors(t *testing.T) {
	s := startOIDCHTTPSite(t, `
		cors {
			endpoints token userinfo introspection
			allowed_origins https://spa.example.org
		}
		client api {
			secret "$plaintext$api-secret"
			grant_types client_credentials
		}
`)
	token, userinfo, intro := s.issuer+"/api/oidc/token", s.issuer+"/api/oidc/userinfo", s.issuer+"/api/oidc/introspection"
	cc := url.Values{"grant_type": {"client_credentials"}}
	cases := []struct {
		name, method, target string
		body                 url.Values
		basic                [2]string
		bearer               string
		want                 int
	}{
		{"token, wrong secret", http.MethodPost, token, cc, [2]string{"api", "nope"}, "", 401},
		{"token, unknown client", http.MethodPost, token, cc, [2]string{"ghost", "nope"}, "", 401},
		{"token, bad grant", http.MethodPost, token, url.Values{"grant_type": {"bogus"}}, [2]string{"api", "api-secret"}, "", 400},
		{"userinfo, no token", http.MethodGet, userinfo, nil, [2]string{}, "", 401},
		{"userinfo, bad token", http.MethodGet, userinfo, nil, [2]string{}, "not-a-token", 401},
		{"introspection, wrong secret", http.MethodPost, intro, url.Values{"token": {"x"}}, [2]string{"api", "nope"}, "", 401},
	}
	for _, c := range cases {
		resp := corsCall(t, s.hc, c.method, c.target, "https://spa.example.org", c.body, c.basic, c.bearer)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "https://spa.example.org" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s from the allowed origin: %v", c.name, accessControlHeaders(resp.Header))
		}
		resp = corsCall(t, s.hc, c.method, c.target, "https://evil.example.org", c.body, c.basic, c.bearer)
		if got := accessControlHeaders(resp.Header); len(got) != 0 || resp.StatusCode >= 500 {
			t.Errorf("%s from another origin: %d %v", c.name, resp.StatusCode, got)
		}
	}
	waitSiteTLS(t, s.hc, s.url("secure", "/"))
	for _, target := range []string{s.url("secure", "/"), s.url("secure", "/api/oidc/token"), s.url("admin", "/"), s.issuer + "/", s.issuer + "/api/oidc/logout"} {
		for _, method := range []string{http.MethodOptions, http.MethodGet} {
			for _, origin := range []string{"https://spa.example.org", "https://evil.example.org"} {
				resp := corsCall(t, s.hc, method, target, origin, nil, [2]string{}, "")
				if got := accessControlHeaders(resp.Header); len(got) != 0 || resp.StatusCode >= 500 {
					t.Errorf("%s %s from %s: %d %v", method, target, origin, resp.StatusCode, got)
				}
			}
		}
	}
	noSecretsInLog(t, s.s)
}

// Signed introspection across clients: a client that asks for the JWT answer learns nothing
// the JSON answer does not tell it (same fields, same values), for its own token, another
// client's and a bad one; an inactive answer is {active:false} alone, addressed (aud) to the
// asking client, and never carries a subject, scope or client_id that could pass for an active one.
func TestAttack18bSignedIntrospectionAcrossClients(t *testing.T) {
	s := startOIDCHTTPSite(t, rpClient("app")+rpClient("other")+
		"\t\tclient api {\n\t\t\tsecret \"$plaintext$api-secret\"\n\t\t\tgrant_types client_credentials\n\t\t\tresource_server_for app\n\t\t}\n"+
		"\t\tclient api2 {\n\t\t\tsecret \"$plaintext$api2-secret\"\n\t\t\tgrant_types client_credentials\n\t\t}\n")
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	appTok := s.codeFlow(john, "app", nil).accessToken()
	set := s.jwks()
	for _, asker := range []string{"app", "other", "api", "api2"} {
		for _, tok := range []string{appTok, "bogus-" + appTok[:10], ""} {
			st, _, plainBody := s.introspect(asker, tok, "")
			sst, ct, signedBody := s.introspect(asker, tok, "application/token-introspection+jwt")
			if st >= 500 || sst >= 500 {
				t.Errorf("%s: %d %d", asker, st, sst)
				continue
			}
			if st != http.StatusOK {
				if sst == http.StatusOK {
					t.Errorf("%s: JSON %d but a signed answer: %.200s", asker, st, signedBody)
				}
				continue
			}
			var plain map[string]any
			_ = json.Unmarshal([]byte(plainBody), &plain)
			if ct != "application/token-introspection+jwt" {
				t.Errorf("%s: signed answer %d %q", asker, sst, ct)
				continue
			}
			claims, _, err := verifyJWS(t, set, signedBody)
			if err != nil {
				t.Fatalf("%s: %v", asker, err)
			}
			ti, _ := claims["token_introspection"].(map[string]any)
			a, _ := json.Marshal(plain)
			b, _ := json.Marshal(ti)
			if string(a) != string(b) {
				t.Errorf("%s on %.10s: JSON %s, signed %s", asker, tok, a, b)
			}
			if claims["aud"] != asker {
				t.Errorf("%s: aud %v", asker, claims["aud"])
			}
			if ti["active"] != true {
				if len(ti) != 1 {
					t.Errorf("%s: an inactive answer carries %v", asker, ti)
				}
				for _, k := range []string{"active", "sub", "scope", "client_id", "username"} {
					if _, ok := claims[k]; ok {
						t.Errorf("%s: the inactive JWT has %s at its top: %v", asker, k, claims)
					}
				}
			}
			t.Logf("%s on %.10s…: %s", asker, tok, a)
		}
	}
	noSecretsInLog(t, s.s, appTok)
}

// Request objects with PAR and JARM: an object whose response_mode or redirect_uri differ from
// the outer request answers only at a registered redirect URI, in a mode the client
// registered; an object asking for acr two_factor as an essential claim never gets an ID token
// claiming a second factor for a one-factor sign-in; a pushed request (with an object asking
// form_post.jwt) answers with a verifiable JARM form, and its request_uri, once used, starts
// nothing in another browser.
func TestAttack18bRequestObjectsWithPARAndJARM(t *testing.T) {
	esKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&esKey.PublicKey)
	pubFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	ro2 := redirectURI("ro") + "2"
	s := startOIDCHTTPSite(t, rpClient("ro", "token_endpoint_auth_method private_key_jwt",
		fmt.Sprintf("public_key k1 {\n\t\t\t\talgorithm ES256\n\t\t\t\tkey_file %s\n\t\t\t}", pubFile),
		"request_object_signing_alg ES256", "response_modes query form_post.jwt", "redirect_uris "+redirectURI("ro")+" "+ro2))
	set := s.jwks()
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	authz := s.issuer + "/api/oidc/authorization"
	object := func(edit func(map[string]any)) (string, string) {
		v := oauth2.GenerateVerifier()
		c := map[string]any{"iss": "ro", "aud": s.issuer, "client_id": "ro", "response_type": "code", "redirect_uri": redirectURI("ro"),
			"scope": "openid", "state": "inner-state", "nonce": randomString(8), "exp": time.Now().Add(time.Minute).Unix(),
			"code_challenge": oauth2.S256ChallengeFromVerifier(v), "code_challenge_method": "S256"}
		if edit != nil {
			edit(c)
		}
		return signWith(t, esKey, "ES256", map[string]any{"kid": "k1", "typ": "oauth-authz-req+jwt"}, c), v
	}
	outer := func(request string, more url.Values) string {
		q := url.Values{"client_id": {"ro"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {redirectURI("ro")}, "request": {request}}
		for k, v := range more {
			q[k] = v
		}
		return authz + "?" + q.Encode()
	}
	registered := func(st step) bool {
		to := st.location
		if st.formPost != nil {
			to = st.formPostTo
		}
		return to == "" || strings.HasPrefix(to, redirectURI("ro")+"?") || strings.HasPrefix(to, redirectURI("ro")+"#") || to == redirectURI("ro") ||
			strings.HasPrefix(to, ro2+"?") || to == ro2
	}
	var sent []string
	for _, c := range []struct {
		what  string
		edit  func(map[string]any)
		outer url.Values
	}{
		{"inner form_post.jwt, outer query", func(c map[string]any) { c["response_mode"] = "form_post.jwt" }, url.Values{"response_mode": {"query"}}},
		{"inner query, outer form_post.jwt", func(c map[string]any) { c["response_mode"] = "query" }, url.Values{"response_mode": {"form_post.jwt"}}},
		{"inner fragment (not registered), outer query", func(c map[string]any) { c["response_mode"] = "fragment" }, nil},
		{"inner redirect ro2, outer ro", func(c map[string]any) { c["redirect_uri"] = ro2 }, nil},
		{"inner ro, outer ro2", nil, url.Values{"redirect_uri": {ro2}}},
		{"inner redirect ro with a trailing slash", func(c map[string]any) { c["redirect_uri"] = redirectURI("ro") + "/" }, nil},
		{"inner response_mode markup", func(c map[string]any) { c["response_mode"] = `"><script>alert(1)</script>` }, nil},
	} {
		raw, _ := object(c.edit)
		sent = append(sent, raw)
		st := john.authorize(outer(raw, c.outer))
		if !registered(st) || st.status >= 500 || strings.Contains(st.page, "<script>alert") {
			t.Errorf("%s: %s", c.what, st)
		}
		if c.what == "inner fragment (not registered), outer query" && st.callback().Get("code") != "" {
			t.Errorf("%s: a code in a mode the client did not register: %s", c.what, st)
		}
		t.Logf("%s: to %q %q, %d params", c.what, st.location, st.formPostTo, len(st.callback()))
	}

	// acr two_factor asked as essential, john signed in with one factor
	claimsReq := `{"id_token":{"acr":{"essential":true,"values":["two_factor","urn:portcullis:2fa","mfa"]}}}`
	for _, how := range []string{"object", "outer"} {
		var raw, verifier string
		var st step
		if how == "object" {
			raw, verifier = object(func(c map[string]any) {
				var m map[string]any
				_ = json.Unmarshal([]byte(claimsReq), &m)
				c["claims"] = m
				c["acr_values"] = "two_factor mfa"
			})
			st = john.authorize(outer(raw, nil))
		} else {
			raw, verifier = object(nil)
			st = john.authorize(outer(raw, url.Values{"claims": {claimsReq}, "acr_values": {"two_factor mfa"}}))
		}
		sent = append(sent, raw)
		code := st.callback().Get("code")
		if code == "" {
			t.Logf("acr essential (%s): no code: %s", how, st)
			continue
		}
		tok := s.issuer + "/api/oidc/token"
		status, body := postForm(t, s.hc, tok, withAssertion(url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirectURI("ro")}, "code_verifier": {verifier}, "client_id": {"ro"}}, assertion(t, "ro", esKey, "ES256", "k1", tok, nil)), "")
		idt, _ := body["id_token"].(string)
		if status != http.StatusOK || idt == "" {
			t.Fatalf("acr essential (%s): exchange %d %v", how, status, body)
		}
		claims, _, err := verifyJWS(t, set, idt)
		if err != nil {
			t.Fatal(err)
		}
		if acr, _ := claims["acr"].(string); acr == "two_factor" || acr == "mfa" || acr == "urn:portcullis:2fa" || slices.Contains(anyStrings(claims["amr"]), "otp") {
			t.Errorf("acr essential (%s): the ID token of a one-factor sign-in claims %v / %v", how, claims["acr"], claims["amr"])
		}
		t.Logf("acr essential (%s): acr %v amr %v", how, claims["acr"], claims["amr"])
	}

	// PAR with an object asking form_post.jwt: a JARM form; the request_uri is spent
	par := s.issuer + "/api/oidc/pushed-authorization-request"
	raw, _ := object(func(c map[string]any) { c["response_mode"] = "form_post.jwt" })
	sent = append(sent, raw)
	status, body := postForm(t, s.hc, par, withAssertion(url.Values{"client_id": {"ro"}, "request": {raw}}, assertion(t, "ro", esKey, "ES256", "k1", par, nil)), "")
	ru, _ := body["request_uri"].(string)
	if status != http.StatusCreated || ru == "" {
		t.Fatalf("PAR: %d %v", status, body)
	}
	target := authz + "?" + url.Values{"client_id": {"ro"}, "request_uri": {ru}}.Encode()
	st := john.authorize(target)
	if st.formPostTo != redirectURI("ro") {
		t.Fatalf("PAR with form_post.jwt: %s", st)
	}
	if claims, _, err := s.jarmResponse(set, "ro", st.formPost.Get("response")); err != nil || claims["code"] == nil || claims["state"] != "inner-state" {
		t.Errorf("PAR with form_post.jwt: %v %v", err, claims)
	}
	for i, v := range []*visitor{john, newVisitor(t, s.portalSite, "")} {
		if i == 1 {
			v.signIn("", "john", "pw-john")
		}
		st := v.authorize(target)
		if st.callback().Get("code") != "" || st.callback().Get("response") != "" || st.status >= 500 {
			t.Errorf("the spent request_uri again (browser %d): %s", i, st)
		}
	}
	noSecretsInLog(t, s.s, sent...)
}

// anyStrings is v as strings, when it is a JSON array.
func anyStrings(v any) []string {
	a, _ := v.([]any)
	var out []string
	for _, x := range a {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Logout tokens across applications: a client with pairwise subjects is told its own pairwise
// sub, never the public one another client knows; a sign-out in one browser tells only the
// applications used in that browser's session (not those john used in another browser, not
// one with a back-channel URI he never used); each logout token is addressed to its client only.
func TestAttack18bLogoutTokensAcrossApplications(t *testing.T) {
	t.Setenv("PORTCULLIS_TEST_BACKCHANNEL_RETRIES", "1s,1s")
	rec := newBCLReceiver(t)
	rec.up()
	s := startOIDCHTTPSite(t,
		rpClient("bc-pub", "backchannel_logout_uri "+rec.uri("bc-pub"))+
			rpClient("bc-pw", "backchannel_logout_uri "+rec.uri("bc-pw"), "sector_identifier_uri https://sector-a.example.test/")+
			rpClient("bc-other", "backchannel_logout_uri "+rec.uri("bc-other"))+
			rpClient("bc-unused", "backchannel_logout_uri "+rec.uri("bc-unused")))
	rec.issuer = s.issuer
	set := s.jwks()
	rec.jwks = func() jose.JSONWebKeySet { return set }
	a := newVisitor(t, s.portalSite, "")
	b := newVisitor(t, s.portalSite, "")
	pub := s.codeFlow(a, "bc-pub", nil)
	pw := s.codeFlow(a, "bc-pw", nil)
	other := s.codeFlow(b, "bc-other", nil)
	if pub.claims["sub"] == pw.claims["sub"] {
		t.Fatalf("bc-pw's sub is not pairwise: %v", pw.claims["sub"])
	}
	a.signOut()
	got := rec.expect(0, 2, 10*time.Second*slow)
	checkFor(t, got, "bc-pub", pub.claims)
	checkFor(t, got, "bc-pw", pw.claims)
	for _, g := range got {
		if g.client == "bc-other" || g.client == "bc-unused" {
			t.Errorf("a logout token went to %s, not used in the session: %v", g.client, g.claims)
		}
		if aud := fmt.Sprint(g.claims["aud"]); aud != g.client && aud != "["+g.client+"]" {
			t.Errorf("the logout token to %s is addressed to %s", g.client, aud)
		}
		if g.client == "bc-pw" && g.claims["sub"] == pub.claims["sub"] {
			t.Errorf("bc-pw learned the public sub %v", g.claims["sub"])
		}
	}
	if pub.claims["sid"] == pw.claims["sid"] {
		t.Logf("note: bc-pub and bc-pw (pairwise) see the same sid %v", pub.claims["sid"])
	}
	// b's session is untouched; its sign-out tells bc-other alone
	b.signOut()
	got = rec.expect(2, 1, 10*time.Second*slow)
	checkFor(t, got, "bc-other", other.claims)
	noSecretsInLog(t, s.s, pub.raw, pw.raw, other.raw)
}

// The device grant with private_key_jwt: a client assertion is good once, across the device
// authorization endpoint and the token endpoint's polls (a poll answered authorization_pending
// spends its assertion too); the approved device code redeems with a fresh assertion, and with
// no assertion or another client's it does not; the approval page of one browser's flow cannot
// be answered by another browser.
func TestAttack18bDeviceGrantWithPrivateKeyJWT(t *testing.T) {
	esKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&esKey.PublicKey)
	pubFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startOIDCHTTPSite(t, fmt.Sprintf(`
		client tvjwt {
			token_endpoint_auth_method private_key_jwt
			public_key k1 {
				algorithm ES256
				key_file %s
			}
			grant_types urn:ietf:params:oauth:grant-type:device_code
			scopes openid
			authorization_policy one_factor
			consent_mode explicit
		}
		client conf {
			secret "$plaintext$conf-secret"
			grant_types urn:ietf:params:oauth:grant-type:device_code
			scopes openid
			authorization_policy one_factor
		}
`, pubFile))
	da, tok := s.issuer+"/api/oidc/device-authorization", s.issuer+"/api/oidc/token"
	grant := "urn:ietf:params:oauth:grant-type:device_code"
	var sent []string
	as := func(aud string) string {
		a := assertion(t, "tvjwt", esKey, "ES256", "k1", aud, nil)
		sent = append(sent, a)
		return a
	}
	a1 := as(s.issuer) // the device authorization endpoint is no audience (attack18b findings)
	status, out := postForm(t, s.hc, da, withAssertion(url.Values{"client_id": {"tvjwt"}, "scope": {"openid"}}, a1), "")
	dc, uc := fmt.Sprint(out["device_code"]), fmt.Sprint(out["user_code"])
	if status != http.StatusOK || out["device_code"] == nil {
		t.Fatalf("device authorization with private_key_jwt: %d %v", status, out)
	}
	sent = append(sent, dc)
	if status, out := postForm(t, s.hc, da, withAssertion(url.Values{"client_id": {"tvjwt"}, "scope": {"openid"}}, a1), ""); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("the device authorization's assertion again: %d %v", status, out)
	}
	poll := func(a string) (int, map[string]any) {
		return postForm(t, s.hc, tok, withAssertion(url.Values{"grant_type": {grant}, "device_code": {dc}, "client_id": {"tvjwt"}}, a), "")
	}
	p1 := as(tok)
	if status, out := poll(p1); status != http.StatusBadRequest || out["error"] != "authorization_pending" {
		t.Fatalf("a poll: %d %v", status, out)
	}
	if status, out := poll(p1); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("a pending poll's assertion again: %d %v, want invalid_client", status, out)
	}
	// john's browser types the code; another browser (john too) answers with john's flow
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	resp, page := typeUserCode(t, john, uc)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("typing the code: %d %.300s", resp.StatusCode, page)
	}
	_, page = john.do(http.MethodGet, resp.Header.Get("Location"), nil)
	f := hiddenFields(page)
	other := newVisitor(t, s.portalSite, "")
	other.signIn("", "john", "pw-john")
	_, opage := other.do(http.MethodGet, s.url("auth", "/device"), nil)
	of := hiddenFields(opage)
	of.Set("flow", f.Get("flow"))
	of.Set("action", "approve")
	if resp, page := other.do(http.MethodPost, s.url("auth", "/device"), of); strings.Contains(page, "can now use your account") || resp.StatusCode >= 500 {
		t.Errorf("another browser approved john's flow: %d", resp.StatusCode)
	}
	if resp, page := other.do(http.MethodGet, s.url("auth", "/device?flow="+url.QueryEscape(f.Get("flow"))), nil); resp.StatusCode >= 500 || strings.Contains(page, `name="action" value="approve"`) {
		t.Errorf("another browser opened john's device flow page: %d %.300s", resp.StatusCode, page)
	}
	f.Set("action", "approve")
	if resp, page := john.do(http.MethodPost, s.url("auth", "/device"), f); !strings.Contains(page, "can now use your account") {
		t.Fatalf("john approving: %d %.300s", resp.StatusCode, page)
	}
	time.Sleep(5 * time.Second) // the interval
	// the approved code: without an assertion, with conf's secret: refused, and still redeemable
	if status, out := postForm(t, s.hc, tok, url.Values{"grant_type": {grant}, "device_code": {dc}, "client_id": {"tvjwt"}}, ""); status != http.StatusUnauthorized && status != http.StatusBadRequest || out["access_token"] != nil {
		t.Errorf("the device code without an assertion: %d %v", status, out)
	}
	if status, out := form(t, s.hc, tok, "conf", "conf-secret", url.Values{"grant_type": {grant}, "device_code": {dc}}); out["access_token"] != nil || status >= 500 {
		t.Errorf("the device code by another client: %d %v", status, out)
	}
	status, out = poll(as(tok))
	if status != http.StatusOK || out["access_token"] == nil {
		t.Fatalf("the approved device code with a fresh assertion: %d %v", status, out)
	}
	sent = append(sent, fmt.Sprint(out["access_token"]))
	if status, out := poll(as(tok)); out["access_token"] != nil || status >= 500 {
		t.Errorf("the device code twice: %d %v", status, out)
	}
	noSecretsInLog(t, s.s, sent...)
}
