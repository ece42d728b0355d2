package oidcprovider

import (
	"context"
	"crypto/subtle"
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

// BearerIdentity is who an accepted access token speaks for. CheckBearer returns a shared,
// immutable value: do not modify it.
type BearerIdentity struct {
	// SubjectID is "oauth2:client:<id>" for client_credentials tokens, else the username: the
	// value for {http.auth.user.id}.
	SubjectID string
	// ScopeString is Scopes joined with spaces.
	ScopeString string
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
	_, sig, ok := strings.Cut(raw, ".")
	if !ok || sig == "" || strings.Contains(sig, ".") {
		return nil, &InvalidTokenError{"The access token is malformed or was not issued by this provider."}
	}
	key := bearerCacheKey(a.dir, sig)
	e, gen := bearerTokens.get(key)
	if e == nil || subtle.ConstantTimeCompare([]byte(e.token), []byte(token)) != 1 {
		var err error
		if e, err = a.loadBearer(ctx, st, raw, sig); err != nil {
			return nil, err
		}
		e.token = token
		bearerTokens.put(key, e, gen)
	}
	if !e.identity.ExpiresAt.IsZero() && !time.Now().Before(e.identity.ExpiresAt) {
		bearerTokens.forget(key)
		return nil, &InvalidTokenError{"The access token is expired."}
	}
	client, known := a.clients[e.identity.ClientID]
	if !known {
		return nil, &InvalidTokenError{"The client of this access token is no longer registered."}
	}
	if !e.hasScope || !client.HasScope(ScopeBearerAuthz) {
		return nil, &InvalidTokenError{"The access token does not carry the " + ScopeBearerAuthz + " scope."}
	}
	t := newAudienceURL(target)
	if !audienceCovers(e.audience, t) || !audienceCovers(client.audienceURLs, t) {
		return nil, &InvalidTokenError{"The access token's audience does not include this URL."}
	}
	return &e.identity, nil
}

// loadBearer reads, authenticates and decodes a token record from the store.
func (a *App) loadBearer(ctx context.Context, st *runtimeState, raw, sig string) (*bearerEntry, error) {
	if err := st.provider.strategy.Enigma.Validate(ctx, raw); err != nil {
		return nil, &InvalidTokenError{"The access token is malformed or was not issued by this provider."}
	}
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
	e := &bearerEntry{
		identity: BearerIdentity{
			ClientID:          rec.ClientID,
			Username:          rec.Session.Username,
			ClientCredentials: rec.Session.ClientCredentials,
			Scopes:            rec.GrantedScopes,
			ExpiresAt:         rec.Session.GetExpiresAt(fosite.AccessToken),
			ScopeString:       strings.Join(rec.GrantedScopes, " "),
		},
		hasScope: slices.Contains(rec.GrantedScopes, ScopeBearerAuthz),
		audience: parseAudienceURLs(rec.GrantedAudience),
	}
	e.identity.SubjectID = e.identity.Username
	if e.identity.ClientCredentials {
		e.identity.SubjectID = "oauth2:client:" + e.identity.ClientID
	}
	return e, nil
}

// parseAudienceURLs keeps the entries that are absolute URLs, reduced for the audience rule.
func parseAudienceURLs(list []string) []audienceURL {
	out := make([]audienceURL, 0, len(list))
	for _, a := range list {
		if u, err := url.Parse(a); err == nil && u.Host != "" {
			out = append(out, newAudienceURL(u))
		}
	}
	return out
}

// audienceCovers reports whether any entry of list authorizes target under AudienceMatches.
func audienceCovers(list []audienceURL, target audienceURL) bool {
	for _, u := range list {
		if u.covers(target) {
			return true
		}
	}
	return false
}
