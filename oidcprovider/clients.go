package oidcprovider

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-crypt/crypt"
	"github.com/go-crypt/crypt/algorithm"
	"github.com/go-crypt/crypt/algorithm/plaintext"
	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/secretcache"
)

// Scope and grant names the provider knows.
const (
	// ScopeBearerAuthz is the gateway scope: only a token that carries it is accepted at a site
	// protected by oidc_auth. The name is Authelia's, the one Uptime-Kuma's docs tell users to type.
	ScopeBearerAuthz = "authelia.bearer.authz"

	grantClientCredentials = "client_credentials"
	grantAuthorizationCode = "authorization_code"

	authMethodBasic = "client_secret_basic"
	authMethodPost  = "client_secret_post"
	authMethodNone  = "none"
)

var (
	clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,100}$`)
	// knownGrants are the seed's grant types; only client_credentials is served so far.
	knownGrants = []string{grantAuthorizationCode, "implicit", "refresh_token", grantClientCredentials, "urn:ietf:params:oauth:grant-type:device_code"}
	// forbiddenCCScopes may not be registered on a client that has the client_credentials grant.
	forbiddenCCScopes = []string{"openid", "offline", "offline_access"}
)

// Client is a registered client, ready for fosite. It is immutable after provisioning.
type Client struct {
	cfg         ClientConfig
	digest      algorithm.Digest // nil for public clients
	fingerprint secretcache.Key  // identifies the configured digest
	plaintext   bool
	lifespans   Lifespans // effective, custom set merged over the global one
	// audienceURLs are the audience entries that are URLs, parsed once for the gateway.
	audienceURLs []audienceURL
}

var digestDecoder = mustDecoder()

func mustDecoder() *crypt.Decoder {
	d, err := crypt.NewDefaultDecoder()
	if err != nil {
		panic(err)
	}
	if err := plaintext.RegisterDecoder(d); err != nil {
		panic(err)
	}
	return d
}

// decodeSecret turns a configured secret into a digest. Values without a leading "$" are bare
// plaintext secrets.
func decodeSecret(s string) (d algorithm.Digest, isPlain bool, err error) {
	if !strings.HasPrefix(s, "$") {
		s = "$plaintext$" + s
	}
	isPlain = strings.HasPrefix(s, "$plaintext$")
	d, err = digestDecoder.Decode(s)
	if err != nil {
		return nil, false, fmt.Errorf("client_secret is not a digest Portcullis can verify (pbkdf2, argon2, scrypt, bcrypt, sha2crypt or $plaintext$): %w", err)
	}
	return d, isPlain, nil
}

// newClient validates cfg (with the secret already resolved) and returns the client. Errors name
// the client and the option.
func newClient(cfg ClientConfig, global Lifespans) (*Client, error) {
	fail := func(opt, f string, a ...any) error {
		return fmt.Errorf("client %s: %s: %s", cfg.ID, opt, fmt.Sprintf(f, a...))
	}
	if !clientIDPattern.MatchString(cfg.ID) {
		return nil, fmt.Errorf("client %q: client_id must be 1 to 100 characters of A-Z a-z 0-9 . _ ~ -", cfg.ID)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.ID
	}
	if len(cfg.GrantTypes) == 0 {
		return nil, fail("grant_types", "authorization_code (the default) is not available yet; set 'grant_types client_credentials'")
	}
	for _, g := range cfg.GrantTypes {
		if !slices.Contains(knownGrants, g) {
			return nil, fail("grant_types", "unknown grant type %q", g)
		}
		if g != grantClientCredentials {
			return nil, fail("grant_types", "%q is not available yet (only client_credentials is); set 'grant_types client_credentials'", g)
		}
	}
	hasCC := slices.Contains(cfg.GrantTypes, grantClientCredentials)

	switch cfg.RequestedAudienceMode {
	case "":
		cfg.RequestedAudienceMode = "explicit"
	case "explicit", "implicit":
	default:
		return nil, fail("requested_audience_mode", "%q must be explicit or implicit", cfg.RequestedAudienceMode)
	}

	c := &Client{}
	if cfg.Public {
		if cfg.Secret != "" {
			return nil, fail("client_secret", "a public client has no secret; remove it or drop 'public'")
		}
		if cfg.TokenEndpointAuthMethod == "" {
			cfg.TokenEndpointAuthMethod = authMethodNone
		}
		if cfg.TokenEndpointAuthMethod != authMethodNone {
			return nil, fail("token_endpoint_auth_method", "a public client must use none, not %q", cfg.TokenEndpointAuthMethod)
		}
		if hasCC {
			return nil, fail("grant_types", "client_credentials needs a confidential client; remove 'public' and give a secret")
		}
	} else {
		if cfg.TokenEndpointAuthMethod == "" {
			cfg.TokenEndpointAuthMethod = authMethodBasic
		}
		switch cfg.TokenEndpointAuthMethod {
		case authMethodBasic, authMethodPost:
		case "client_secret_jwt", "private_key_jwt":
			return nil, fail("token_endpoint_auth_method", "%q is not available yet; use client_secret_basic or client_secret_post", cfg.TokenEndpointAuthMethod)
		case authMethodNone:
			return nil, fail("token_endpoint_auth_method", "none is only for public clients; use client_secret_basic")
		default:
			return nil, fail("token_endpoint_auth_method", "unknown method %q (client_secret_basic, client_secret_post, none)", cfg.TokenEndpointAuthMethod)
		}
		if cfg.Secret == "" {
			return nil, fail("client_secret", "a confidential client needs a secret; generate a digest with 'caddy hash-password' style tools or go-crypt, e.g. $pbkdf2-sha512$…")
		}
		d, isPlain, err := decodeSecret(cfg.Secret)
		if err != nil {
			return nil, fmt.Errorf("client %s: %w", cfg.ID, err)
		}
		c.digest, c.plaintext = d, isPlain
		c.fingerprint = secretcache.Fingerprint(cfg.Secret)
	}

	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			return nil, fail("scopes", "%q is not a valid scope name", s)
		}
		if hasCC && slices.Contains(forbiddenCCScopes, s) {
			return nil, fail("scopes", "%q is not allowed on a client with the client_credentials grant", s)
		}
	}
	if slices.Contains(cfg.Scopes, ScopeBearerAuthz) {
		for _, s := range cfg.Scopes {
			if s != ScopeBearerAuthz && s != "offline" && s != "offline_access" {
				return nil, fail("scopes", "a client with %s may only add offline or offline_access, not %q", ScopeBearerAuthz, s)
			}
		}
		if len(cfg.Audience) == 0 {
			return nil, fail("audience", "a client with %s needs at least one audience: the URL of each site it may call, e.g. https://secure.example.com/", ScopeBearerAuthz)
		}
		if cfg.TokenEndpointAuthMethod == authMethodPost {
			return nil, fail("token_endpoint_auth_method", "a client with %s must use client_secret_basic", ScopeBearerAuthz)
		}
		for _, a := range cfg.Audience {
			if _, err := parseAudience(a); err != nil {
				return nil, fail("audience", "%v", err)
			}
		}
	}
	for _, a := range cfg.Audience {
		if a == "" {
			return nil, fail("audience", "empty entry")
		}
	}

	c.lifespans = global
	if cfg.Lifespan != "" {
		set, ok := global.Custom[cfg.Lifespan]
		if !ok {
			return nil, fail("lifespan", "no custom lifespan named %q; define it with 'custom %s { access_token 2h }' inside lifespans", cfg.Lifespan, cfg.Lifespan)
		}
		c.lifespans = mergeLifespans(set, global)
	}
	c.audienceURLs = parseAudienceURLs(cfg.Audience)
	c.cfg = cfg
	return c, nil
}

func mergeLifespans(over, base Lifespans) Lifespans {
	if over.AccessToken != 0 {
		base.AccessToken = over.AccessToken
	}
	if over.AuthorizeCode != 0 {
		base.AuthorizeCode = over.AuthorizeCode
	}
	if over.IDToken != 0 {
		base.IDToken = over.IDToken
	}
	if over.RefreshToken != 0 {
		base.RefreshToken = over.RefreshToken
	}
	base.Custom = nil
	return base
}

// parseAudience checks that an audience entry used by the gateway is an absolute http(s) URL
// with no query or fragment.
func parseAudience(a string) (*url.URL, error) {
	u, err := url.Parse(a)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%q must be an absolute http(s) URL such as https://secure.example.com/", a)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q may not carry a query, a fragment or user info", a)
	}
	return u, nil
}

// ID returns the client id.
func (c *Client) ID() string { return c.cfg.ID }

// Config returns the client's effective configuration (defaults applied).
func (c *Client) Config() ClientConfig { return c.cfg }

// HasScope reports whether the client is currently registered with scope s.
func (c *Client) HasScope(s string) bool { return slices.Contains(c.cfg.Scopes, s) }

// HasGrant reports whether the client may use grant type g.
func (c *Client) HasGrant(g string) bool { return slices.Contains(c.cfg.GrantTypes, g) }

// GetID implements fosite.Client.
func (c *Client) GetID() string { return c.cfg.ID }

// GetHashedSecret implements fosite.Client; Portcullis authenticates clients itself and never
// hands fosite the digest.
func (c *Client) GetHashedSecret() []byte { return nil }

// GetRedirectURIs implements fosite.Client.
func (c *Client) GetRedirectURIs() []string { return nil }

// GetGrantTypes implements fosite.Client.
func (c *Client) GetGrantTypes() fosite.Arguments { return c.cfg.GrantTypes }

// GetResponseTypes implements fosite.Client.
func (c *Client) GetResponseTypes() fosite.Arguments { return nil }

// GetScopes implements fosite.Client.
func (c *Client) GetScopes() fosite.Arguments { return c.cfg.Scopes }

// IsPublic implements fosite.Client.
func (c *Client) IsPublic() bool { return c.cfg.Public }

// GetAudience implements fosite.Client.
func (c *Client) GetAudience() fosite.Arguments { return c.cfg.Audience }

// GetEffectiveLifespan implements fosite.ClientWithCustomTokenLifespans.
func (c *Client) GetEffectiveLifespan(_ fosite.GrantType, tt fosite.TokenType, fallback time.Duration) time.Duration {
	var d time.Duration
	switch tt {
	case fosite.AccessToken:
		d = time.Duration(c.lifespans.AccessToken)
	case fosite.RefreshToken:
		d = time.Duration(c.lifespans.RefreshToken)
	case fosite.AuthorizeCode:
		d = time.Duration(c.lifespans.AuthorizeCode)
	case fosite.IDToken:
		d = time.Duration(c.lifespans.IDToken)
	}
	if d <= 0 {
		return fallback
	}
	return d
}

var _ fosite.ClientWithCustomTokenLifespans = (*Client)(nil)
