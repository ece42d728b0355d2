package portal

import (
	"context"
	"errors"
	"net/http"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is the password change on the account page: the current password (regulated as a
// sign-in), the new one twice, in an elevated session; then the person's other sessions end,
// with what they authorized, every token the person gave applications ends, and a notice is
// mailed. An enrolment session (enrol.go) sets the password without the current one: the
// enrolment link stood for it, and the person may have none yet.

// passwordTitle is the password page's title: setting one in an enrolment session, else
// changing it.
func passwordTitle(sess *session.Session) string {
	if sess.Enrolment {
		return "Set your password"
	}
	return "Change your password"
}

// passwordPage shows the form (GET) in an elevated session.
func (p *Portal) passwordPage(w http.ResponseWriter, r *http.Request) {
	_, sess, u, ok := p.deviceChange(w, r, pathPassword, true)
	if !ok {
		return
	}
	p.render(w, r, http.StatusOK, "password", &pageData{Title: passwordTitle(sess), User: u, Session: sess})
}

// changePassword checks the form (POST) and sets the new password.
func (p *Portal) changePassword(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, sess, u, ok := p.deviceChange(w, r, pathPassword, true)
	if !ok {
		return
	}
	current, next, again := r.PostFormValue("current"), r.PostFormValue("new"), r.PostFormValue("again")
	enrolling := sess.Enrolment
	refuse := func(status int, msg string) {
		p.render(w, r, status, "password", &pageData{Title: passwordTitle(sess), User: u, Session: sess, Error: msg})
	}
	switch {
	case enrolling && next == "":
		refuse(http.StatusBadRequest, "Enter the new password twice.")
		return
	case !enrolling && (current == "" || next == ""):
		refuse(http.StatusBadRequest, "Enter your current password and the new one.")
		return
	case len(next) > maxPasswordBytes:
		refuse(http.StatusBadRequest, "The new password is too long: keep it under 1024 bytes (about 1000 letters).")
		return
	case !utf8.ValidString(next):
		refuse(http.StatusBadRequest, "The new password holds characters that cannot be used. Type it again.")
		return
	case utf8.RuneCountInString(next) < minPasswordLength:
		refuse(http.StatusBadRequest, "The new password is too short: use at least 8 characters.")
		return
	case next != again:
		refuse(http.StatusBadRequest, "The two new passwords are not the same. Type the new password twice.")
		return
	}
	ip := p.cfg.ClientIP(r)
	var err error
	if !enrolling {
		err = p.cfg.CheckPassword(ctx, u.Name, current, ip)
	}
	switch {
	case errors.Is(err, ErrBadCredentials):
		p.cfg.Logger.Info("password not changed: the current password is wrong", zap.String("user", u.Name), zap.String("remote_ip", ip))
		refuse(http.StatusUnauthorized, "Your current password is not right.")
		return
	case errors.Is(err, users.ErrUnavailable):
		p.directoryDown(w, r)
		return
	case err != nil:
		p.unavailable(w, r)
		return
	}
	if !enrolling && next == current {
		refuse(http.StatusBadRequest, "The new password is the same as the current one. Choose another.")
		return
	}
	if err := p.cfg.Users.SetPassword(ctx, u, next); err != nil {
		if errors.Is(err, users.ErrUnavailable) {
			p.directoryDown(w, r)
			return
		}
		p.cfg.Logger.Error("portal: setting a password", zap.String("user", u.Name), zap.Error(err))
		p.unavailable(w, r)
		return
	}
	// whoever else holds a session of this person (a stolen cookie, a forgotten browser) is
	// signed out, with the tokens those sessions got; this browser goes on under a new id
	ended := p.endOtherSessions(ctx, u.Name, id, "a password change")
	newID, sess, err := p.cfg.Sessions.ConfirmPassword(ctx, id)
	if err != nil {
		p.cfg.Logger.Error("portal: moving the session after a password change", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.setSession(w, newID, sess)
	if enrolling {
		p.cfg.Logger.Info("password set with an enrolment link", zap.String("user", u.Name), zap.Int("sessions_ended", ended), zap.String("remote_ip", ip))
		p.notifyEvent(ctx, r, u, "Your password was set", "A password was set for your account through its set-up link, and your other sessions and applications were signed out. If you did not set it, tell the people who run this service at once.")
		redirect(w, r, p.base+PathSettings+"?notice=password-set")
		return
	}
	p.cfg.Logger.Info("password changed", zap.String("user", u.Name), zap.Int("sessions_ended", ended), zap.String("remote_ip", ip))
	p.notifyEvent(ctx, r, u, "Your password was changed", "The password of your account was changed, and your other sessions and applications were signed out. If you did not change it, tell the people who run this service at once.")
	redirect(w, r, p.base+PathSettings+"?notice=password-changed")
}

// endOtherSessions signs out whoever else holds a session of user (a stolen cookie, a forgotten
// browser) when a way to sign in changes (why: a password change or reset, a key removed): every
// session but keep's (every one when keep is "") ends with what it authorized (OnSignOut), and so does every token the user gave
// applications (EndUserTokens), since a refresh token outlives its session; the person's own
// applications sign in again through this browser's session. It returns how many sessions ended.
func (p *Portal) endOtherSessions(ctx context.Context, user, keep, why string) int {
	refs, err := p.cfg.Sessions.EndUserExcept(ctx, user, keep)
	if err != nil {
		p.cfg.Logger.Error("portal: ending the other sessions after "+why, zap.String("user", user), zap.Error(err))
	}
	if p.cfg.OnSignOut != nil {
		for _, ref := range refs {
			if ref != "" {
				p.cfg.OnSignOut(ctx, user, ref)
			}
		}
	}
	if p.cfg.EndUserTokens != nil {
		if err := p.cfg.EndUserTokens(context.WithoutCancel(ctx), user); err != nil {
			p.cfg.Logger.Error("portal: ending the user's tokens after "+why, zap.String("user", user), zap.Error(err))
		}
	}
	return len(refs)
}
