package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is the signed-in page and the checks before a device changes: the devices listed,
// a recent password (and second factor), the password confirmation.

// settingsPage is the signed-in page: who, how, the devices, and sign-out.
func (p *Portal) settingsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, p.localURL(PathSettings)))
		return
	}
	d := &pageData{Title: "Your account", User: u, Session: sess, Notice: notices[r.URL.Query().Get("notice")]}
	if sess.Enrolment {
		d.Title = "Set up your account"
	}
	p.devices(ctx, u, d)
	if !sess.Enrolment {
		if err := p.federationLinks(ctx, u, d); err != nil {
			p.cfg.Logger.Error("portal: listing linked identities", zap.String("user", u.Name), zap.Error(err))
			p.unavailable(w, r)
			return
		}
	}
	if p.cfg.Consents != nil && !sess.Enrolment {
		grants, err := p.cfg.Consents.List(ctx, u.Name, p.cfg.Now())
		if err != nil {
			p.unavailable(w, r)
			return
		}
		d.HasConsents = true
		for _, g := range grants {
			name := g.ClientID
			if p.cfg.ClientName != nil {
				name = p.cfg.ClientName(g.ClientID)
			}
			d.Consents = append(d.Consents, consentItem{ID: g.ID, Client: name, Scopes: strings.Join(g.Scopes, " "), Expires: g.ExpiresAt})
		}
	}
	p.render(w, r, http.StatusOK, "settings", d)
}

// devices fills in the user's devices.
func (p *Portal) devices(ctx context.Context, u *users.User, d *pageData) {
	if p.cfg.TOTP != nil {
		if info, err := p.cfg.TOTP.Info(ctx, u.Name); err == nil {
			d.TOTP = info
		}
	}
	if p.cfg.WebAuthn != nil {
		if keys, err := p.cfg.WebAuthn.List(ctx, u.Name); err == nil {
			d.Keys = keys
		}
	}
}

func (p *Portal) hasSecondFactor(ctx context.Context, u *users.User) bool {
	d := &pageData{}
	p.devices(ctx, u, d)
	return d.TOTP != nil || len(d.Keys) > 0
}

// fresh makes sure the session may make a sensitive change (a device added or removed, a
// password changed): an elevated session (elevation.go), or, under the rule kept for a provider
// without a notifier, the password given within five minutes and, for a user who has a second
// factor, that factor too. Otherwise it answers (the elevation page, the second-factor page or
// a password confirmation, each coming back to back with the request's rd) and returns false.
func (p *Portal) fresh(w http.ResponseWriter, r *http.Request, sess *session.Session, u *users.User, back string) bool {
	rd := p.safeRedirect(r.FormValue("rd"))
	switch p.lacks(r.Context(), sess, u) {
	case elevated:
		return true
	case needPassword:
		p.render(w, r, http.StatusOK, "confirm", &pageData{Title: "Confirm it is you", User: u, Next: back})
	case needSecondFactor:
		redirect(w, r, p.base+PathSecondFactor+"?rd="+url.QueryEscape(p.origin+p.returnTo(back, rd)))
	default:
		redirect(w, r, p.elevateURL(back, rd))
	}
	return false
}

// deviceChange is the start of every page that adds or removes a device: the browser's session
// (else the sign-in page, coming back to back), the factor enabled (else 404), and the session
// fresh enough (else the password confirmation or the second-factor page). ok is false when it
// has answered.
func (p *Portal) deviceChange(w http.ResponseWriter, r *http.Request, back string, enabled bool) (string, *session.Session, *users.User, bool) {
	id, sess, u := p.current(r)
	switch {
	case sess == nil:
		redirect(w, r, p.withRD(PathSignIn, p.localURL(back)))
		return "", nil, nil, false
	case !enabled:
		http.NotFound(w, r)
		return "", nil, nil, false
	case !p.fresh(w, r, sess, u, back):
		return "", nil, nil, false
	}
	return id, sess, u, true
}

// settingsReturn is a portal settings path a confirmation may go back to.
func (p *Portal) settingsReturn(next string) string {
	switch next {
	case pathTOTPEnrol, pathKeyRegister, pathPasskeyRegister, pathPassword, PathSettings:
		return next
	}
	return PathSettings
}

// confirmPassword records the password again before a device change.
func (p *Portal) confirmPassword(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, sess, u := p.current(r)
	next := p.settingsReturn(r.PostFormValue("next"))
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, p.localURL(next)))
		return
	}
	err := p.cfg.CheckPassword(r.Context(), u.Name, r.PostFormValue("password"), p.cfg.ClientIP(r))
	if errors.Is(err, ErrBadCredentials) {
		p.render(w, r, http.StatusUnauthorized, "confirm", &pageData{Title: "Confirm it is you", User: u, Next: next, Error: "Incorrect password."})
		return
	} else if err != nil {
		p.unavailable(w, r)
		return
	}
	newID, sess, err := p.cfg.Sessions.ConfirmPassword(ctx, id)
	if err != nil {
		p.unavailable(w, r)
		return
	}
	p.setSession(w, newID, sess)
	redirect(w, r, p.base+next)
}
