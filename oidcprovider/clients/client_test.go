package clients

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
)

// app is a confidential client that signs people in, with the least configuration.
func app() Config {
	return Config{ID: "app", Secret: "$plaintext$s", RedirectURIs: []string{"https://app.example.com/cb"}}
}

func with(c Config, f func(*Config)) Config { f(&c); return c }

var settings = ProviderSettings{
	AuthorizationPolicies: []string{"staff"},
	ClaimsPolicies:        []string{"legacy"},
	SigningKeys:           []SigningKey{{ID: "main", Algorithm: "RS256"}, {ID: "ec", Algorithm: "ES256"}, {ID: "ec2", Algorithm: "ES256"}},
}

func TestDefaults(t *testing.T) {
	c, err := New(app(), Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	eq := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", name, got, want)
		}
	}
	eq("grant types", []string(c.GetGrantTypes()), []string{"authorization_code"})
	eq("response types", []string(c.GetResponseTypes()), []string{"code"})
	eq("response modes", c.GetResponseModes(), []fosite.ResponseModeType{"form_post", "query"})
	eq("scopes", []string(c.GetScopes()), []string{"openid", "groups", "profile", "email"})
	eq("redirect URIs", c.GetRedirectURIs(), []string{"https://app.example.com/cb"})
	eq("policy", c.AuthorizationPolicy(), "two_factor")
	eq("consent", c.ConsentMode(), "explicit")
	eq("consent duration", c.PreConfiguredConsentDuration(), time.Duration(0))
	eq("pkce", c.RequirePKCE(), false)
	eq("pkce method", c.PKCEChallengeMethod(), "")
	eq("par", c.RequirePAR(), false)
	alg, kid := c.IDTokenSigning()
	eq("id token signing", alg+"/"+kid, "RS256/")
	alg, kid = c.UserinfoSigning()
	eq("userinfo signing", alg+"/"+kid, "none/")
	eq("sector", c.SectorIdentifier(), "")
	eq("claims policy", c.ClaimsPolicy(), "")
	eq("post logout", c.PostLogoutRedirectURIs(), []string(nil))
	eq("auth method", c.AuthMethod(), AuthMethodBasic)
	eq("warnings", c.Warnings(), []string(nil))
	eq("effective config", c.Config().ResponseTypes, []string{"code"})

	cc, err := New(Config{ID: "m", Secret: "$plaintext$s", GrantTypes: []string{GrantClientCredentials}}, Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	eq("cc response types", len(cc.GetResponseTypes()), 0)
	eq("cc response modes", len(cc.GetResponseModes()), 0)
	eq("cc scopes", len(cc.GetScopes()), 0)
	eq("cc policy", cc.AuthorizationPolicy(), "one_factor")

	pub, err := New(Config{ID: "spa", Public: true, RedirectURIs: []string{"https://spa.example.com/", "com.example.app:/oauth2redirect"}}, Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	eq("public pkce", pub.RequirePKCE(), true)
	eq("public auth method", pub.AuthMethod(), AuthMethodNone)
}

func TestResolvedOptions(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		check func(t *testing.T, c *Client)
	}{
		{"hybrid types derive both grants and add fragment", with(app(), func(c *Config) { c.ResponseTypes = []string{"code", "token id_token code"} }), func(t *testing.T, c *Client) {
			if got := []string(c.GetGrantTypes()); !slices.Equal(got, []string{"authorization_code", "implicit"}) {
				t.Errorf("grants %v", got)
			}
			if got := []string(c.GetResponseTypes()); !slices.Equal(got, []string{"code", "code id_token token"}) {
				t.Errorf("types %v", got)
			}
			if got := c.GetResponseModes(); !slices.Equal(got, []fosite.ResponseModeType{"form_post", "query", "fragment"}) {
				t.Errorf("modes %v", got)
			}
		}},
		{"implicit only", with(app(), func(c *Config) { c.ResponseTypes = []string{"id_token"} }), func(t *testing.T, c *Client) {
			if got := []string(c.GetGrantTypes()); !slices.Equal(got, []string{"implicit"}) {
				t.Errorf("grants %v", got)
			}
			if got := c.GetResponseModes(); !slices.Equal(got, []fosite.ResponseModeType{"form_post", "fragment"}) {
				t.Errorf("modes %v", got)
			}
		}},
		{"explicit modes kept", with(app(), func(c *Config) { c.ResponseModes = []string{"form_post"} }), func(t *testing.T, c *Client) {
			if got := c.GetResponseModes(); !slices.Equal(got, []fosite.ResponseModeType{"form_post"}) {
				t.Errorf("modes %v", got)
			}
		}},
		{"auto consent with a duration", with(app(), func(c *Config) { c.PreConfiguredConsentDuration = duration.Duration(48 * time.Hour) }), func(t *testing.T, c *Client) {
			if c.ConsentMode() != "pre-configured" || c.PreConfiguredConsentDuration() != 48*time.Hour {
				t.Errorf("%s %s", c.ConsentMode(), c.PreConfiguredConsentDuration())
			}
		}},
		{"pre-configured defaults to a week", with(app(), func(c *Config) { c.ConsentMode = "pre-configured" }), func(t *testing.T, c *Client) {
			if c.ConsentMode() != "pre-configured" || c.PreConfiguredConsentDuration() != 7*24*time.Hour {
				t.Errorf("%s %s", c.ConsentMode(), c.PreConfiguredConsentDuration())
			}
		}},
		{"implicit consent", with(app(), func(c *Config) { c.ConsentMode = "implicit" }), func(t *testing.T, c *Client) {
			if c.ConsentMode() != "implicit" {
				t.Error(c.ConsentMode())
			}
		}},
		{"pkce method implies require", with(app(), func(c *Config) { c.PKCEChallengeMethod = "S256" }), func(t *testing.T, c *Client) {
			if !c.RequirePKCE() || c.PKCEChallengeMethod() != "S256" || !c.Config().RequirePKCE {
				t.Error("S256 must imply require_pkce")
			}
		}},
		{"require pkce and PAR", with(app(), func(c *Config) { c.RequirePKCE, c.RequirePushedAuthorizationRequests = true, true }), func(t *testing.T, c *Client) {
			if !c.RequirePKCE() || c.PKCEChallengeMethod() != "" || !c.RequirePAR() {
				t.Error("require_pkce, require_pushed_authorization_requests")
			}
		}},
		{"plain pkce when the provider enables it", with(app(), func(c *Config) { c.PKCEChallengeMethod = "plain" }), func(t *testing.T, c *Client) {
			if c.PKCEChallengeMethod() != "plain" {
				t.Error(c.PKCEChallengeMethod())
			}
		}},
		{"key id decides the algorithm", with(app(), func(c *Config) { c.IDTokenSignedResponseKeyID, c.UserinfoSignedResponseKeyID = "ec2", "main" }), func(t *testing.T, c *Client) {
			if alg, kid := c.IDTokenSigning(); alg != "ES256" || kid != "ec2" {
				t.Errorf("id token %s %s", alg, kid)
			}
			if alg, kid := c.UserinfoSigning(); alg != "RS256" || kid != "main" {
				t.Errorf("userinfo %s %s", alg, kid)
			}
		}},
		{"algorithm served by a key", with(app(), func(c *Config) { c.IDTokenSignedResponseAlg, c.UserinfoSignedResponseAlg = "ES256", "ES256" }), func(t *testing.T, c *Client) {
			if alg, kid := c.IDTokenSigning(); alg != "ES256" || kid != "" {
				t.Errorf("id token %s %s", alg, kid)
			}
		}},
		{"matching algorithm and key", with(app(), func(c *Config) { c.IDTokenSignedResponseAlg, c.IDTokenSignedResponseKeyID = "ES256", "ec" }), func(t *testing.T, c *Client) {
			if alg, kid := c.IDTokenSigning(); alg != "ES256" || kid != "ec" {
				t.Errorf("id token %s %s", alg, kid)
			}
		}},
		{"named policies", with(app(), func(c *Config) {
			c.AuthorizationPolicy, c.ClaimsPolicy, c.SectorIdentifierURI = "staff", "legacy", "https://app.example.com/sector.json"
			c.PostLogoutRedirectURIs = []string{"https://app.example.com/bye"}
		}), func(t *testing.T, c *Client) {
			if c.AuthorizationPolicy() != "staff" || c.ClaimsPolicy() != "legacy" || c.SectorIdentifier() != "https://app.example.com/sector.json" || c.PostLogoutRedirectURIs()[0] != "https://app.example.com/bye" {
				t.Error(c.Config())
			}
		}},
		{"one_factor", with(app(), func(c *Config) { c.AuthorizationPolicy = "one_factor" }), func(t *testing.T, c *Client) {
			if c.AuthorizationPolicy() != "one_factor" {
				t.Error(c.AuthorizationPolicy())
			}
		}},
		{"refresh tokens", with(app(), func(c *Config) {
			c.GrantTypes = []string{"authorization_code", "refresh_token"}
			c.Scopes = []string{"openid", "offline_access"}
		}), func(t *testing.T, c *Client) {
			if len(c.Warnings()) != 0 {
				t.Error(c.Warnings())
			}
		}},
		{"refresh grant without offline_access warns", with(app(), func(c *Config) { c.GrantTypes = []string{"authorization_code", "refresh_token"} }), func(t *testing.T, c *Client) {
			if len(c.Warnings()) != 1 || !strings.Contains(c.Warnings()[0], "add offline_access") {
				t.Error(c.Warnings())
			}
		}},
		{"client_credentials and code together", with(app(), func(c *Config) {
			c.GrantTypes = []string{"client_credentials", "authorization_code"}
			c.Scopes = []string{"custom"}
		}), func(t *testing.T, c *Client) {
			if c.AuthorizationPolicy() != "two_factor" || !slices.Equal([]string(c.GetResponseTypes()), []string{"code"}) {
				t.Error(c.Config())
			}
		}},
		{"gateway scope through the authorization endpoint", with(app(), func(c *Config) {
			c.Scopes = []string{ScopeBearerAuthz, "offline_access"}
			c.GrantTypes = []string{"authorization_code", "refresh_token"}
			c.Audience = []string{"https://secure.example.com/"}
			c.RequirePushedAuthorizationRequests = true
			c.PKCEChallengeMethod = "S256"
		}), func(t *testing.T, c *Client) {
			if c.ConsentMode() != "explicit" || !slices.Equal(c.GetResponseModes(), []fosite.ResponseModeType{"form_post"}) {
				t.Error(c.Config())
			}
		}},
	}
	p := settings
	p.EnablePKCEPlainChallenge = true
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewFor(tc.cfg, Lifespans{}, p)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestValidationErrors(t *testing.T) {
	cc := Config{ID: "m", Secret: "$plaintext$s", GrantTypes: []string{GrantClientCredentials}}
	bearer := with(app(), func(c *Config) {
		c.Scopes = []string{ScopeBearerAuthz}
		c.Audience = []string{"https://secure.example.com/"}
		c.RequirePushedAuthorizationRequests = true
		c.PKCEChallengeMethod = "S256"
	})
	cases := []struct {
		name string
		cfg  Config
		p    ProviderSettings
		want string
	}{
		{"device code with redirect URIs", with(app(), func(c *Config) { c.GrantTypes = []string{"urn:ietf:params:oauth:grant-type:device_code"} }), settings, `redirect_uris: only a client that signs people in`},
		{"device code with response types", with(app(), func(c *Config) {
			c.GrantTypes, c.RedirectURIs, c.ResponseTypes = []string{GrantDeviceCode}, nil, []string{"code"}
		}), settings, `response_types: only a client with the authorization_code or implicit grant uses the authorization endpoint`},
		{"unknown grant", with(app(), func(c *Config) { c.GrantTypes = []string{"password"} }), settings, `client app: grant_types: unknown grant type "password"`},
		{"grant twice", with(app(), func(c *Config) { c.GrantTypes = []string{"authorization_code", "authorization_code"} }), settings, `"authorization_code" is listed twice`},
		{"unknown response type", with(app(), func(c *Config) { c.ResponseTypes = []string{"none"} }), settings, `client app: response_types: "none" is not a response type`},
		{"response type twice", with(app(), func(c *Config) { c.ResponseTypes = []string{"code id_token", "id_token code"} }), settings, `"id_token code" is listed twice`},
		{"implicit type without the grant", with(app(), func(c *Config) {
			c.GrantTypes, c.ResponseTypes = []string{"authorization_code"}, []string{"code", "id_token"}
		}), settings, `response_types: "id_token" returns tokens from the authorization endpoint and needs the implicit grant`},
		{"hybrid type without implicit", with(app(), func(c *Config) {
			c.GrantTypes, c.ResponseTypes = []string{"authorization_code"}, []string{"code id_token"}
		}), settings, `"code id_token" is a hybrid type and needs both the authorization_code and implicit grants`},
		{"code type without the grant", with(app(), func(c *Config) { c.GrantTypes, c.ResponseTypes = []string{"implicit"}, []string{"code", "id_token"} }), settings, `response_types: "code" needs the authorization_code grant`},
		{"implicit grant without a type", with(app(), func(c *Config) { c.GrantTypes = []string{"authorization_code", "implicit"} }), settings, "grant_types: implicit is unused"},
		{"code grant without a type", with(app(), func(c *Config) {
			c.GrantTypes, c.ResponseTypes = []string{"authorization_code", "implicit"}, []string{"id_token"}
		}), settings, "grant_types: authorization_code is unused"},
		{"implicit grant alone", with(app(), func(c *Config) { c.GrantTypes = []string{"implicit"} }), settings, "response_types: the implicit grant needs an implicit response type"},
		{"response types on a client_credentials client", with(cc, func(c *Config) { c.ResponseTypes = []string{"code"} }), settings, "client m: response_types: only a client with the authorization_code or implicit grant"},
		{"refresh without code", with(cc, func(c *Config) { c.GrantTypes = []string{"client_credentials", "refresh_token"} }), settings, "grant_types: refresh_token needs the authorization_code or device_code grant"},
		{"refresh with implicit only", with(app(), func(c *Config) {
			c.GrantTypes, c.ResponseTypes = []string{"implicit", "refresh_token"}, []string{"id_token"}
		}), settings, "refresh_token needs the authorization_code or device_code grant"},
		{"offline_access without refresh", with(app(), func(c *Config) { c.Scopes = []string{"openid", "offline_access"} }), settings, "scopes: offline_access asks for refresh tokens, which need the refresh_token grant; add 'grant_types authorization_code refresh_token'"},
		{"offline without refresh", with(app(), func(c *Config) { c.Scopes = []string{"offline"} }), settings, "scopes: offline asks for refresh tokens"},
		{"no redirect URI", with(app(), func(c *Config) { c.RedirectURIs = nil }), settings, "client app: redirect_uris: a client with the authorization_code grant (grant_types' default) needs at least one redirect URI"},
		{"no redirect URI, implicit", with(app(), func(c *Config) {
			c.RedirectURIs, c.GrantTypes, c.ResponseTypes = nil, []string{"implicit"}, []string{"id_token"}
		}), settings, "client app: redirect_uris: a client with the implicit grant needs at least one redirect URI, the application's callback: 'redirect_uris https://app.example.com/callback'"},
		{"relative redirect URI", with(app(), func(c *Config) { c.RedirectURIs = []string{"/cb"} }), settings, `redirect_uris: "/cb" is not an absolute URI`},
		{"redirect URI with a fragment", with(app(), func(c *Config) { c.RedirectURIs = []string{"https://app.example.com/cb#x"} }), settings, "may not carry a fragment"},
		{"redirect URI with an empty fragment", with(app(), func(c *Config) { c.RedirectURIs = []string{"https://app.example.com/cb#"} }), settings, "may not carry a fragment"},
		{"redirect URI without host", with(app(), func(c *Config) { c.RedirectURIs = []string{"https:///cb"} }), settings, "has no host"},
		{"custom scheme on a confidential client", with(app(), func(c *Config) { c.RedirectURIs = []string{"com.example.app:/cb"} }), settings, "custom schemes are for native apps, which are public clients"},
		{"redirect URI twice", with(app(), func(c *Config) { c.RedirectURIs = []string{"https://a/cb", "https://a/cb"} }), settings, `"https://a/cb" is listed twice`},
		{"redirect URIs on a client_credentials client", with(cc, func(c *Config) { c.RedirectURIs = []string{"https://a/cb"} }), settings, "client m: redirect_uris: only a client that signs people in"},
		{"bad post-logout URI", with(app(), func(c *Config) { c.PostLogoutRedirectURIs = []string{"https://a/bye#x"} }), settings, "client app: post_logout_redirect_uris: \"https://a/bye#x\" may not carry a fragment"},
		{"post-logout URIs on a client_credentials client", with(cc, func(c *Config) { c.PostLogoutRedirectURIs = []string{"https://a/bye"} }), settings, "client m: post_logout_redirect_uris: only a client that signs people in"},
		{"query.jwt with tokens", with(app(), func(c *Config) {
			c.GrantTypes, c.ResponseTypes, c.ResponseModes = []string{"authorization_code", "implicit"}, []string{"code id_token"}, []string{"query.jwt"}
		}), settings, "response_modes: query.jwt cannot carry the tokens of response types code id_token (JARM)"},
		{"unknown mode", with(app(), func(c *Config) { c.ResponseModes = []string{"post"} }), settings, `response_modes: unknown response mode "post"`},
		{"mode twice", with(app(), func(c *Config) { c.ResponseModes = []string{"query", "query"} }), settings, `"query" is listed twice`},
		{"query with tokens", with(app(), func(c *Config) { c.ResponseTypes, c.ResponseModes = []string{"code id_token"}, []string{"query"} }), settings, "response_modes: query cannot carry the tokens of response types code id_token"},
		{"modes on a client_credentials client", with(cc, func(c *Config) { c.ResponseModes = []string{"query"} }), settings, "client m: response_modes: only a client that signs people in"},
		{"unknown authorization policy", with(app(), func(c *Config) { c.AuthorizationPolicy = "admins" }), settings, `client app: authorization_policy: no authorization policy named "admins"; use one_factor, two_factor, or define it in the oidc block with 'authorization_policy admins {`},
		{"deny is not a client policy", with(app(), func(c *Config) { c.AuthorizationPolicy = "deny" }), settings, `no authorization policy named "deny"`},
		{"named policy of another provider", with(app(), func(c *Config) { c.AuthorizationPolicy = "staff" }), ProviderSettings{}, `no authorization policy named "staff"`},
		{"bad consent mode", with(app(), func(c *Config) { c.ConsentMode = "remember" }), settings, `client app: consent_mode: "remember" must be auto, explicit, implicit or pre-configured`},
		{"duration with explicit consent", with(app(), func(c *Config) {
			c.ConsentMode, c.PreConfiguredConsentDuration = "explicit", duration.Duration(time.Hour)
		}), settings, "pre_configured_consent_duration: only applies to consent_mode pre-configured (or auto), not explicit"},
		{"negative duration", with(app(), func(c *Config) { c.PreConfiguredConsentDuration = duration.Duration(-time.Hour) }), settings, "pre_configured_consent_duration: -1h0m0s must be positive"},
		{"bad pkce method", with(app(), func(c *Config) { c.PKCEChallengeMethod = "s256" }), settings, `pkce_challenge_method: "s256" must be S256 or plain`},
		{"plain pkce", with(app(), func(c *Config) { c.PKCEChallengeMethod = "plain" }), settings, "pkce_challenge_method: plain sends the verifier in the clear and needs the provider option enable_pkce_plain_challenge"},
		{"unsigned ID tokens", with(app(), func(c *Config) { c.IDTokenSignedResponseAlg = "none" }), settings, "id_token_signed_response_alg: ID tokens are always signed"},
		{"unknown algorithm", with(app(), func(c *Config) { c.IDTokenSignedResponseAlg = "HS256" }), settings, `id_token_signed_response_alg: unknown algorithm "HS256"`},
		{"algorithm without a key", with(app(), func(c *Config) { c.IDTokenSignedResponseAlg = "ES256" }), ProviderSettings{}, "client app: id_token_signed_response_alg: no signing key serves ES256 (keys serve: RS256); add 'signing_key { algorithm ES256 key_file … }'"},
		{"RS256 without an RS256 key", app(), ProviderSettings{SigningKeys: []SigningKey{{ID: "ec", Algorithm: "ES256"}}}, "id_token_signed_response_alg: no signing key serves RS256 (keys serve: ES256)"},
		{"userinfo algorithm without a key", with(app(), func(c *Config) { c.UserinfoSignedResponseAlg = "PS256" }), settings, "userinfo_signed_response_alg: no signing key serves PS256 (keys serve: RS256, ES256)"},
		{"key id of the generated key", with(app(), func(c *Config) { c.IDTokenSignedResponseKeyID = "main" }), ProviderSettings{}, `id_token_signed_response_key_id: no signing_key has key_id "main": only the generated RS256 key is configured`},
		{"unknown key id", with(app(), func(c *Config) { c.UserinfoSignedResponseKeyID = "other" }), settings, `client app: userinfo_signed_response_key_id: no signing_key has key_id "other" (configured: main, ec, ec2)`},
		{"key of another algorithm", with(app(), func(c *Config) { c.IDTokenSignedResponseAlg, c.IDTokenSignedResponseKeyID = "RS256", "ec" }), settings, `id_token_signed_response_alg: RS256 does not match the ES256 key "ec" named by id_token_signed_response_key_id`},
		{"none with a key", with(app(), func(c *Config) { c.UserinfoSignedResponseAlg, c.UserinfoSignedResponseKeyID = "none", "main" }), settings, `userinfo_signed_response_alg: none does not match the RS256 key "main"`},
		{"http sector", with(app(), func(c *Config) { c.SectorIdentifierURI = "http://app.example.com/s.json" }), settings, "sector_identifier_uri: \"http://app.example.com/s.json\" must be an absolute https URL"},
		{"relative sector", with(app(), func(c *Config) { c.SectorIdentifierURI = "app.example.com" }), settings, "must be an absolute https URL"},
		{"sector with a fragment", with(app(), func(c *Config) { c.SectorIdentifierURI = "https://app.example.com/s.json#x" }), settings, "sector_identifier_uri: \"https://app.example.com/s.json#x\" may not carry a fragment"},
		{"sector with user info", with(app(), func(c *Config) { c.SectorIdentifierURI = "https://u:p@app.example.com/s.json" }), settings, "may not carry user info"},
		{"unknown claims policy", with(app(), func(c *Config) { c.ClaimsPolicy = "rich" }), settings, `client app: claims_policy: no claims policy named "rich"; define it in the oidc block with 'claims_policy rich { id_token email groups }'`},
		{"gateway scope without PAR", with(bearer, func(c *Config) { c.RequirePushedAuthorizationRequests = false }), settings, "require_pushed_authorization_requests: a client with authelia.bearer.authz that signs people in must push"},
		{"gateway scope without S256", with(bearer, func(c *Config) { c.PKCEChallengeMethod = "" }), settings, "pkce_challenge_method: a client with authelia.bearer.authz that signs people in must use PKCE with S256"},
		{"gateway scope with implicit consent", with(bearer, func(c *Config) { c.ConsentMode = "implicit" }), settings, "consent_mode: a client with authelia.bearer.authz must ask for consent every time"},
		{"gateway scope with remembered consent", with(bearer, func(c *Config) { c.PreConfiguredConsentDuration = duration.Duration(time.Hour) }), settings, "pre_configured_consent_duration: a client with authelia.bearer.authz must ask"},
		{"gateway scope with query", with(bearer, func(c *Config) { c.ResponseModes = []string{"form_post", "query"} }), settings, `response_modes: a client with authelia.bearer.authz may only use form_post or form_post.jwt, not "query"`},
		{"gateway scope with implicit", with(bearer, func(c *Config) { c.ResponseTypes = []string{"code id_token"} }), settings, "grant_types: a client with authelia.bearer.authz may not use the implicit grant"},
		{"gateway scope with openid", with(bearer, func(c *Config) { c.Scopes = []string{ScopeBearerAuthz, "openid"} }), settings, `may only add offline or offline_access, not "openid"`},
		{"public resource server", Config{ID: "spa", Public: true, RedirectURIs: []string{"https://spa.example.com/cb"}, ResourceServerFor: []string{"app"}}, settings, "client spa: resource_server_for: a public client cannot call the introspection endpoint"},
		{"resource server for a bad id", with(cc, func(c *Config) { c.ResourceServerFor = []string{"a b"} }), settings, `client m: resource_server_for: "a b" is not a client_id`},
		{"resource server for a client twice", with(cc, func(c *Config) { c.ResourceServerFor = []string{"app", "app"} }), settings, `client m: resource_server_for: "app" is listed twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFor(tc.cfg, Lifespans{}, tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		`"1w"`: 7 * 24 * time.Hour, `"7d"`: 7 * 24 * time.Hour, `"168h"`: 168 * time.Hour, `"1d12h"`: 36 * time.Hour,
		`"1.5d"`: 36 * time.Hour, `"90m"`: 90 * time.Minute, `3600000000000`: time.Hour, ` "2w" `: 14 * 24 * time.Hour,
	} {
		var d duration.Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: got %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{`"1 week"`, `"w"`, `"soon"`, `""`, `true`, `1.5`} {
		var d duration.Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s: accepted as %v", in, time.Duration(d))
		}
	}
	out, err := json.Marshal(Config{ID: "a", PreConfiguredConsentDuration: duration.Duration(time.Hour)})
	if err != nil || !strings.Contains(string(out), `"pre_configured_consent_duration":3600000000000`) {
		t.Errorf("marshal: %s %v", out, err)
	}
}

// A client reads its own tokens and those of the clients its resource_server_for lists in
// full; every listed client must be registered.
func TestResourceServerFor(t *testing.T) {
	api, err := New(Config{ID: "api", Secret: "$plaintext$s", GrantTypes: []string{GrantClientCredentials}, ResourceServerFor: []string{"app"}}, Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(app(), Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	for client, want := range map[string]bool{"api": true, "app": true, "other": false, "": false} {
		if got := api.ReadsInFull(client); got != want {
			t.Errorf("api reads %q's tokens in full: %v, want %v", client, got, want)
		}
	}
	if a.ReadsInFull("api") || !a.ReadsInFull("app") {
		t.Error("a client without resource_server_for reads only its own tokens in full")
	}
	if err := CheckResourceServers(map[string]*Client{"api": api, "app": a}); err != nil {
		t.Fatal(err)
	}
	err = CheckResourceServers(map[string]*Client{"api": api})
	if want := `client api: resource_server_for: no client "app" is registered`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
}

// A device client (RFC 8628) needs no redirect URI and gets no response type or mode; a public
// one may have refresh tokens for offline_access; its device codes live its lifespans' device
// code lifespan.
func TestDeviceClient(t *testing.T) {
	c, err := New(Config{ID: "tv", Public: true, GrantTypes: []string{GrantDeviceCode, GrantRefreshToken},
		Scopes: []string{"openid", "offline_access"}}, Lifespans{DeviceCode: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.GetResponseTypes()) != 0 || len(c.GetResponseModes()) != 0 || len(c.GetRedirectURIs()) != 0 {
		t.Errorf("a device client has response types %v, modes %v, redirect URIs %v", c.GetResponseTypes(), c.GetResponseModes(), c.GetRedirectURIs())
	}
	if c.AuthMethod() != AuthMethodNone || c.AuthorizationPolicy() != PolicyTwoFactor {
		t.Errorf("auth method %s, policy %s", c.AuthMethod(), c.AuthorizationPolicy())
	}
	if c.DeviceCodeLifespan() != 3*time.Minute {
		t.Errorf("device code lifespan %s", c.DeviceCodeLifespan())
	}
	if _, err := New(Config{ID: "both", Secret: "$plaintext$s", GrantTypes: []string{GrantAuthorizationCode, GrantDeviceCode},
		RedirectURIs: []string{"https://app.example.com/cb"}}, Lifespans{}); err != nil {
		t.Errorf("a client with the code and device grants: %v", err)
	}
}
