package portal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clientaddr"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is passkey sign-in (the sign-in page's "Sign in with a passkey" button and the
// browser's autofill, conditional mediation) and what the account page adds for passkeys:
// "Add a passkey" and renaming a security key or passkey.
//
// A passkey sign-in happens before any session exists, so its ceremony is bound to the
// browser's CSRF cookie (an HMAC of it under the portal's key, as ceremonyKey binds the others
// to the session): a ceremony begun in one browser cannot be finished from another, and it is
// one-time and short-lived (webauthn.Devices). Failed assertions are regulated as second
// factors are: against the user the credential names (and the address), or the address alone
// for a credential no one has.

// passkeyLogin reports that the sign-in page offers passkeys (WebAuthn on, and
// enable_passkey_login not false).
func (p *Portal) passkeyLogin() bool { return p.cfg.WebAuthn != nil && p.cfg.PasskeyLogin }

// passkeyCeremonyKey binds a passkey sign-in to the browser: an HMAC of its CSRF cookie's
// value, or "" when it has none (a POST without it never passes checkCSRF).
func (p *Portal) passkeyCeremonyKey(r *http.Request) string {
	c, err := r.Cookie(p.csrfCookie())
	if err != nil || len(c.Value) != 43 {
		return ""
	}
	m := hmac.New(sha256.New, p.cfg.Key)
	m.Write([]byte("passkey ceremony\x00" + c.Value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Passkey sign-ins begun per client address: at most passkeyOptionsLimit in any
// passkeyOptionsWindow. Anyone may begin one, and each leaves a ceremony in the store for the
// WebAuthn timeout (a browser that mints new CSRF cookies gets a new ceremony each time), so one
// address must not begin them without end; a sign-in page begins one or two (the autofill, the
// button), and the limit leaves room for many people behind one address.
const (
	passkeyOptionsLimit  = 60
	passkeyOptionsWindow = time.Minute
)

// passkeyRefused is the one message of a refused passkey sign-in, whatever the reason.
const passkeyRefused = "This passkey was not accepted. Try again, or sign in with your password."

// passkeyOptions begins a passkey sign-in: the request options for the script.
func (p *Portal) passkeyOptions(w http.ResponseWriter, r *http.Request) {
	if !p.passkeyLogin() {
		scriptError(w, http.StatusNotFound, "Passkey sign-in is not enabled.")
		return
	}
	key := p.passkeyCeremonyKey(r)
	if key == "" {
		scriptError(w, http.StatusForbidden, "Reload the page and try again.")
		return
	}
	if !p.passkeyStarts.allow(clientaddr.Key(p.clientAddr(r)), p.cfg.Now()) {
		p.cfg.Logger.Info("passkey sign-in refused: too many begun from this address", zap.String("remote_ip", p.cfg.ClientIP(r)))
		w.Header().Set("Retry-After", fmt.Sprint(int(passkeyOptionsWindow/time.Second)))
		scriptError(w, http.StatusTooManyRequests, "Too many passkey sign-ins were begun from your network. Wait a minute, then try again.")
		return
	}
	opts, err := p.cfg.WebAuthn.BeginPasskeyLogin(r.Context(), key)
	if err != nil {
		p.cfg.Logger.Error("portal: starting a passkey sign-in", zap.Error(err))
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(opts)
}

// passkeyVerify finishes a passkey sign-in: a new session at two factors, then rd (or the
// default) as the password's sign-in goes on.
func (p *Portal) passkeyVerify(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !p.passkeyLogin() {
		scriptError(w, http.StatusNotFound, "Passkey sign-in is not enabled.")
		return
	}
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	var in struct {
		Credential json.RawMessage `json:"credential"`
		RememberMe bool            `json:"remember_me"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in.Credential) == 0 {
		scriptError(w, http.StatusBadRequest, "The browser's answer could not be read.")
		return
	}
	addr := p.clientAddr(r)
	// the user the credential names, to count a failure against (unknown: the address alone)
	owner, err := p.cfg.WebAuthn.PasskeyOwner(ctx, in.Credential)
	if err != nil {
		p.cfg.Logger.Error("portal: reading a passkey's owner", zap.Error(err))
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	attempt, allowed := p.begin(ctx, owner, addr)
	if !allowed {
		p.observe("passkey", "banned", nil)
		p.cfg.Logger.Info("passkey sign-in refused", zap.String("user", owner), zap.String("reason", "banned"), zap.String("remote_ip", addr.String()))
		scriptError(w, http.StatusUnauthorized, passkeyRefused)
		return
	}
	name, err := p.cfg.WebAuthn.FinishPasskeyLogin(ctx, p.passkeyCeremonyKey(r), in.Credential)
	if err != nil {
		p.cfg.Logger.Info("passkey sign-in refused", zap.String("user", owner), zap.String("reason", err.Error()), zap.String("remote_ip", addr.String()))
		p.observe("passkey", "failure", attempt)
		msg := passkeyRefused
		switch {
		case errors.Is(err, webauthn.ErrNoCeremony):
			msg = "The passkey sign-in expired or was already used. Try again."
		case !errors.Is(err, webauthn.ErrNoDevice) && !errors.Is(err, webauthn.ErrVerification):
			scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
			return
		}
		scriptError(w, http.StatusUnauthorized, msg)
		return
	}
	u, err := p.cfg.Users.Lookup(ctx, name)
	switch {
	case errors.Is(err, users.ErrUnavailable):
		attempt.Abandoned()
		scriptError(w, http.StatusServiceUnavailable, "The directory of users cannot be reached. Try again in a minute.")
		return
	case err != nil || u.Disabled:
		// a removed or disabled user's passkey: refused as any other, and counted
		p.cfg.Logger.Info("passkey sign-in refused", zap.String("user", name), zap.String("reason", "the user is disabled or no longer exists"), zap.String("remote_ip", addr.String()))
		p.observe("passkey", "failure", attempt)
		scriptError(w, http.StatusUnauthorized, passkeyRefused)
		return
	}
	attempt.Succeeded()
	p.observe("passkey", "success", nil)
	// a new session, as a password sign-in starts one (signIn says why the old one ends)
	if id := p.sessionID(r); id != "" {
		_ = p.endSession(ctx, id)
	}
	id, sess, err := p.cfg.Sessions.CreateByPasskey(ctx, u.Name, in.RememberMe && p.cfg.RememberMe > 0)
	if err != nil {
		p.cfg.Logger.Error("portal: starting a session", zap.Error(err))
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	p.setSession(w, id, sess)
	p.cfg.Logger.Info("signed in", zap.String("user", u.Name), zap.String("factor", session.FactorPasskey), zap.String("remote_ip", addr.String()), zap.Bool("remember_me", sess.RememberMe))
	to := rd
	if to == "" {
		to = p.afterSignIn()
	}
	answerScript(w, http.StatusOK, map[string]string{"redirect": to})
}

// keyRename renames one of the user's security keys or passkeys.
func (p *Portal) keyRename(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, _, u, ok := p.deviceChange(w, r, PathSettings, p.cfg.WebAuthn != nil)
	if !ok {
		return
	}
	err := p.cfg.WebAuthn.Rename(ctx, u.Name, r.PostFormValue("id"), r.PostFormValue("name"))
	switch {
	case errors.Is(err, webauthn.ErrNoDevice):
		redirect(w, r, p.base+PathSettings)
		return
	case err != nil:
		p.cfg.Logger.Error("portal: renaming a security key", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.cfg.Logger.Info("security key renamed", zap.String("user", u.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
	redirect(w, r, p.base+PathSettings+"?notice=key-renamed")
}
