package oauth

import (
	"errors"
	"net/http"

	"github.com/ory/fosite"
	"go.uber.org/zap"
)

// ServeRevocation is RFC 7009 token revocation: the client authenticates; an unknown, invalid or
// foreign-secret token is answered 200 and changes nothing; a client may revoke only its own
// tokens (400 unauthorized_client otherwise).
func (p *Provider) ServeRevocation(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := parseForm(w, r); err != nil {
		p.writeError(w, r, err)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		p.writeError(w, r, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	var err error
	authentic := p.authentic(ctx, token) || (jwtShaped(token) && p.ourJWT(token))
	if authentic {
		err = p.oauth2.NewRevocationRequest(ctx, r)
	} else {
		// fosite finds a token by its signature half alone; only a whole, authentic token may
		// revoke anything, so anything else is treated as unknown once the client authenticated.
		_, err = p.authenticateClient(ctx, r, r.PostForm)
	}
	if err != nil && !isUnknownTokenErr(err) {
		if rfc := rfcError(err); rfc.CodeField < 500 && !isUnavailable(err) {
			p.cfg.Logger.Info("token revocation refused", zap.String("client_id", p.loggableClientID(r)),
				zap.String("error", rfc.ErrorField), zap.String("reason", truncate(rfc.GetDescription(), 160)))
		}
		p.writeError(w, r, err)
		return
	}
	if authentic && err == nil {
		// fosite revoked by request id; an access token that is not listed under its request
		// (client_credentials, see indexedByRequest) is deleted by its signature. fosite finds a
		// token by its signature whatever its prefix says, and has checked that the token it
		// found belongs to this client, so the prefix does not matter here either.
		sig := ""
		if raw, ok := unprefixed(token); ok {
			sig = p.strategy.AccessTokenSignature(ctx, raw)
		} else if jwtShaped(token) {
			sig = unverifiedJTI(token) // verified by ourJWT above
		}
		if sig != "" {
			if err := p.storage.delete(ctx, kindAccess, sig); err != nil && !errors.Is(err, fosite.ErrNotFound) {
				p.writeError(w, r, err)
				return
			}
		}
		if p.cfg.OnTokenRevoked != nil {
			p.cfg.OnTokenRevoked()
		}
		hint := r.PostForm.Get("token_type_hint")
		if hint != "access_token" && hint != "refresh_token" {
			hint = ""
		}
		p.cfg.Logger.Info("token revoked", zap.String("client_id", p.loggableClientID(r)), zap.String("token_type_hint", hint))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}
