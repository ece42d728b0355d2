package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
)

// introspectAs posts an introspection request as client with the Accept header accept (none
// when "") and returns the raw answer.
func (f *flowProvider) introspectAs(client, token, accept string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodPost, PathIntrospection, strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	r.SetBasicAuth(client, client+"-secret")
	w := httptest.NewRecorder()
	f.p.ServeIntrospection(w, r)
	return w
}

// verifyIntrospection checks a signed introspection answer against the provider's JWKS with
// go-jose, as a resource server would, and returns its claims.
func verifyIntrospection(t *testing.T, ks []*keys.Key, raw string) map[string]any {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatalf("not a JWS: %v", err)
	}
	if typ := tok.Headers[0].ExtraHeaders[jose.HeaderType]; typ != "token-introspection+jwt" {
		t.Errorf("typ %v, want token-introspection+jwt", typ)
	}
	set := keys.JWKS(ks)
	found := set.Key(tok.Headers[0].KeyID)
	if len(found) != 1 {
		t.Fatalf("kid %q is not in the JWKS", tok.Headers[0].KeyID)
	}
	var claims map[string]any
	if err := tok.Claims(found[0].Public().Key, &claims); err != nil {
		t.Fatalf("the signature does not verify: %v", err)
	}
	return claims
}

// A client with introspection_signed_response_alg gets a JWT (RFC 9701) whose token_introspection
// is the JSON answer; a client without it gets JSON unless it asks with Accept; the JWT fails
// against another key; an inactive token's answer is signed too.
func TestSignedIntrospection(t *testing.T) {
	ks := testKeys(t, "RS256", "ES256")
	ks[1].ID = "ec-key"
	f := newFlowProvider(t)
	f.p.signer.keys, f.p.cfg.Keys = ks, ks
	rs, err := clients.NewFor(clients.Config{ID: "rs", Secret: "$plaintext$rs-secret", GrantTypes: []string{clients.GrantClientCredentials},
		ResourceServerFor: []string{"app"}, IntrospectionSignedResponseAlg: "ES256"}, clients.Lifespans{},
		clients.ProviderSettings{SigningKeys: []clients.SigningKey{{ID: ks[0].ID, Algorithm: "RS256"}, {ID: "ec-key", Algorithm: "ES256"}}})
	if err != nil {
		t.Fatal(err)
	}
	registered := f.p.cfg.Clients
	lookup := func(id string) (*clients.Client, bool) {
		if id == "rs" {
			return rs, true
		}
		return registered(id)
	}
	f.p.cfg.Clients, f.p.cfg.Authenticator.Lookup = lookup, lookup
	_, out := f.exchange("app", f.authorize("app", nil), "")
	token := out["access_token"].(string)

	w := f.introspectAs("rs", token, "")
	if ct := w.Header().Get("Content-Type"); w.Code != http.StatusOK || ct != ContentTypeIntrospectionJWT {
		t.Fatalf("registered ES256: %d %q %s", w.Code, ct, w.Body)
	}
	claims := verifyIntrospection(t, ks, w.Body.String())
	ti, _ := claims["token_introspection"].(map[string]any)
	if claims["iss"] != "https://auth.example.com" || claims["aud"] != "rs" || claims["iat"] == nil ||
		ti["active"] != true || ti["client_id"] != "app" || ti["username"] != "john" {
		t.Errorf("claims %v", claims)
	}
	if alg := header(t, w.Body.String())["alg"]; alg != "ES256" {
		t.Errorf("alg %v, want the registered ES256", alg)
	}

	// the same answer checked against another provider's key fails
	other := testKeys(t, "ES256")
	tok, _ := jwt.ParseSigned(w.Body.String(), []jose.SignatureAlgorithm{jose.ES256})
	var ignored map[string]any
	if err := tok.Claims(other[0].Signer.Public(), &ignored); err == nil {
		t.Error("the signed answer verified with a key that did not sign it")
	}

	// without a registered algorithm: JSON, or RS256 when asked for
	w = f.introspectAs("app", token, "")
	var plain map[string]any
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &plain) != nil || plain["active"] != true {
		t.Fatalf("unregistered, no Accept: %d %s", w.Code, w.Body)
	}
	w = f.introspectAs("app", token, "application/json;q=0.5, application/token-introspection+jwt")
	if w.Header().Get("Content-Type") != ContentTypeIntrospectionJWT {
		t.Fatalf("Accept token-introspection+jwt: %q %s", w.Header().Get("Content-Type"), w.Body)
	}
	if alg := header(t, w.Body.String())["alg"]; alg != "RS256" {
		t.Errorf("alg %v, want RS256 by default", alg)
	}
	claims = verifyIntrospection(t, ks, w.Body.String())
	if ti, _ := claims["token_introspection"].(map[string]any); claims["aud"] != "app" || ti["active"] != true {
		t.Errorf("claims %v", claims)
	}
	if w = f.introspectAs("app", token, "application/token-introspection+jwt;q=0"); w.Header().Get("Content-Type") == ContentTypeIntrospectionJWT {
		t.Error("q=0 is not a request for a JWT")
	}

	// an inactive token: signed {"active": false}
	w = f.introspectAs("rs", "portcullis_at_nothing.here", "")
	claims = verifyIntrospection(t, ks, w.Body.String())
	if ti, _ := claims["token_introspection"].(map[string]any); len(ti) != 1 || ti["active"] != false {
		t.Errorf("inactive: %v", claims)
	}
	// refusals stay JSON errors
	if w = f.introspectAs("rs", "", ""); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "invalid_request") {
		t.Errorf("no token: %d %s", w.Code, w.Body)
	}
}
