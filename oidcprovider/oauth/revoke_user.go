package oauth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// RevokeUserTokens ends every access and refresh token, and every authorization code, that the
// user named username (the directory's spelling) gave applications: what a password reset or
// change must do besides ending the user's browser sessions, since a refresh token outlives the
// session it came from and would let whoever signed in with the old password keep refreshing.
//
// Like RevokeClientTokens it reads every token record (tokens are stored by signature, not by
// user), so it costs a pass over the store. It then ends, grant by grant, the tokens a refresh
// made from those grants while the pass ran (the request index), so a thief refreshing at that
// moment does not keep the new pair. It returns how many tokens and codes it ended.
func (p *Provider) RevokeUserTokens(ctx context.Context, username string) (int, error) {
	if username == "" {
		return 0, errors.New("oauth: revoking a user's tokens: no username")
	}
	grants := map[string]bool{}
	revoked := 0
	for _, kind := range []string{kindRefresh, kindAccess, kindCode} {
		prefix := "tok/" + kind + "/"
		keys, err := p.storage.kv.Keys(ctx, []byte(prefix))
		if err != nil {
			return revoked, fmt.Errorf("listing tokens: %w", err)
		}
		for _, k := range keys {
			data, err := p.storage.kv.Get(ctx, k)
			if errors.Is(err, store.ErrNotFound) {
				continue // expired or revoked since the listing
			} else if err != nil {
				return revoked, fmt.Errorf("reading a token: %w", err)
			}
			var rec tokenRecord
			if unmarshalRecord(data, &rec) != nil || rec.Session == nil || rec.Session.ClientCredentials ||
				rec.Session.Username != username {
				continue
			}
			grants[rec.RequestID] = true
			if err := p.storage.delete(ctx, kind, strings.TrimPrefix(string(k), prefix)); err != nil {
				return revoked, fmt.Errorf("revoking a token: %w", err)
			}
			revoked++ // a concurrent pass may count the same token: the figure is an upper bound
		}
	}
	for id := range grants {
		for _, kind := range []string{kindRefresh, kindAccess} {
			if err := p.storage.revokeRequest(ctx, id, kind); err != nil {
				return revoked, fmt.Errorf("revoking a grant's tokens: %w", err)
			}
		}
	}
	if revoked > 0 {
		p.cfg.Logger.Info("tokens of a user revoked", zap.String("user", username), zap.Int("count", revoked))
		if p.cfg.OnTokenRevoked != nil {
			for range revoked {
				p.cfg.OnTokenRevoked()
			}
		}
	}
	return revoked, nil
}
