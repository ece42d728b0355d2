package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// These tests drive the authorization endpoint, the portal's sign-in and consent forms and the
// token, userinfo and logout endpoints with plain HTTP clients, as a browser would (a cookie jar,
// the forms' hidden fields posted back), so they need no chromium and can look at every
// redirect on the way.

// visitor is a person's browser without a browser: an HTTP client with its own cookie jar that
// follows no redirect by itself, so every step can be checked.
type visitor struct {
	t   *testing.T
	p   *portalSite
	hc  *http.Client
	xff string // X-Forwarded-For on every request (the address Caddy sees), when set
}

func newVisitor(t *testing.T, p *portalSite, xff string) *visitor {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := p.client()
	hc.Jar = jar
	return &visitor{t: t, p: p, hc: hc, xff: xff}
}

// do sends a GET (form nil) or a form POST, as the portal's own page would, and returns the
// answer with its body read.
func (v *visitor) do(method, target string, form url.Values) (*http.Response, string) {
	v.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		v.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", v.p.url("auth", ""))
	}
	return v.send(req)
}

// send sends req from the visitor's address and returns the answer with its body read.
func (v *visitor) send(req *http.Request) (*http.Response, string) {
	v.t.Helper()
	if v.xff != "" {
		req.Header.Set("X-Forwarded-For", v.xff)
	}
	resp, err := v.hc.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// with is the visitor reporting to t (a subtest).
func (v *visitor) with(t *testing.T) *visitor {
	c := *v
	c.t = t
	return &c
}

// cookie is the value of the browser's cookie name for the portal.
func (v *visitor) cookie(name string) string {
	u, _ := url.Parse(v.p.url("auth", "/"))
	for _, c := range v.hc.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

var (
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	consentID   = regexp.MustCompile(`action="/settings/consents/withdraw"><input type="hidden" name="csrf" value="[^"]*"><input type="hidden" name="id" value="([^"]+)">`)
)

// hiddenFields are the hidden inputs of a page's (first) form, unescaped.
func hiddenFields(page string) url.Values {
	out := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		if name := html.UnescapeString(m[1]); !out.Has(name) {
			out.Set(name, html.UnescapeString(m[2]))
		}
	}
	return out
}

// signIn signs in at the portal's sign-in page signInURL (the bare page when ""), as its form
// would, and returns the answer to the form (303 to the return URL on success).
func (v *visitor) signIn(signInURL, user, password string) *http.Response {
	v.t.Helper()
	if signInURL == "" {
		signInURL = v.p.url("auth", "/")
	}
	resp, page := v.do(http.MethodGet, signInURL, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `name="password"`) {
		v.t.Fatalf("sign-in page %s: %d, Location %q: %.300s", signInURL, resp.StatusCode, resp.Header.Get("Location"), page)
	}
	f := hiddenFields(page)
	if f.Get("csrf") == "" {
		v.t.Fatalf("no CSRF field on the sign-in page: %.300s", page)
	}
	f.Set("username", user)
	f.Set("password", password)
	resp, page = v.do(http.MethodPost, v.p.url("auth", "/"), f)
	if resp.StatusCode != http.StatusSeeOther {
		v.t.Fatalf("signing in as %s: %d: %.300s", user, resp.StatusCode, page)
	}
	return resp
}

// signOut signs out at the portal's sign-out page, as its form would.
func (v *visitor) signOut() {
	v.t.Helper()
	resp, page := v.do(http.MethodGet, v.p.url("auth", "/logout"), nil)
	f := hiddenFields(page)
	if resp.StatusCode != http.StatusOK || f.Get("csrf") == "" {
		v.t.Fatalf("sign-out page: %d: %.300s", resp.StatusCode, page)
	}
	if resp, page = v.do(http.MethodPost, v.p.url("auth", "/logout"), f); resp.StatusCode != http.StatusSeeOther {
		v.t.Fatalf("signing out: %d: %.300s", resp.StatusCode, page)
	}
}

// step is where an authorization request stopped for the visitor.
type step struct {
	status int
	// location is the redirect that left the provider's pages (the application's redirect URI),
	// or, with signIn, the portal page the browser was sent to, as the header said.
	location string
	// signIn marks a redirect to the portal's sign-in or second-factor page (location).
	signIn bool
	// consent holds the consent form's fields when the answer is the consent page.
	consent url.Values
	// formPost holds a form_post answer's fields, and formPostTo its target.
	formPost   url.Values
	formPostTo string
	page       string
}

// callback is what the application's redirect URI got: the query, the fragment or the posted
// form.
func (s step) callback() url.Values {
	if s.formPost != nil {
		return s.formPost
	}
	u, err := url.Parse(s.location)
	if err != nil || s.location == "" {
		return url.Values{}
	}
	if u.Fragment != "" {
		f, _ := url.ParseQuery(u.Fragment)
		return f
	}
	return u.Query()
}

var pageError = regexp.MustCompile(`<p class="error"[^>]*>([^<]*)</p>`)

func (s step) String() string {
	page := s.page
	if m := pageError.FindStringSubmatch(page); m != nil {
		page = "page error: " + html.UnescapeString(m[1]) // the page's message says more than its head
	}
	return fmt.Sprintf("status %d, location %q, sign-in %v, consent %v, form_post %v: %.300s", s.status, s.location, s.signIn, s.consent != nil, s.formPost, page)
}

// follow reads an answer of the provider and follows its redirects inside the provider (the
// authorization endpoint resuming a saved request) until the request stops: at the application,
// at the sign-in or second-factor page, at the consent page, or at another page.
func (v *visitor) follow(resp *http.Response, page string) step {
	v.t.Helper()
	issuer, _ := url.Parse(v.p.url("auth", "/"))
	for range 10 {
		if resp.StatusCode < 300 || resp.StatusCode > 399 {
			s := step{status: resp.StatusCode, page: page}
			if strings.Contains(page, `action="/api/oidc/consent"`) {
				s.consent = hiddenFields(page)
			} else if m := formAction.FindStringSubmatch(page); m != nil && strings.Contains(page, "Signing you in") {
				s.formPostTo, s.formPost = html.UnescapeString(m[1]), hiddenFields(page)
			}
			return s
		}
		loc := resp.Header.Get("Location")
		u, err := resp.Request.URL.Parse(loc)
		if err != nil {
			v.t.Fatalf("Location %q: %v", loc, err)
		}
		if u.Host != issuer.Host {
			return step{status: resp.StatusCode, location: u.String()}
		}
		if u.Path == "/" || u.Path == "/2fa" {
			return step{status: resp.StatusCode, location: loc, signIn: true}
		}
		resp, page = v.do(http.MethodGet, u.String(), nil)
	}
	v.t.Fatal("more than ten redirects inside the provider")
	return step{}
}

// authorize opens an authorization URL.
func (v *visitor) authorize(target string) step {
	v.t.Helper()
	return v.follow(v.do(http.MethodGet, target, nil))
}

// signInAt signs in on the sign-in page the request was sent to and follows the request on.
func (v *visitor) signInAt(s step, user, password string) step {
	v.t.Helper()
	if !s.signIn {
		v.t.Fatalf("not at the sign-in page: %s", s)
	}
	u, _ := url.Parse(v.p.url("auth", "/"))
	target, _ := u.Parse(s.location)
	return v.follow(v.signIn(target.String(), user, password), "")
}

// answerConsent posts the consent form with decision (accept or deny), remembering it when
// remember is set.
func (v *visitor) answerConsent(s step, decision string, remember bool) step {
	v.t.Helper()
	if s.consent == nil {
		v.t.Fatalf("not at the consent page: %s", s)
	}
	f := url.Values{"csrf": {s.consent.Get("csrf")}, "flow": {s.consent.Get("flow")}, "decision": {decision}}
	if remember {
		f.Set("remember", "1")
	}
	return v.follow(v.do(http.MethodPost, v.p.url("auth", "/api/oidc/consent"), f))
}

// oidcSite is a portal site with applications registered, seen from the applications: their
// back channel (token and userinfo endpoints) and go-oidc's view of the provider.
type oidcSite struct {
	*portalSite
	issuer   string
	hc       *http.Client // the applications' back channel, without cookies
	ctx      context.Context
	provider *oidc.Provider
}

// startOIDCHTTPSite starts the portal site with more in the oidc block and discovers it.
func startOIDCHTTPSite(t *testing.T, more string) *oidcSite {
	t.Helper()
	p := startPortalSiteWith(t, more)
	s := &oidcSite{portalSite: p, issuer: p.url("auth", ""), hc: p.client()}
	s.ctx = oidc.ClientContext(context.Background(), s.hc)
	var err error
	if s.provider, err = oidc.NewProvider(s.ctx, s.issuer); err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return s
}

// with is the site reporting to t (a subtest).
func (s *oidcSite) with(t *testing.T) *oidcSite {
	c, p := *s, *s.portalSite
	p.t = t
	c.portalSite = &p
	return &c
}

// rpClient is a client block: a confidential client with the secret "<id>-secret", the redirect
// URI redirectURI(id), one_factor and implicit consent unless lines say otherwise.
func rpClient(id string, lines ...string) string {
	has := func(opt string) bool {
		return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, opt+" ") || l == opt })
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\t\tclient %s {\n", id)
	if !has("public") {
		fmt.Fprintf(&b, "\t\t\tsecret \"$plaintext$%s-secret\"\n", id)
	}
	if !has("redirect_uris") {
		fmt.Fprintf(&b, "\t\t\tredirect_uris %s\n", redirectURI(id))
	}
	if !has("authorization_policy") {
		b.WriteString("\t\t\tauthorization_policy one_factor\n")
	}
	if !has("consent_mode") {
		b.WriteString("\t\t\tconsent_mode implicit\n")
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "\t\t\t%s\n", l)
	}
	b.WriteString("\t\t}\n")
	return b.String()
}

