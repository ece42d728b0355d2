package oidcprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// The admin API's enrolment-link route, for `caddy oidc users invite`: an operator hands a person
// a one-time link to set a password and add their second factors (see portal/enrol.go), or
// revokes it.
//
//	POST /oidc/users/invite  {"user": "<name or mail>", "lifespan": "72h"}  →  {"user": "<name>", "link": "https://…", "expires": "<RFC 3339>", "replaced": <bool>}
//	POST /oidc/users/invite  {"user": "<name or mail>", "revoke": true}    →  {"user": "<name>", "revoked": true}
const adminInvite = "/oidc/users/invite"

// inviteMinLifespanEnv lowers the least lifespan of an enrolment link for tests (a duration,
// e.g. "2s"), so that a link's expiry is tested without waiting minutes: a hook of the test
// suite, not an option, and so not documented with the configuration.
const inviteMinLifespanEnv = "PORTCULLIS_TEST_INVITE_MIN_LIFESPAN"

// inviteRequest is the body of POST /oidc/users/invite.
type inviteRequest struct {
	User string `json:"user"`
	// Lifespan is the link's lifespan in Caddy's duration syntax ("72h", "7d"); "" is
	// portal.DefaultInviteLifespan.
	Lifespan string `json:"lifespan,omitempty"`
	Revoke   bool   `json:"revoke,omitempty"`
}

// inviteAnswer is the answer of POST /oidc/users/invite: the directory's spelling of the user,
// and the link (a credential: never logged) with its expiry; or, for a revocation, Revoked.
type inviteAnswer struct {
	User     string    `json:"user"`
	Link     string    `json:"link,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
	Replaced bool      `json:"replaced,omitempty"`
	Revoked  bool      `json:"revoked,omitempty"`
}

// errInviteLifespan is a lifespan out of bounds, answered 400.
var errInviteLifespan = errors.New("bad lifespan")

func inviteUser(w http.ResponseWriter, r *http.Request) error {
	var req inviteRequest
	app, err := adminRequest(r, &req, func() bool { return req.User != "" }, `{"user": "<name>", "lifespan": "72h"} or {"user": "<name>", "revoke": true}`)
	if err != nil {
		return err
	}
	var ans *inviteAnswer
	if req.Revoke {
		ans, err = app.revokeInvite(r.Context(), req.User)
	} else {
		ans, err = app.invite(r.Context(), req.User, req.Lifespan)
	}
	switch {
	case errors.Is(err, errInviteLifespan):
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	case errors.Is(err, portal.ErrNoInvite):
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("%q has no live enrolment link", req.User)}
	case err != nil:
		return usersAdminError(req.User, "making an enrolment link", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(ans)
}

// inviteLifespan reads a requested lifespan ("" is the default) and checks its bounds.
func (a *App) inviteLifespan(s string) (time.Duration, error) {
	if s == "" {
		return portal.DefaultInviteLifespan, nil
	}
	d, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: lifespan %q is not a duration (such as 72h or 7d)", errInviteLifespan, s)
	}
	least := portal.MinInviteLifespan
	if v := os.Getenv(inviteMinLifespanEnv); v != "" {
		if t, err := time.ParseDuration(v); err == nil && t > 0 {
			a.logger.Warn(inviteMinLifespanEnv+" is set: enrolment links may be as short as a test needs", zap.Duration("least", t))
			least = t
		}
	}
	if d < least || d > portal.MaxInviteLifespan {
		return 0, fmt.Errorf("%w: lifespan %s: an enrolment link lasts from %s to %s (30d)", errInviteLifespan, s, least, portal.MaxInviteLifespan)
	}
	return d, nil
}

// invitePortal finds the user name names (a username in any letter case, or a mail address, and
// disabled or not) in the running directory, and the running portal.
func (a *App) invitePortal(ctx context.Context, name string) (*portal.Portal, *users.User, error) {
	st, err := a.runningPeople()
	if err != nil {
		return nil, nil, err
	}
	if st.portal == nil {
		return nil, nil, ErrUnavailable
	}
	u, err := st.users.Lookup(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return st.portal, u, nil
}

// invite makes an enrolment link for the user name names, who must be enabled, for lifespan
// ("" is the default), revoking the one they had. The portal logs it, never the link.
func (a *App) invite(ctx context.Context, name, lifespan string) (*inviteAnswer, error) {
	d, err := a.inviteLifespan(lifespan)
	if err != nil {
		return nil, err
	}
	p, u, err := a.invitePortal(ctx, name)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, errUserDisabled
	}
	inv, err := p.Invite(ctx, u, d)
	if err != nil {
		return nil, err
	}
	return &inviteAnswer{User: inv.User, Link: inv.Link, Expires: inv.Expires, Replaced: inv.Replaced}, nil
}

// revokeInvite revokes the live enrolment link of the user name names (portal.ErrNoInvite
// when there is none).
func (a *App) revokeInvite(ctx context.Context, name string) (*inviteAnswer, error) {
	p, u, err := a.invitePortal(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := p.RevokeInvite(ctx, u.Name); err != nil {
		return nil, err
	}
	return &inviteAnswer{User: u.Name, Revoked: true}, nil
}
