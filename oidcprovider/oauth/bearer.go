package oauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// ErrNotOurToken means a Bearer value is not an access token of this provider (an upstream's own
// API token, say).
var ErrNotOurToken = errors.New("oidc: not a Portcullis access token")

// ErrUnavailable means the store is not open (start-up, reload, shutdown) or its database cannot
// be reached; answer 503 with Retry-After.
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
	// TwoFactor marks a user's token whose sign-in used a second factor.
	TwoFactor bool
	// Scopes are the granted scopes.
	Scopes []string
	// ExpiresAt is when the token expires.
	ExpiresAt time.Time
}

// CheckBearer validates an access token presented to a protected site at target (the canonical
// URL the caller asked for): it must be ours and authentic under the current HMAC secret, stored
// (not revoked) and unexpired, carry the gateway scope, and hold an audience that authorizes
// target; its client must still be registered with the gateway scope and an audience entry that
// authorizes target, so removing a client, its scope or its audience from the config takes effect
// on the next request.
//
// A JWT access token (RFC 9068) is ours when its iss is this provider's issuer; it is checked
// without reading the store: its signature against the provider's current keys (once, then
// remembered), and its revocation in memory (Revocations: its jti, its portal session's end),
// besides the same cut-offs, expiry, scope, audience and client rules as an opaque token. On a
// shared store whose changes this node is not receiving, its record is read instead.
func (p *Provider) CheckBearer(ctx context.Context, token string, target audience.URL) (*BearerIdentity, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return p.checkJWTBearer(ctx, token, target)
	}
	raw, ok := strings.CutPrefix(token, TokenPrefix+kindAccess+"_")
	if !ok {
		return nil, &InvalidTokenError{"The token is not an access token."}
	}
	_, sig, ok := strings.Cut(raw, ".")
	if !ok || sig == "" || strings.Contains(sig, ".") {
		return nil, &InvalidTokenError{"The access token is malformed or was not issued by this provider."}
	}
	e := p.cfg.Tokens.get(sig)
	if e == nil || e.secret != p.secretID || subtle.ConstantTimeCompare([]byte(e.token), []byte(token)) != 1 {
		gen := p.cfg.Tokens.gen(sig) // before the read: a deletion during it keeps e out
		var err error
		if e, err = p.loadBearer(ctx, raw, sig); err != nil {
			return nil, err
		}
		e.token, e.secret = token, p.secretID
		p.cfg.Tokens.put(sig, e, gen)
	}
	if !time.Now().Before(e.identity.ExpiresAt) {
		p.cfg.Tokens.Forget(sig)
		return nil, &InvalidTokenError{"The access token is expired."}
	}
	return p.admit(ctx, e, target)
}

// checkJWTBearer is CheckBearer for a value without our opaque prefix: a JWT access token of
// ours, or not ours at all.
func (p *Provider) checkJWTBearer(ctx context.Context, token string, target audience.URL) (*BearerIdentity, error) {
	key := cacheKey(token)
	e := p.jwts.get(key, token)
	if e == nil {
		var err error
		if e, err = p.verifyAccessJWT(token); err != nil {
			return nil, err
		}
		p.jwts.put(key, e)
	}
	if !time.Now().Before(e.identity.ExpiresAt) {
		return nil, &InvalidTokenError{"The access token is expired."}
	}
	if r := p.cfg.Revocations; r != nil && r.Trusted() {
		if r.Revoked(e.jti, e.sid, e.issuedAt) {
			return nil, &InvalidTokenError{"The access token was revoked."}
		}
	} else if err := p.storedAccessToken(ctx, e.jtiString); err != nil {
		// memory cannot prove it unrevoked (a shared store's change feed is down): its record
		// can, as for an opaque token
		return nil, err
	}
	return p.admit(ctx, &e.cachedToken, target)
}

// storedAccessToken checks that the access token stored under signature is still in the store
// (a revoked or ended token's record is deleted).
func (p *Provider) storedAccessToken(ctx context.Context, signature string) error {
	_, err := p.cfg.KV.Get(ctx, tokenKey(kindAccess, signature))
	return storeReadError(err)
}