func redirectURI(client string) string { return "https://app.example.test/cb/" + client }

// authRequest is an authorization request as an application sends it, and what it keeps to
// check the answer.
type authRequest struct {
	client, state, nonce, verifier string
	url                            string
}

// authURL builds an authorization request of client: the code flow with PKCE (S256), the
// scopes openid profile email groups, state and nonce; q adds or replaces parameters, and a
// parameter given as "" is left out.
func (s *oidcSite) authURL(client string, q url.Values) authRequest {
	a := authRequest{client: client, state: randomString(12), nonce: randomString(12), verifier: oauth2.GenerateVerifier()}
	v := url.Values{
		"client_id": {client}, "redirect_uri": {redirectURI(client)}, "response_type": {"code"},
		"scope": {"openid profile email groups"}, "state": {a.state}, "nonce": {a.nonce},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(a.verifier)}, "code_challenge_method": {"S256"},
	}
	for k, vals := range q {
		if len(vals) == 1 && vals[0] == "" {
			v.Del(k)
		} else {
			v[k] = vals
		}
	}
	a.url = s.issuer + "/api/oidc/authorization?" + v.Encode()
	return a
}

// exchange trades a code at the token endpoint: with client_secret_basic when secret is set,
// else as a public client.
func (s *oidcSite) exchange(client, secret, code, verifier string) (int, map[string]any) {
	s.t.Helper()
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI(client)}}
	if verifier != "" {
		v.Set("code_verifier", verifier)
	}
	if secret == "" {
		v.Set("client_id", client)
		return postForm(s.t, s.hc, s.issuer+"/api/oidc/token", v, "")
	}
	return form(s.t, s.hc, s.issuer+"/api/oidc/token", client, secret, v)
}

// signedIn is what an application got from a completed code flow.
type signedIn struct {
	params  url.Values
	tokens  map[string]any
	raw     string // the ID token
	idToken *oidc.IDToken
	claims  map[string]any
}

func (si signedIn) accessToken() string { s, _ := si.tokens["access_token"].(string); return s }

