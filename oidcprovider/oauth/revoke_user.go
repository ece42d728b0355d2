package oauth

import (
	"context"
	"errors"
	"time"

	"github.com/ory/fosite"
	"go.uber.org/zap"
)

// userCutoffID is the name a user's revocation cut-off is kept under beside the clients': a
// client id never holds a colon (RFC 3986 unreserved characters only), so the two never meet.
func userCutoffID(username string) string { return "user:" + username }

// RevokeUserTokens ends every access and refresh token and every authorization code the user
// named username (the directory's spelling) gave applications before now: what a password reset
// or change must do besides ending the user's browser sessions, since a refresh token outlives
// the session it came from and would let whoever signed in with the old password keep
// refreshing. It sets the user's cut-off (kept in the store, followed by every node as the
// clients' are), so it costs one write however many tokens there are: the gate, introspection,
// userinfo and the token endpoint refuse each earlier token from then on, cached or not, and a
// code issued earlier gives no tokens.
func (p *Provider) RevokeUserTokens(ctx context.Context, username string) error {
	if username == "" {
		return errors.New("oauth: revoking a user's tokens: no username")
	}
	if p.cfg.Cutoffs == nil {
		return errors.New("oauth: revoking a user's tokens: no cut-offs")
	}
	if err := p.cfg.Cutoffs.Set(ctx, p.storage.kv, userCutoffID(username), time.Now()); err != nil {
		return err
	}
	p.cfg.Logger.Info("every earlier token of a user revoked", zap.String("user", username))
	return nil
}

// userRevoked reports whether r, a stored request, is a user's and was made at or before the
// user's cut-off.
func (s *tokenStorage) userRevoked(ctx context.Context, r fosite.Requester) (bool, error) {
	sess, ok := r.GetSession().(*Session)
	if !ok || sess.ClientCredentials || sess.Username == "" {
		return false, nil
	}
	return s.cutoffs.Revoked(ctx, userCutoffID(sess.Username), r.GetRequestedAt())
}
