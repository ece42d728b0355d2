// Package federation signs people in through upstream identity providers: another OpenID
// Connect provider (discovery, the authorization code flow with PKCE S256, state and nonce, the
// ID token's signature, issuer and audience checked by github.com/coreos/go-oidc/v3) or GitHub
// (OAuth 2.0 and its user API, for the login and the verified primary e-mail address). It keeps
// the pending flows (single-use, bound to the browser that began them) and the links between
// upstream identities and local users in a store.KV, so it works on Badger and PostgreSQL alike.
//
// It is plain Go: the portal drives it (portal/federation.go) and oidcprovider configures it.
package federation

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// Types of upstream identity providers.
const (
	TypeOIDC   = "oidc"
	TypeGitHub = "github"
)

// Ways an upstream identity finds its local user when it is not linked yet (Config.Link).
const (
	// LinkByEmailVerified maps to the local user whose e-mail address is the upstream's
	// verified address (GitHub: the verified primary address).
	LinkByEmailVerified = "by_email_verified"
	// LinkByUsername maps to the local user named by the upstream's claim_username value.
	LinkByUsername = "by_username"
	// LinkManual maps only identities a person linked on the account page.
	LinkManual = "manual"
)

// GitHub's endpoints (Config.AuthURL, TokenURL and APIURL override them).
const (
	githubAuthURL  = "https://github.com/login/oauth/authorize"
	githubTokenURL = "https://github.com/login/oauth/access_token"
	githubAPIURL   = "https://api.github.com"
)

// namePattern is what an identity provider's name may be: it is part of a URL path.
var namePattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// Config is one upstream identity provider: the oidc app's identity_providers entry, and the
// Caddyfile's 'identity_provider <name> { … }' block.
type Config struct {
	// Name names the provider: the sign-in button's default label and the callback path
	// (<issuer>/federation/<name>/callback); lower-case letters, digits, '_' and '-'.
	// JSON: "name". Required.
	Name string `json:"name"`
	// Type is "oidc" (an OpenID Connect provider found by discovery) or "github" (GitHub's
	// OAuth 2.0 and user API). JSON: "type". Required.
	Type string `json:"type"`
	// DisplayName is the button's label: "Sign in with <display_name>". JSON: "display_name".
	// Default: Name.
	DisplayName string `json:"display_name,omitempty"`
	// Issuer is the upstream's issuer URL for type oidc (refused for github): https, or http
	// for a loopback host only. JSON: "issuer". Required for oidc.
	Issuer string `json:"issuer,omitempty"`
	// ClientID is the client id registered at the upstream. JSON: "client_id". Required.
	ClientID string `json:"client_id"`
	// ClientSecret is the client secret registered at the upstream; {env.*} and {file.*}
	// placeholders are resolved at provision. JSON: "client_secret". Required.
	ClientSecret string `json:"client_secret"`
	// Scopes are asked of the upstream. JSON: "scopes". Default: openid email profile (oidc),
	// read:user user:email (github).
	Scopes []string `json:"scopes,omitempty"`
	// ClaimUsername is the upstream claim that names the person (for link by_username, and
	// shown on the account page): any string claim of the ID token or userinfo for oidc; login
	// or email for github. JSON: "claim_username". Default: preferred_username (oidc), login
	// (github).
	ClaimUsername string `json:"claim_username,omitempty"`
	// Link is how an identity not linked yet finds its local user: by_email_verified,
	// by_username or manual (only identities linked on the account page). An existing link
	// always wins. JSON: "link". Default: by_email_verified.
	Link string `json:"link,omitempty"`
	// AllowedDomains, when set, admit only upstream identities whose e-mail address is under
	// one of these domains (exactly the domain, not its subdomains). JSON: "allowed_domains".
	// Default: any domain.
	AllowedDomains []string `json:"allowed_domains,omitempty"`
	// TwoFactorSatisfied counts a sign-in through this provider as two factors when the
	// upstream says it used several (amr holds "mfa", or acr is "mfa" or the PAPE multi-factor
	// policy); otherwise, and always when false, it is one factor. Refused for github, which
	// does not say. JSON: "two_factor_satisfied". Default: false.
	TwoFactorSatisfied bool `json:"two_factor_satisfied,omitempty"`
	// CreateUsers adds an upstream identity that maps to no local user to the users file (not
	// an LDAP directory): its claim_username value as the username, with the upstream's name and
	// verified e-mail address and a random password nobody knows. JSON: "create_users".
	// Default: false (an unknown identity is refused).
	CreateUsers bool `json:"create_users,omitempty"`

	// AuthURL, TokenURL and APIURL replace GitHub's endpoints (tests; not in the JSON).
	AuthURL  string `json:"-"`
	TokenURL string `json:"-"`
	APIURL   string `json:"-"`
}

