package oidcprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// The admin API's TOTP routes, for `caddy oidc users totp add` and `remove`: an operator gives a
// person their first device where no notifier can send the code an enrolment at the portal asks
// for, and takes one away.
//
//	POST /oidc/users/totp/add     {"user": "<name or mail>", "force": <bool>}  →  {"user": "<name>", "uri": "otpauth://…", "replaced": <bool>}
//	POST /oidc/users/totp/remove  {"user": "<name or mail>"}                   →  {"user": "<name>", "removed": true}
const (
	adminTOTPAdd    = "/oidc/users/totp/add"
	adminTOTPRemove = "/oidc/users/totp/remove"
)

// totpAddRequest is the body of POST /oidc/users/totp/add.
type totpAddRequest struct {
	User  string `json:"user"`
	Force bool   `json:"force,omitempty"`
}

// totpAddAnswer is the answer of POST /oidc/users/totp/add: the directory's spelling of the
// user, and the new device's otpauth:// URI (the secret: it is never logged).
type totpAddAnswer struct {
	User     string `json:"user"`
	URI      string `json:"uri"`
	Replaced bool   `json:"replaced"`
}

// totpRemoveRequest is the body of POST /oidc/users/totp/remove, and (with Removed) its answer.
type totpRemoveRequest struct {
	User    string `json:"user"`
	Removed bool   `json:"removed"`
}

// Errors of the operator's TOTP actions, answered 404 or 409 by the admin API.
var (
	errTOTPDisabled = errors.New("TOTP is disabled in the running config (totp { disable })")
	errUserDisabled = errors.New("the user is disabled")
)

func addUserTOTP(w http.ResponseWriter, r *http.Request) error {
	var req totpAddRequest
	app, err := adminRequest(r, &req, func() bool { return req.User != "" }, `{"user": "<name>", "force": false}`)
	if err != nil {
		return err
	}
	ans, err := app.provisionTOTP(r.Context(), req.User, req.Force)
	if err != nil {
		return usersAdminError(req.User, "adding a TOTP device", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(ans)
}

func removeUserTOTP(w http.ResponseWriter, r *http.Request) error {
	var req totpRemoveRequest
	app, err := adminRequest(r, &req, func() bool { return req.User != "" }, `{"user": "<name>"}`)
	if err != nil {
		return err
	}
	name, err := app.removeTOTP(r.Context(), req.User)
	if err != nil {
		return usersAdminError(req.User, "removing the TOTP device", err)
	}
	req.User, req.Removed = name, true
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(req)
}

// usersAdminError answers a refused or failed action on a user (a TOTP device, security keys,
// an enrolment link) with a message the operator can act on.
func usersAdminError(name, doing string, err error) error {
	refuse := func(status int, format string, a ...any) error {
		return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, a...)}
	}
	switch {
	case errors.Is(err, ErrNoUsers):
		return refuse(http.StatusNotFound, "the running config has no users_file or ldap block, so no users")
	case errors.Is(err, errTOTPDisabled):
		return refuse(http.StatusNotFound, "%v", errTOTPDisabled)
	case errors.Is(err, users.ErrNotFound):
		return refuse(http.StatusNotFound, "no user %q in the running server's directory (a username, in any letter case, or a mail address)", name)
	case errors.Is(err, errUserDisabled):
		return refuse(http.StatusConflict, "%q is disabled: enable them first (caddy oidc users enable)", name)
	case errors.Is(err, totp.ErrDeviceExists):
		return refuse(http.StatusConflict, "%q has a TOTP device already; --force replaces it (the old one's codes stop working)", name)
	case errors.Is(err, totp.ErrNoDevice):
		return refuse(http.StatusNotFound, "%q has no TOTP device", name)
	case errors.Is(err, errWebAuthnDisabled):
		return refuse(http.StatusNotFound, "%v", errWebAuthnDisabled)
	case errors.Is(err, webauthn.ErrNoDevice):
		return refuse(http.StatusNotFound, "%q has no security key or passkey", name)
	}
	return adminError(doing, err)
}

// totpUser finds the user name names (a username in any letter case, or a mail address) in the
// running directory, and the running TOTP devices.
func (a *App) totpUser(ctx context.Context, name string) (*users.User, *totp.Devices, error) {
	st, err := a.runningPeople()
	if err != nil {
		return nil, nil, err
	}
	if a.portal == nil || a.portal.totp == nil {
		return nil, nil, errTOTPDisabled
	}
	if st.totp == nil {
		return nil, nil, ErrUnavailable
	}
	u, err := st.users.Lookup(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return u, st.totp, nil
}

// provisionTOTP gives the user name names a new TOTP device with the configured settings and
// returns its otpauth:// URI, for the operator to hand over (see totp.Devices.Provision). The
// user must be in the directory and enabled; one who has a device is refused with
// totp.ErrDeviceExists unless replace is set. The action is logged without the secret.
func (a *App) provisionTOTP(ctx context.Context, name string, replace bool) (*totpAddAnswer, error) {
	u, devices, err := a.totpUser(ctx, name)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, errUserDisabled
	}
	had := false
	if replace {
		_, err := devices.Info(ctx, u.Name)
		if err != nil && !errors.Is(err, totp.ErrNoDevice) {
			return nil, err
		}
		had = err == nil
	}
	e, err := devices.Provision(ctx, u.Name, replace)
	if err != nil {
		return nil, err
	}
	cfg := devices.Config()
	a.logger.Info("TOTP device added by the operator", zap.String("user", u.Name), zap.Bool("replaced", had),
		zap.String("algorithm", cfg.Algorithm), zap.Int("digits", cfg.Digits), zap.Duration("period", cfg.Period))
	return &totpAddAnswer{User: u.Name, URI: e.URI, Replaced: had}, nil
}

// removeTOTP removes the TOTP device of the user name names (disabled or not) and returns the
// directory's spelling of their name; totp.ErrNoDevice when they have none.
func (a *App) removeTOTP(ctx context.Context, name string) (string, error) {
	u, devices, err := a.totpUser(ctx, name)
	if err != nil {
		return "", err
	}
	if err := devices.Remove(ctx, u.Name); err != nil {
		return "", err
	}
	a.logger.Info("TOTP device removed by the operator", zap.String("user", u.Name))
	return u.Name, nil
}
