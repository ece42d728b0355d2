package oauth

import (
	"maps"
	"time"

	"github.com/ory/fosite"
)

// Session is what the provider keeps with every token: who it is for and when each part expires.
type Session struct {
	// Subject is the token's sub: the client id for client_credentials tokens.
	Subject string `json:"sub,omitempty"`
	// Username is the user's name for user tokens.
	Username string `json:"username,omitempty"`
	// ClientCredentials marks a token issued to a client for itself.
	ClientCredentials bool `json:"client_credentials,omitempty"`
	// Issuer is the issuer that minted the token.
	Issuer string `json:"iss,omitempty"`
	// ExpiresAt holds each token type's expiry.
	ExpiresAt map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
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

// Clone implements fosite.Session.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := *s
	c.ExpiresAt = maps.Clone(s.ExpiresAt)
	return &c
}

var _ fosite.Session = (*Session)(nil)
