// Package oauth is the provider's OAuth 2.0 and OpenID Connect protocol: the fosite composition
// (the token endpoint's handlers in a table by grant type), Portcullis's prefixed opaque-token
// strategy, the fosite storage adapter on the key-value store, and one file per endpoint or flow:
// discovery, authorization, pushed authorization requests, token, userinfo, introspection,
// revocation and logout, with the ID token signer; and the gateway's Bearer check with its token
// cache. It does not import Caddy: the oidcprovider package routes requests here, and what the
// protocol needs of the rest (users, for one) it declares as interfaces.
package oauth

import (
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/par"
	"github.com/ory/fosite/handler/pkce"
	"github.com/ory/fosite/token/hmac"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/keys"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// TokenPrefix starts every opaque token Portcullis issues, followed by the kind ("at_", "rt_",
// "ac_"), so a gateway can tell its own tokens from an upstream's API tokens.
const TokenPrefix = "portcullis_"

// Token kinds, used in token prefixes and storage keys.
const (
	kindAccess  = "at"
	kindRefresh = "rt"
	kindCode    = "ac"
	kindOIDC    = "oidc" // the OpenID Connect request kept beside a code
	kindPKCE    = "pkce" // the PKCE challenge kept beside a code
)

// Config is what a Provider is made of. Every field is required unless it says otherwise.
type Config struct {
	// Issuer is the issuer URL without a trailing slash.
	Issuer string
	// Lifespans are the provider-wide token lifespans.
	Lifespans clients.Lifespans
	// HMACSecret keys the HMAC of opaque tokens (at least 32 bytes).
	HMACSecret []byte
	// KV stores tokens.
	KV store.KV
	// Clients finds a registered client by id.
	Clients func(id string) (*clients.Client, bool)
	// Authenticator authenticates clients at the endpoints.
	Authenticator *clients.Authenticator
	// ClientIP is the client address of a request as the server's trusted proxies settle it.
	ClientIP func(*http.Request) string
	// Keys are the signing keys, published in the JWKS.
	Keys []*keys.Key
	// Tokens is the decoded access-token cache of the store, shared by the configs that use it.
	Tokens *TokenCache
	// Logger receives the provider's log lines (never a secret or a token). Optional.
	Logger *zap.Logger
	// OnTokenIssued, OnTokenRefused and OnTokenRevoked, when set, are told of each token issued
	// (registered client id, grant type), each token request refused (grant type, or "other" for
	// one this provider does not serve, and the OAuth 2.0 error code) and each revocation.
	OnTokenIssued func(client, grant string)
	// Cutoffs are the clients' revocation cut-offs (caddy oidc tokens revoke), shared by the
	// configs of one store. Optional.
	Cutoffs        *ClientCutoffs
	OnTokenRefused func(grant, errCode string)
	OnTokenRevoked func()

	// Revocations are the JWT access tokens ended before their expiry, shared by the configs of
	// one store, so the gate checks those tokens without reading the store. Optional: without
	// it the gate reads a JWT access token's record, as for an opaque token.
	Revocations *Revocations
	// LongestAccessTokenLifespan is the longest any client's access tokens live: how long a
	// revocation entry must be kept when the token's own expiry is not at hand. Optional:
	// Lifespans.AccessToken when shorter or zero (an hour when both are zero).
	LongestAccessTokenLifespan time.Duration

	// RequirePAR makes every client push its authorization requests (RFC 9126).
	RequirePAR bool
	// EnforcePKCE is "never", "public_clients_only" (or "") or "always".
	EnforcePKCE string
	// EnablePKCEPlain allows the plain PKCE challenge method.
	EnablePKCEPlain bool
	// MinParameterEntropy is the least length of state and nonce; 0 is fosite's 8, -1 turns the
	// check off.
	MinParameterEntropy int
	// ClaimsPolicies name the claims an ID token may carry beside the standard ones, for clients
	// with a claims_policy. Optional.
	ClaimsPolicies map[string][]string
	// ScopesSupported and ClaimsSupported are listed in the discovery document when People is
	// set.
	ScopesSupported, ClaimsSupported []string
	// People finds users and their claims for the user flows. Optional: without it only
	// client_credentials is served.
	People People

	// SessionLifespan is the longest a portal session lives (the longer of its expiration and
	// remember_me): how long the record that a client got an ID token in a session is kept for
	// its back-channel logout, when that is longer than the client's refresh token lifespan.
	// Optional.
	SessionLifespan time.Duration
	// BackchannelRetries are the waits before each retry of a back-channel logout whose
	// delivery failed; after the last retry fails it is given up. Optional: default
	// DefaultBackchannelRetries. Tests shorten it; it is not a user-facing option.
	BackchannelRetries []time.Duration
	// OnBackchannelLogout, when set, is told of each back-channel logout attempt's outcome:
	// the registered client id and delivered, retried, given_up or dropped. Optional.
	OnBackchannelLogout func(client, result string)
}

// People is what the provider needs to know of users: whether one may still hold tokens, and
// the claims of the scopes granted to a client.
type People interface {
	// Active reports whether the user exists and is not disabled; err (wrapping
	// ErrUnavailable) when the user directory cannot be asked, which is never a yes.
	Active(ctx context.Context, username string) (bool, error)
	// Claims are the user's claims for the granted scopes (profile, email, groups…), as the ID
	// token and userinfo carry them; ok is false when the user is gone or disabled; err (wrapping
	// ErrUnavailable) when the user directory cannot be asked.
	Claims(ctx context.Context, username string, scopes []string) (claims map[string]any, ok bool, err error)
}

// Provider is the fosite composition of one running config.
type Provider struct {
	cfg      Config
	oauth2   fosite.OAuth2Provider
	strategy *prefixedStrategy
	storage  *tokenStorage
	signer   *keySigner
	// deviceRequests limits device authorization requests per address.
	deviceRequests *clients.Limiter
	// secretID identifies the HMAC secret: a cached token checked under another secret is not
	// trusted.
	secretID secretID
	// bcl delivers back-channel logouts.
	bcl *backchannel

	// access is the access-token strategy: opaque, or JWT per client (jwtaccess.go).
	access *accessStrategy
	// jwts are the JWT access tokens whose signatures the gate verified.
	jwts *jwtCache
	// userAEAD seals the username claim of users' JWT access tokens.
	userAEAD cipher.AEAD
}

// New composes fosite: the authorization code flow with OpenID Connect (and the implicit and
// hybrid flows for clients that register their response types), PKCE, refresh tokens,
// client_credentials, the device authorization grant (device.go), introspection and revocation.
func New(cfg Config) *Provider {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	globalSecret := sha256.Sum256(cfg.HMACSecret)
	if cfg.LongestAccessTokenLifespan < cfg.Lifespans.AccessToken {
		cfg.LongestAccessTokenLifespan = cfg.Lifespans.AccessToken
	}
	if cfg.LongestAccessTokenLifespan <= 0 {
		cfg.LongestAccessTokenLifespan = time.Hour // fosite's default access token lifespan
	}
	p := &Provider{cfg: cfg, secretID: secretIDOf(cfg.HMACSecret), jwts: newJWTCache(jwtCacheSize), userAEAD: userSealer(cfg.HMACSecret), deviceRequests: newDeviceRequests()}
	p.bcl = newBackchannel(p)
	entropy := cfg.MinParameterEntropy
	switch {
	case entropy == 0:
		entropy = fosite.MinParameterEntropy
	case entropy < 0:
		entropy = 1 // fosite reads 0 as its default; a state of one character is the least it takes
	}
	fc := &fosite.Config{
		AccessTokenLifespan:      cfg.Lifespans.AccessToken,
		RefreshTokenLifespan:     cfg.Lifespans.RefreshToken,
		AuthorizeCodeLifespan:    cfg.Lifespans.AuthorizeCode,
		IDTokenLifespan:          cfg.Lifespans.IDToken,
		GlobalSecret:             globalSecret[:],
		TokenEntropy:             32,
		ScopeStrategy:            fosite.ExactScopeStrategy,
		AudienceMatchingStrategy: audienceStrategy,
		ClientAuthenticationStrategy: func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
			c, err := p.authenticateClient(ctx, r, form)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		AccessTokenIssuer:              cfg.Issuer,
		IDTokenIssuer:                  cfg.Issuer,
		SendDebugMessagesToClients:     false,
		MinParameterEntropy:            entropy,
		EnforcePKCE:                    cfg.EnforcePKCE == "always",
		EnforcePKCEForPublicClients:    cfg.EnforcePKCE != "never",
		EnablePKCEPlainChallengeMethod: cfg.EnablePKCEPlain,
		OmitRedirectScopeParam:         true,
		FormPostHTMLTemplate:           formPostTemplate,
		ResponseModeHandlerExtension:   &jarmHandler{p: p},
	}
	st := &prefixedStrategy{HMACSHAStrategyUnPrefixed: oauth2.NewHMACSHAStrategyUnPrefixed(&hmac.HMACStrategy{Config: fc}, fc)}
	acc := &accessStrategy{prefixedStrategy: st, p: p}
	storage := &tokenStorage{kv: cfg.KV, tokens: cfg.Tokens, clients: cfg.Clients, cutoffs: cfg.Cutoffs, refreshLifespan: cfg.Lifespans.RefreshToken,
		revocations: cfg.Revocations, accessLifespan: cfg.LongestAccessTokenLifespan}
	_, storage.shared = cfg.KV.(store.Changes)
	signer := &keySigner{keys: cfg.Keys}
	idTokens := &idTokenStrategy{DefaultStrategy: openid.DefaultStrategy{Signer: signer, Config: fc}, p: p}
	idHelper := &openid.IDTokenHandleHelper{IDTokenStrategy: idTokens}
	validator := openid.NewOpenIDConnectRequestValidator(signer, fc)
	codeFlow := &oauth2.AuthorizeExplicitGrantHandler{
		AccessTokenStrategy: acc, RefreshTokenStrategy: st, AuthorizeCodeStrategy: st,
		CoreStorage: storage, TokenRevocationStorage: storage, Config: fc,
	}
	implicitFlow := &oauth2.AuthorizeImplicitGrantTypeHandler{AccessTokenStrategy: acc, AccessTokenStorage: storage, Config: fc}
	refreshFlow := &oauth2.RefreshTokenGrantHandler{
		AccessTokenStrategy: acc, RefreshTokenStrategy: st, TokenRevocationStorage: storage, Config: fc,
	}
	oidcCode := &openid.OpenIDConnectExplicitHandler{
		OpenIDConnectRequestStorage: storage, IDTokenHandleHelper: idHelper,
		OpenIDConnectRequestValidator: validator, Config: fc,
	}
	oidcImplicit := &openid.OpenIDConnectImplicitHandler{
		AuthorizeImplicitGrantTypeHandler: implicitFlow, IDTokenHandleHelper: idHelper,
		OpenIDConnectRequestValidator: validator, Config: fc,
	}
	oidcHybrid := &openid.OpenIDConnectHybridHandler{
		AuthorizeExplicitGrantHandler: codeFlow, AuthorizeImplicitGrantTypeHandler: implicitFlow,
		IDTokenHandleHelper: idHelper, OpenIDConnectRequestStorage: storage,
		OpenIDConnectRequestValidator: validator, Config: fc,
	}
	oidcRefresh := &openid.OpenIDConnectRefreshHandler{IDTokenHandleHelper: idHelper, Config: fc}
	pkceFlow := &pkce.Handler{AuthorizeCodeStrategy: st, Storage: storage, Config: fc}
	people := &refreshedUser{p: p}

	fc.PushedAuthorizeRequestURIPrefix = parPrefix
	fc.PushedAuthorizeContextLifespan = parLifetime
	fc.PushedAuthorizeEndpointHandlers = fosite.PushedAuthorizeEndpointHandlers{&par.PushedAuthorizeHandler{Storage: storage, Config: fc}}
	fc.AuthorizeEndpointHandlers = fosite.AuthorizeEndpointHandlers{codeFlow, implicitFlow, oidcCode, oidcImplicit, oidcHybrid, pkceFlow}
	clientCredentials := &oauth2.ClientCredentialsGrantHandler{
		HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: acc, AccessTokenStorage: storage, Config: fc},
		Config:       fc,
	}
	device := &deviceGrant{p: p, fc: fc, access: &oauth2.HandleHelper{AccessTokenStrategy: acc, AccessTokenStorage: storage, Config: fc},
		refresh: st, storage: storage, idTokens: idHelper}
	oidcCodeOnly, oidcRefreshOnly := grantHandler{oidcCode, true}, grantHandler{oidcRefresh, true}
	fc.TokenEndpointHandlers = fosite.TokenEndpointHandlers{&grantTable{grants: map[string]grantLists{
		clients.GrantClientCredentials: {
			request:  []grantHandler{{clientCredentials, false}},
			response: []grantHandler{{clientCredentials, false}},
		},
		grantAuthorizationCode: {
			request:  []grantHandler{{codeFlow, false}, {people, false}, {pkceFlow, false}},
			response: []grantHandler{{codeFlow, false}, oidcCodeOnly},
		},
		grantRefreshToken: {
			request:  []grantHandler{{refreshFlow, false}, {people, false}, oidcRefreshOnly},
			response: []grantHandler{{refreshFlow, false}, oidcRefreshOnly},
		},
		grantDeviceCode: {
			request:  []grantHandler{{device, false}, {people, false}},
			response: []grantHandler{{device, false}},
		},
	}}}
	fc.TokenIntrospectionHandlers = fosite.TokenIntrospectionHandlers{
		&kindIntrospector{core: &oauth2.CoreValidator{CoreStrategy: acc, CoreStorage: storage, Config: fc}},
	}
	fc.RevocationHandlers = fosite.RevocationHandlers{
		&oauth2.TokenRevocationHandler{TokenRevocationStorage: storage, AccessTokenStrategy: acc, RefreshTokenStrategy: st},
	}
	p.oauth2 = fosite.NewOAuth2Provider(storage, fc)
	p.strategy, p.access, p.storage, p.signer = st, acc, storage, signer
	return p
}

