package oidcprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() { caddy.RegisterModule(adminAPI{}) }

// adminAPI adds Portcullis's operator endpoints to Caddy's admin API, where they share its
// access controls (by default a loopback or Unix socket listener). `caddy oidc tokens revoke`
// calls them, since the running server holds the store's lock.
//
//	POST /oidc/tokens/revoke  {"client_id": "<id>"}  →  {"client_id": "<id>", "revoked": <n>}
//	POST /oidc/sessions/end   {"user": "<name>"}     →  {"user": "<name>", "ended": <n>}
//	POST /oidc/users/totp/add, /oidc/users/totp/remove: see admin_totp.go
//	POST /oidc/users/keys/remove: see admin_keys.go
//	POST /oidc/users/invite: see admin_invite.go
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.oidc", New: func() caddy.Module { return new(adminAPI) }}
}

// Routes implements caddy.AdminRouter.
func (adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/oidc/tokens/revoke", Handler: caddy.AdminHandlerFunc(revokeClientTokens)},
		{Pattern: "/oidc/sessions/end", Handler: caddy.AdminHandlerFunc(endUserSessions)},
		{Pattern: adminTOTPAdd, Handler: caddy.AdminHandlerFunc(addUserTOTP)},
		{Pattern: adminTOTPRemove, Handler: caddy.AdminHandlerFunc(removeUserTOTP)},
		{Pattern: adminKeysRemove, Handler: caddy.AdminHandlerFunc(removeUserKeys)},
		{Pattern: adminInvite, Handler: caddy.AdminHandlerFunc(inviteUser)},
	}
}

// revokeRequest is the body of POST /oidc/tokens/revoke, and (with Revoked) its answer.
type revokeRequest struct {
	ClientID string `json:"client_id"`
	Revoked  int    `json:"revoked"`
}

func revokeClientTokens(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req revokeRequest
	app, err := adminRequest(r, &req, func() bool { return req.ClientID != "" }, `{"client_id": "<id>"}`)
	if err != nil {
		return err
	}
	n, err := app.RevokeClientTokens(ctx, req.ClientID)
	if err != nil {
		return adminError("revoking tokens", err)
	}
	req.Revoked = n
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(req)
}

// endSessionsRequest is the body of POST /oidc/sessions/end, and (with Ended) its answer.
type endSessionsRequest struct {
	User  string `json:"user"`
	Ended int    `json:"ended"`
}

func endUserSessions(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req endSessionsRequest
	app, err := adminRequest(r, &req, func() bool { return req.User != "" }, `{"user": "<name>"}`)
	if err != nil {
		return err
	}
	n, err := app.EndUserSessions(ctx, req.User)
	if errors.Is(err, ErrNoUsers) {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no users_file, so no sessions")}
	} else if err != nil {
		return adminError("ending sessions", err)
	}
	req.Ended = n
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(req)
}

// adminRequest checks an operator request (POST, a small JSON body that decodes into body and
// passes valid, else 400 naming shape) and returns the running oidc app.
func adminRequest(r *http.Request, body any, valid func() bool, shape string) (*App, error) {
	if r.Method != http.MethodPost {
		return nil, caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(body); err != nil || !valid() {
		return nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("the body must be " + shape)}
	}
	app, err := caddy.ActiveContext().AppIfConfigured(AppName)
	if err != nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no oidc app")}
	}
	return app.(*App), nil
}

// adminError answers a failed operator action: 503 while the store is not open or its database
// cannot be reached, else 500.
func adminError(doing string, err error) error {
	if IsUnavailable(err) {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("%s: %w", doing, err)}
	}
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("%s: %w", doing, err)}
}

// Interface guard.
var _ caddy.AdminRouter = adminAPI{}

// RevokeClientTokens ends every token of a client, registered or since removed from the config
// (see the admin API's /oidc/tokens/revoke). It fails with ErrUnavailable while the store is not
// open.
func (a *App) RevokeClientTokens(ctx context.Context, clientID string) (int, error) {
	st := a.running()
	if st == nil {
		return 0, ErrUnavailable
	}
	return st.provider.RevokeClientTokens(ctx, clientID)
}

// EndUserSessions ends every sign-in session of user (an operator cutting off a stolen
// session) and returns how many were live.
func (a *App) EndUserSessions(ctx context.Context, user string) (int, error) {
	st, err := a.runningPeople()
	if err != nil {
		return 0, err
	}
	refs, err := st.sessions.EndUserRefs(ctx, user)
	if err != nil {
		return len(refs), err
	}
	// the access tokens applications obtained through those sessions end with them
	tokens := 0
	for _, ref := range refs {
		if ref == "" {
			continue
		}
		n, err := st.provider.EndBrowserSession(ctx, ref)
		if err != nil {
			return len(refs), err
		}
		tokens += n
	}
	a.logger.Info("sessions ended by the operator", zap.String("user", user), zap.Int("sessions", len(refs)), zap.Int("tokens", tokens))
	return len(refs), nil
}
