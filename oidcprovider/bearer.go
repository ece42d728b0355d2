package oidcprovider

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// ErrNotOurToken means a Bearer value is not an access token of this provider (an upstream's own
// API token, say). A gateway treats it as if no credentials were sent.
var ErrNotOurToken = errors.New("oidc: not a Portcullis access token")

// ErrUnavailable means the store is not open (start-up, reload, shutdown); answer 503.
var ErrUnavailable = errors.New("oidc: provider store is not available")

// InvalidTokenError is why a Bearer token of ours is refused; the gateway answers 401
// invalid_token with Description.
type InvalidTokenError struct {
	// Description is safe to show the caller; it never contains the token.
	Description string
}

func (e *InvalidTokenError) Error() string { return "invalid_token: " + e.Description }

// BearerIdentity is who an accepted access token speaks for.
type BearerIdentity struct {
	// ClientID is the client the token was issued to.
	ClientID string
	// Username is the user of a user token; empty for client_credentials tokens.
	Username string
	// ClientCredentials marks a token a client obtained for itself.
	ClientCredentials bool
	// Scopes are the granted scopes.
	Scopes []string
	// ExpiresAt is when the token expires.
	ExpiresAt time.Time
}

// CheckBearer validates an access token presented to a protected site at target (scheme, host
// and path of the request): it must be ours and authentic, stored (not revoked) and unexpired,
// carry the gateway scope, and hold an audience that authorizes target; its client must still be
// registered with the gateway scope and an audience entry that authorizes target, so removing a
// client, its scope or its audience from the config takes effect on the next request.
func (a *App) CheckBearer(ctx context.Context, token string, target *url.URL) (*BearerIdentity, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return nil, ErrNotOurToken
	}
	if !strings.HasPrefix(token, TokenPrefix+kindAccess+"_") {
		return nil, &InvalidTokenError{"The token is not an access token."}
	}
	st := a.running()
	if st == nil {
		return nil, ErrUnavailable
	}
	raw := token[len(TokenPrefix)+len(kindAccess)+1:]
	if err := st.provider.strategy.Enigma.Validate(ctx, raw); err != nil {
		return nil, &InvalidTokenError{"The access token is malformed or was not issued by this provider."}
	}
	sig := st.provider.strategy.AccessTokenSignature(ctx, raw)
	data, err := st.kv.Get(tokenKey(kindAccess, sig))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, &InvalidTokenError{"The access token is expired, revoked, or unknown."}
	case errors.Is(err, store.ErrClosed):
		return nil, ErrUnavailable
	case err != nil:
		return nil, err
	}
	var rec tokenRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Session == nil {
		return nil, &InvalidTokenError{"The access token record is unreadable."}
	}
	exp := rec.Session.GetExpiresAt(fosite.AccessToken)
	if !exp.IsZero() && !time.Now().Before(exp) {
		return nil, &InvalidTokenError{"The access token is expired."}
	}
	client, ok := a.clients[rec.ClientID]
	if !ok {
		return nil, &InvalidTokenError{"The client of this access token is no longer registered."}
	}
	if !slices.Contains(rec.GrantedScopes, ScopeBearerAuthz) || !client.HasScope(ScopeBearerAuthz) {
		return nil, &InvalidTokenError{"The access token does not carry the " + ScopeBearerAuthz + " scope."}
	}
	if !audienceCovers(rec.GrantedAudience, target) || !audienceCovers(client.cfg.Audience, target) {
		return nil, &InvalidTokenError{"The access token's audience does not include this URL."}
	}
	return &BearerIdentity{
		ClientID:          rec.ClientID,
		Username:          rec.Session.Username,
		ClientCredentials: rec.Session.ClientCredentials,
		Scopes:            rec.GrantedScopes,
		ExpiresAt:         exp,
	}, nil
}

// audienceCovers reports whether any URL entry of list authorizes target under AudienceMatches.
func audienceCovers(list []string, target *url.URL) bool {
	for _, a := range list {
		u, err := url.Parse(a)
		if err != nil || u.Host == "" {
			continue
		}
		if AudienceMatches(u, target) {
			return true
		}
	}
	return false
}