// authenticateClient is fosite's ClientAuthenticationStrategy.
func (p *Provider) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (*clients.Client, error) {
	return p.cfg.Authenticator.Authenticate(ctx, r, form, p.cfg.ClientIP(r))
}

// Keys are the provider's signing keys, the retired ones too (they verify, never sign).
func (p *Provider) Keys() []*keys.Key { return p.cfg.Keys }

// SigningKey is the key that signs for a client's key id and algorithm options: the key with id
// kid, else the first key of alg, else the first RS256 key; never a retired key.
func (p *Provider) SigningKey(kid, alg string) (*keys.Key, error) { return p.signer.key(kid, alg) }

// prefixedStrategy is fosite's HMAC-SHA512/256 token strategy with Portcullis's prefixes.
type prefixedStrategy struct {
	*oauth2.HMACSHAStrategyUnPrefixed
}

var _ oauth2.CoreStrategy = (*prefixedStrategy)(nil)

func withPrefix(token, kind string) string {
	if token == "" {
		return ""
	}
	return TokenPrefix + kind + "_" + token
}

// GenerateAccessToken implements oauth2.AccessTokenStrategy.
func (s *prefixedStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	t, sig, err := s.HMACSHAStrategyUnPrefixed.GenerateAccessToken(ctx, r)
	return withPrefix(t, kindAccess), sig, err
}

