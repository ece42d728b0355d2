// Package clients holds the provider's registered clients: their validated configuration, the
// fosite.Client view of them, and client authentication at the token, introspection and
// revocation endpoints (credential parsing, digest checks through package digest's
// verified-secret cache and process-wide cap on digest work, failure throttling).
package clients

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

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"

	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
)

// Scope and grant names the provider knows.
const (
	// ScopeBearerAuthz is the gateway scope: only a token that carries it is accepted at a site
	// protected by oidc_auth. The name is Authelia's, the one Uptime-Kuma's docs tell users to type.
	ScopeBearerAuthz = "authelia.bearer.authz"

	// GrantClientCredentials is the client_credentials grant (RFC 6749 §4.4).
	GrantClientCredentials = "client_credentials"
	// GrantAuthorizationCode is the authorization_code grant (RFC 6749 §4.1).
	GrantAuthorizationCode = "authorization_code"
	// GrantRefreshToken is the refresh_token grant (RFC 6749 §6).
	GrantRefreshToken = "refresh_token"
	// GrantImplicit is the implicit grant (RFC 6749 §4.2), for the implicit and hybrid flows.
	GrantImplicit = "implicit"
	// GrantDeviceCode is the device authorization grant (RFC 8628), for devices and CLIs
	// without a browser of their own: no redirect URI, no response type.
	GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

	// AuthMethodBasic is client_secret_basic: id and secret in HTTP Basic credentials.
	AuthMethodBasic = "client_secret_basic"
	// AuthMethodPost is client_secret_post: id and secret in the form body.
	AuthMethodPost = "client_secret_post"
	// AuthMethodNone is a public client's method: the id alone.
	AuthMethodNone = "none"

	// PolicyOneFactor and PolicyTwoFactor are the built-in authorization policies.
	PolicyOneFactor = "one_factor"
	PolicyTwoFactor = "two_factor"

	// The resolved consent modes.
	ConsentExplicit      = "explicit"
	ConsentImplicit      = "implicit"
	ConsentPreConfigured = "pre-configured"

	// DefaultPreConfiguredConsentDuration is how long a remembered consent lasts by default.
	DefaultPreConfiguredConsentDuration = 7 * 24 * time.Hour
)

