package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// A request object's claims become the request's parameters, alone (the query's are dropped):
// strings as they are, a number, a boolean and the claims object as written; each broken rule
// gets its OAuth error.
func TestApplyRequestObject(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	f := newFlowProvider(t, clients.Config{ID: "ro", Secret: "$plaintext$ro-secret", RedirectURIs: []string{testRedirect},
		RequestObjectSigningAlg: "ES256", JWKS: []clients.ClientKey{{KeyID: "k1", Key: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}})
	sign := func(k any, alg string, claims map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: k}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "ro", "aud": "https://auth.example.com", "exp": time.Now().Add(time.Minute).Unix(),
			"client_id": "ro", "response_type": "code", "redirect_uri": testRedirect, "state": "signed-state-1",
			"max_age": 300, "claims": map[string]any{"id_token": map[string]any{"email": nil}}, "extra_flag": true}
		if edit != nil {
			edit(c)
		}
		return c
	}
	query := func(request string) url.Values {
		return url.Values{"client_id": {"ro"}, "state": {"query-state-1"}, "scope": {"openid"}, "request": {request}}
	}
	out, err := f.p.applyRequestObject(context.Background(), query(sign(key, "ES256", claims(nil))), "ro", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"client_id": {"ro"}, "response_type": {"code"}, "redirect_uri": {testRedirect}, "state": {"signed-state-1"},
		"max_age": {"300"}, "claims": {`{"id_token":{"email":null}}`}, "extra_flag": {"true"}}
	if out.Encode() != want.Encode() {
		t.Fatalf("parameters:\n got %v\nwant %v", out, want)
	}

	unsigned := func(c map[string]any) string {
		h, _ := json.Marshal(map[string]string{"alg": "none"})
		p, _ := json.Marshal(c)
		return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, c := range map[string]struct {
		form   url.Values
		client string
		want   *fosite.RFC6749Error
	}{
		"alg none":          {query(unsigned(claims(nil))), "ro", fosite.ErrInvalidRequestObject},
		"another key":       {query(sign(other, "ES256", claims(nil))), "ro", fosite.ErrInvalidRequestObject},
		"wrong iss":         {query(sign(key, "ES256", claims(func(c map[string]any) { c["iss"] = "app" }))), "ro", fosite.ErrInvalidRequestObject},
		"wrong client_id":   {query(sign(key, "ES256", claims(func(c map[string]any) { c["client_id"] = "app" }))), "ro", fosite.ErrInvalidRequestObject},
		"wrong aud":         {query(sign(key, "ES256", claims(func(c map[string]any) { c["aud"] = []string{"https://other.example.com"} }))), "ro", fosite.ErrInvalidRequestObject},
		"expired":           {query(sign(key, "ES256", claims(func(c map[string]any) { c["exp"] = time.Now().Add(-5 * time.Minute).Unix() }))), "ro", fosite.ErrInvalidRequestObject},
		"nbf ahead":         {query(sign(key, "ES256", claims(func(c map[string]any) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() }))), "ro", fosite.ErrInvalidRequestObject},
		"nested request":    {query(sign(key, "ES256", claims(func(c map[string]any) { c["request"] = "x" }))), "ro", fosite.ErrInvalidRequestObject},
		"client has no key": {url.Values{"client_id": {"app"}, "request": {sign(key, "ES256", claims(func(c map[string]any) { c["iss"], c["client_id"] = "app", "app" }))}}, "app", fosite.ErrInvalidRequestObject},
		"unknown client":    {query(sign(key, "ES256", claims(nil))), "nobody", fosite.ErrInvalidClient},
		"request_uri":       {url.Values{"client_id": {"ro"}, "request_uri": {"https://ro.example.com/request.jwt"}}, "ro", fosite.ErrRequestURINotSupported},
	} {
		_, err := f.p.applyRequestObject(context.Background(), c.form, c.client, nil)
		var rfc *fosite.RFC6749Error
		if !errors.As(err, &rfc) || rfc.ErrorField != c.want.ErrorField {
			t.Errorf("%s: got %v, want %s", name, err, c.want.ErrorField)
		}
	}
}
