package portal

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
)

// This file is the authenticator app (TOTP): the code checked at sign-in, and adding or
// removing the device.

// checkTOTP checks a code from the second-factor page.
func (p *Portal) checkTOTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rd := p.safeRedirect(r.PostFormValue("rd"))
	id, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, rd))
		return
	}
	if p.cfg.TOTP == nil {
		http.NotFound(w, r)
		return
	}
	addr := p.clientAddr(r)
	fail := func(msg string) {
		d := &pageData{Title: "Second factor", RD: rd, User: u, Session: sess, Error: msg}
		p.devices(ctx, u, d)
		p.render(w, r, http.StatusUnauthorized, "secondfactor", d)
	}
	attempt, allowed := p.begin(ctx, u.Name, addr)
	if !allowed {
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("reason", "banned"), zap.String("remote_ip", addr.String()))
		p.observe("totp", "banned", nil)
		fail("That code is not right. Wait for a new one and try again.")
		return
	}
	err := p.cfg.TOTP.Check(ctx, u.Name, strings.ReplaceAll(r.PostFormValue("code"), " ", ""), p.cfg.Now())
	if err != nil {
		reason := "wrong code"
		switch {
		case errors.Is(err, totp.ErrReplayed):
			reason = "code already used"
		case errors.Is(err, totp.ErrNoDevice):
			reason = "no device"
		case !errors.Is(err, totp.ErrWrongCode):
			p.cfg.Logger.Error("portal: checking a TOTP code", zap.Error(err))
			p.unavailable(w, r)
			return
		}
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("reason", reason), zap.String("remote_ip", addr.String()))
		p.observe("totp", "failure", attempt)
		fail("That code is not right. Wait for a new one and try again.")
		return
	}
	attempt.Succeeded()
	p.observe("totp", "success", nil)
	if !p.elevate(ctx, w, id, u, "totp", addr.String()) {
		p.unavailable(w, r)
		return
	}
	if rd != "" {
		redirect(w, r, rd)
		return
	}
	redirect(w, r, p.afterSignIn())
}

// totpEnrolPage shows a new secret as a QR code and a URI, and asks for a code from it.
func (p *Portal) totpEnrolPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	id, sess, u, ok := p.deviceChange(w, r, pathTOTPEnrol, p.cfg.TOTP != nil)
	if !ok {
		return
	}
	e, err := p.cfg.TOTP.StartEnrolment(ctx, u.Name, p.ceremonyKey(id))
	if err != nil {
		p.cfg.Logger.Error("portal: starting a TOTP enrolment", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.render(w, r, http.StatusOK, "totp", &pageData{Title: "Add an authenticator app", User: u, Session: sess, RD: rd, Enrolment: e,
		QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QR)), OTPAuth: template.URL(e.URI)})
}

// totpEnrol confirms an enrolment with a code from the new device.
func (p *Portal) totpEnrol(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rd := p.safeRedirect(r.PostFormValue("rd"))
	id, sess, u, ok := p.deviceChange(w, r, pathTOTPEnrol, p.cfg.TOTP != nil)
	if !ok {
		return
	}
	err := p.cfg.TOTP.FinishEnrolment(ctx, u.Name, p.ceremonyKey(id), strings.ReplaceAll(r.PostFormValue("code"), " ", ""), p.cfg.Now())
	switch {
	case errors.Is(err, totp.ErrWrongCode):
		p.render(w, r, http.StatusBadRequest, "error", &pageData{Title: "That code is not right", Error: "The code did not match the new secret. Scan the QR code again and enter the code your app shows now.", Next: p.withRD(pathTOTPEnrol, rd)})
		return
	case errors.Is(err, totp.ErrNoEnrolment):
		redirect(w, r, p.withRD(pathTOTPEnrol, rd))
		return
	case err != nil:
		p.cfg.Logger.Error("portal: saving a TOTP device", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("second factor added", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("remote_ip", p.cfg.ClientIP(r)))
	p.notifyEvent(ctx, r, u, "A second factor was added", "An authenticator app was added to your account as a second factor.")
	if rd != "" && sess.Level < session.TwoFactor {
		redirect(w, r, p.withRD(PathSecondFactor, rd))
		return
	}
	redirect(w, r, p.base+PathSettings+"?notice=totp-added")
}

func (p *Portal) totpRemove(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, _, u, ok := p.deviceChange(w, r, PathSettings, p.cfg.TOTP != nil)
	if !ok {
		return
	}
	if err := p.cfg.TOTP.Remove(ctx, u.Name); err != nil && !errors.Is(err, totp.ErrNoDevice) {
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("second factor removed", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("remote_ip", p.cfg.ClientIP(r)))
	p.notifyEvent(ctx, r, u, "A second factor was removed", "The authenticator app was removed from your account.")
	redirect(w, r, p.base+PathSettings+"?notice=totp-removed")
}
