package portal

import (
	"context"
	"net/http"
	"net/netip"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is the second-factor page and what both factors share: the regulated attempt
// and the session raised to two factors.

// secondFactorPage asks for a TOTP code or a security key.
func (p *Portal) secondFactorPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	_, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, rd))
		return
	}
	d := &pageData{Title: "Second factor", RD: rd, User: u, Session: sess}
	p.devices(ctx, u, d)
	d.NeedsFirst = d.TOTP == nil && len(d.Keys) == 0
	p.render(w, r, http.StatusOK, "secondfactor", d)
}

// elevate records a second factor: the session moves to a new id at level two.
func (p *Portal) elevate(ctx context.Context, w http.ResponseWriter, id string, u *users.User, factor, ip string) bool {
	newID, sess, err := p.cfg.Sessions.ElevateWith(ctx, id, session.TwoFactor, factor)
	if err != nil {
		p.cfg.Logger.Error("portal: elevating a session", zap.Error(err))
		return false
	}
	p.setSession(w, newID, sess)
	p.cfg.Logger.Info("second factor accepted", zap.String("user", u.Name), zap.String("factor", factor), zap.String("remote_ip", ip))
	return true
}

// begin starts a regulated second-factor attempt: false when the user at addr is banned. The
// attempt is never nil (without a regulator it does nothing).
func (p *Portal) begin(ctx context.Context, user string, addr netip.Addr) (*regulation.Attempt, bool) {
	if p.cfg.Regulator == nil {
		return &regulation.Attempt{}, true
	}
	a, ok := p.cfg.Regulator.BeginSecondFactor(ctx, user, addr)
	if a == nil {
		a = &regulation.Attempt{}
	}
	return a, ok
}

// observe reports a second factor checked to OnSecondFactor.
func (p *Portal) observe(factor, result string, a *regulation.Attempt) {
	if p.cfg.OnSecondFactor != nil {
		p.cfg.OnSecondFactor(factor, result, a != nil && a.Banned)
	}
}
