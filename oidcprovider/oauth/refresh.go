package oauth

import (
	"context"

	"github.com/ory/fosite"
)

// refreshedUser is a token endpoint handler for the authorization_code, refresh_token and
// device_code grants
// that runs after fosite's own checks: a user who is gone from the users file or disabled gets
// no tokens, and the ID token issued carries the user's current claims.
type refreshedUser struct {
	p *Provider
}

var _ fosite.TokenEndpointHandler = (*refreshedUser)(nil)

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *refreshedUser) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(grantRefreshToken) || r.GetGrantTypes().ExactOne(grantAuthorizationCode) ||
		r.GetGrantTypes().ExactOne(grantDeviceCode)
}

// CanSkipClientAuth implements fosite.TokenEndpointHandler.
func (h *refreshedUser) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *refreshedUser) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	sess, ok := r.GetSession().(*Session)
	if !ok || sess.Username == "" {
		return fosite.ErrUnknownRequest
	}
	people := h.p.cfg.People
	if people == nil {
		return fosite.ErrInvalidGrant.WithHint("The user of this grant is disabled or no longer exists.")
	}
	if active, err := people.Active(ctx, sess.Username); err != nil {
		return err // the directory cannot be asked: 503, and the grant is kept
	} else if !active {
		return fosite.ErrInvalidGrant.WithHint("The user of this grant is disabled or no longer exists.")
	}
	if sess.Claims != nil {
		claims, ok, err := people.Claims(ctx, sess.Username, r.GetGrantedScopes())
		if err != nil {
			return err
		}
		if !ok {
			return fosite.ErrInvalidGrant.WithHint("The user of this grant is disabled or no longer exists.")
		}
		sess.Claims.Extra = h.p.idTokenExtra(r.GetClient(), claims)
	}
	return nil
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler; it adds nothing.
func (h *refreshedUser) PopulateTokenEndpointResponse(context.Context, fosite.AccessRequester, fosite.AccessResponder) error {
	return fosite.ErrUnknownRequest
}
