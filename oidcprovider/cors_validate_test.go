package oidcprovider_test

import (
	"strings"
	"testing"
)

// The cors block's mistakes fail caddy validate with the option and the fix.
func TestCORSValidateErrors(t *testing.T) {
	for _, c := range []struct{ name, inner, want string }{
		{"wildcard origin", "cors {\n endpoints token\n allowed_origins *\n}", `cors: allowed_origins: "*" would let every web site read the answers`},
		{"origin with a path", "cors {\n endpoints token\n allowed_origins https://app.example.com/\n}", `cors: allowed_origins: "https://app.example.com/" is not an origin: write only scheme://host[:port], such as https://app.example.com, without a path`},
		{"origin without a scheme", "cors {\n endpoints token\n allowed_origins app.example.com\n}", `"app.example.com" is not an origin such as https://app.example.com`},
		{"origin of another scheme", "cors {\n endpoints token\n allowed_origins ftp://app.example.com\n}", `"ftp://app.example.com" is not an origin`},
		{"origin with a wildcard host", "cors {\n endpoints token\n allowed_origins https://*.example.com\n}", "wildcards are not allowed in origins"},
		{"origin with a bad port", "cors {\n endpoints token\n allowed_origins https://app.example.com:99999\n}", "has no valid port"},
		{"unknown endpoint", "cors {\n endpoints token jwks\n allowed_origins https://app.example.com\n}", `cors: endpoints: unknown endpoint "jwks" (authorization, introspection, pushed-authorization-request, revocation, token, userinfo; discovery and jwks are always open to every origin)`},
		{"unknown option", "cors {\n origins https://app.example.com\n}", `cors: unknown option "origins"`},
		{"empty list", "cors {\n endpoints\n}", "cors: endpoints needs at least one value"},
		{"bad bool", "cors {\n allowed_origins_from_client_redirect_uris sometimes\n}", `allowed_origins_from_client_redirect_uris takes true or false, not "sometimes"`},
		{"twice", "cors {\n}\ncors {\n}", "cors is given twice"},
		{"good", "cors {\n endpoints token userinfo\n endpoints revocation\n allowed_origins https://app.example.com http://localhost:3000\n allowed_origins_from_client_redirect_uris\n}\n" + app, ""},
	} {
		err := validate(t, provider(c.inner))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