var (
	clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,100}$`)
	// knownGrants are the seed's grant types, all served.
	knownGrants = []string{GrantAuthorizationCode, GrantImplicit, GrantRefreshToken, GrantClientCredentials, GrantDeviceCode}
	// forbiddenCCScopes may not be registered on a client that has the client_credentials grant.
	forbiddenCCScopes = []string{"openid", "offline", "offline_access"}
	// defaultScopes are Authelia's default scopes of a client that signs people in.
	defaultScopes = []string{"openid", "groups", "profile", "email"}
	// responseTypes are the seven code, implicit and hybrid combinations, in canonical word order.
	responseTypes = []string{"code", "id_token", "token", "id_token token", "code id_token", "code token", "code id_token token"}
	// responseModes are the plain modes served (JARMModes are the JWT-secured ones).
	responseModes = []string{"form_post", "query", "fragment"}
	// signingAlgs are the JWS algorithms a signing key can have.
	signingAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)

// Lifespans are a client's effective token lifespans; zero falls back to the provider's.
// DeviceCode is how long a device code (RFC 8628) waits for its person.
type Lifespans struct {
	AccessToken, AuthorizeCode, IDToken, RefreshToken, DeviceCode time.Duration
}

// SigningKey is what a client's signing options are checked against: a configured signing key's
// id and algorithm.
type SigningKey struct {
	ID, Algorithm string
}

// ProviderSettings are the provider's settings a client's options refer to. The zero value is a
// provider with only the generated RS256 key, no named policies and the plain PKCE method off.
type ProviderSettings struct {
	// AuthorizationPolicies are the names of the provider's authorization_policies.
	AuthorizationPolicies []string
	// ClaimsPolicies are the names of the provider's claims_policies.
	ClaimsPolicies []string
	// EnablePKCEPlainChallenge is the provider's enable_pkce_plain_challenge.
	EnablePKCEPlainChallenge bool
	// SigningKeys are the configured signing keys, in order; none means the provider signs with
	// the RS256 key it generates (whose key id is not known before the store opens).
	SigningKeys []SigningKey
}

// Client is a registered client, ready for fosite. It is immutable after provisioning.
type Client struct {
	cfg         Config
	digest      algorithm.Digest   // nil for public clients
	fingerprint digest.Fingerprint // identifies the configured digest
	plaintext   bool
	lifespans   Lifespans // effective: the named set merged over the global one
	// audienceURLs are the audience entries that are URLs, parsed once for the gateway.
	audienceURLs audience.List
	// responseModes are cfg.ResponseModes as fosite takes them.
	responseModes []fosite.ResponseModeType
	warnings      []string
	// jwt is what the client registered for the JWTs it signs (keys.go)
	jwt jwtAuth
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

// New validates cfg (with the secret already resolved) against a provider with default settings
// (see ProviderSettings) and returns the client, with lifespans its effective token lifespans.
// Errors name the client and the option.
func New(cfg Config, lifespans Lifespans) (*Client, error) {
	return NewFor(cfg, lifespans, ProviderSettings{})
}

// configError is a client configuration mistake: the client, the option and what is wrong.
func configError(id, opt, f string, a ...any) error {
	return fmt.Errorf("client %s: %s: %s", id, opt, fmt.Sprintf(f, a...))
}

// NewFor validates cfg (with the secret already resolved) against the provider's settings and
// returns the client, with lifespans its effective token lifespans and every default resolved
// into its Config. Errors name the client, the option and the fix.
func NewFor(cfg Config, lifespans Lifespans, p ProviderSettings) (*Client, error) {
	fail := func(opt, f string, a ...any) error { return configError(cfg.ID, opt, f, a...) }
	if !clientIDPattern.MatchString(cfg.ID) {
		return nil, fmt.Errorf("client %q: client_id must be 1 to 100 characters of A-Z a-z 0-9 . _ ~ -", cfg.ID)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.ID
	}
	c := &Client{}

	defaulted := len(cfg.GrantTypes) == 0
	if err := resolveFlows(&cfg); err != nil {
		return nil, err
	}
	hasCC := slices.Contains(cfg.GrantTypes, GrantClientCredentials)
	hasCode := slices.Contains(cfg.GrantTypes, GrantAuthorizationCode)
	usesAuthorize := hasCode || slices.Contains(cfg.GrantTypes, GrantImplicit)

	switch cfg.RequestedAudienceMode {
	case "":
		cfg.RequestedAudienceMode = "explicit"
	case "explicit", "implicit":
	default:
		return nil, fail("requested_audience_mode", "%q must be explicit or implicit", cfg.RequestedAudienceMode)
	}

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
		case AuthMethodBasic, AuthMethodPost, AuthMethodClientSecretJWT, AuthMethodPrivateKeyJWT:
		case AuthMethodNone:
			return nil, fail("token_endpoint_auth_method", "none is only for public clients; use client_secret_basic")
		default:
			return nil, fail("token_endpoint_auth_method", "unknown method %q (client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, none)", cfg.TokenEndpointAuthMethod)
		}
		switch {
		case cfg.Secret == "" && cfg.TokenEndpointAuthMethod == AuthMethodClientSecretJWT:
			return nil, fail("client_secret", "client_secret_jwt signs assertions with the client secret: set one as '$plaintext$<secret>' (e.g. from {env.…}); generate it with 'caddy oidc hash --random'")
		case cfg.Secret == "" && cfg.TokenEndpointAuthMethod != AuthMethodPrivateKeyJWT:
			return nil, fail("client_secret", "a confidential client needs a secret; generate one and its digest with 'caddy oidc hash --random', and set the digest, e.g. $pbkdf2-sha512$…")
		case cfg.Secret != "":
			d, isPlain, err := DecodeSecret(cfg.Secret)
			if err != nil {
				return nil, fmt.Errorf("client %s: %w", cfg.ID, err)
			}
			c.digest, c.plaintext = d, isPlain
			c.fingerprint = digest.FingerprintOf(cfg.Secret)
		}
	}
	if err := resolveJWT(&cfg, c); err != nil {
		return nil, err
	}

	if usesAuthorize && len(cfg.RedirectURIs) == 0 {
		grant := "the " + GrantAuthorizationCode + " grant"
		if !hasCode {
			grant = "the " + GrantImplicit + " grant"
		}
		hint := ""
		if defaulted {
			grant += " (grant_types' default)"
			hint = "; a client that fetches tokens for itself, such as a monitor, sets 'grant_types client_credentials' instead"
		}
		return nil, fail("redirect_uris", "a client with %s needs at least one redirect URI, the application's callback: 'redirect_uris https://app.example.com/callback'%s", grant, hint)
	}

	if len(cfg.Scopes) == 0 && !hasCC {
		cfg.Scopes = slices.Clone(defaultScopes)
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			return nil, fail("scopes", "%q is not a valid scope name", s)
		}
		if hasCC && slices.Contains(forbiddenCCScopes, s) {
			return nil, fail("scopes", "%q is not allowed on a client with the client_credentials grant", s)
		}
	}
	hasRefresh := slices.Contains(cfg.GrantTypes, GrantRefreshToken)
	for _, s := range []string{"offline_access", "offline"} {
		if slices.Contains(cfg.Scopes, s) && !hasRefresh {
			return nil, fail("scopes", "%s asks for refresh tokens, which need the refresh_token grant; add 'grant_types authorization_code refresh_token' or remove %s", s, s)
		}
	}
	if hasRefresh && !slices.Contains(cfg.Scopes, "offline_access") && !slices.Contains(cfg.Scopes, "offline") {
		c.warnings = append(c.warnings, "the refresh_token grant is never used without the offline_access scope; add offline_access to scopes")
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
		if usesAuthorize {
			if err := checkBearerAuthorize(&cfg); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range cfg.Audience {
		if a == "" {
			return nil, fail("audience", "empty entry")
		}
	}

	if err := checkURIs(&cfg, "redirect_uris", cfg.RedirectURIs, usesAuthorize); err != nil {
		return nil, err
	}
	if err := checkURIs(&cfg, "post_logout_redirect_uris", cfg.PostLogoutRedirectURIs, usesAuthorize); err != nil {
		return nil, err
	}
	if err := checkBackchannel(&cfg, usesAuthorize || slices.Contains(cfg.GrantTypes, GrantDeviceCode)); err != nil {
		return nil, err
	}
	if err := resolveResponseModes(&cfg, usesAuthorize); err != nil {
		return nil, err
	}
	for _, m := range cfg.ResponseModes {
		c.responseModes = append(c.responseModes, fosite.ResponseModeType(m))
	}

	switch pol := cfg.AuthorizationPolicy; {
	case pol == "" && hasCC && !usesAuthorize:
		cfg.AuthorizationPolicy = PolicyOneFactor
	case pol == "":
		cfg.AuthorizationPolicy = PolicyTwoFactor
	case pol == PolicyOneFactor, pol == PolicyTwoFactor, slices.Contains(p.AuthorizationPolicies, pol):
	default:
		return nil, fail("authorization_policy", "no authorization policy named %q; use one_factor, two_factor, or define it in the oidc block with 'authorization_policy %s { default_policy two_factor  rule { … } }'", pol, pol)
	}

	if err := resolveConsent(&cfg); err != nil {
		return nil, err
	}

	switch cfg.PKCEChallengeMethod {
	case "", "S256":
	case "plain":
		if !p.EnablePKCEPlainChallenge {
			return nil, fail("pkce_challenge_method", "plain sends the verifier in the clear and needs the provider option enable_pkce_plain_challenge; use S256 (recommended) or enable plain in the oidc block")
		}
	default:
		return nil, fail("pkce_challenge_method", "%q must be S256 or plain (or left out)", cfg.PKCEChallengeMethod)
	}

	cfg.RequirePKCE = cfg.RequirePKCE || cfg.PKCEChallengeMethod != "" || cfg.Public

	var err error
	if cfg.IDTokenSignedResponseAlg, err = resolveSigning(cfg.ID, "id_token_signed_response", cfg.IDTokenSignedResponseAlg, cfg.IDTokenSignedResponseKeyID, "RS256", p.SigningKeys); err != nil {
		return nil, err
	}
	if cfg.UserinfoSignedResponseAlg, err = resolveSigning(cfg.ID, "userinfo_signed_response", cfg.UserinfoSignedResponseAlg, cfg.UserinfoSignedResponseKeyID, "none", p.SigningKeys); err != nil {
		return nil, err
	}
	if err := resolveSignedAnswers(&cfg, p); err != nil {
		return nil, err
	}
	if err := resolveAccessTokenSigning(&cfg, p.SigningKeys); err != nil {
		return nil, err
	}

	if cfg.SectorIdentifierURI != "" {
		u, err := url.Parse(cfg.SectorIdentifierURI)
		switch {
		case err != nil || u.Scheme != "https" || u.Host == "":
			return nil, fail("sector_identifier_uri", "%q must be an absolute https URL, e.g. https://app.example.com/sector.json", cfg.SectorIdentifierURI)
		case u.Fragment != "" || strings.Contains(cfg.SectorIdentifierURI, "#"):
			return nil, fail("sector_identifier_uri", "%q may not carry a fragment; remove the part from '#'", cfg.SectorIdentifierURI)
		case u.User != nil:
			return nil, fail("sector_identifier_uri", "%q may not carry user info; remove the part before '@'", cfg.SectorIdentifierURI)
		}
	}

	for i, id := range cfg.ResourceServerFor {
		switch {
		case cfg.Public:
			return nil, fail("resource_server_for", "a public client cannot call the introspection endpoint; remove the option or make the client confidential with a secret")
		case !clientIDPattern.MatchString(id):
			return nil, fail("resource_server_for", "%q is not a client_id", id)
		case slices.Contains(cfg.ResourceServerFor[:i], id):
			return nil, fail("resource_server_for", "%q is listed twice", id)
		}
	}

	if cfg.ClaimsPolicy != "" && !slices.Contains(p.ClaimsPolicies, cfg.ClaimsPolicy) {
		return nil, fail("claims_policy", "no claims policy named %q; define it in the oidc block with 'claims_policy %s { id_token email groups }'", cfg.ClaimsPolicy, cfg.ClaimsPolicy)
	}

	c.lifespans = lifespans
	c.audienceURLs = audience.ParseList(cfg.Audience)
	c.cfg = cfg
	return c, nil
}

// resolveFlows checks grant_types and response_types against each other and fills their
// defaults: response_types "code", and grants derived from the response types.
func resolveFlows(cfg *Config) error {
	fail := func(opt, f string, a ...any) error { return configError(cfg.ID, opt, f, a...) }
	for i, g := range cfg.GrantTypes {
		switch {
		case !slices.Contains(knownGrants, g):
			return fail("grant_types", "unknown grant type %q (authorization_code, refresh_token, implicit, client_credentials, %s)", g, GrantDeviceCode)
		case slices.Contains(cfg.GrantTypes[:i], g):
			return fail("grant_types", "%q is listed twice", g)
		}
	}
	types := make([]string, 0, len(cfg.ResponseTypes))
	for _, t := range cfg.ResponseTypes {
		n, ok := normalResponseType(t)
		if !ok {
			return fail("response_types", "%q is not a response type (code, id_token, token, \"id_token token\", \"code id_token\", \"code token\", \"code id_token token\")", t)
		}
		if slices.Contains(types, n) {
			return fail("response_types", "%q is listed twice", t)
		}
		types = append(types, n)
	}
	if len(cfg.ResponseTypes) > 0 {
		cfg.ResponseTypes = types
	}

	if len(cfg.GrantTypes) == 0 {
		if len(cfg.ResponseTypes) == 0 {
			cfg.ResponseTypes = []string{"code"}
		}
		for _, t := range cfg.ResponseTypes {
			code, implicit := responseTypeGrants(t)
			if code && !slices.Contains(cfg.GrantTypes, GrantAuthorizationCode) {
				cfg.GrantTypes = append(cfg.GrantTypes, GrantAuthorizationCode)
			}
			if implicit && !slices.Contains(cfg.GrantTypes, GrantImplicit) {
				cfg.GrantTypes = append(cfg.GrantTypes, GrantImplicit)
			}
		}
		return nil
	}

	hasCode := slices.Contains(cfg.GrantTypes, GrantAuthorizationCode)
	hasImplicit := slices.Contains(cfg.GrantTypes, GrantImplicit)
	switch {
	case !hasCode && !hasImplicit:
		if len(cfg.ResponseTypes) > 0 {
			return fail("response_types", "only a client with the authorization_code or implicit grant uses the authorization endpoint; add 'grant_types authorization_code' or remove response_types")
		}
		if slices.Contains(cfg.GrantTypes, GrantRefreshToken) && !slices.Contains(cfg.GrantTypes, GrantDeviceCode) {
			return fail("grant_types", "refresh_token needs the authorization_code or device_code grant (refresh tokens come with the code, hybrid and device flows); add authorization_code to grant_types or remove refresh_token")
		}
		return nil
	case len(cfg.ResponseTypes) == 0 && hasCode:
		cfg.ResponseTypes = []string{"code"}
	case len(cfg.ResponseTypes) == 0:
		return fail("response_types", "the implicit grant needs an implicit response type; set 'response_types id_token' (or \"id_token token\")")
	}
	if slices.Contains(cfg.GrantTypes, GrantRefreshToken) && !hasCode && !slices.Contains(cfg.GrantTypes, GrantDeviceCode) {
		return fail("grant_types", "refresh_token needs the authorization_code or device_code grant (refresh tokens come with the code, hybrid and device flows); add authorization_code to grant_types or remove refresh_token")
	}
	usedCode, usedImplicit := false, false
	for _, t := range cfg.ResponseTypes {
		code, implicit := responseTypeGrants(t)
		switch {
		case code && implicit && (!hasCode || !hasImplicit):
			return fail("response_types", "%q is a hybrid type and needs both the authorization_code and implicit grants; add them to grant_types or remove %q", t, t)
		case code && !hasCode:
			return fail("response_types", "%q needs the authorization_code grant; add it to grant_types or remove %q", t, t)
		case implicit && !hasImplicit:
			return fail("response_types", "%q returns tokens from the authorization endpoint and needs the implicit grant; add implicit to grant_types or remove %q", t, t)
		}
		usedCode, usedImplicit = usedCode || code, usedImplicit || implicit
	}
	if hasCode && !usedCode {
		return fail("grant_types", "authorization_code is unused: no response type has code; add 'response_types code' or remove the grant")
	}
	if hasImplicit && !usedImplicit {
		return fail("grant_types", "implicit is unused: no response type returns id_token or token; add e.g. 'response_types \"code id_token\"' or remove the grant")
	}
	return nil
}

// normalResponseType puts a response type's words in canonical order ("token code" → "code
// token") and reports whether it is one of the seven served.
func normalResponseType(t string) (string, bool) {
	words := strings.Fields(t)
	order := map[string]int{"code": 0, "id_token": 1, "token": 2}
	for _, w := range words {
		if _, ok := order[w]; !ok {
			return "", false
		}
	}
	slices.SortFunc(words, func(a, b string) int { return order[a] - order[b] })
	n := strings.Join(words, " ")
	return n, slices.Contains(responseTypes, n)
}

// responseTypeGrants reports the grants a response type needs: authorization_code when it has
// "code", implicit when it returns a token from the authorization endpoint.
func responseTypeGrants(t string) (code, implicit bool) {
	for _, w := range strings.Fields(t) {
		if w == "code" {
			code = true
		} else {
			implicit = true
		}
	}
	return code, implicit
}

// checkBearerAuthorize holds a client that gets the gateway scope through the authorization
// endpoint to Authelia's rules: PAR, PKCE with S256, explicit consent, the code response type
// and the form_post response mode only, and no implicit grant.
func checkBearerAuthorize(cfg *Config) error {
	fail := func(opt, f string, a ...any) error { return configError(cfg.ID, opt, f, a...) }
	if slices.Contains(cfg.GrantTypes, GrantImplicit) {
		return fail("grant_types", "a client with %s may not use the implicit grant: tokens for the gateway never travel in the browser's address bar", ScopeBearerAuthz)
	}
	if !cfg.RequirePushedAuthorizationRequests {
		return fail("require_pushed_authorization_requests", "a client with %s that signs people in must push its authorization requests; set 'require_pushed_authorization_requests true'", ScopeBearerAuthz)
	}
	if cfg.PKCEChallengeMethod != "S256" {
		return fail("pkce_challenge_method", "a client with %s that signs people in must use PKCE with S256; set 'pkce_challenge_method S256'", ScopeBearerAuthz)
	}
	if cfg.ConsentMode != "" && cfg.ConsentMode != "auto" && cfg.ConsentMode != ConsentExplicit {
		return fail("consent_mode", "a client with %s must ask for consent every time; set 'consent_mode explicit' or leave it out", ScopeBearerAuthz)
	}
	if cfg.PreConfiguredConsentDuration != 0 {
		return fail("pre_configured_consent_duration", "a client with %s must ask for consent every time; remove it", ScopeBearerAuthz)
	}
	cfg.ConsentMode = ConsentExplicit
	if len(cfg.ResponseModes) == 0 {
		cfg.ResponseModes = []string{"form_post"}
	}
	for _, m := range cfg.ResponseModes {
		if m != "form_post" && m != ResponseModeFormPostJWT {
			return fail("response_modes", "a client with %s may only use form_post or form_post.jwt, not %q", ScopeBearerAuthz, m)
		}
	}
	return nil
}

// checkURIs checks redirect_uris or post_logout_redirect_uris: absolute, no fragment, http or
// https (any scheme for a public client's native app), each once.
func checkURIs(cfg *Config, opt string, list []string, usesAuthorize bool) error {
	fail := func(f string, a ...any) error { return configError(cfg.ID, opt, f, a...) }
	if len(list) > 0 && !usesAuthorize {
		return fail("only a client that signs people in (the authorization_code or implicit grant) redirects browsers; add 'grant_types authorization_code' or remove %s", opt)
	}
	for i, s := range list {
		u, err := url.Parse(s)
		switch {
		case err != nil || u.Scheme == "":
			return fail("%q is not an absolute URI such as https://app.example.com/callback", s)
		case u.Fragment != "" || strings.Contains(s, "#"):
			return fail("%q may not carry a fragment (RFC 6749 §3.1.2); remove the part from '#'", s)
		case u.Scheme == "http" || u.Scheme == "https":
			if u.Host == "" {
				return fail("%q has no host", s)
			}
		case !cfg.Public:
			return fail("%q: a confidential client's URIs use http or https; custom schemes are for native apps, which are public clients", s)
		}
		if slices.Contains(list[:i], s) {
			return fail("%q is listed twice", s)
		}
	}
	return nil
}

// resolveResponseModes checks response_modes and fills the default: form_post, query for a
// "code" response type, fragment for the others.
func resolveResponseModes(cfg *Config, usesAuthorize bool) error {
	fail := func(f string, a ...any) error { return configError(cfg.ID, "response_modes", f, a...) }
	if !usesAuthorize {
		if len(cfg.ResponseModes) > 0 {
			return fail("only a client that signs people in (the authorization_code or implicit grant) uses response modes; remove response_modes")
		}
		return nil
	}
	hasCodeOnly, hasOther := false, false
	for _, t := range cfg.ResponseTypes {
		if t == "code" {
			hasCodeOnly = true
		} else {
			hasOther = true
		}
	}
	if len(cfg.ResponseModes) == 0 {
		cfg.ResponseModes = []string{"form_post"}
		if hasCodeOnly {
			cfg.ResponseModes = append(cfg.ResponseModes, "query")
		}
		if hasOther {
			cfg.ResponseModes = append(cfg.ResponseModes, "fragment")
		}
		return nil
	}
	for i, m := range cfg.ResponseModes {
		switch {
		case !slices.Contains(responseModes, m) && !slices.Contains(JARMModes, m):
			return fail("unknown response mode %q (form_post, query, fragment, and with JARM jwt, query.jwt, fragment.jwt, form_post.jwt)", m)
		case slices.Contains(cfg.ResponseModes[:i], m):
			return fail("%q is listed twice", m)
		case m == "query" && !hasCodeOnly:
			return fail("query cannot carry the tokens of response types %s (OAuth 2.0 Multiple Response Type Encoding); use fragment or form_post, or add 'response_types code'", strings.Join(cfg.ResponseTypes, ", "))
		case m == ResponseModeQueryJWT && !hasCodeOnly:
			return fail("query.jwt cannot carry the tokens of response types %s (JARM); use fragment.jwt, form_post.jwt or jwt, or add 'response_types code'", strings.Join(cfg.ResponseTypes, ", "))
		}
	}
	return nil
}

// resolveConsent checks consent_mode and pre_configured_consent_duration and resolves auto.
func resolveConsent(cfg *Config) error {
	fail := func(opt, f string, a ...any) error { return configError(cfg.ID, opt, f, a...) }
	if cfg.PreConfiguredConsentDuration < 0 {
		return fail("pre_configured_consent_duration", "%s must be positive", time.Duration(cfg.PreConfiguredConsentDuration))
	}
	switch cfg.ConsentMode {
	case "", "auto":
		cfg.ConsentMode = ConsentExplicit
		if cfg.PreConfiguredConsentDuration > 0 {
			cfg.ConsentMode = ConsentPreConfigured
		}
	case ConsentPreConfigured:
		if cfg.PreConfiguredConsentDuration == 0 {
			cfg.PreConfiguredConsentDuration = duration.Duration(DefaultPreConfiguredConsentDuration)
		}
	case ConsentExplicit, ConsentImplicit:
		if cfg.PreConfiguredConsentDuration > 0 {
			return fail("pre_configured_consent_duration", "only applies to consent_mode pre-configured (or auto), not %s; remove it or set 'consent_mode pre-configured'", cfg.ConsentMode)
		}
	default:
		return fail("consent_mode", "%q must be auto, explicit, implicit or pre-configured", cfg.ConsentMode)
	}
	return nil
}

// resolveSigning checks a *_signed_response_alg / *_signed_response_key_id pair against the
// provider's keys and returns the effective algorithm. opt is the options' common prefix.
func resolveSigning(id, opt, alg, kid, def string, keys []SigningKey) (string, error) {
	algOpt, kidOpt := opt+"_alg", opt+"_key_id"
	if kid != "" {
		i := slices.IndexFunc(keys, func(k SigningKey) bool { return k.ID == kid })
		if i < 0 {
			if len(keys) == 0 {
				return "", configError(id, kidOpt, "no signing_key has key_id %q: only the generated RS256 key is configured, and its key id is not fixed; add 'signing_key %s { algorithm … key_file … }' or remove %s", kid, kid, kidOpt)
			}
			return "", configError(id, kidOpt, "no signing_key has key_id %q (configured: %s); name one of them or add 'signing_key %s { … }'", kid, keyIDs(keys), kid)
		}
		if alg != "" && alg != keys[i].Algorithm {
			return "", configError(id, algOpt, "%s does not match the %s key %q named by %s; remove %s (the key decides) or name a %s key", alg, keys[i].Algorithm, kid, kidOpt, algOpt, alg)
		}
		return keys[i].Algorithm, nil
	}
	if alg == "" {
		alg = def
	}
	if alg == "none" {
		if def == "none" {
			return alg, nil
		}
		return "", configError(id, algOpt, "%s are always signed; use RS256 or the algorithm of a signing_key", alwaysSigned(opt))
	}
	if !slices.Contains(signingAlgs, alg) {
		return "", configError(id, algOpt, "unknown algorithm %q (%s)", alg, strings.Join(signingAlgs, ", "))
	}
	served := []string{"RS256"}
	if len(keys) > 0 {
		served = served[:0]
		for _, k := range keys {
			if !slices.Contains(served, k.Algorithm) {
				served = append(served, k.Algorithm)
			}
		}
	}
	if !slices.Contains(served, alg) {
		return "", configError(id, algOpt, "no signing key serves %s (keys serve: %s); add 'signing_key { algorithm %s key_file … }' or pick one of those", alg, strings.Join(served, ", "), alg)
	}
	return alg, nil
}

func keyIDs(keys []SigningKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return strings.Join(ids, ", ")
}

// DeviceCodeLifespan is how long the client's device codes (RFC 8628) wait for their person;
// 0 means the provider's.
func (c *Client) DeviceCodeLifespan() time.Duration { return c.lifespans.DeviceCode }

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
func (c *Client) Fingerprint() digest.Fingerprint { return c.fingerprint }

// HasScope reports whether the client is currently registered with scope s.
func (c *Client) HasScope(s string) bool { return slices.Contains(c.cfg.Scopes, s) }

// GetID implements fosite.Client.
func (c *Client) GetID() string { return c.cfg.ID }

// GetHashedSecret implements fosite.Client; Portcullis authenticates clients itself and never
// hands fosite the digest.
func (c *Client) GetHashedSecret() []byte { return nil }

// GetRedirectURIs implements fosite.Client: the redirect_uris.
func (c *Client) GetRedirectURIs() []string { return c.cfg.RedirectURIs }

// GetGrantTypes implements fosite.Client.
func (c *Client) GetGrantTypes() fosite.Arguments { return c.cfg.GrantTypes }

// GetResponseTypes implements fosite.Client: the response_types, default "code" for a client
// with the authorization_code grant, none for a client that does not use the authorization
// endpoint. Each is in canonical word order ("code id_token token").
func (c *Client) GetResponseTypes() fosite.Arguments { return c.cfg.ResponseTypes }

// GetResponseModes implements fosite.ResponseModeClient: the response_modes with their default.
func (c *Client) GetResponseModes() []fosite.ResponseModeType { return c.responseModes }

// PostLogoutRedirectURIs are the URIs RP-initiated logout may redirect to (exact match).
func (c *Client) PostLogoutRedirectURIs() []string { return c.cfg.PostLogoutRedirectURIs }

// AuthorizationPolicy is "one_factor", "two_factor" or the name of one of the provider's
// authorization_policies: who may sign in to the client at the authorization endpoint.
func (c *Client) AuthorizationPolicy() string { return c.cfg.AuthorizationPolicy }

// ConsentMode is the resolved consent mode: "explicit", "implicit" or "pre-configured".
func (c *Client) ConsentMode() string { return c.cfg.ConsentMode }

// PreConfiguredConsentDuration is how long a remembered consent lasts; non-zero only when
// ConsentMode is "pre-configured".
func (c *Client) PreConfiguredConsentDuration() time.Duration {
	return time.Duration(c.cfg.PreConfiguredConsentDuration)
}

// RequirePKCE reports whether the client must send a PKCE challenge: require_pkce, a pinned
// pkce_challenge_method, or a public client. The provider's enforce_pkce applies on top.
func (c *Client) RequirePKCE() bool { return c.cfg.RequirePKCE }

// PKCEChallengeMethod is the pinned PKCE method: "" (any the provider allows), "plain" or "S256".
func (c *Client) PKCEChallengeMethod() string { return c.cfg.PKCEChallengeMethod }

// RequirePAR reports the client's own require_pushed_authorization_requests; the provider's
// option of the same name applies on top.
func (c *Client) RequirePAR() bool { return c.cfg.RequirePushedAuthorizationRequests }

// IDTokenSigning is how the client's ID tokens are signed: the algorithm (default RS256) and the
// signing key's id, or "" for the provider's first key of that algorithm.
func (c *Client) IDTokenSigning() (alg, keyID string) {
	return c.cfg.IDTokenSignedResponseAlg, c.cfg.IDTokenSignedResponseKeyID
}

// UserinfoSigning is how the client's userinfo responses are signed: the algorithm, "none" (the
// default) for plain JSON, and the signing key's id, or "" for the provider's first key of that
// algorithm.
func (c *Client) UserinfoSigning() (alg, keyID string) {
	return c.cfg.UserinfoSignedResponseAlg, c.cfg.UserinfoSignedResponseKeyID
}

// SectorIdentifier is the client's sector_identifier_uri, the sector of its pairwise subject
// identifiers, or "" for public subject identifiers.
func (c *Client) SectorIdentifier() string { return c.cfg.SectorIdentifierURI }

// ClaimsPolicy names the provider's claims policy for the client's ID tokens, or "" for none
// (the ID token carries every claim of the granted scopes).
func (c *Client) ClaimsPolicy() string { return c.cfg.ClaimsPolicy }

// ReadsInFull reports whether the client may read the user's claims (username, and the "sub"
// the token's client sees) of a token issued to tokenClient at the introspection endpoint: its
// own tokens, and those of the clients its resource_server_for lists.
func (c *Client) ReadsInFull(tokenClient string) bool {
	return tokenClient == c.cfg.ID || slices.Contains(c.cfg.ResourceServerFor, tokenClient)
}

// CheckResourceServers checks that every client a resource_server_for option lists is
// registered (registered holds every client of the config, by id). The error names the client,
// the option and the id.
func CheckResourceServers(registered map[string]*Client) error {
	ids := make([]string, 0, len(registered))
	for id := range registered {
		ids = append(ids, id)
	}
	slices.Sort(ids) // the same error for the same config, whatever the map's order
	for _, id := range ids {
		for _, target := range registered[id].cfg.ResourceServerFor {
			if _, ok := registered[target]; !ok {
				return configError(id, "resource_server_for", "no client %q is registered; list the client_id of each client whose tokens this one may introspect in full", target)
			}
		}
	}
	return nil
}

// Warnings are harmless oddities of the client's configuration, to be logged.
func (c *Client) Warnings() []string { return c.warnings }

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

var (
	_ fosite.ClientWithCustomTokenLifespans = (*Client)(nil)
	_ fosite.ResponseModeClient             = (*Client)(nil)
)