// Validate checks the config and fills its defaults. Its errors name the key and the fix,
// prefixed with "identity_provider <name>: ".
func (c *Config) Validate() error {
	if !namePattern.MatchString(c.Name) {
		return fmt.Errorf("identity_provider %q: the name must be 1 to 32 lower-case letters, digits, '_' or '-' (it is part of the callback path), e.g. identity_provider google { … }", c.Name)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("identity_provider %s: "+format, append([]any{c.Name}, args...)...)
	}
	switch c.Type {
	case TypeOIDC:
		if c.Issuer == "" {
			return fail("issuer is required for type oidc, e.g. issuer https://accounts.google.com")
		}
		u, err := url.Parse(c.Issuer)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fail("issuer %q must be an absolute URL without query or fragment, such as https://accounts.google.com", c.Issuer)
		}
		if u.Scheme == "http" && !clients.IsLoopbackHost(u.Hostname()) {
			return fail("issuer %q must use https (http only for localhost and loopback addresses)", c.Issuer)
		}
		if c.ClaimUsername == "" {
			c.ClaimUsername = "preferred_username"
		}
		if len(c.Scopes) == 0 {
			c.Scopes = []string{"openid", "email", "profile"}
		} else if !slices.Contains(c.Scopes, "openid") {
			return fail("scopes must include openid for type oidc (e.g. scopes openid email profile)")
		}
	case TypeGitHub:
		if c.Issuer != "" {
			return fail("issuer is for type oidc; remove it (GitHub's endpoints are built in)")
		}
		switch c.ClaimUsername {
		case "":
			c.ClaimUsername = "login"
		case "login", "email":
		default:
			return fail("claim_username %q: GitHub names people by login or email", c.ClaimUsername)
		}
		if c.TwoFactorSatisfied {
			return fail("two_factor_satisfied: GitHub does not tell how a person signed in, so its sign-ins cannot count as two factors; remove it")
		}
		if len(c.Scopes) == 0 {
			c.Scopes = []string{"read:user", "user:email"}
		}
	case "":
		return fail("type is required: oidc or github")
	default:
		return fail("type %q: use oidc or github", c.Type)
	}
	if c.ClientID == "" {
		return fail("client_id is required (the client id registered at the upstream)")
	}
	if c.ClientSecret == "" {
		return fail("client_secret is required (the client secret registered at the upstream; {env.NAME} reads it from the environment)")
	}
	switch c.Link {
	case "":
		c.Link = LinkByEmailVerified
	case LinkByEmailVerified, LinkByUsername, LinkManual:
	default:
		return fail("link %q: use by_email_verified, by_username or manual", c.Link)
	}
	for i, d := range c.AllowedDomains {
		d = strings.ToLower(strings.TrimPrefix(d, "@"))
		if d == "" || strings.ContainsAny(d, "@/ *:") || !strings.Contains(d, ".") {
			return fail("allowed_domains: %q is not a domain such as example.com", c.AllowedDomains[i])
		}
		c.AllowedDomains[i] = d
	}
	if c.DisplayName == "" {
		c.DisplayName = c.Name
	}
	return nil
}

// ErrConfig is wrapped by a provider built from a config that did not validate.
var ErrConfig = errors.New("federation: invalid identity provider")