// codeFlow runs client's code flow for the visitor (signing in as john when sent to sign in,
// accepting consent when asked), exchanges the code and verifies the ID token against the
// JWKS with the algorithms algs (default RS256).
func (s *oidcSite) codeFlow(v *visitor, client string, q url.Values, algs ...string) signedIn {
	s.t.Helper()
	a := s.authURL(client, q)
	st := v.authorize(a.url)
	if st.signIn {
		st = v.signInAt(st, "john", "pw-john")
	}
	if st.consent != nil {
		st = v.answerConsent(st, "accept", false)
	}
	return s.finish(client, a, st, algs...)
}

// finish checks the callback of a, exchanges its code and verifies the ID token.
func (s *oidcSite) finish(client string, a authRequest, st step, algs ...string) signedIn {
	s.t.Helper()
	params := st.callback()
	if params.Get("code") == "" || params.Get("state") != a.state || params.Get("iss") != s.issuer {
		s.t.Fatalf("%s: the application's callback got %v (%s)", client, params, st)
	}
	status, tokens := s.exchange(client, client+"-secret", params.Get("code"), a.verifier)
	if status != http.StatusOK {
		s.t.Fatalf("%s: code exchange: %d %v", client, status, tokens)
	}
	raw, _ := tokens["id_token"].(string)
	idt, claims := s.verifyIDToken(client, raw, a.nonce, algs...)
	if at, _ := tokens["access_token"].(string); at != "" {
		if err := idt.VerifyAccessToken(at); err != nil {
			s.t.Errorf("%s: at_hash: %v", client, err)
		}
	}
	return signedIn{params: params, tokens: tokens, raw: raw, idToken: idt, claims: claims}
}

// verifyIDToken checks an ID token against the provider's JWKS, as go-oidc does.
func (s *oidcSite) verifyIDToken(client, raw, nonce string, algs ...string) (*oidc.IDToken, map[string]any) {
	s.t.Helper()
	if len(algs) == 0 {
		algs = []string{"RS256"}
	}
	idt, err := s.provider.Verifier(&oidc.Config{ClientID: client, SupportedSigningAlgs: algs}).Verify(s.ctx, raw)
	if err != nil {
		s.t.Fatalf("%s: the ID token does not verify: %v", client, err)
	}
	if idt.Nonce != nonce {
		s.t.Errorf("%s: ID token nonce %q, want %q", client, idt.Nonce, nonce)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		s.t.Fatal(err)
	}
	return idt, claims
}

// userinfo calls the userinfo endpoint with an access token; the answer's body is returned
// raw with its content type.
func (s *oidcSite) userinfo(token string) (int, string, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.issuer+"/api/oidc/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// userinfoClaims calls userinfo and decodes a JSON answer.
func (s *oidcSite) userinfoClaims(token string) map[string]any {
	s.t.Helper()
	status, ct, body := s.userinfo(token)
	var out map[string]any
	if status != http.StatusOK || !strings.HasPrefix(ct, "application/json") || json.Unmarshal(body, &out) != nil {
		s.t.Fatalf("userinfo: %d %s %.300s", status, ct, body)
	}
	return out
}

// jwtHeader decodes a compact JWS's header.
func jwtHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	part, _, _ := strings.Cut(raw, ".")
	data, err := base64.RawURLEncoding.DecodeString(part)
	var h map[string]any
	if err != nil || json.Unmarshal(data, &h) != nil {
		t.Fatalf("not a JWT: %.60s", raw)
	}
	return h
}

