package oidcprovider

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/hmac"
)

// TokenPrefix starts every opaque token Portcullis issues, followed by the kind ("at_", "rt_",
// "ac_"), so a gateway can tell its own tokens from an upstream's API tokens.
const TokenPrefix = "portcullis_"

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

// provider is the fosite composition of one running config.
type provider struct {
	oauth2   fosite.OAuth2Provider
	config   *fosite.Config
	strategy *prefixedStrategy
	storage  *tokenStorage
}

// newProvider composes fosite with the client_credentials grant, introspection and revocation.
func newProvider(a *App, kv KV, hmacSecret []byte) *provider {
	globalSecret := sha256.Sum256(hmacSecret)
	cfg := &fosite.Config{
		AccessTokenLifespan:          time.Duration(a.Lifespans.AccessToken),
		RefreshTokenLifespan:         time.Duration(a.Lifespans.RefreshToken),
		AuthorizeCodeLifespan:        time.Duration(a.Lifespans.AuthorizeCode),
		IDTokenLifespan:              time.Duration(a.Lifespans.IDToken),
		GlobalSecret:                 globalSecret[:],
		TokenEntropy:                 32,
		ScopeStrategy:                fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:     audienceStrategy,
		ClientAuthenticationStrategy: a.authenticateClient,
		AccessTokenIssuer:            a.issuer,
		IDTokenIssuer:                a.issuer,
		SendDebugMessagesToClients:   false,
	}
	st := &prefixedStrategy{HMACSHAStrategyUnPrefixed: oauth2.NewHMACSHAStrategyUnPrefixed(&hmac.HMACStrategy{Config: cfg}, cfg)}
	storage := &tokenStorage{kv: kv, dir: a.dir, clients: a.client}
	cfg.TokenEndpointHandlers = fosite.TokenEndpointHandlers{
		&oauth2.ClientCredentialsGrantHandler{
			HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: st, AccessTokenStorage: storage, Config: cfg},
			Config:       cfg,
		},
	}
	cfg.TokenIntrospectionHandlers = fosite.TokenIntrospectionHandlers{
		&oauth2.CoreValidator{CoreStrategy: st, CoreStorage: storage, Config: cfg},
	}
	cfg.RevocationHandlers = fosite.RevocationHandlers{
		&oauth2.TokenRevocationHandler{TokenRevocationStorage: storage, AccessTokenStrategy: st, RefreshTokenStrategy: st},
	}
	return &provider{oauth2: fosite.NewOAuth2Provider(storage, cfg), config: cfg, strategy: st, storage: storage}
}

// AudienceMatches is the one audience rule of Portcullis: entry authorizes target when scheme and
// host are equal (host case-insensitive, default ports normalised) and the entry's path is a
// prefix of the target's path at a "/" boundary. The query of either is ignored.
func AudienceMatches(entry, target *url.URL) bool {
	return newAudienceURL(entry).covers(newAudienceURL(target))
}

// audienceURL is a URL reduced to what the audience rule compares.
type audienceURL struct {
	scheme, host, path string
}

func newAudienceURL(u *url.URL) audienceURL {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	return audienceURL{scheme: strings.ToLower(u.Scheme), host: normalizedHost(u), path: p}
}

func (e audienceURL) covers(t audienceURL) bool {
	if e.scheme != t.scheme || e.host != t.host {
		return false
	}
	if e.path == t.path {
		return true
	}
	if !strings.HasPrefix(t.path, e.path) {
		return false
	}
	return strings.HasSuffix(e.path, "/") || t.path[len(e.path)] == '/'
}

// normalizedHost lowercases host[:port] and drops the scheme's default port.
func normalizedHost(u *url.URL) string {
	h := u.Host
	if port := u.Port(); (port == "443" && strings.EqualFold(u.Scheme, "https")) || (port == "80" && strings.EqualFold(u.Scheme, "http")) {
		h = h[:len(h)-len(port)-1]
	}
	return strings.ToLower(h)
}

// audienceAllowed reports whether a requested audience is allowed by the client's list: an exact
// entry, or, for URLs, an entry that covers it under AudienceMatches.
func audienceAllowed(allowed []string, requested string) bool {
	ru, rerr := url.Parse(requested)
	for _, a := range allowed {
		if a == requested {
			return true
		}
		if rerr != nil || ru.Host == "" {
			continue
		}
		if au, err := url.Parse(a); err == nil && au.Host != "" && AudienceMatches(au, ru) {
			return true
		}
	}
	return false
}

// audienceStrategy is fosite's AudienceMatchingStrategy with the Portcullis rule.
func audienceStrategy(allowed []string, requested []string) error {
	for _, r := range requested {
		if !audienceAllowed(allowed, r) {
			return errInvalidTarget(fmt.Sprintf("The client may not request the audience '%s'.", r))
		}
	}
	return nil
}

// parseResource checks an RFC 8707 resource indicator: an absolute URI without a fragment.
func parseResource(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Fragment != "" {
		return fmt.Errorf("resource %q must be an absolute URI without a fragment", s)
	}
	return nil
}