// storeReadError maps the error of a token record's read to the gate's answer.
func storeReadError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return &InvalidTokenError{"The access token is expired, revoked, or unknown."}
	case errors.Is(err, store.ErrClosed):
		return ErrUnavailable
	case errors.Is(err, store.ErrUnavailable):
		// both in the chain: the gateway's ErrUnavailable and the store's cause (which may hold
		// the store's own context.DeadlineExceeded: the gateway tests ErrUnavailable first)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("reading an access token: %w", err)
}

// admit applies the rules every access token of ours meets after its own checks (authentic,
// unexpired, not ended): the client's and the user's revocation cut-offs, the client still
// registered, the gateway scope on the token and the client, an audience of both that
// authorizes target.
func (p *Provider) admit(ctx context.Context, e *cachedToken, target audience.URL) (*BearerIdentity, error) {
	if revoked, err := p.cfg.Cutoffs.Revoked(ctx, e.identity.ClientID, e.issuedAt); err != nil {
		return nil, err
	} else if revoked {
		return nil, &InvalidTokenError{"The access token was revoked."}
	}
	if !e.identity.ClientCredentials && e.identity.Username != "" {
		if revoked, err := p.cfg.Cutoffs.Revoked(ctx, userCutoffID(e.identity.Username), e.issuedAt); err != nil {
			return nil, err
		} else if revoked {
			return nil, &InvalidTokenError{"The access token was revoked: its user's password changed."}
		}
	}
	client, known := p.cfg.Clients(e.identity.ClientID)
	if !known {
		return nil, &InvalidTokenError{"The client of this access token is no longer registered."}
	}
	if !e.hasScope || !client.HasScope(clients.ScopeBearerAuthz) {
		return nil, &InvalidTokenError{"The access token does not carry the " + clients.ScopeBearerAuthz + " scope."}
	}
	if !e.audience.Covers(target) || !client.AudienceURLs().Covers(target) {
		return nil, &InvalidTokenError{"The access token's audience does not include this URL."}
	}
	return &e.identity, nil
}

// loadBearer reads, authenticates and decodes a token record from the store.
func (p *Provider) loadBearer(ctx context.Context, raw, sig string) (*cachedToken, error) {
	if err := p.strategy.Enigma.Validate(ctx, raw); err != nil {
		return nil, &InvalidTokenError{"The access token is malformed or was not issued by this provider."}
	}
	data, err := p.cfg.KV.Get(ctx, tokenKey(kindAccess, sig))
	if err != nil {
		return nil, storeReadError(err)
	}
	var rec tokenRecord
	if err := unmarshalRecord(data, &rec); err != nil || rec.Session == nil {
		return nil, &InvalidTokenError{"The access token record is unreadable."}
	}
	e := &cachedToken{
		identity: BearerIdentity{
			ClientID:          rec.ClientID,
			Username:          rec.Session.Username,
			ClientCredentials: rec.Session.ClientCredentials,
			TwoFactor:         rec.Session.TwoFactor,
			Scopes:            rec.GrantedScopes,
			ExpiresAt:         rec.Session.GetExpiresAt(fosite.AccessToken),
			ScopeString:       strings.Join(rec.GrantedScopes, " "),
		},
		hasScope: slices.Contains(rec.GrantedScopes, clients.ScopeBearerAuthz),
		audience: audience.ParseList(rec.GrantedAudience),
		issuedAt: rec.RequestedAt,
	}
	if e.identity.ExpiresAt.IsZero() {
		// as fosite's own validation does: a token stored without an expiry (earlier versions
		// stored code-flow tokens so) lasts the access token lifespan from its issue
		e.identity.ExpiresAt = rec.RequestedAt.Add(p.cfg.Lifespans.AccessToken)
	}
	e.identity.SubjectID = e.identity.Username
	if e.identity.ClientCredentials {
		e.identity.SubjectID = "oauth2:client:" + e.identity.ClientID
	}
	return e, nil
}
