package portal

import (
	"net/http"
	"net/url"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// ConsentView is what the consent page shows.
type ConsentView struct {
	// ClientID and ClientName name the application.
	ClientID, ClientName string
	// Scopes are the scopes asked for, described for people.
	Scopes []ScopeView
	// Audience lists the audiences asked for.
	Audience []string
	// Flow names the saved authorization request the form answers.
	Flow string
	// Remember, when not empty, offers to remember the consent for that long ("1 week").
	Remember string
	// FormAction are the origins the answer goes on to (the application's redirect URI).
	FormAction []string
}

// ScopeView is one scope on the consent page.
type ScopeView struct {
	// Name is the scope; Description says what it allows; Claims lists what it reveals.
	Name, Description, Claims string
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

// RenderConsent shows the consent page.
func (p *Portal) RenderConsent(w http.ResponseWriter, r *http.Request, u *users.User, v *ConsentView) {
	p.secureHeaders(w)
	p.render(w, r, http.StatusOK, "consent", &pageData{Title: "Allow access?", User: u, Consent: v, FormAction: v.FormAction})
}

// RenderError shows an error page: for an authorization request that cannot be sent back to
// its application, say. msg is shown as is (escaped).
func (p *Portal) RenderError(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	p.secureHeaders(w)
	p.render(w, r, status, "error", &pageData{Title: title, Error: msg})
}

// RenderSignOut asks the person to confirm signing out before an application's sign-out
// request is carried out; the form posts back to action with the request's parameters.
func (p *Portal) RenderSignOut(w http.ResponseWriter, r *http.Request, u *users.User, clientName, action string, params url.Values, formAction []string) {
	p.secureHeaders(w)
	hidden := map[string]string{}
	for k, v := range params {
		if len(v) > 0 && k != "csrf" {
			hidden[k] = v[0]
		}
	}
	p.render(w, r, http.StatusOK, "signout", &pageData{Title: "Sign out", User: u, Action: action, Hidden: hidden, ClientName: clientName, FormAction: formAction})
}

// EndSession ends the browser's session and removes its cookie.
func (p *Portal) EndSession(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(p.cfg.CookieName); err == nil {
		if err := p.endSession(c.Value); err != nil {
			return err
		}
	}
	p.clearSession(w)
	return nil
}

// SignedOutURL is the portal's signed-out page.
func (p *Portal) SignedOutURL() string { return p.base + PathSignIn + "?notice=signed-out" }

// secureHeaders sets the headers every portal page carries.
func (p *Portal) secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", p.csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}
