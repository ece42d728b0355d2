package oidcprovider_test

import (
	"strings"
	"testing"
)

// The signed answers' client options fail caddy validate with the client, the option and the
// fix.
func TestSignedAnswersValidateErrors(t *testing.T) {
	with := func(lines string) string { return provider(strings.Replace(app, "}", lines+"\n}", 1)) }
	for _, c := range []struct{ name, caddyfile, want string }{
		{"unsigned JARM", with("authorization_signed_response_alg none"), "client app: authorization_signed_response_alg: JARM authorization responses are always signed"},
		{"JARM algorithm without a key", with("authorization_signed_response_alg ES256"), "client app: authorization_signed_response_alg: no signing key serves ES256 (keys serve: RS256)"},
		{"JARM key of the generated key", with("authorization_signed_response_key_id main"), `client app: authorization_signed_response_key_id: no signing_key has key_id "main"`},
		{"query.jwt with tokens", with("grant_types authorization_code implicit\nresponse_types \"code id_token\"\nresponse_modes query.jwt"), "client app: response_modes: query.jwt cannot carry the tokens of response types code id_token (JARM)"},
		{"unknown JWT mode", with("response_modes form_post.JWT"), `client app: response_modes: unknown response mode "form_post.JWT"`},
		{"introspection algorithm without a key", with("introspection_signed_response_alg PS256"), "client app: introspection_signed_response_alg: no signing key serves PS256"},
		{"introspection on a public client", provider("client spa {\n public\n redirect_uris https://spa.example.com/cb\n introspection_signed_response_alg RS256\n}"), "client spa: introspection_signed_response_alg: a public client cannot call the introspection endpoint"},
		{"JARM modes and signed answers", with("response_modes form_post query jwt query.jwt fragment.jwt form_post.jwt\nauthorization_signed_response_alg RS256\nintrospection_signed_response_alg RS256"), ""},
	} {
		err := validate(t, c.caddyfile)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
