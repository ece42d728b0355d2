package oidcprovider

import (
	"context"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
)

// The gateway's view of the provider: what caddyauth needs, and nothing else.

// BearerIdentity is who an accepted access token speaks for.
type BearerIdentity = oauth.BearerIdentity

// InvalidTokenError is why a Bearer token of ours is refused (401 invalid_token).
type InvalidTokenError = oauth.InvalidTokenError

var (
	// ErrNotOurToken means a Bearer value is not an access token of this provider.
	ErrNotOurToken = oauth.ErrNotOurToken
	// ErrUnavailable means the store is not open; answer 503 with Retry-After.
	ErrUnavailable = oauth.ErrUnavailable
)

// TokenPrefix starts every opaque token the provider issues.
const TokenPrefix = oauth.TokenPrefix

// CheckBearer validates an access token presented at target, the canonical URL the caller asked
// for (see oauth.Provider.CheckBearer). It returns ErrUnavailable while the store is not open.
func (a *App) CheckBearer(ctx context.Context, token string, target audience.URL) (*BearerIdentity, error) {
	st := a.running()
	if st == nil {
		return nil, ErrUnavailable
	}
	return st.provider.CheckBearer(ctx, token, target)
}

// RevokeClientTokens ends every token of a client, registered or since removed from the config
// (see the admin API's /oidc/tokens/revoke). It fails with ErrUnavailable while the store is not
// open.
func (a *App) RevokeClientTokens(clientID string) (int, error) {
	st := a.running()
	if st == nil {
		return 0, ErrUnavailable
	}
	return st.provider.RevokeClientTokens(clientID)
}
