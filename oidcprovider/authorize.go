package oidcprovider

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/ory/fosite"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/claims"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// people is the provider's view of the users file: oauth.People.
type people struct{ a *App }

// Active implements oauth.People.
func (p people) Active(name string) bool {
	u, ok := p.a.users.Current().Lookup(name)
	return ok && !u.Disabled
}

// Claims implements oauth.People.
func (p people) Claims(name string, scopes []string) (map[string]any, bool) {
	u, ok := p.a.users.Current().Lookup(name)
	if !ok || u.Disabled {
		return nil, false
	}
	return claims.ForScopes(u, scopes), true
}

// servePeopleFlow serves the endpoints a browser visits (authorization, consent, sign-out):
// they need the portal, so without a users_file they are not served.
func (a *App) servePeopleFlow(w http.ResponseWriter, r *http.Request, rel string, next caddyhttp.Handler) error {
	if a.users == nil {
		return next.ServeHTTP(w, r)
	}
	st := a.running()
	if st == nil || st.portal == nil {
		oauth.WriteUnavailable(w)
		return nil
	}
	switch rel {
	case oauth.PathConsent:
		a.serveConsent(w, r, st)
	case oauth.PathLogout:
		a.serveLogout(w, r, st)
	default:
		a.serveAuthorize(w, r, st)
	}
	return nil
}

// serveAuthorize is the authorization endpoint: it validates the request, sends a browser
// without a (fresh enough) session to sign in, applies the client's authorization policy, asks
// for consent where needed, and answers the client.
func (a *App) serveAuthorize(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		st.portal.RenderError(w, r, http.StatusMethodNotAllowed, "This address takes GET or POST", "Open the application again and start signing in from there.")
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	}
	ar, err := st.provider.NewAuthorizeRequest(r.Context(), r, st.portal.BrowserBinding(w, r))
	if err != nil {
		a.authorizeFailed(w, r, st, ar, err)
		return
	}
	a.continueAuthorize(w, r, st, ar, false)
}

// authorizeFailed answers a request that cannot go on: at the client's redirect URI when it is
// registered, else on an error page (never a redirect to an unverified URI).
func (a *App) authorizeFailed(w http.ResponseWriter, r *http.Request, st *runtimeState, ar *oauth.AuthorizeRequest, err error) {
	if isClosed(err) {
		st.portal.RenderError(w, r, http.StatusServiceUnavailable, "Try again in a moment", "The sign-in service is busy or restarting. Try again in a few seconds.")
		return
	}
	if ar.RedirectValid() {
		st.provider.WriteAuthorizeError(w, ar, err)
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	a.logger.Info("authorization request refused", zap.String("error", rfc.ErrorField), zap.String("reason", rfc.GetDescription()))
	status := http.StatusBadRequest
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		status = http.StatusUnauthorized
	}
	reason := rfc.HintField
	if reason == "" {
		reason = rfc.DescriptionField
	}
	st.portal.RenderError(w, r, status, "This sign-in request cannot be completed",
		"The application's request was refused: "+reason+" ("+rfc.ErrorField+") Tell the application's administrator.")
}

