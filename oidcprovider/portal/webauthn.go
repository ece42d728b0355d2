package portal

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is security keys and passkeys (WebAuthn): the script's JSON endpoints for signing
// in, registering a key, and removing one.

// answerScript answers the WebAuthn script's fetch with v as JSON.
func answerScript(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// scriptError answers the WebAuthn script with the message it shows.
func scriptError(w http.ResponseWriter, status int, msg string) {
	answerScript(w, status, map[string]string{"error": msg})
}

// webauthnSession is the session of a request of the WebAuthn script, with WebAuthn enabled;
// otherwise it answers the script (401 or 404) and ok is false.
func (p *Portal) webauthnSession(w http.ResponseWriter, r *http.Request) (string, *session.Session, *users.User, bool) {
	id, sess, u := p.current(r)
	if sess == nil {
		scriptError(w, http.StatusUnauthorized, "Your session has ended. Sign in again.")
		return "", nil, nil, false
	}
	if p.cfg.WebAuthn == nil {
		scriptError(w, http.StatusNotFound, "Security keys are not enabled.")
		return "", nil, nil, false
	}
	return id, sess, u, true
}

func (p *Portal) webauthnLoginOptions(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, _, u, ok := p.webauthnSession(w, r)
	if !ok {
		return
	}
	opts, err := p.cfg.WebAuthn.BeginLogin(ctx, u.Name, p.ceremonyKey(id))
	if errors.Is(err, webauthn.ErrNoDevice) {
		scriptError(w, http.StatusBadRequest, "You have no security key registered.")
		return
	} else if err != nil {
		p.cfg.Logger.Error("portal: starting a WebAuthn sign-in", zap.Error(err))
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(opts)
}

func (p *Portal) webauthnLoginVerify(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	id, _, u, ok := p.webauthnSession(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		scriptError(w, http.StatusBadRequest, "The answer was too large.")
		return
	}
	addr := p.clientAddr(r)
	attempt, allowed := p.begin(ctx, u.Name, addr)
	if !allowed {
		p.observe("webauthn", "banned", nil)
		scriptError(w, http.StatusUnauthorized, "The security key was not accepted.")
		return
	}
	if err := p.cfg.WebAuthn.FinishLogin(ctx, u.Name, p.ceremonyKey(id), body); err != nil {
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "webauthn"), zap.String("reason", err.Error()), zap.String("remote_ip", addr.String()))
		p.observe("webauthn", "failure", attempt)
		scriptError(w, http.StatusUnauthorized, "The security key was not accepted.")
		return
	}
	attempt.Succeeded()
	p.observe("webauthn", "success", nil)
	if !p.elevate(ctx, w, id, u, "webauthn", addr.String()) {
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	to := rd
	if to == "" {
		to = p.afterSignIn()
	}
	answerScript(w, http.StatusOK, map[string]string{"redirect": to})
}

// keyRegisterPage shows the security-key registration, or with passkey "Add a passkey" (the
// script runs the ceremony).
func (p *Portal) keyRegisterPage(w http.ResponseWriter, r *http.Request, passkey bool) {
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	back, title := pathKeyRegister, "Add a security key"
	if passkey {
		back, title = pathPasskeyRegister, "Add a passkey"
	}
	_, sess, u, ok := p.deviceChange(w, r, back, p.cfg.WebAuthn != nil)
	if !ok {
		return
	}
	p.render(w, r, http.StatusOK, "webauthn", &pageData{Title: title, User: u, Session: sess, RD: rd, Passkey: passkey})
}

// deviceSession is the session of a JSON device request that may change devices.
func (p *Portal) deviceSession(w http.ResponseWriter, r *http.Request) (string, *session.Session, *users.User, bool) {
	ctx := r.Context()
	id, sess, u, ok := p.webauthnSession(w, r)
	if !ok {
		return "", nil, nil, false
	}
	if p.lacks(ctx, sess, u) != elevated {
		scriptError(w, http.StatusForbidden, "Confirm it is you again: reload the page.")
		return "", nil, nil, false
	}
	return id, sess, u, true
}

// keyRegisterOptions begins a security key's registration, or with passkey a passkey's
// (resident key and user verification required); keyRegisterVerify finishes both.
func (p *Portal) keyRegisterOptions(w http.ResponseWriter, r *http.Request, passkey bool) {
	ctx := r.Context()
	id, _, u, ok := p.deviceSession(w, r)
	if !ok {
		return
	}
	begin := p.cfg.WebAuthn.BeginRegistration
	if passkey {
		begin = p.cfg.WebAuthn.BeginPasskeyRegistration
	}
	opts, err := begin(ctx, u.Name, u.DisplayName, p.ceremonyKey(id))
	if err != nil {
		p.cfg.Logger.Error("portal: starting a WebAuthn registration", zap.Error(err))
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(opts)
}

// keyRegisterVerify finishes a registration, from the security key's page or (passkey) the
// passkey's: the ceremony itself says which it was; passkey only picks the notice.
func (p *Portal) keyRegisterVerify(w http.ResponseWriter, r *http.Request, passkey bool) {
	ctx := r.Context()
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	id, sess, u, ok := p.deviceSession(w, r)
	if !ok {
		return
	}
	var in struct {
		Name       string          `json:"name"`
		Credential json.RawMessage `json:"credential"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in.Credential) == 0 {
		scriptError(w, http.StatusBadRequest, "The browser's answer could not be read.")
		return
	}
	cred, err := p.cfg.WebAuthn.FinishRegistration(ctx, u.Name, u.DisplayName, p.ceremonyKey(id), in.Name, in.Credential)
	if err != nil {
		p.cfg.Logger.Info("security key not registered", zap.String("user", u.Name), zap.String("reason", err.Error()))
		scriptError(w, http.StatusBadRequest, "The security key could not be registered. Try again.")
		return
	}
	p.cfg.Logger.Info("second factor added", zap.String("user", u.Name), zap.String("factor", "webauthn"), zap.String("name", cred.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
	p.notifyEvent(ctx, r, u, "A second factor was added", "A security key or passkey was added to your account as a second factor.")
	to := p.base + PathSettings + "?notice=key-added"
	if passkey && cred.Passkey {
		to = p.base + PathSettings + "?notice=passkey-added"
	}
	if rd != "" && sess.Level < session.TwoFactor {
		to = p.withRD(PathSecondFactor, rd)
	}
	answerScript(w, http.StatusOK, map[string]string{"redirect": to})
}

func (p *Portal) keyRemove(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, _, u, ok := p.deviceChange(w, r, PathSettings, p.cfg.WebAuthn != nil)
	if !ok {
		return
	}
	err := p.cfg.WebAuthn.Remove(ctx, u.Name, r.PostFormValue("id"))
	if errors.Is(err, webauthn.ErrNoDevice) {
		redirect(w, r, p.base+PathSettings+"?notice=key-removed")
		return
	} else if err != nil {
		p.unavailable(w, r)
		return
	}
	// a removed key may be a passkey, which signs in alone: whoever signed in with it elsewhere
	// (a lost or stolen key) is signed out, as after a password change
	ended := p.endOtherSessions(ctx, u.Name, id, "a key removed")
	p.cfg.Logger.Info("second factor removed", zap.String("user", u.Name), zap.String("factor", "webauthn"), zap.Int("sessions_ended", ended), zap.String("remote_ip", p.cfg.ClientIP(r)))
	p.notifyEvent(ctx, r, u, "A second factor was removed", "A security key or passkey was removed from your account.")
	redirect(w, r, p.base+PathSettings+"?notice=key-removed")
}
