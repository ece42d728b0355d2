package oauth

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
)

// This file is the authorization endpoint as the browser goes through it: sign-in (prompt,
// max_age), the client's authorization policy, consent, and the answer. authorize.go holds the
// request itself: its validation, the saved flow, and the answer written to the client.

// ServeAuthorize is the authorization endpoint: it validates the request, sends a browser
// without a (fresh enough) sign-in to the portal, applies the client's authorization policy,
// asks for consent where needed, and answers the client.
func (f *Flow) ServeAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		f.cfg.Portal.RenderError(w, r, http.StatusMethodNotAllowed, "This address takes GET or POST", "Open the application again and start signing in from there.")
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	}
	ar, err := f.p.NewAuthorizeRequest(r.Context(), r, f.cfg.Portal.BrowserBinding(w, r))
	if err != nil {
		f.authorizeFailed(w, r, ar, err)
		return
	}
	f.continueAuthorize(w, r, ar, false)
}

// authorizeFailed answers a request that cannot go on: at the client's redirect URI when it is
// registered, else on an error page (never a redirect to an unverified URI).
func (f *Flow) authorizeFailed(w http.ResponseWriter, r *http.Request, ar *AuthorizeRequest, err error) {
	ctx := r.Context()
	if isUnavailable(err) {
		w.Header().Set("Retry-After", "5")
		f.cfg.Portal.RenderError(w, r, http.StatusServiceUnavailable, "Try again in a moment", "The sign-in service is busy or restarting. Try again in a few seconds.")
		return
	}
	if ar.RedirectValid() {
		f.p.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	rfc := rfcError(err)
	f.logger.Info("authorization request refused", zap.String("error", rfc.ErrorField), zap.String("reason", rfc.GetDescription()))
	status := http.StatusBadRequest
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		status = http.StatusUnauthorized
	}
	reason := rfc.HintField
	if reason == "" {
		reason = rfc.DescriptionField
	}
	f.cfg.Portal.RenderError(w, r, status, "This sign-in request cannot be completed",
		"The application's request was refused: "+reason+" ("+rfc.ErrorField+") Tell the application's administrator.")
}

// continueAuthorize decides what an authorization request needs next; consented is true when
// the request comes from the consent form's Accept.
func (f *Flow) continueAuthorize(w http.ResponseWriter, r *http.Request, ar *AuthorizeRequest, consented bool) {
	ctx := r.Context()
	s := f.cfg.Portal.Current(r)
	now := time.Now()
	force := false
	if s != nil {
		fresh := !s.AuthTime.Before(ar.RequestedAt())
		if ar.Prompt("login") && !fresh {
			force = true
		}
		if maxAge, ok := ar.MaxAge(); ok && now.Sub(s.AuthTime) > maxAge && !fresh {
			force = true
		}
	}
	if s == nil || force {
		if ar.Prompt("none") {
			f.p.WriteAuthorizeError(ctx, w, ar, fosite.ErrLoginRequired.WithHint("The user is not signed in (prompt=none)."))
			return
		}
		f.toPortal(w, r, ar, func(flowURL string) string { return f.cfg.Portal.SignInURL(flowURL, force) })
		return
	}

	switch f.cfg.Policy(r, ar.Client, s) {
	case accesscontrol.Deny:
		f.logger.Info("authorization denied by the client's policy", zap.String("client_id", ar.Client.ID()), zap.String("user", s.Username))
		f.p.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user may not use this application."))
		return
	case accesscontrol.TwoFactor:
		if !s.TwoFactor {
			if ar.Prompt("none") {
				f.p.WriteAuthorizeError(ctx, w, ar, fosite.ErrInteractionRequired.WithHint("The application needs a second factor (prompt=none)."))
				return
			}
			f.toPortal(w, r, ar, f.cfg.Portal.SecondFactorURL)
			return
		}
	}

	scopes, aud := slices.Clone(ar.Scopes()), grantedAudience(ar)
	if !consented {
		ask, remember, err := f.needsConsent(r, ar, s.Username, scopes, aud, now)
		if err != nil {
			f.authorizeFailed(w, r, ar, err)
			return
		}
		if ask {
			if ar.Prompt("none") {
				f.p.WriteAuthorizeError(ctx, w, ar, fosite.ErrConsentRequired.WithHint("The user has not consented (prompt=none)."))
				return
			}
			flow, err := f.p.SaveFlow(ctx, ar)
			if err != nil {
				f.authorizeFailed(w, r, ar, err)
				return
			}
			f.cfg.Portal.RenderConsent(w, r, &ConsentPage{
				Username:   s.Username,
				ClientID:   ar.Client.ID(),
				ClientName: ar.Client.Config().Name,
				Scopes:     scopes,
				Audience:   aud,
				Flow:       flow,
				Remember:   remember,
				FormAction: ar.RedirectOrigins(),
			})
			return
		}
	}

	sub, err := f.cfg.Subjects.Subject(r.Context(), s.Username, ar.Client.SectorIdentifier())
	if err != nil {
		f.authorizeFailed(w, r, ar, err)
		return
	}
	userClaims, ok, err := f.p.cfg.People.Claims(r.Context(), s.Username, scopes)
	if err != nil {
		f.authorizeFailed(w, r, ar, err)
		return
	}
	if !ok {
		// removed or disabled since the portal read the session: as if signed out
		f.toPortal(w, r, ar, func(flowURL string) string { return f.cfg.Portal.SignInURL(flowURL, false) })
		return
	}
	f.p.Authorize(r.Context(), w, ar, Grant{
		Username:       s.Username,
		Subject:        sub,
		AuthTime:       s.AuthTime,
		AMR:            s.AMR,
		TwoFactor:      s.TwoFactor,
		Scopes:         scopes,
		Audience:       aud,
		Claims:         userClaims,
		BrowserSession: s.Ref,
	})
}