// continueAuthorize decides what an authorization request needs next; consented is true when
// the request comes from the consent form's Accept.
func (a *App) continueAuthorize(w http.ResponseWriter, r *http.Request, st *runtimeState, ar *oauth.AuthorizeRequest, consented bool) {
	_, sess, u := st.portal.Current(r)
	now := time.Now()
	force := false
	if sess != nil {
		fresh := !sess.AuthTime.Before(ar.RequestedAt())
		if ar.Prompt("login") && !fresh {
			force = true
		}
		if maxAge, ok := ar.MaxAge(); ok && now.Sub(sess.AuthTime) > maxAge && !fresh {
			force = true
		}
	}
	if sess == nil || force {
		if ar.Prompt("none") {
			st.provider.WriteAuthorizeError(w, ar, fosite.ErrLoginRequired.WithHint("The user is not signed in (prompt=none)."))
			return
		}
		a.toPortal(w, r, st, ar, func(flowURL string) string { return st.portal.SignInURL(flowURL, force) })
		return
	}

	switch a.authorizationPolicy(ar.Client, u, clientAddr(r)) {
	case accesscontrol.Deny:
		a.logger.Info("authorization denied by the client's policy", zap.String("client_id", ar.Client.ID()), zap.String("user", u.Name))
		st.provider.WriteAuthorizeError(w, ar, fosite.ErrAccessDenied.WithHint("The user may not use this application."))
		return
	case accesscontrol.TwoFactor:
		if sess.Level < session.TwoFactor {
			if ar.Prompt("none") {
				st.provider.WriteAuthorizeError(w, ar, fosite.ErrInteractionRequired.WithHint("The application needs a second factor (prompt=none)."))
				return
			}
			a.toPortal(w, r, st, ar, st.portal.SecondFactorURL)
			return
		}
	}

	scopes, aud := slices.Clone(ar.Scopes()), grantedAudience(ar)
	if !consented {
		ask, remember, err := a.needsConsent(st, ar, u, scopes, aud, now)
		if err != nil {
			a.authorizeFailed(w, r, st, ar, err)
			return
		}
		if ask {
			if ar.Prompt("none") {
				st.provider.WriteAuthorizeError(w, ar, fosite.ErrConsentRequired.WithHint("The user has not consented (prompt=none)."))
				return
			}
			flow, err := st.provider.SaveFlow(ar)
			if err != nil {
				a.authorizeFailed(w, r, st, ar, err)
				return
			}
			st.portal.RenderConsent(w, r, u, consentView(ar, flow, remember, scopes, aud))
			return
		}
	}

	sub, err := st.subjects.Subject(u.Name, ar.Client.SectorIdentifier())
	if err != nil {
		a.authorizeFailed(w, r, st, ar, err)
		return
	}
	st.provider.Authorize(r.Context(), w, ar, oauth.Grant{
		Username:       u.Name,
		Subject:        sub,
		AuthTime:       sess.AuthTime,
		AMR:            amrOf(sess),
		TwoFactor:      sess.Level >= session.TwoFactor,
		Scopes:         scopes,
		Audience:       aud,
		Claims:         claims.ForScopes(u, scopes),
		BrowserSession: sess.Ref(),
	})
}

// grantedAudience is the audience a request is granted: what it asked for, or, for a client in
// requested_audience_mode implicit that asked for none, the client's whole list.
func grantedAudience(ar *oauth.AuthorizeRequest) []string {
	if aud := ar.Audience(); len(aud) > 0 || !ar.Client.ImplicitAudience() {
		return slices.Clone(aud)
	}
	return slices.Clone([]string(ar.Client.GetAudience()))
}