// writeECKey writes a P-256 key in SEC 1 PEM and returns its path.
func writeECKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "es256.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ID tokens signed with ES256 and PS256 keys as the clients ask, a signed userinfo answer,
// pairwise subjects per sector that stay put across sign-ins, and a claims policy that keeps
// the ID token minimal while userinfo still answers every granted claim.
func TestIDTokenSigningSubjectsAndClaimsWithoutBrowser(t *testing.T) {
	rs, es, ps := writeRSAKey(t), writeECKey(t), writeRSAKey(t)
	s := startOIDCHTTPSite(t, fmt.Sprintf(`
		signing_key main-rs256 {
			algorithm RS256
			key_file %s
		}
		signing_key main-es256 {
			algorithm ES256
			key_file %s
		}
		signing_key main-ps256 {
			algorithm PS256
			key_file %s
		}
		claims_policy minimal {
			id_token preferred_username
		}
`, rs, es, ps)+
		rpClient("es-app", "id_token_signed_response_alg ES256", "scopes openid profile email groups offline_access",
			"grant_types authorization_code refresh_token")+
		rpClient("ps-app", "id_token_signed_response_alg PS256")+
		rpClient("jwt-userinfo", "userinfo_signed_response_alg RS256")+
		rpClient("sector-a1", "sector_identifier_uri https://sector-a.example.test/")+
		rpClient("sector-a2", "sector_identifier_uri https://sector-a.example.test/")+
		rpClient("sector-b", "sector_identifier_uri https://sector-b.example.test/")+
		rpClient("minimal", "claims_policy minimal"))
	v := newVisitor(t, s.portalSite, "")

	t.Run("signing algorithms", func(t *testing.T) {
		s := s.with(t)
		v := v.with(t)
		for _, c := range []struct{ client, alg, kid string }{
			{"es-app", "ES256", "main-es256"}, {"ps-app", "PS256", "main-ps256"}, {"jwt-userinfo", "RS256", "main-rs256"},
		} {
			si := s.codeFlow(v, c.client, nil, c.alg)
			if h := jwtHeader(t, si.raw); h["alg"] != c.alg || h["kid"] != c.kid {
				t.Errorf("%s: ID token header %v, want alg %s and kid %s", c.client, h, c.alg, c.kid)
			}
			// the token does not verify as any other algorithm
			if _, err := s.provider.Verifier(&oidc.Config{ClientID: c.client, SupportedSigningAlgs: []string{"RS512"}}).Verify(s.ctx, si.raw); err == nil {
				t.Errorf("%s: an %s ID token verified as RS512", c.client, c.alg)
			}
		}
		// the ID token of a refresh is signed as the first one was
		si := s.codeFlow(v, "es-app", url.Values{"scope": {"openid profile offline_access"}}, "ES256")
		rt, _ := si.tokens["refresh_token"].(string)
		status, out := form(t, s.hc, s.issuer+"/api/oidc/token", "es-app", "es-app-secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		raw, _ := out["id_token"].(string)
		if status != http.StatusOK || raw == "" {
			t.Fatalf("refresh of an ES256 client: %d %v", status, out)
		}
		if h := jwtHeader(t, raw); h["alg"] != "ES256" || h["kid"] != "main-es256" {
			t.Errorf("refreshed ID token header %v", h)
		}
		// OpenID Connect Core §12.2: the same sub, aud, azp and auth_time, and no nonce
		if idt, c := s.verifyIDToken("es-app", raw, "", "ES256"); idt.Subject != si.idToken.Subject || c["auth_time"] != si.claims["auth_time"] || c["azp"] != "es-app" {
			t.Errorf("refreshed ID token %v, first %v", c, si.claims)
		}
	})

	t.Run("signed userinfo", func(t *testing.T) {
		s := s.with(t)
		v := v.with(t)
		si := s.codeFlow(v, "jwt-userinfo", nil)
		status, ct, body := s.userinfo(si.accessToken())
		if status != http.StatusOK || !strings.HasPrefix(ct, "application/jwt") {
			t.Fatalf("signed userinfo: %d %q %.200s", status, ct, body)
		}
		if h := jwtHeader(t, string(body)); h["alg"] != "RS256" || h["kid"] != "main-rs256" {
			t.Errorf("userinfo JWT header %v", h)
		}
		// iss and aud are checked by the verifier; a userinfo JWT need not expire
		ui, err := s.provider.Verifier(&oidc.Config{ClientID: "jwt-userinfo", SkipExpiryCheck: true}).Verify(s.ctx, string(body))
		if err != nil {
			t.Fatalf("the userinfo JWT does not verify against the JWKS: %v", err)
		}
		var c map[string]any
		_ = ui.Claims(&c)
		if c["iss"] != s.issuer || !slices.Equal(asStrings(c["aud"]), []string{"jwt-userinfo"}) || c["sub"] != si.idToken.Subject ||
			c["email"] != "john@example.test" || c["preferred_username"] != "john" {
			t.Errorf("userinfo JWT claims: %v", c)
		}
		// go-oidc's own userinfo call takes the signed answer too
		if info, err := s.provider.UserInfo(s.ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: si.accessToken()})); err != nil || info.Subject != si.idToken.Subject {
			t.Errorf("go-oidc UserInfo on a signed answer: %v", err)
		}
		// other clients still get JSON
		if got := s.userinfoClaims(s.codeFlow(v, "es-app", nil, "ES256").accessToken()); got["sub"] == nil {
			t.Errorf("plain userinfo: %v", got)
		}
	})

	t.Run("pairwise subjects", func(t *testing.T) {
		s := s.with(t)
		v := v.with(t)
		clientsBySector := []string{"sector-a1", "sector-a2", "sector-b", "es-app"}
		subs := func(v *visitor) map[string]string {
			out := map[string]string{}
			for _, c := range clientsBySector {
				algs := []string{"RS256"}
				if c == "es-app" {
					algs = []string{"ES256"}
				}
				si := s.codeFlow(v, c, nil, algs...)
				out[c] = si.idToken.Subject
				if ui := s.userinfoClaims(si.accessToken()); ui["sub"] != out[c] {
					t.Errorf("%s: userinfo sub %v, ID token sub %s", c, ui["sub"], out[c])
				}
			}
			return out
		}
		first := subs(v)
		if first["sector-a1"] == "" || first["sector-a1"] != first["sector-a2"] {
			t.Errorf("two clients of one sector see different subjects: %v", first)
		}
		if first["sector-b"] == first["sector-a1"] || first["es-app"] == first["sector-a1"] || first["es-app"] == first["sector-b"] {
			t.Errorf("clients of different sectors (or none) share a subject: %v", first)
		}
		// a second sign-in, from another browser, sees the same subjects
		again := subs(newVisitor(t, s.portalSite, ""))
		for _, c := range clientsBySector {
			if again[c] != first[c] {
				t.Errorf("%s: sub %s at the second sign-in, %s at the first", c, again[c], first[c])
			}
		}
	})

	t.Run("claims policy", func(t *testing.T) {
		s := s.with(t)
		v := v.with(t)
		si := s.codeFlow(v, "minimal", nil)
		if si.claims["preferred_username"] != "john" {
			t.Errorf("the claims policy's claim is missing: %v", si.claims)
		}
		for _, k := range []string{"email", "email_verified", "groups", "name"} {
			if _, ok := si.claims[k]; ok {
				t.Errorf("the ID token of a minimal claims policy carries %s: %v", k, si.claims)
			}
		}
		ui := s.userinfoClaims(si.accessToken())
		if ui["email"] != "john@example.test" || ui["name"] != "John Doe" || !slices.Equal(asStrings(ui["groups"]), []string{"dev", "admins"}) {
			t.Errorf("userinfo under a minimal claims policy: %v", ui)
		}
		// without the email scope, userinfo has no email either
		si = s.codeFlow(v, "minimal", url.Values{"scope": {"openid profile"}})
		if ui := s.userinfoClaims(si.accessToken()); ui["email"] != nil || ui["groups"] != nil || ui["name"] != "John Doe" {
			t.Errorf("userinfo for the scopes openid profile: %v", ui)
		}
	})

	t.Run("logout with an id_token_hint", func(t *testing.T) {
		s := s.with(t)
		// an ES256 ID token, and a pairwise one, name the signed-in user: signed out at once
		for _, c := range []struct{ client, alg string }{{"es-app", "ES256"}, {"sector-b", "RS256"}} {
			v := newVisitor(t, s.portalSite, "")
			si := s.codeFlow(v, c.client, nil, c.alg)
			session := v.cookie("portcullis_session")
			resp, page := v.do(http.MethodGet, s.issuer+"/api/oidc/logout?"+url.Values{"id_token_hint": {si.raw}}.Encode(), nil)
			if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "notice=signed-out") {
				t.Errorf("%s: logout with its ID token as hint: %d %q: %.200s", c.client, resp.StatusCode, resp.Header.Get("Location"), page)
			}
			if resp := getWithCookie(t, s.hc, s.url("secure", "/"), session); resp.StatusCode != http.StatusFound {
				t.Errorf("%s: the session after logout with a hint: %d, want 302", c.client, resp.StatusCode)
			}
		}
		// a forged hint is refused; a hint from another browser still names john (by his
		// subject in that client's sector)
		other := newVisitor(t, s.portalSite, "")
		hint := s.codeFlow(other, "sector-a1", nil).raw
		v := newVisitor(t, s.portalSite, "")
		v.signIn("", "john", "pw-john")
		forged := strings.Split(hint, ".")
		if resp, _ := v.do(http.MethodGet, s.issuer+"/api/oidc/logout?"+url.Values{"id_token_hint": {forged[0] + "." + forged[1] + ".AAAA"}}.Encode(), nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a hint with a bad signature: %d, want 400", resp.StatusCode)
		}
		if resp, _ := v.do(http.MethodGet, s.issuer+"/api/oidc/logout?"+url.Values{"id_token_hint": {hint}}.Encode(), nil); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("john's own hint from another browser: %d, want 303", resp.StatusCode)
		}
	})
}

