package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// Consent is what an application asks of a user, for the consent page.
type Consent struct {
	// ClientID and ClientName name the application.
	ClientID, ClientName string
	// Scopes and Audience are what it asks for.
	Scopes, Audience []string
	// Flow names the saved authorization request the form answers.
	Flow string
	// Remember, when positive, offers to remember the consent for that long.
	Remember time.Duration
	// FormAction are the origins the answer goes on to (the application's redirect URI).
	FormAction []string
}

// consentView is what the consent page shows: the request in words for people.
type consentView struct {
	ClientID, ClientName string
	Scopes               []scopeView
	Audience             []string
	Flow                 string
	Remember             string // "1 week"; "" offers no remembering
}

// scopeView is one scope on the consent page.
type scopeView struct {
	// Name is the scope; Description says what it allows; Claims lists what it reveals.
	Name, Description, Claims string
}

// scopeGatewayCall is the gateway's scope (clients.ScopeBearerAuthz, which portal does not
// import for one string; a test keeps the two equal).
const scopeGatewayCall = "authelia.bearer.authz"

// scopeDescriptions say what each scope lets an application do, for the consent page.
var scopeDescriptions = map[string]string{
	"openid":         "Know who you are",
	"profile":        "See your name and profile",
	"email":          "See your email address",
	"groups":         "See the groups you belong to",
	"address":        "See your postal address",
	"phone":          "See your phone number",
	"offline_access": "Stay connected while you are away (refresh tokens)",
	"offline":        "Stay connected while you are away (refresh tokens)",
	scopeGatewayCall: "Call the sites this gateway protects as you",
}

// scopeClaims are the claims each scope reveals, in words, for the consent page.
var scopeClaims = map[string][]string{
	"openid":  {"an account identifier"},
	"profile": {"name", "username", "given and family name", "picture", "locale"},
	"email":   {"email address"},
	"groups":  {"group names"},
	"address": {"postal address"},
	"phone":   {"phone number"},
}

// view puts c in words.
func (c *Consent) view() *consentView {
	v := &consentView{
		ClientID:   c.ClientID,
		ClientName: c.ClientName,
		Audience:   c.Audience,
		Flow:       c.Flow,
		Remember:   humanDuration(c.Remember),
	}
	for _, s := range c.Scopes {
		d, ok := scopeDescriptions[s]
		if !ok {
			d = "Use the scope “" + s + "”"
		}
		v.Scopes = append(v.Scopes, scopeView{Name: s, Description: d, Claims: strings.Join(scopeClaims[s], ", ")})
	}
	return v
}

// humanDuration writes d for people: "1 week", "3 days", "12 hours", else Go's form; "" for
// none.
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d <= 0:
		return ""
	case d%(7*24*time.Hour) == 0:
		return plural(int64(d/(7*24*time.Hour)), "week")
	case d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute")
	}
	return d.String()
}

// named is the current user called username, or a stand-in with the name alone when the user
// left the users file since their session was read.
func (p *Portal) named(username string) *users.User {
	if u, ok := p.cfg.Users().Lookup(username); ok {
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

// RenderConsent asks username whether an application may use their account.
func (p *Portal) RenderConsent(w http.ResponseWriter, r *http.Request, username string, c *Consent) {
	p.secureHeaders(w)
	p.render(w, r, http.StatusOK, "consent", &pageData{Title: "Allow access?", User: p.named(username), Consent: c.view(), FormAction: c.FormAction})
}

// RenderError shows an error page: for an authorization request that cannot be sent back to
// its application, say. msg is shown as is (escaped).
func (p *Portal) RenderError(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	p.secureHeaders(w)
	p.render(w, r, status, "error", &pageData{Title: title, Error: msg})
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