// toPortal saves the request and sends the browser to a portal page that returns to it.
func (a *App) toPortal(w http.ResponseWriter, r *http.Request, st *runtimeState, ar *oauth.AuthorizeRequest, page func(flowURL string) string) {
	flow, err := st.provider.SaveFlow(ar)
	if err != nil {
		a.authorizeFailed(w, r, st, ar, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, page(st.provider.FlowURL(flow)), http.StatusSeeOther)
}

// needsConsent reports whether the user must be asked, and for how long a consent given may be
// remembered ("" when it may not). offline access and the gateway scope always ask, as does
// prompt=consent; consent_mode decides the rest.
func (a *App) needsConsent(st *runtimeState, ar *oauth.AuthorizeRequest, u *users.User, scopes, aud []string, now time.Time) (bool, string, error) {
	sensitive := ar.Prompt("consent") || slices.ContainsFunc(scopes, func(s string) bool {
		return s == "offline_access" || s == "offline" || s == clients.ScopeBearerAuthz
	})
	switch ar.Client.ConsentMode() {
	case "implicit":
		return sensitive, "", nil
	case "pre-configured":
		if sensitive {
			return true, "", nil
		}
		_, found, err := st.consents.Find(u.Name, ar.Client.ID(), scopes, aud, now)
		if err != nil {
			return false, "", err
		}
		return !found, humanDuration(ar.Client.PreConfiguredConsentDuration()), nil
	}
	return true, "", nil
}

// serveConsent takes the consent form's answer.
func (a *App) serveConsent(w http.ResponseWriter, r *http.Request, st *runtimeState) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		st.portal.RenderError(w, r, http.StatusMethodNotAllowed, "This address takes the consent form", "Open the application again and start signing in from there.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !st.portal.CheckCSRF(r) {
		st.portal.RenderError(w, r, http.StatusForbidden, "This form has expired", "The form was sent without its security token, or the token expired. Go back to the application and sign in again.")
		return
	}
	flow := r.PostFormValue("flow")
	resume, err := http.NewRequestWithContext(r.Context(), http.MethodGet, oauth.PathAuthorization+"?flow="+url.QueryEscape(flow), nil)
	if err != nil || flow == "" {
		st.portal.RenderError(w, r, http.StatusBadRequest, "This sign-in request cannot be completed", "The consent form is incomplete. Go back to the application and sign in again.")
		return
	}
	resume.Header = r.Header.Clone()
	resume.Header.Del("Content-Type")
	ar, err := st.provider.NewAuthorizeRequest(r.Context(), resume, st.portal.BrowserBinding(w, r))
	if err != nil {
		a.authorizeFailed(w, r, st, ar, err)
		return
	}
	_, sess, u := st.portal.Current(r)
	if sess == nil {
		a.continueAuthorize(w, r, st, ar, false) // signed out meanwhile: sign in, then ask again
		return
	}
	switch r.PostFormValue("decision") {
	case "accept":
	case "deny":
		a.logger.Info("consent denied", zap.String("client_id", ar.Client.ID()), zap.String("user", u.Name))
		st.provider.WriteAuthorizeError(w, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
		return
	default:
		st.portal.RenderError(w, r, http.StatusBadRequest, "This sign-in request cannot be completed", "The consent form is incomplete. Go back to the application and sign in again.")
		return
	}
	scopes, aud := ar.Scopes(), grantedAudience(ar)
	if r.PostFormValue("remember") != "" && ar.Client.ConsentMode() == "pre-configured" {
		if _, remember, err := a.needsConsent(st, ar, u, scopes, aud, time.Now()); err == nil && remember != "" {
			if _, err := st.consents.Remember(u.Name, ar.Client.ID(), scopes, aud, ar.Client.PreConfiguredConsentDuration(), time.Now()); err != nil {
				a.authorizeFailed(w, r, st, ar, err)
				return
			}
		}
	}
	a.logger.Info("consent given", zap.String("client_id", ar.Client.ID()), zap.String("user", u.Name), zap.Strings("scopes", scopes))
	a.continueAuthorize(w, r, st, ar, true)
}

// authorizationPolicy is the level the client's authorization_policy (one_factor, two_factor
// or a named policy) asks of user at addr.
func (a *App) authorizationPolicy(c *clients.Client, u *users.User, addr netip.Addr) accesscontrol.Policy {
	if p, ok := a.clientPolicy(c.AuthorizationPolicy()); ok {
		return p.Decide(u.Name, u.Groups, addr)
	}
	return accesscontrol.Deny // validated at provision: unreachable unless the config is inconsistent
}

// clientAddr is the request's client address as Caddy's trusted proxies settle it.
func clientAddr(r *http.Request) netip.Addr {
	addr, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap()
}

// amrOf lists the RFC 8176 methods of a session's sign-in.
func amrOf(s *session.Session) []string {
	two := s.Level >= session.TwoFactor
	return claims.AMR(true, two && s.SecondFactor == "totp", two && s.SecondFactor == "webauthn", false)
}

// scopeDescriptions say what each scope lets an application do, for the consent page.
var scopeDescriptions = map[string]string{
	"openid":                 "Know who you are",
	"profile":                "See your name and profile",
	"email":                  "See your email address",
	"groups":                 "See the groups you belong to",
	"address":                "See your postal address",
	"phone":                  "See your phone number",
	"offline_access":         "Stay connected while you are away (refresh tokens)",
	"offline":                "Stay connected while you are away (refresh tokens)",
	clients.ScopeBearerAuthz: "Call the sites this gateway protects as you",
}

// scopeClaims are the claims each scope reveals, for the consent page.
var scopeClaims = map[string][]string{
	"openid":  {"an account identifier"},
	"profile": {"name", "username", "given and family name", "picture", "locale"},
	"email":   {"email address"},
	"groups":  {"group names"},
	"address": {"postal address"},
	"phone":   {"phone number"},
}

func consentView(ar *oauth.AuthorizeRequest, flow, remember string, scopes, aud []string) *portal.ConsentView {
	v := &portal.ConsentView{
		ClientID:   ar.Client.ID(),
		ClientName: ar.Client.Config().Name,
		Audience:   aud,
		Flow:       flow,
		Remember:   remember,
		FormAction: ar.RedirectOrigins(),
	}
	for _, s := range scopes {
		d, ok := scopeDescriptions[s]
		if !ok {
			d = "Use the scope “" + s + "”"
		}
		v.Scopes = append(v.Scopes, portal.ScopeView{Name: s, Description: d, Claims: strings.Join(scopeClaims[s], ", ")})
	}
	return v
}

// humanDuration writes d for people: "1 week", "3 days", "12 hours", else Go's form.
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

// isClosed reports the store closing under a request.
func isClosed(err error) bool { return errors.Is(err, store.ErrClosed) }