// grantedAudience is the audience a request is granted: what it asked for, or, for a client in
// requested_audience_mode implicit that asked for none, the client's whole list.
func grantedAudience(ar *AuthorizeRequest) []string {
	if aud := ar.Audience(); len(aud) > 0 || !ar.Client.ImplicitAudience() {
		return slices.Clone(aud)
	}
	return slices.Clone([]string(ar.Client.GetAudience()))
}

// toPortal saves the request and sends the browser to a portal page that returns to it.
func (f *Flow) toPortal(w http.ResponseWriter, r *http.Request, ar *AuthorizeRequest, page func(flowURL string) string) {
	ctx := r.Context()
	flow, err := f.p.SaveFlow(ctx, ar)
	if err != nil {
		f.authorizeFailed(w, r, ar, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, page(f.p.FlowURL(flow)), http.StatusSeeOther)
}

// needsConsent reports whether the user must be asked, and for how long a consent given may be
// remembered (0 when it may not). offline access and the gateway scope always ask, as does
// prompt=consent; consent_mode decides the rest.
func (f *Flow) needsConsent(r *http.Request, ar *AuthorizeRequest, username string, scopes, aud []string, now time.Time) (bool, time.Duration, error) {
	sensitive := ar.Prompt("consent") || slices.ContainsFunc(scopes, func(s string) bool {
		return s == "offline_access" || s == "offline" || s == clients.ScopeBearerAuthz
	})
	switch ar.Client.ConsentMode() {
	case "implicit":
		return sensitive, 0, nil
	case "pre-configured":
		if sensitive {
			return true, 0, nil
		}
		found, err := f.cfg.Consents.Find(r.Context(), username, ar.Client.ID(), scopes, aud, now)
		if err != nil {
			return false, 0, err
		}
		return !found, max(ar.Client.PreConfiguredConsentDuration(), 0), nil
	}
	return true, 0, nil
}

// ServeConsent takes the consent form's answer.
func (f *Flow) ServeConsent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		f.cfg.Portal.RenderError(w, r, http.StatusMethodNotAllowed, "This address takes the consent form", "Open the application again and start signing in from there.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if !f.cfg.Portal.CheckCSRF(r) {
		f.cfg.Portal.RenderError(w, r, http.StatusForbidden, "This form has expired", "The form was sent without its security token, or the token expired. Go back to the application and sign in again.")
		return
	}
	flow := r.PostFormValue("flow")
	resume, err := http.NewRequestWithContext(r.Context(), http.MethodGet, PathAuthorization+"?flow="+url.QueryEscape(flow), nil)
	if err != nil || flow == "" {
		f.cfg.Portal.RenderError(w, r, http.StatusBadRequest, "This sign-in request cannot be completed", "The consent form is incomplete. Go back to the application and sign in again.")
		return
	}
	resume.Header = r.Header.Clone()
	resume.Header.Del("Content-Type")
	ar, err := f.p.NewAuthorizeRequest(r.Context(), resume, f.cfg.Portal.BrowserBinding(w, r))
	if err != nil {
		f.authorizeFailed(w, r, ar, err)
		return
	}
	s := f.cfg.Portal.Current(r)
	if s == nil {
		f.continueAuthorize(w, r, ar, false) // signed out meanwhile: sign in, then ask again
		return
	}
	switch r.PostFormValue("decision") {
	case "accept":
	case "deny":
		f.logger.Info("consent denied", zap.String("client_id", ar.Client.ID()), zap.String("user", s.Username))
		f.p.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
		return
	default:
		f.cfg.Portal.RenderError(w, r, http.StatusBadRequest, "This sign-in request cannot be completed", "The consent form is incomplete. Go back to the application and sign in again.")
		return
	}
	scopes, aud := ar.Scopes(), grantedAudience(ar)
	if r.PostFormValue("remember") != "" && ar.Client.ConsentMode() == "pre-configured" {
		if _, remember, err := f.needsConsent(r, ar, s.Username, scopes, aud, time.Now()); err == nil && remember > 0 {
			if err := f.cfg.Consents.Remember(r.Context(), s.Username, ar.Client.ID(), scopes, aud, ar.Client.PreConfiguredConsentDuration(), time.Now()); err != nil {
				f.authorizeFailed(w, r, ar, err)
				return
			}
		}
	}
	f.logger.Info("consent given", zap.String("client_id", ar.Client.ID()), zap.String("user", s.Username), zap.Strings("scopes", scopes))
	f.continueAuthorize(w, r, ar, true)
}