// Public clients and PKCE, prompt=login and max_age, prompt=consent with a remembered consent,
// withdrawing a consent, the hybrid flow in the fragment, a response type the client did not
// register, and RP-initiated logout confirmed on a page.
func TestAuthorizationFlowsWithoutBrowser(t *testing.T) {
	s := startOIDCHTTPSite(t, "\t\tclient spa {\n\t\t\tpublic\n\t\t\ttoken_endpoint_auth_method none\n\t\t\tscopes openid profile\n"+
		"\t\t\tredirect_uris "+redirectURI("spa")+"\n\t\t\tauthorization_policy one_factor\n\t\t\tconsent_mode implicit\n\t\t}\n"+
		rpClient("app", "name \"Example App\"", "post_logout_redirect_uris https://app.example.test/bye")+
		rpClient("remembered", "name \"Remembered App\"", "consent_mode pre-configured", "pre_configured_consent_duration 1w")+
		rpClient("hybrid", `response_types "code id_token" code`, "grant_types authorization_code implicit"))
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")

	t.Run("public client and PKCE", func(t *testing.T) {
		s := s.with(t)
		john := john.with(t)
		// without a code_challenge: refused at the application's redirect URI, with iss
		a := s.authURL("spa", url.Values{"code_challenge": {""}, "code_challenge_method": {""}, "scope": {"openid profile"}})
		st := john.authorize(a.url)
		cb := st.callback()
		if !strings.HasPrefix(st.location, redirectURI("spa")+"?") || cb.Get("error") != "invalid_request" || cb.Get("iss") != s.issuer || cb.Get("state") != a.state || cb.Get("code") != "" {
			t.Errorf("a public client without PKCE: %s", st)
		}
		// with S256: a code, which the wrong verifier cannot redeem...
		a = s.authURL("spa", url.Values{"scope": {"openid profile"}})
		cb = john.authorize(a.url).callback()
		if cb.Get("code") == "" {
			t.Fatalf("a public client with PKCE: %v", cb)
		}
		if status, out := s.exchange("spa", "", cb.Get("code"), oauth2.GenerateVerifier()); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("the wrong code_verifier: %d %v, want invalid_grant", status, out)
		}
		// ...nor no verifier, and the right one does
		a = s.authURL("spa", url.Values{"scope": {"openid profile"}})
		cb = john.authorize(a.url).callback()
		if status, out := s.exchange("spa", "", cb.Get("code"), ""); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("no code_verifier: %d %v, want invalid_grant", status, out)
		}
		a = s.authURL("spa", url.Values{"scope": {"openid profile"}})
		cb = john.authorize(a.url).callback()
		status, out := s.exchange("spa", "", cb.Get("code"), a.verifier)
		if status != http.StatusOK || out["access_token"] == nil {
			t.Fatalf("the right code_verifier: %d %v", status, out)
		}
		s.verifyIDToken("spa", out["id_token"].(string), a.nonce)
		// a public client authenticates with none: a secret in Basic credentials is refused
		a = s.authURL("spa", url.Values{"scope": {"openid profile"}})
		cb = john.authorize(a.url).callback()
		if status, out := form(t, s.hc, s.issuer+"/api/oidc/token", "spa", "anything", url.Values{"grant_type": {"authorization_code"},
			"code": {cb.Get("code")}, "redirect_uri": {redirectURI("spa")}, "code_verifier": {a.verifier}}); status == http.StatusOK {
			t.Errorf("a public client with client_secret_basic: %d %v", status, out)
		}
	})

	t.Run("prompt=login and max_age", func(t *testing.T) {
		s := s.with(t)
		john := john.with(t)
		first := s.codeFlow(john, "app", nil)
		for _, q := range []url.Values{{"prompt": {"login"}}, {"max_age": {"0"}}} {
			time.Sleep(1100 * time.Millisecond) // auth_time counts seconds
			a := s.authURL("app", q)
			st := john.authorize(a.url)
			if !st.signIn || !strings.HasPrefix(st.location, "/?rd=") || !strings.HasSuffix(st.location, "&prompt=login") {
				t.Fatalf("%v with a live session: %s, want the sign-in page", q, st)
			}
			// the sign-in page asks even though the browser is signed in
			st = john.signInAt(st, "john", "pw-john")
			si := s.finish("app", a, st)
			if at, prev := si.claims["auth_time"].(float64), first.claims["auth_time"].(float64); at <= prev {
				t.Errorf("%v: auth_time %v, not after the previous sign-in's %v", q, si.claims["auth_time"], first.claims["auth_time"])
			}
			first = si
			// a later request without the parameter goes straight through
			if st := john.authorize(s.authURL("app", nil).url); st.callback().Get("code") == "" {
				t.Errorf("after signing in again: %s", st)
			}
		}
	})

	t.Run("prompt=consent and a remembered consent", func(t *testing.T) {
		s := s.with(t)
		john := john.with(t)
		st := john.authorize(s.authURL("remembered", nil).url)
		if st.consent == nil || !strings.Contains(st.page, "Remember this for 1 week") {
			t.Fatalf("first sign-in to a pre-configured client: %s", st)
		}
		if cb := john.answerConsent(st, "accept", true).callback(); cb.Get("code") == "" {
			t.Fatalf("consent accepted: %v", cb)
		}
		if st := john.authorize(s.authURL("remembered", nil).url); st.callback().Get("code") == "" {
			t.Fatalf("a remembered consent asked again: %s", st)
		}
		st = john.authorize(s.authURL("remembered", url.Values{"prompt": {"consent"}}).url)
		if st.consent == nil {
			t.Fatalf("prompt=consent with a remembered consent: %s, want the consent page", st)
		}
		if cb := john.answerConsent(st, "deny", false).callback(); cb.Get("error") != "access_denied" {
			t.Errorf("consent denied: %v", cb)
		}
		// denying a prompt=consent does not forget the remembered consent
		if st := john.authorize(s.authURL("remembered", nil).url); st.callback().Get("code") == "" {
			t.Errorf("after a denied prompt=consent: %s", st)
		}
		_, page := john.do(http.MethodGet, s.url("auth", "/settings"), nil)
		if m := consentID.FindStringSubmatch(page); m == nil || !strings.Contains(page, "Remembered App") {
			t.Fatalf("the signed-in page lists no remembered consent: %.1000s", page)
		}
	})

	t.Run("withdrawing a consent", func(t *testing.T) {
		s := s.with(t)
		john := john.with(t)
		// a remembered consent of john's, made here when the subtest above has not made it
		if st := john.authorize(s.authURL("remembered", nil).url); st.consent != nil {
			if cb := john.answerConsent(st, "accept", true).callback(); cb.Get("code") == "" {
				t.Fatalf("consent accepted: %v", cb)
			}
		} else if cb := st.callback(); cb.Get("code") == "" {
			t.Fatalf("a client with a remembered consent: %s", st)
		}
		_, page := john.do(http.MethodGet, s.url("auth", "/settings"), nil)
		m := consentID.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("the signed-in page lists no remembered consent: %.1000s", page)
		}
		johnConsent := html.UnescapeString(m[1])
		// jane, another user, cannot withdraw john's consent
		usersFile(t, s.users, map[string]string{
			"john": "    displayname: John Doe\n    email: john@example.test\n    groups: [dev, admins]\n",
			"jane": "    displayname: Jane Roe\n    email: jane@example.test\n    groups: [dev]\n",
		})
		waitLog(t, s.s, `"users file reloaded"`, `"users":2`)
		jane := newVisitor(t, s.portalSite, "")
		jane.signIn("", "jane", "pw-jane")
		resp, page := jane.do(http.MethodGet, s.url("auth", "/settings"), nil)
		if resp.StatusCode != http.StatusOK || consentID.MatchString(page) {
			t.Fatalf("jane's signed-in page: %d: %.300s", resp.StatusCode, page)
		}
		f := hiddenFields(page)
		if resp, _ := jane.do(http.MethodPost, s.url("auth", "/settings/consents/withdraw"), url.Values{"csrf": {f.Get("csrf")}, "id": {johnConsent}}); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("jane's withdrawal: %d", resp.StatusCode)
		}
		if st := john.authorize(s.authURL("remembered", nil).url); st.callback().Get("code") == "" {
			t.Fatalf("another user withdrew john's consent: %s", st)
		}
		// a withdrawal without its CSRF token does nothing either
		if resp, _ := john.do(http.MethodPost, s.url("auth", "/settings/consents/withdraw"), url.Values{"id": {johnConsent}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("a withdrawal without CSRF token: %d", resp.StatusCode)
		}
		// john withdraws it: the application asks again
		_, page = john.do(http.MethodGet, s.url("auth", "/settings"), nil)
		f = hiddenFields(page)
		resp, _ = john.do(http.MethodPost, s.url("auth", "/settings/consents/withdraw"), url.Values{"csrf": {f.Get("csrf")}, "id": {johnConsent}})
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "consent-withdrawn") {
			t.Errorf("john's withdrawal: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if st := john.authorize(s.authURL("remembered", nil).url); st.consent == nil {
			t.Errorf("after withdrawing the consent: %s, want the consent page", st)
		}
		if _, page := john.do(http.MethodGet, s.url("auth", "/settings"), nil); consentID.MatchString(page) {
			t.Errorf("the withdrawn consent is still listed")
		}
	})

	t.Run("hybrid flow and response types", func(t *testing.T) {
		s := s.with(t)
		john := john.with(t)
		a := s.authURL("hybrid", url.Values{"response_type": {"code id_token"}, "response_mode": {"fragment"}})
		st := john.authorize(a.url)
		u, _ := url.Parse(st.location)
		frag, _ := url.ParseQuery(u.Fragment)
		if !strings.HasPrefix(st.location, redirectURI("hybrid")+"#") || u.RawQuery != "" || frag.Get("code") == "" || frag.Get("id_token") == "" ||
			frag.Get("state") != a.state || frag.Get("iss") != s.issuer {
			t.Fatalf("code id_token in the fragment: %s", st)
		}
		_, claims := s.verifyIDToken("hybrid", frag.Get("id_token"), a.nonce)
		sum := sha256.Sum256([]byte(frag.Get("code")))
		if claims["c_hash"] != base64.RawURLEncoding.EncodeToString(sum[:16]) {
			t.Errorf("c_hash %v does not match the code", claims["c_hash"])
		}
		if status, out := s.exchange("hybrid", "hybrid-secret", frag.Get("code"), a.verifier); status != http.StatusOK || out["id_token"] == nil {
			t.Errorf("the hybrid flow's code: %d %v", status, out)
		}
		// the same client's plain code flow still works
		s.codeFlow(john, "hybrid", nil)
		// query cannot carry an ID token
		a = s.authURL("hybrid", url.Values{"response_type": {"code id_token"}, "response_mode": {"query"}})
		st = john.authorize(a.url)
		if cb := st.callback(); cb.Get("error") == "" || cb.Get("id_token") != "" || cb.Get("code") != "" || strings.Contains(st.location, "id_token=") {
			t.Errorf("code id_token in the query: %s", st)
		}
		// a client registered for code only may not ask for an ID token from the authorization endpoint
		a = s.authURL("app", url.Values{"response_type": {"id_token"}, "code_challenge": {""}, "code_challenge_method": {""}})
		st = john.authorize(a.url)
		if cb := st.callback(); cb.Get("error") != "unsupported_response_type" || cb.Get("id_token") != "" || cb.Get("state") != a.state || !strings.HasPrefix(st.location, redirectURI("app")) {
			t.Errorf("response_type id_token for a code client: %s", st)
		}
	})

	t.Run("RP-initiated logout without id_token_hint", func(t *testing.T) {
		s := s.with(t)
		john := john.with(t)
		session := john.cookie("portcullis_session")
		if session == "" {
			t.Fatal("john has no session")
		}
		logout := s.issuer + "/api/oidc/logout?" + url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {"https://app.example.test/bye"}, "state": {"st-42"}}.Encode()
		resp, page := john.do(http.MethodGet, logout, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" || !strings.Contains(page, "Example App") {
			t.Fatalf("a logout request without id_token_hint: %d %q: %.300s", resp.StatusCode, resp.Header.Get("Location"), page)
		}
		f := hiddenFields(page)
		m := formAction.FindStringSubmatch(page)
		if m == nil || html.UnescapeString(m[1]) != s.issuer+"/api/oidc/logout" || f.Get("csrf") == "" || f.Get("state") != "st-42" {
			t.Fatalf("the confirmation form: %v %v", m, f)
		}
		// without its CSRF token the form signs no one out
		forged := url.Values{}
		for k, v := range f {
			if k != "csrf" {
				forged[k] = v
			}
		}
		if resp, _ := john.do(http.MethodPost, s.issuer+"/api/oidc/logout", forged); resp.StatusCode == http.StatusSeeOther {
			t.Errorf("a confirmation without CSRF token redirected to %q", resp.Header.Get("Location"))
		}
		if resp := getWithCookie(t, s.hc, s.url("secure", "/"), session); resp.StatusCode != http.StatusOK {
			t.Fatalf("after a forged confirmation the session is gone: %d", resp.StatusCode)
		}
		resp, _ = john.do(http.MethodPost, s.issuer+"/api/oidc/logout", f)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "https://app.example.test/bye?state=st-42" {
			t.Fatalf("confirmed logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp := getWithCookie(t, s.hc, s.url("secure", "/"), session); resp.StatusCode != http.StatusFound {
			t.Errorf("the signed-out session at the gateway: %d, want 302", resp.StatusCode)
		}
		if st := john.authorize(s.authURL("app", url.Values{"prompt": {"none"}}).url); st.callback().Get("error") != "login_required" {
			t.Errorf("prompt=none after the logout: %s", st)
		}
	})
}