// ValidateAccessToken implements oauth2.AccessTokenStrategy.
func (s *prefixedStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	return s.HMACSHAStrategyUnPrefixed.ValidateAccessToken(ctx, r, strings.TrimPrefix(token, TokenPrefix+kindAccess+"_"))
}

// GenerateRefreshToken implements oauth2.RefreshTokenStrategy.
func (s *prefixedStrategy) GenerateRefreshToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	t, sig, err := s.HMACSHAStrategyUnPrefixed.GenerateRefreshToken(ctx, r)
	return withPrefix(t, kindRefresh), sig, err
}

// ValidateRefreshToken implements oauth2.RefreshTokenStrategy.
func (s *prefixedStrategy) ValidateRefreshToken(ctx context.Context, r fosite.Requester, token string) error {
	return s.HMACSHAStrategyUnPrefixed.ValidateRefreshToken(ctx, r, strings.TrimPrefix(token, TokenPrefix+kindRefresh+"_"))
}

// GenerateAuthorizeCode implements oauth2.AuthorizeCodeStrategy.
func (s *prefixedStrategy) GenerateAuthorizeCode(ctx context.Context, r fosite.Requester) (string, string, error) {
	t, sig, err := s.HMACSHAStrategyUnPrefixed.GenerateAuthorizeCode(ctx, r)
	return withPrefix(t, kindCode), sig, err
}

