package oauth

import (
	"maps"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// Session is what the provider keeps with every token: who it is for, how they signed in, the
// ID token's claims, and when each part expires.
type Session struct {
	// Subject is the token's sub: the client id for client_credentials tokens, the user's
	// subject identifier (a UUID, pairwise per sector where the client has one) for user tokens.
	Subject string `json:"sub,omitempty"`
	// Username is the user's name for user tokens.
	Username string `json:"username,omitempty"`
	// ClientCredentials marks a token issued to a client for itself.
	ClientCredentials bool `json:"client_credentials,omitempty"`
	// TwoFactor marks a user token whose sign-in used a second factor.
	TwoFactor bool `json:"two_factor,omitempty"`
	// BrowserSession is the hash of the portal session the user authorized from, so signing
	// out there ends the tokens it gave applications.
	BrowserSession string `json:"browser_session,omitempty"`
	// ExpiresAt holds each token type's expiry.
	ExpiresAt map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
	// Claims are the ID token's claims (user tokens of the OpenID Connect flows).
	Claims *jwt.IDTokenClaims `json:"id_token_claims,omitempty"`
	// Headers are the ID token's JOSE headers (its kid and alg).
	Headers *jwt.Headers `json:"id_token_headers,omitempty"`
}

// SetExpiresAt implements fosite.Session.
func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = map[fosite.TokenType]time.Time{}
	}
	s.ExpiresAt[key] = exp
}

// GetExpiresAt implements fosite.Session.
func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time { return s.ExpiresAt[key] }

// GetUsername implements fosite.Session.
func (s *Session) GetUsername() string { return s.Username }

// GetSubject implements fosite.Session.
func (s *Session) GetSubject() string { return s.Subject }

// IDTokenClaims implements openid.Session.
func (s *Session) IDTokenClaims() *jwt.IDTokenClaims {
	if s.Claims == nil {
		s.Claims = &jwt.IDTokenClaims{}
	}
	return s.Claims
}

// IDTokenHeaders implements openid.Session.
func (s *Session) IDTokenHeaders() *jwt.Headers {
	if s.Headers == nil {
		s.Headers = jwt.NewHeaders()
	}
	return s.Headers
}

// Clone implements fosite.Session.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := *s
	c.ExpiresAt = maps.Clone(s.ExpiresAt)
	if s.Claims != nil {
		claims := *s.Claims
		claims.Audience = slices.Clone(s.Claims.Audience)
		claims.AuthenticationMethodsReferences = slices.Clone(s.Claims.AuthenticationMethodsReferences)
		claims.Extra = maps.Clone(s.Claims.Extra)
		c.Claims = &claims
	}
	if s.Headers != nil {
		c.Headers = &jwt.Headers{Extra: maps.Clone(s.Headers.Extra)}
	}
	return &c
}

var (
	_ fosite.Session = (*Session)(nil)
	_ openid.Session = (*Session)(nil)
)