// waitLog waits until the server's log has a line with every one of parts.
func waitLog(t *testing.T, s *server, parts ...string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, line := range strings.Split(s.log.String(), "\n") {
			if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
				return
			}
		}
	}
	t.Fatalf("no log line with %q", parts)
}

// A user's access token for the gateway, obtained through a pushed code flow with consent,
// reaches the protected site as john; a token without the gateway scope does not; signing out
// at the portal ends it. Clients' named authorization policies deny by group and by network.
func TestUserTokensAtTheGatewayAndClientPoliciesWithoutBrowser(t *testing.T) {
	s := startOIDCHTTPSite(t, `
		authorization_policy no-admins {
			default_policy one_factor
			rule {
				subject group:admins
				policy deny
			}
		}
		authorization_policy office {
			default_policy deny
			rule {
				networks 10.0.0.0/8
				policy one_factor
			}
		}
`+rpClient("gw-app", "scopes authelia.bearer.authz offline_access", "grant_types authorization_code refresh_token",
		"audience https://secure.example.test:{portal_port}/ https://admin.example.test:{portal_port}/",
		"require_pushed_authorization_requests", "pkce_challenge_method S256", "consent_mode explicit")+
		rpClient("app", "scopes openid profile groups", "audience https://secure.example.test:{portal_port}/", "requested_audience_mode implicit")+
		rpClient("no-admins", "authorization_policy no-admins")+
		rpClient("office", "authorization_policy office"))
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")

	t.Run("gateway token", func(t *testing.T) {
		s := s.with(t)
		john := john.with(t)
		secure, admin := s.url("secure", "/"), s.url("admin", "/")
		verifier, state := oauth2.GenerateVerifier(), randomString(12)
		// the client must push its request
		a := s.authURL("gw-app", url.Values{"scope": {"authelia.bearer.authz"}, "audience": {secure}, "response_mode": {"form_post"}})
		if st := john.authorize(a.url); st.callback().Get("error") != "invalid_request" {
			t.Errorf("gw-app without PAR: %s", st)
		}
		status, out := form(t, s.hc, s.issuer+"/api/oidc/pushed-authorization-request", "gw-app", "gw-app-secret", url.Values{
			"response_type": {"code"}, "client_id": {"gw-app"}, "redirect_uri": {redirectURI("gw-app")},
			"scope": {"authelia.bearer.authz"}, "audience": {secure}, "state": {state}, "response_mode": {"form_post"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		})
		uri, _ := out["request_uri"].(string)
		if status != http.StatusCreated || uri == "" {
			t.Fatalf("pushed authorization request: %d %v", status, out)
		}
		st := john.authorize(s.issuer + "/api/oidc/authorization?" + url.Values{"client_id": {"gw-app"}, "request_uri": {uri}}.Encode())
		if st.consent == nil || !strings.Contains(st.page, "Call the sites this gateway protects as you") || !strings.Contains(st.page, secure) {
			t.Fatalf("the gateway scope without the consent page: %s", st)
		}
		st = john.answerConsent(st, "accept", true)
		cb := st.callback()
		if st.formPost == nil || st.formPostTo != redirectURI("gw-app") || cb.Get("code") == "" || cb.Get("state") != state || cb.Get("iss") != s.issuer {
			t.Fatalf("the gateway client's form_post answer: %s", st)
		}
		status, tokens := s.exchange("gw-app", "gw-app-secret", cb.Get("code"), verifier)
		token, _ := tokens["access_token"].(string)
		if status != http.StatusOK || token == "" || tokens["scope"] != "authelia.bearer.authz" {
			t.Fatalf("the gateway token: %d %v", status, tokens)
		}
		rec := bearerCall(t, s.hc, secure+"api/items", token, http.StatusOK)
		hdr, _ := rec["headers"].(map[string]any)
		for k, want := range map[string]string{"Remote-User": "john", "Remote-Groups": "dev,admins", "Remote-Email": "john@example.test"} {
			if got := asStrings(hdr[k]); len(got) != 1 || got[0] != want {
				t.Errorf("upstream %s = %v, want %q", k, hdr[k], want)
			}
		}
		// admin asks two factors of admins: a password-only token is not enough (and its
		// audience was not asked for)
		if resp := bearerResponse(t, s.hc, admin, token); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a one-factor token at the two_factor site: %d", resp.StatusCode)
		}
		// a token of a client without the gateway scope is refused
		plain := s.codeFlow(john, "app", url.Values{"scope": {"openid profile groups"}})
		if resp := bearerResponse(t, s.hc, secure, plain.accessToken()); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("a token without the gateway scope: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		// signing in again in the same browser (as prompt=login has one do) replaces the session:
		// what the replaced session authorized must not outlive the sign-out that follows
		john.signIn(s.url("auth", "/?prompt=login"), "john", "pw-john")
		// signing out at the portal ends both tokens issued through the session
		john.signOut()
		if resp := bearerResponse(t, s.hc, secure, token); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("the gateway token after signing out: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if status, _, body := s.userinfo(plain.accessToken()); status != http.StatusUnauthorized {
			t.Errorf("userinfo with a token of the signed-out session: %d %s", status, body)
		}
		// a code issued before the sign-out and not yet redeemed is dead as well
		john.signIn("", "john", "pw-john")
		a = s.authURL("app", url.Values{"scope": {"openid profile"}})
		cb = john.authorize(a.url).callback()
		john.signOut()
		if status, out := s.exchange("app", "app-secret", cb.Get("code"), a.verifier); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("a code of a signed-out session: %d %v", status, out)
		}
		// the operator ending john's sessions (caddy oidc sessions end) ends their tokens too
		john.signIn("", "john", "pw-john")
		cut := s.codeFlow(john, "app", url.Values{"scope": {"openid profile"}})
		if status, _, body := s.userinfo(cut.accessToken()); status != http.StatusOK {
			t.Fatalf("userinfo before the operator ends the sessions: %d %s", status, body)
		}
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/oidc/sessions/end", s.admin), strings.NewReader(`{"user":"john"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("sessions end: %d", resp.StatusCode)
		}
		if status, _, body := s.userinfo(cut.accessToken()); status != http.StatusUnauthorized {
			t.Errorf("userinfo after the operator ended the sessions: %d %s", status, body)
		}
	})

	t.Run("authorization policies", func(t *testing.T) {
		s := s.with(t)
		v := newVisitor(t, s.portalSite, "")
		a := s.authURL("no-admins", nil)
		st := v.signInAt(v.authorize(a.url), "john", "pw-john")
		if cb := st.callback(); cb.Get("error") != "access_denied" || cb.Get("state") != a.state || cb.Get("iss") != s.issuer || !strings.HasPrefix(st.location, redirectURI("no-admins")) {
			t.Errorf("an admin at a client whose policy denies admins: %s", st)
		}
		// the office network may sign in, another address may not
		office := newVisitor(t, s.portalSite, "10.1.2.3")
		s.codeFlow(office, "office", nil)
		outside := newVisitor(t, s.portalSite, "192.0.2.44")
		a = s.authURL("office", nil)
		st = outside.signInAt(outside.authorize(a.url), "john", "pw-john")
		if cb := st.callback(); cb.Get("error") != "access_denied" || cb.Get("state") != a.state {
			t.Errorf("john outside the office network: %s", st)
		}
		// the same browser session may still use a client whose policy lets it in
		s.codeFlow(outside, "app", url.Values{"scope": {"openid"}})
	})
}