// ValidateAuthorizeCode implements oauth2.AuthorizeCodeStrategy.
func (s *prefixedStrategy) ValidateAuthorizeCode(ctx context.Context, r fosite.Requester, token string) error {
	return s.HMACSHAStrategyUnPrefixed.ValidateAuthorizeCode(ctx, r, strings.TrimPrefix(token, TokenPrefix+kindCode+"_"))
}

// kindIntrospector is fosite's CoreValidator told the kind of token its prefix names. Given the
// wrong kind (an introspection without token_type_hint of a refresh token, a hint that does not
// match), fosite looks the token up as the other kind first, and builds a stack-traced error for
// the miss before it tries the right one; introspection and userinfo paid that for a normal
// answer. A token without our prefix goes to fosite with the caller's hint, as before.
type kindIntrospector struct {
	core *oauth2.CoreValidator
}

var _ fosite.TokenIntrospector = (*kindIntrospector)(nil)

// IntrospectToken implements fosite.TokenIntrospector.
func (k *kindIntrospector) IntrospectToken(ctx context.Context, token string, use fosite.TokenUse, ar fosite.AccessRequester, scopes []string) (fosite.TokenUse, error) {
	switch {
	case strings.HasPrefix(token, TokenPrefix+kindAccess+"_"):
		use = fosite.AccessToken
	case strings.HasPrefix(token, TokenPrefix+kindRefresh+"_"):
		use = fosite.RefreshToken
	case jwtShaped(token):
		use = fosite.AccessToken // refresh tokens are never JWTs
	}
	return k.core.IntrospectToken(ctx, token, use, ar, scopes)
}

// authentic reports whether token (with its prefix) is one of ours of the kind, with a valid HMAC
// under the current secret.
func (p *Provider) authentic(ctx context.Context, token string) bool {
	raw, ok := unprefixed(token)
	return ok && p.strategy.Enigma.Validate(ctx, raw) == nil
}

// unprefixed strips the prefix of any of our token kinds.
func unprefixed(token string) (raw string, ok bool) {
	for _, kind := range []string{kindAccess, kindRefresh, kindCode} {
		if raw, ok := strings.CutPrefix(token, TokenPrefix+kind+"_"); ok {
			return raw, true
		}
	}
	return "", false
}
