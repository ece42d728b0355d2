// Package clients holds the provider's registered clients: their validated configuration, the
// fosite.Client view of them, and client authentication at the token, introspection and
// revocation endpoints (credential parsing, digest checks through the verified-secret cache,
// failure throttling and the process-wide cap on digest work).
package clients

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-crypt/crypt"
	"github.com/go-crypt/crypt/algorithm"
	"github.com/go-crypt/crypt/algorithm/plaintext"
	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
)

// Scope and grant names the provider knows.
const (
	// ScopeBearerAuthz is the gateway scope: only a token that carries it is accepted at a site
	// protected by oidc_auth. The name is Authelia's, the one Uptime-Kuma's docs tell users to type.
	ScopeBearerAuthz = "authelia.bearer.authz"

	// GrantClientCredentials is the client_credentials grant (RFC 6749 §4.4).
	GrantClientCredentials = "client_credentials"
	grantAuthorizationCode = "authorization_code"

	// AuthMethodBasic is client_secret_basic: id and secret in HTTP Basic credentials.
	AuthMethodBasic = "client_secret_basic"
	// AuthMethodPost is client_secret_post: id and secret in the form body.
	AuthMethodPost = "client_secret_post"
	// AuthMethodNone is a public client's method: the id alone.
	AuthMethodNone = "none"
)

var (
	clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,100}$`)
	// knownGrants are the seed's grant types; only client_credentials is served so far.
	knownGrants = []string{grantAuthorizationCode, "implicit", "refresh_token", GrantClientCredentials, "urn:ietf:params:oauth:grant-type:device_code"}
	// forbiddenCCScopes may not be registered on a client that has the client_credentials grant.
	forbiddenCCScopes = []string{"openid", "offline", "offline_access"}
)

// Lifespans are a client's effective token lifespans; zero falls back to the provider's.
type Lifespans struct {
	AccessToken, AuthorizeCode, IDToken, RefreshToken time.Duration
}

// Client is a registered client, ready for fosite. It is immutable after provisioning.
type Client struct {
	cfg         Config
	digest      algorithm.Digest // nil for public clients
	fingerprint Fingerprint      // identifies the configured digest
	plaintext   bool
	lifespans   Lifespans // effective: the named set merged over the global one
	// audienceURLs are the audience entries that are URLs, parsed once for the gateway.
	audienceURLs audience.List
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

// DecodeSecret turns a configured secret into a digest. Values without a leading "$" are bare
// plaintext secrets.
func DecodeSecret(s string) (d algorithm.Digest, isPlain bool, err error) {
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

// New validates cfg (with the secret already resolved) and returns the client, with lifespans its
// effective token lifespans. Errors name the client and the option.
func New(cfg Config, lifespans Lifespans) (*Client, error) {
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
		if g != GrantClientCredentials {
			return nil, fail("grant_types", "%q is not available yet (only client_credentials is); set 'grant_types client_credentials'", g)
		}
	}
	hasCC := slices.Contains(cfg.GrantTypes, GrantClientCredentials)

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
			cfg.TokenEndpointAuthMethod = AuthMethodNone
		}
		if cfg.TokenEndpointAuthMethod != AuthMethodNone {
			return nil, fail("token_endpoint_auth_method", "a public client must use none, not %q", cfg.TokenEndpointAuthMethod)
		}
		if hasCC {
			return nil, fail("grant_types", "client_credentials needs a confidential client; remove 'public' and give a secret")
		}
	} else {
		if cfg.TokenEndpointAuthMethod == "" {
			cfg.TokenEndpointAuthMethod = AuthMethodBasic
		}
		switch cfg.TokenEndpointAuthMethod {
		case AuthMethodBasic, AuthMethodPost:
		case "client_secret_jwt", "private_key_jwt":
			return nil, fail("token_endpoint_auth_method", "%q is not available yet; use client_secret_basic or client_secret_post", cfg.TokenEndpointAuthMethod)
		case AuthMethodNone:
			return nil, fail("token_endpoint_auth_method", "none is only for public clients; use client_secret_basic")
		default:
			return nil, fail("token_endpoint_auth_method", "unknown method %q (client_secret_basic, client_secret_post, none)", cfg.TokenEndpointAuthMethod)
		}
		if cfg.Secret == "" {
			return nil, fail("client_secret", "a confidential client needs a secret; generate a digest with 'caddy hash-password' style tools or go-crypt, e.g. $pbkdf2-sha512$…")
		}
		d, isPlain, err := DecodeSecret(cfg.Secret)
		if err != nil {
			return nil, fmt.Errorf("client %s: %w", cfg.ID, err)
		}
		c.digest, c.plaintext = d, isPlain
		c.fingerprint = fingerprintOf(cfg.Secret)
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
		if cfg.TokenEndpointAuthMethod == AuthMethodPost {
			return nil, fail("token_endpoint_auth_method", "a client with %s must use client_secret_basic", ScopeBearerAuthz)
		}
		for _, a := range cfg.Audience {
			if _, err := audience.ParseEntry(a); err != nil {
				return nil, fail("audience", "%v", err)
			}
		}
	}
	for _, a := range cfg.Audience {
		if a == "" {
			return nil, fail("audience", "empty entry")
		}
	}

	c.lifespans = lifespans
	c.audienceURLs = audience.ParseList(cfg.Audience)
	c.cfg = cfg
	return c, nil
}

// ID returns the client id.
func (c *Client) ID() string { return c.cfg.ID }

// Config returns the client's effective configuration (defaults applied).
func (c *Client) Config() Config { return c.cfg }

// AuthMethod is the client's token_endpoint_auth_method.
func (c *Client) AuthMethod() string { return c.cfg.TokenEndpointAuthMethod }

// ImplicitAudience reports requested_audience_mode implicit: the whole audience list is granted
// when a request names none.
func (c *Client) ImplicitAudience() bool { return c.cfg.RequestedAudienceMode == "implicit" }

// AudienceURLs are the client's audience entries that are URLs, parsed for the audience rule.
func (c *Client) AudienceURLs() audience.List { return c.audienceURLs }

// PlaintextSecret reports a secret configured as plaintext rather than a digest.
func (c *Client) PlaintextSecret() bool { return c.plaintext }

// Fingerprint identifies the configured secret digest (without revealing it), so remembered
// secrets of a client whose secret changed are forgotten.
func (c *Client) Fingerprint() Fingerprint { return c.fingerprint }

// HasScope reports whether the client is currently registered with scope s.
func (c *Client) HasScope(s string) bool { return slices.Contains(c.cfg.Scopes, s) }

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
		d = c.lifespans.AccessToken
	case fosite.RefreshToken:
		d = c.lifespans.RefreshToken
	case fosite.AuthorizeCode:
		d = c.lifespans.AuthorizeCode
	case fosite.IDToken:
		d = c.lifespans.IDToken
	}
	if d <= 0 {
		return fallback
	}
	return d
}

var _ fosite.ClientWithCustomTokenLifespans = (*Client)(nil)
