package oidcprovider

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func init() { caddy.RegisterModule(adminAPI{}) }

// adminAPI adds Portcullis's operator endpoints to Caddy's admin API, where they share its
// access controls (by default a loopback or Unix socket listener). `caddy oidc tokens revoke`
// calls them, since the running server holds the store's lock.
//
//	POST /oidc/tokens/revoke  {"client_id": "<id>"}  →  {"client_id": "<id>", "revoked": <n>}
//	POST /oidc/sessions/end   {"user": "<name>"}     →  {"user": "<name>", "ended": <n>}
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
	}
}

// revokeRequest is the body of POST /oidc/tokens/revoke, and (with Revoked) its answer.
type revokeRequest struct {
	ClientID string `json:"client_id"`
	Revoked  int    `json:"revoked"`
}

func revokeClientTokens(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	var req revokeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.ClientID == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`the body must be {"client_id": "<id>"}`)}
	}
	ctx := caddy.ActiveContext()
	appIface, err := ctx.AppIfConfigured(AppName)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no oidc app")}
	}
	n, err := appIface.(*App).RevokeClientTokens(req.ClientID)
	if errors.Is(err, ErrUnavailable) {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	} else if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("revoking tokens: %w", err)}
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
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	var req endSessionsRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.User == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`the body must be {"user": "<name>"}`)}
	}
	appIface, err := caddy.ActiveContext().AppIfConfigured(AppName)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no oidc app")}
	}
	n, err := appIface.(*App).EndUserSessions(req.User)
	switch {
	case errors.Is(err, ErrNoUsers):
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no users_file, so no sessions")}
	case errors.Is(err, ErrUnavailable):
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	case err != nil:
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("ending sessions: %w", err)}
	}
	req.Ended = n
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(req)
}

// Interface guard.
var _ caddy.AdminRouter = adminAPI{}
