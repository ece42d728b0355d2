package portal

import (
	"context"
	"net/http"
	"net/url"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is what the provider's flows call besides a flow's own page: the current
// session, the browser binding and CSRF check, the sign-in and second-factor URLs, the error
// page.

// named is the current user called username, or a stand-in with the name alone when the user
// left the users file since their session was read.
func (p *Portal) named(username string) *users.User {
	if u, err := p.cfg.Users.Lookup(context.Background(), username); err == nil {
		return u
	}
	return &users.User{Name: username, DisplayName: username}
}

// Current is the browser's live session (its id, the session and its user), or "", nil, nil.
// A session whose user was removed or disabled is ended.
func (p *Portal) Current(r *http.Request) (string, *session.Session, *users.User) {
	return p.current(r)
}

// BrowserBinding is a value only this browser presents (the MAC of its CSRF cookie, which it
// is given now if it has none), to tie an authorization request to the browser that began it.
func (p *Portal) BrowserBinding(w http.ResponseWriter, r *http.Request) string {
	return p.csrfToken(w, r)
}

// CheckCSRF reports whether a form posted to the provider carries the browser's CSRF token and
// comes from the portal's own origin.
func (p *Portal) CheckCSRF(r *http.Request) bool { return p.checkCSRF(r) }

// SignInURL is the sign-in page that returns to rd (a URL at the issuer) once done; with force
// it asks for the password even when the browser is signed in (prompt=login, max_age).
func (p *Portal) SignInURL(rd string, force bool) string {
	u := p.base + PathSignIn + "?rd=" + url.QueryEscape(rd)
	if force {
		u += "&prompt=login"
	}
	return u
}

// SecondFactorURL is the second-factor page that returns to rd once done.
func (p *Portal) SecondFactorURL(rd string) string {
	return p.base + PathSecondFactor + "?rd=" + url.QueryEscape(rd)
}

// RenderError shows an error page: for an authorization request that cannot be sent back to
// its application, say. msg is shown as is (escaped).
func (p *Portal) RenderError(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	p.secureHeaders(w)
	p.render(w, r, status, "error", &pageData{Title: title, Error: msg})
}

// secureHeaders sets the headers every portal answer carries (ServeHTTP's and the pages the
// provider's flows render): no framing, no sniffing, the pages' Content-Security-Policy, and
// no-store (which ServeHTTP lifts for the static assets alone).
func (p *Portal) secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", p.csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}
