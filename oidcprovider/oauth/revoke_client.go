package oauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// RevokeClientTokens ends every access and refresh token of the client: an operator's answer to
// a leaked client secret. It reads every token record (tokens are stored by signature, not by
// client), so it costs a pass over the store; the gate stops accepting each token at once, cached
// or not. It returns how many tokens it ended.
func (p *Provider) RevokeClientTokens(ctx context.Context, clientID string) (int, error) {
	// the cut-off first: from here on the gate refuses every token of the client issued until
	// now, including those the pass below does not see (stored after it lists the store)
	if p.cfg.Cutoffs != nil {
		if err := p.cfg.Cutoffs.Set(ctx, p.storage.kv, clientID, time.Now()); err != nil {
			return 0, err
		}
	}
	revoked := 0
	for _, kind := range []string{kindAccess, kindRefresh} {
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
			if unmarshalRecord(data, &rec) != nil || rec.ClientID != clientID {
				continue
			}
			if err := p.storage.delete(ctx, kind, strings.TrimPrefix(string(k), prefix)); err != nil {
				return revoked, fmt.Errorf("revoking a token: %w", err)
			}
			revoked++ // a concurrent pass may count the same token: the figure is an upper bound
		}
	}
	if revoked > 0 {
		p.cfg.Logger.Info("tokens revoked by an operator", zap.String("client_id", clientID), zap.Int("count", revoked))
		if p.cfg.OnTokenRevoked != nil {
			for range revoked {
				p.cfg.OnTokenRevoked()
			}
		}
	}
	return revoked, nil
}
