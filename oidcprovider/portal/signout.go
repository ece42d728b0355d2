package portal

import (
	"context"
	"net/http"
	"net/url"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"

	"go.uber.org/zap"
)

// This file is signing out: the portal's own page and form, the confirmation of an
// application's sign-out request, and ending a session.

// signOutPage asks to confirm (a link cannot sign anyone out).
func (p *Portal) signOutPage(w http.ResponseWriter, r *http.Request) {
	rd := p.safeRedirect(r.URL.Query().Get("rd"))
	_, sess, u := p.current(r)
	if sess == nil {
		p.render(w, r, http.StatusOK, "signedout", &pageData{Title: "Signed out", RD: rd})
		return
	}
	p.render(w, r, http.StatusOK, "signout", &pageData{Title: "Sign out", User: u, Session: sess, RD: rd})
}

// signOut ends the session on the server and removes the cookie.
func (p *Portal) signOut(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rd := p.safeRedirect(r.PostFormValue("rd"))
	if id := p.sessionID(r); id != "" {
		if sess, err := p.cfg.Sessions.Get(ctx, id); err == nil {
			p.cfg.Logger.Info("signed out", zap.String("user", sess.User), zap.String("remote_ip", p.cfg.ClientIP(r)))
		}
		if err := p.endSession(ctx, id); err != nil {
			p.unavailable(w, r)
			return
		}
	} else if err := p.endLapsed(ctx, r); err != nil {
		p.unavailable(w, r)
		return
	}
	p.clearSession(w)
	if rd != "" {
		redirect(w, r, rd)
		return
	}
	redirect(w, r, p.base+PathSignIn+"?notice=signed-out")
}

// endSession ends the session of id and tells OnSignOut.
func (p *Portal) endSession(ctx context.Context, id string) error {
	sess, err := p.cfg.Sessions.Get(ctx, id)
	if err := p.cfg.Sessions.End(ctx, id); err != nil {
		return err
	}
	if err == nil && p.cfg.OnSignOut != nil && sess.Ref() != "" {
		p.cfg.OnSignOut(ctx, sess.User, sess.Ref())
	}
	return nil
}

// endLapsed ends what the browser's lapsed session cookies still lead to: the sessions other
// cookie domains' gates began from a portal session that has since ended by inactivity or
// expiration (theirs may last longer), so signing out ends the sign-in on every domain.
func (p *Portal) endLapsed(ctx context.Context, r *http.Request) error {
	for _, id := range session.Values(r.Header, p.cfg.CookieName) {
		user, family, err := p.cfg.Sessions.EndSignIn(ctx, id)
		if err != nil {
			return err
		}
		if family != "" {
			p.cfg.Logger.Info("signed out", zap.String("user", user), zap.String("remote_ip", p.cfg.ClientIP(r)), zap.Bool("lapsed", true))
			if p.cfg.OnSignOut != nil {
				p.cfg.OnSignOut(ctx, user, family)
			}
		}
	}
	return nil
}

// RenderSignOut asks the person to confirm signing out before an application's sign-out
// request is carried out; the form posts back to action with the request's parameters.
func (p *Portal) RenderSignOut(w http.ResponseWriter, r *http.Request, username, clientName, action string, params url.Values, formAction []string) {
	p.secureHeaders(w)
	hidden := map[string]string{}
	for k, v := range params {
		if len(v) > 0 && k != "csrf" {
			hidden[k] = v[0]
		}
	}
	p.render(w, r, http.StatusOK, "signout", &pageData{Title: "Sign out", User: p.named(username), Action: action, Hidden: hidden, ClientName: clientName, FormAction: formAction})
}

// EndSession ends the browser's session and removes its cookie.
func (p *Portal) EndSession(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if id := p.sessionID(r); id != "" {
		if err := p.endSession(ctx, id); err != nil {
			return err
		}
	} else if err := p.endLapsed(ctx, r); err != nil {
		return err
	}
	p.clearSession(w)
	return nil
}

// SignedOutURL is the portal's signed-out page.
func (p *Portal) SignedOutURL() string { return p.base + PathSignIn + "?notice=signed-out" }
