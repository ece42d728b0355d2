package clients

import (
	"strings"
	"testing"
)

// access_token_signed_response_alg and _key_id resolve as the ID token's options do: opaque by
// default, an algorithm a key serves, a key id that implies its algorithm; a mismatch, an
// algorithm no key serves or an unknown key id fails naming the client and the option.
func TestAccessTokenSigning(t *testing.T) {
	cc := Config{ID: "m", Secret: "$plaintext$s", GrantTypes: []string{GrantClientCredentials}}
	ok := []struct {
		name     string
		cfg      Config
		p        ProviderSettings
		alg, kid string
		jwt      bool
	}{
		{"default opaque", cc, settings, "none", "", false},
		{"explicit none", with(cc, func(c *Config) { c.AccessTokenSignedResponseAlg = "none" }), settings, "none", "", false},
		{"RS256 of the generated key", with(cc, func(c *Config) { c.AccessTokenSignedResponseAlg = "RS256" }), ProviderSettings{}, "RS256", "", true},
		{"ES256 of a configured key", with(cc, func(c *Config) { c.AccessTokenSignedResponseAlg = "ES256" }), settings, "ES256", "", true},
		{"key id implies its algorithm", with(cc, func(c *Config) { c.AccessTokenSignedResponseKeyID = "ec2" }), settings, "ES256", "ec2", true},
		{"key id with its algorithm", with(cc, func(c *Config) {
			c.AccessTokenSignedResponseAlg, c.AccessTokenSignedResponseKeyID = "RS256", "main"
		}), settings, "RS256", "main", true},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewFor(tc.cfg, Lifespans{}, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			alg, kid := c.AccessTokenSigning()
			if alg != tc.alg || kid != tc.kid || c.JWTAccessTokens() != tc.jwt {
				t.Fatalf("got %q %q %v, want %q %q %v", alg, kid, c.JWTAccessTokens(), tc.alg, tc.kid, tc.jwt)
			}
		})
	}
	bad := []struct {
		name string
		cfg  Config
		p    ProviderSettings
		want string
	}{
		{"no key serves it", with(cc, func(c *Config) { c.AccessTokenSignedResponseAlg = "PS256" }), settings, "client m: access_token_signed_response_alg: no signing key serves PS256 (keys serve: RS256, ES256)"},
		{"ES256 with only the generated key", with(cc, func(c *Config) { c.AccessTokenSignedResponseAlg = "ES256" }), ProviderSettings{}, "access_token_signed_response_alg: no signing key serves ES256 (keys serve: RS256)"},
		{"unknown algorithm", with(cc, func(c *Config) { c.AccessTokenSignedResponseAlg = "HS256" }), settings, `client m: access_token_signed_response_alg: unknown algorithm "HS256"`},
		{"unknown key id", with(cc, func(c *Config) { c.AccessTokenSignedResponseKeyID = "other" }), settings, `client m: access_token_signed_response_key_id: no signing_key has key_id "other" (configured: main, ec, ec2)`},
		{"key of another algorithm", with(cc, func(c *Config) {
			c.AccessTokenSignedResponseAlg, c.AccessTokenSignedResponseKeyID = "RS256", "ec"
		}), settings, `client m: access_token_signed_response_alg: RS256 does not match the ES256 key "ec" named by access_token_signed_response_key_id`},
		{"none with a key", with(cc, func(c *Config) {
			c.AccessTokenSignedResponseAlg, c.AccessTokenSignedResponseKeyID = "none", "main"
		}), settings, `access_token_signed_response_alg: none does not match the RS256 key "main"`},
		{"key id of the generated key", with(cc, func(c *Config) { c.AccessTokenSignedResponseKeyID = "main" }), ProviderSettings{}, `access_token_signed_response_key_id: no signing_key has key_id "main": only the generated RS256 key is configured`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFor(tc.cfg, Lifespans{}, tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}
