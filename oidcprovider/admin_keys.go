package oidcprovider

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
)

// The admin API's route for `caddy oidc users keys remove`: an operator takes away every
// security key and passkey of a person (one lost or stolen; a passkey signs in alone) and signs
// out the person's sessions, with the tokens applications got through them.
//
//	POST /oidc/users/keys/remove  {"user": "<name or mail>"}  →  {"user": "<name>", "removed": <n>, "sessions_ended": <n>}
const adminKeysRemove = "/oidc/users/keys/remove"

// keysRemoveRequest is the body of POST /oidc/users/keys/remove, and (with the counts) its answer.
type keysRemoveRequest struct {
	User          string `json:"user"`
	Removed       int    `json:"removed"`
	SessionsEnded int    `json:"sessions_ended"`
}

// errWebAuthnDisabled refuses a key action where the running config has no WebAuthn.
var errWebAuthnDisabled = errors.New("WebAuthn is disabled in the running config (webauthn { disable })")

func removeUserKeys(w http.ResponseWriter, r *http.Request) error {
	var req keysRemoveRequest
	app, err := adminRequest(r, &req, func() bool { return req.User != "" }, `{"user": "<name>"}`)
	if err != nil {
		return err
	}
	ans, err := app.removeKeys(r.Context(), req.User)
	if err != nil {
		return usersAdminError(req.User, "removing security keys", err)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(ans)
}

// removeKeys removes every security key and passkey of the user name names (a username in any
// letter case, or a mail address) and ends the user's sessions (EndUserSessions). A user with no
// key is webauthn.ErrNoDevice. The user may be disabled: a stolen passkey must not sign in again
// when the person is enabled.
func (a *App) removeKeys(ctx context.Context, name string) (*keysRemoveRequest, error) {
	st, err := a.runningPeople()
	if err != nil {
		return nil, err
	}
	if a.portal == nil || a.portal.webauthn == nil {
		return nil, errWebAuthnDisabled
	}
	if st.webauthn == nil {
		return nil, ErrUnavailable
	}
	u, err := st.users.Lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	creds, err := st.webauthn.List(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	if len(creds) == 0 {
		return nil, webauthn.ErrNoDevice
	}
	for _, c := range creds {
		if err := st.webauthn.Remove(ctx, u.Name, c.ID); err != nil && !errors.Is(err, webauthn.ErrNoDevice) {
			return nil, err
		}
	}
	ended, err := a.EndUserSessions(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	a.logger.Info("security keys removed by the operator", zap.String("user", u.Name), zap.Int("keys", len(creds)), zap.Int("sessions_ended", ended))
	return &keysRemoveRequest{User: u.Name, Removed: len(creds), SessionsEnded: ended}, nil
}
