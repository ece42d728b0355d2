package clients

import (
	"strings"
	"testing"
)

// The signed answers' options: their defaults, the key they name, and the mistakes caddy
// validate reports.
func TestSignedAnswers(t *testing.T) {
	c, err := New(app(), Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	if alg, kid := c.IntrospectionSigning(); alg != "none" || kid != "" {
		t.Errorf("introspection default %q/%q, want none", alg, kid)
	}
	if alg, kid := c.AuthorizationSigning(); alg != "RS256" || kid != "" {
		t.Errorf("JARM default %q/%q, want RS256", alg, kid)
	}
	c, err = NewFor(with(app(), func(c *Config) {
		c.IntrospectionSignedResponseKeyID, c.AuthorizationSignedResponseAlg = "ec2", "ES256"
	}), Lifespans{}, settings)
	if err != nil {
		t.Fatal(err)
	}
	if alg, kid := c.IntrospectionSigning(); alg != "ES256" || kid != "ec2" {
		t.Errorf("introspection by key id: %q/%q, want the key's ES256", alg, kid)
	}
	if alg, _ := c.AuthorizationSigning(); alg != "ES256" {
		t.Errorf("JARM: %q, want ES256", alg)
	}

	c, err = New(with(app(), func(c *Config) {
		c.ResponseModes = []string{"form_post.jwt", "query.jwt", "fragment.jwt", "jwt", "query"}
	}), Lifespans{})
	if err != nil {
		t.Fatalf("the JARM modes: %v", err)
	}
	if got := c.GetResponseModes(); len(got) != 5 || got[0] != "form_post.jwt" {
		t.Errorf("response modes %v", got)
	}

	pub := Config{ID: "spa", Public: true, RedirectURIs: []string{"https://spa.example.com/"}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"unsigned JARM", with(app(), func(c *Config) { c.AuthorizationSignedResponseAlg = "none" }), "client app: authorization_signed_response_alg: JARM authorization responses are always signed"},
		{"JARM without a key", with(app(), func(c *Config) { c.AuthorizationSignedResponseAlg = "PS256" }), "authorization_signed_response_alg: no signing key serves PS256 (keys serve: RS256, ES256)"},
		{"JARM unknown key", with(app(), func(c *Config) { c.AuthorizationSignedResponseKeyID = "nope" }), `authorization_signed_response_key_id: no signing_key has key_id "nope"`},
		{"introspection unknown algorithm", with(app(), func(c *Config) { c.IntrospectionSignedResponseAlg = "HS256" }), `introspection_signed_response_alg: unknown algorithm "HS256"`},
		{"introspection key of another algorithm", with(app(), func(c *Config) {
			c.IntrospectionSignedResponseAlg, c.IntrospectionSignedResponseKeyID = "RS256", "ec"
		}), `introspection_signed_response_alg: RS256 does not match the ES256 key "ec"`},
		{"public client introspection", with(pub, func(c *Config) { c.IntrospectionSignedResponseAlg = "RS256" }), "client spa: introspection_signed_response_alg: a public client cannot call the introspection endpoint"},
		{"JARM mode twice", with(app(), func(c *Config) { c.ResponseModes = []string{"jwt", "jwt"} }), `response_modes: "jwt" is listed twice`},
		{"unknown JWT mode", with(app(), func(c *Config) { c.ResponseModes = []string{"post.jwt"} }), `response_modes: unknown response mode "post.jwt"`},
		{"public client introspection key", with(pub, func(c *Config) { c.IntrospectionSignedResponseKeyID = "main" }), "client spa: introspection_signed_response_key_id: a public client cannot call"},
	} {
		_, err := NewFor(tc.cfg, Lifespans{}, settings)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}