// bearerGet calls target with a Bearer token, as a script would, and returns the response with
// its body read.
func bearerGet(t *testing.T, hc *http.Client, target, token string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// bearerResponse calls target with a Bearer token, as a script would.
func bearerResponse(t *testing.T, hc *http.Client, target, token string) *http.Response {
	t.Helper()
	resp, _ := bearerGet(t, hc, target, token)
	return resp
}

// bearerCall calls target with a Bearer token and decodes the recorder's answer.
func bearerCall(t *testing.T, hc *http.Client, target, token string, want int) map[string]any {
	t.Helper()
	resp, body := bearerGet(t, hc, target, token)
	if resp.StatusCode != want {
		t.Fatalf("%s with a Bearer token: %d %q %.300s", target, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	var rec map[string]any
	_ = json.Unmarshal(body, &rec)
	return rec
}

// The authorization endpoint reads the session cookies by the gate's rule: a cookie of the name
// that speaks for no one, sent before the live session (a sibling site can plant one with a
// longer path), does not hide the person, who gets a code rather than the sign-in page.
func TestAuthorizationReadsEverySessionCookie(t *testing.T) {
	s := startOIDCHTTPSite(t, rpClient("app"))
	john := newVisitor(t, s.portalSite, "")
	john.signIn("", "john", "pw-john")
	sid := john.cookie("portcullis_session")
	a := s.authURL("app", nil)
	req, _ := http.NewRequest(http.MethodGet, a.url, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Cookie", "portcullis_session="+strings.Repeat("A", 43)+"; portcullis_session="+sid)
	hc := s.portalSite.client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), redirectURI("app")+"?") || loc.Query().Get("code") == "" {
		t.Fatalf("a junk session cookie before john's: %d, Location %q; want a code at the application", resp.StatusCode, loc)
	}
}
