package portal

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is the sign-in page: the password form and the session it starts.

// signInPage shows the sign-in form, or sends a signed-in browser on.
func (p *Portal) signInPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rd := p.safeRedirect(q.Get("rd"))
	if _, sess, _ := p.current(r); sess != nil && q.Get("prompt") != "login" {
		if rd != "" {
			redirect(w, r, rd)
			return
		}
		redirect(w, r, p.base+PathSettings)
		return
	}
	d := &pageData{Title: "Sign in", RD: rd, RM: q.Get("rm"), RememberMe: p.cfg.RememberMe > 0, Notice: notices[q.Get("notice")]}
	p.federationButtons(d)
	p.render(w, r, http.StatusOK, "signin", d)
}

// signIn checks the form: a new session (a new id) on success.
func (p *Portal) signIn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	rd := p.safeRedirect(r.PostFormValue("rd"))
	remember := r.PostFormValue("remember_me") != "" && p.cfg.RememberMe > 0
	again := &pageData{Title: "Sign in", RD: rd, RM: r.PostFormValue("rm"), Username: username, RememberMe: p.cfg.RememberMe > 0}
	p.federationButtons(again)
	if username == "" || password == "" {
		again.Error = "Enter your username and password."
		p.render(w, r, http.StatusBadRequest, "signin", again)
		return
	}
	ip := p.cfg.ClientIP(r)
	err := p.cfg.CheckPassword(r.Context(), username, password, ip)
	if r.Context().Err() != nil {
		return // the browser left; the attempt counted all the same
	}
	if errors.Is(err, ErrBadCredentials) {
		again.Error = "Incorrect username or password."
		p.render(w, r, http.StatusUnauthorized, "signin", again)
		return
	} else if errors.Is(err, users.ErrUnavailable) {
		p.directoryDown(w, r)
		return
	} else if err != nil {
		p.unavailable(w, r)
		return
	}
	u, err := p.cfg.Users.Lookup(ctx, username)
	if err != nil {
		p.directoryDown(w, r)
		return
	}
	if to, ok := p.beginSession(w, r, u, rd, func(ctx context.Context) (string, *session.Session, error) {
		return p.cfg.Sessions.Create(ctx, u.Name, session.OneFactor, remember)
	}, zap.String("factor", "password")); ok {
		redirect(w, r, to)
	}
}

// beginSession completes a sign-in of u (a password's, an identity provider's): it ends the
// browser's session, starts a new one with create, gives the browser its cookie, logs the
// sign-in with fields and returns where the browser goes next: rd, or where a sign-in without
// one goes. ok is false when it has answered (the store failing).
func (p *Portal) beginSession(w http.ResponseWriter, r *http.Request, u *users.User, rd string, create func(context.Context) (string, *session.Session, error), fields ...zap.Field) (to string, ok bool) {
	ctx := r.Context()
	// a sign-in always starts a new session: an id planted in the browser before is worth nothing.
	// The session it replaces ends as a sign-out would, with what it authorized (OnSignOut):
	// the new session has another reference, so the replaced one's tokens would otherwise
	// outlive every later sign-out of this browser (a prompt=login sign-in, say).
	if id := p.sessionID(r); id != "" {
		_ = p.endSession(ctx, id)
	}
	id, sess, err := create(ctx)
	if err != nil {
		p.cfg.Logger.Error("portal: starting a session", zap.Error(err))
		p.unavailable(w, r)
		return "", false
	}
	p.setSession(w, id, sess)
	p.cfg.Logger.Info("signed in", append([]zap.Field{zap.String("user", u.Name)}, append(fields, zap.String("remote_ip", p.cfg.ClientIP(r)), zap.Bool("remember_me", sess.RememberMe))...)...)
	if rd != "" {
		return rd, true
	}
	return p.afterSignIn(), true
}
